// The ledger's guarantee, under randomized interleavings (seeded): after
// any death — a clean stop, a cut-short stop, SIGKILL mid-drain, a crash of
// the program, a crash of vigil, power loss — the next run's interrupted set holds every
// unit whose `begin` got `ok` and whose `end` was never sent, and nothing
// whose `end` got `ok` or whose `begin` was never sent. (A request whose
// answer was lost with the process may go either way: its record may or
// may not have reached the disk.)
import Foundation
import Glibc
import VigilTestSupport
import XCTest

final class LedgerExactnessTests: XCTestCase {
    override func tearDown() { VigilRunProcess.removeScratch() }

    enum Death: Int, CaseIterable { case clean, cutShort, killedMidDrain, programCrash, vigilCrash }

    /// One client connection's requests, in order, awaiting answers.
    final class Client {
        let ledger: LedgerClient
        let session: String
        var due: [(op: String, id: String)] = []
        var nextID = 0
        var begun: [String] = []  // begin sent, end not sent
        init(_ path: String, session: String) throws {
            ledger = try LedgerClient(path: path)
            self.session = session
        }
    }

    var sentBegin = Set<String>(), ackedBegin = Set<String>(), sentEnd = Set<String>(), ackedEnd = Set<String>()

    func testInterruptedSetIsExactAfterEveryKindOfDeath() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["VIGIL_TEST_SEED"] ?? "") ?? UInt64(time(nil))
        print("LedgerExactnessTests seed \(seed) (VIGIL_TEST_SEED=\(seed) repeats it)")
        var rng = SeededGenerator(seed: seed)
        let dir = try VigilRunProcess.scratch()
        let state = dir + "/state"
        let stubborn = try script(dir, "stubborn.sh", "trap '' TERM\nwhile :; do sleep 0.05; done\n")
        let plain = try script(dir, "plain.sh", "while :; do sleep 0.05; done\n")
        var deaths = Death.allCases + Death.allCases
        deaths.shuffle(using: &rng)
        var previous: Set<String>? = nil
        var totalInterrupted = 0
        for (round, death) in deaths.enumerated() {
            let stubbornProgram = death == .cutShort || death == .killedMidDrain
            let run = try VigilRunProcess(["--stop-timeout", death == .cutShort ? "1" : "5"],
                                          command: [stubbornProgram ? stubborn : plain], stateDir: state)
            try run.waitUntilStarted()
            // Check the previous round, then resolve everything it left.
            let checker = try LedgerClient(path: run.ledgerPath)
            let found = checker.interrupted()
            var interrupted = Set<String>()
            for (s, ids) in found { for id in ids { interrupted.insert("\(s)/\(id)") } }
            if let expectedBounds = previous {
                _ = expectedBounds
                let mustBe = ackedBegin.subtracting(sentEnd)
                let mayBe = sentBegin.subtracting(ackedEnd)
                XCTAssertTrue(mustBe.isSubset(of: interrupted), "round \(round - 1) (\(deaths[round - 1])): missing \(mustBe.subtracting(interrupted).sorted()) (seed \(seed))")
                XCTAssertTrue(interrupted.isSubset(of: mayBe), "round \(round - 1) (\(deaths[round - 1])): extra \(interrupted.subtracting(mayBe).sorted()) (seed \(seed))")
            }
            totalInterrupted += interrupted.count
            for s in found.keys { XCTAssertEqual(checker.request(#"{"op":"resolve","session":"\#(s)"}"#)["op"] as? String, "ok") }
            XCTAssertEqual(checker.interrupted().count, 0)
            sentBegin = []; ackedBegin = []; sentEnd = []; ackedEnd = []

            let clients = try traffic(run, sessions: "r\(round)c", rng: &rng)
            switch death {
            case .clean, .cutShort:
                run.signal(SIGTERM)
                issue(clients, count: Int.random(in: 0...30, using: &rng), rng: &rng)
                XCTAssertEqual(try run.waitForExit(), 0, run.log)
            case .killedMidDrain:
                run.signal(SIGTERM)
                try run.waitFor("stopping record durable")
                issue(clients, count: Int.random(in: 0...30, using: &rng), rng: &rng)
                usleep(UInt32.random(in: 0...30_000, using: &rng))
                run.signal(SIGKILL)
                _ = try run.waitForExit()
            case .programCrash:
                usleep(UInt32.random(in: 0...5_000, using: &rng))
                kill(run.programPID!, SIGKILL)
                XCTAssertEqual(try run.waitForExit(), 137, run.log)
            case .vigilCrash:
                usleep(UInt32.random(in: 0...5_000, using: &rng))
                run.signal(SIGKILL)
                _ = try run.waitForExit()
            }
            for c in clients { collect(c, all: false) }
            previous = sentBegin
        }
        XCTAssertGreaterThan(totalInterrupted, 0, "some rounds left work interrupted (seed \(seed))")
        // The last round's check.
        let run = try VigilRunProcess([], command: [plain], stateDir: state)
        try run.waitUntilStarted()
        let checker = try LedgerClient(path: run.ledgerPath)
        var interrupted = Set<String>()
        for (s, ids) in checker.interrupted() { for id in ids { interrupted.insert("\(s)/\(id)") } }
        XCTAssertTrue(ackedBegin.subtracting(sentEnd).isSubset(of: interrupted), "last round: missing (seed \(seed))")
        XCTAssertTrue(interrupted.isSubset(of: sentBegin.subtracting(ackedEnd)), "last round: extra (seed \(seed))")
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)
    }

    /// Power loss: the page cache is lost with the process (``PowerCut``: a
    /// loop ext4 image mounted with commit=600, copied at the cut), so only
    /// what was fdatasync'd remains. vigil is SIGKILLed mid-stream (or
    /// mid-drain), the answers it sent before dying are read, then the power
    /// goes. The next run, on what the disk held, must still report every
    /// unit whose `begin` got `ok` and whose `end` was never sent.
    func testInterruptedSetIsExactAfterPowerLoss() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["VIGIL_TEST_SEED"] ?? "") ?? UInt64(time(nil))
        print("LedgerExactnessTests power loss seed \(seed) (VIGIL_TEST_SEED=\(seed) repeats it)")
        var rng = SeededGenerator(seed: seed)
        let dir = try VigilRunProcess.scratch()
        let plain = try script(dir, "plain.sh", "while :; do sleep 0.05; done\n")
        // Mid-drain, the program ignores SIGTERM, so the drain is still on when vigil dies.
        let stubborn = try script(dir, "stubborn.sh", "trap '' TERM\nwhile :; do sleep 0.05; done\n")
        for midDrain in [false, true] {
            sentBegin = []; ackedBegin = []; sentEnd = []; ackedEnd = []
            let (classification, interrupted) = try PowerCut.onLoopImage("ledger-\(midDrain ? "drain" : "stream")", live: { live in
                let run = try VigilRunProcess(["--stop-timeout", "5"], command: [midDrain ? stubborn : plain], stateDir: live + "/state")
                try run.waitUntilStarted()
                let clients = try traffic(run, sessions: "p", rng: &rng)
                if midDrain {
                    run.signal(SIGTERM)
                    try run.waitFor("stopping record durable")
                    issue(clients, count: Int.random(in: 0...30, using: &rng), rng: &rng)
                }
                usleep(UInt32.random(in: 0...5_000, using: &rng))
                run.signal(SIGKILL)
                _ = try run.waitForExit()
                // Every answer it sent left after its record's fdatasync.
                for c in clients { collect(c, all: false) }
                // The cut's own check: a file written without a flush must not survive it.
                FileManager.default.createFile(atPath: live + "/unflushed", contents: Data("x".utf8))
            }, after: { replayed in
                XCTAssertFalse(FileManager.default.fileExists(atPath: replayed + "/unflushed"), "the power cut kept unflushed data: it simulates nothing")
                let run = try VigilRunProcess([], command: [plain], stateDir: replayed + "/state")
                try run.waitUntilStarted()
                var interrupted = Set<String>()
                for (s, ids) in try LedgerClient(path: run.ledgerPath).interrupted() { for id in ids { interrupted.insert("\(s)/\(id)") } }
                let classification = try VigilRunProcess.lastShutdown(replayed + "/state")["classification"] as? String
                run.signal(SIGTERM)
                XCTAssertEqual(try run.waitForExit(), 0, run.log)
                return (classification, interrupted)
            })
            let mustBe = ackedBegin.subtracting(sentEnd)
            XCTAssertGreaterThan(ackedBegin.count, 0)
            XCTAssertTrue(mustBe.isSubset(of: interrupted), "power loss \(midDrain ? "mid-drain" : "mid-stream"): missing \(mustBe.subtracting(interrupted).sorted()) (seed \(seed))")
            XCTAssertTrue(interrupted.isSubset(of: sentBegin.subtracting(ackedEnd)), "power loss: extra \(interrupted.subtracting(sentBegin.subtracting(ackedEnd)).sorted()) (seed \(seed))")
            XCTAssertEqual(classification, midDrain ? "killed-during-drain" : "crash")
        }
    }

    /// One to four clients on the run's ledger: some work answered in full,
    /// then a batch left in flight for the death that follows.
    private func traffic(_ run: VigilRunProcess, sessions prefix: String, rng: inout SeededGenerator) throws -> [Client] {
        let clients = try (0..<Int.random(in: 1...4, using: &rng)).map { try Client(run.ledgerPath, session: "\(prefix)\($0)") }
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            issue(clients, count: Int.random(in: 5...60, using: &rng), rng: &rng)
            for c in clients { collect(c, all: true) }
        }
        issue(clients, count: Int.random(in: 20...200, using: &rng), rng: &rng)
        return clients
    }

    /// Pipelines `count` random requests over the clients.
    private func issue(_ clients: [Client], count: Int, rng: inout SeededGenerator) {
        for _ in 0..<count {
            let c = clients.randomElement(using: &rng)!
            if !c.begun.isEmpty && Bool.random(using: &rng) {
                let id = c.begun.remove(at: Int.random(in: 0..<c.begun.count, using: &rng))
                c.ledger.sendLine(#"{"op":"end","session":"\#(c.session)","id":"\#(id)"}"#)
                c.due.append(("end", id))
                sentEnd.insert("\(c.session)/\(id)")
            } else {
                c.nextID += 1
                let id = "u\(c.nextID)"
                c.ledger.sendLine(#"{"op":"begin","session":"\#(c.session)","id":"\#(id)"}"#)
                c.due.append(("begin", id))
                c.begun.append(id)
                sentBegin.insert("\(c.session)/\(id)")
            }
        }
    }

    /// Reads the answers due (all of them, or until the connection ends).
    private func collect(_ c: Client, all: Bool) {
        while !c.due.isEmpty {
            guard let line = c.ledger.nextLine() else {
                XCTAssertFalse(all, "the connection ended with \(c.due.count) answers due")
                c.due.removeAll()
                return
            }
            let (op, id) = c.due.removeFirst()
            let key = "\(c.session)/\(id)"
            if line == #"{"op":"ok","id":"\#(id)"}"# {
                if op == "begin" { ackedBegin.insert(key) } else { ackedEnd.insert(key) }
            } else {
                XCTAssertTrue(line.contains("not_durable"), "only a closed journal refuses here: \(line)")
            }
        }
    }
}
