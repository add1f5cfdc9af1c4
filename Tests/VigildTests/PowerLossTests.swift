import Foundation
import Glibc
import VigilDurable
import VigilReactor
import VigilTesting
import VigilTestSupport
import XCTest

/// Power loss on a real filesystem (``PowerCut``: an ext4 image on a loop
/// device, commit=600, copied at the cut and replayed). vigild is stopped
/// with SIGTERM and SIGKILLed once its stopping record is durable; then the
/// power goes, and the next start's classification is read.
final class PowerLossTests: XCTestCase {
    /// The record file exists (a first run created it and stopped cleanly);
    /// the second run's `running` and `stopping` are in-place slot writes,
    /// each made durable by one fdatasync and no journal commit.
    func testStoppingRecordSurvivesPowerLoss() throws {
        let found = try PowerCut.onLoopImage("real", live: { live in
            try cleanRun(live + "/state")
            let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", live + "/state"], environment: ["VIGIL_DEBUG_DRAIN_MS": "60000"])
            try d.waitUntilListening()
            d.signal(SIGTERM)
            XCTAssertTrue(waitForLog(d, "stopping record durable"), d.log)
            d.signal(SIGKILL)
            _ = try d.waitForExit()
        }, after: { replayed in
            try classification(replayed + "/state")
        })
        XCTAssertEqual(found, "killed-during-drain")
    }

    /// A first start: the record file is created (tmp, fsync, rename,
    /// directory fsync) in the same run that is stopped.
    func testStoppingRecordOfAFirstStartSurvivesPowerLoss() throws {
        let found = try PowerCut.onLoopImage("first", live: { live in
            let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", live + "/state"], environment: ["VIGIL_DEBUG_DRAIN_MS": "60000"])
            try d.waitUntilListening()
            d.signal(SIGTERM)
            XCTAssertTrue(waitForLog(d, "stopping record durable"), d.log)
            d.signal(SIGKILL)
            _ = try d.waitForExit()
        }, after: { replayed in
            try classification(replayed + "/state")
        })
        XCTAssertEqual(found, "killed-during-drain")
    }

    /// The record's own writes, by the library alone (nothing else in the
    /// process fsyncs, unlike vigild whose turn journal's flushes commit
    /// every pending ext4 metadata change with them): take-over, then the
    /// stopping slot, then the power cut.
    private func libraryScenario(_ name: String, existingFile: Bool, syncDirectory: Bool = true, flushStopping: Bool = true) throws -> String {
        try PowerCut.onLoopImage(name, live: { live in
            if existingFile { try cleanRun(live + "/state") }
            let fs = FlushSkippingFileSystem(try PosixStateFileSystem(path: live + "/state"))
            fs.skipDirectorySync = !syncDirectory
            let store = ShutdownRecordStore(fs: fs)
            let running = ShutdownRecord(running: getpid(), bootID: currentBootID(), startedAtNs: wallClockNanoseconds(), version: "test")
            _ = try store.takeOver(running: running, currentBootID: running.bootID)
            fs.skipDataSync = !flushStopping
            try store.markStopping(signal: SignalInfo(signal: SIGTERM, senderPID: getpid(), senderUID: 0, code: 0, value: 0, receivedAtNs: 0), budgetMs: 1, inFlight: 0)
            XCTAssertEqual(store.read(), .valid(store.current!), "visible before the power cut")
        }, after: { replayed in
            try classification(replayed + "/state")
        })
    }

    func testLibraryStoppingRecordSurvivesPowerLoss() throws {
        XCTAssertEqual(try libraryScenario("lib-existing", existingFile: true), "killed-during-drain")
        XCTAssertEqual(try libraryScenario("lib-created", existingFile: false), "killed-during-drain")
    }

    /// The negative control: the same stopping slot written in place by the
    /// same code, without its fdatasync, is lost at the power cut (the
    /// running record before it, flushed, is what remains). If this one ever
    /// sees killed-during-drain, the power-loss simulation has stopped
    /// simulating anything.
    func testNegativeControlWithoutFdatasyncLosesTheRecord() throws {
        let found = try libraryScenario("control-fdatasync", existingFile: true, flushStopping: false)
        XCTAssertNotEqual(found, "killed-during-drain", "skipping the fdatasync must lose the stopping record")
        XCTAssertEqual(found, "crash", "the running record (flushed) is what remains")
    }

    /// The other negative control: the record file created (tmp, fsync,
    /// rename) without the directory fsync. The rename is still only in
    /// memory when the power goes, and the stopping record written into the
    /// file — fdatasync'd — is lost with its name.
    func testNegativeControlWithoutDirectoryFsyncAtCreationLosesTheRecord() throws {
        let found = try libraryScenario("control-dir", existingFile: false, syncDirectory: false)
        XCTAssertNotEqual(found, "killed-during-drain", "skipping the directory fsync at creation must lose the record")
        XCTAssertEqual(found, "first-start", "the created file's name never reached the disk")
    }

    /// A full disk does not stop the stopping record: its slot is allocated
    /// since the file's creation, and an overwrite needs no new block. The
    /// disk is filled while vigild runs (checked: a new file cannot get a
    /// block, which is what the rename-based record needed), then SIGTERM,
    /// SIGKILL, power cut.
    func testFullDiskDoesNotStopTheStoppingRecord() throws {
        var log = ""
        let found = try PowerCut.onLoopImage("full", live: { live in
            let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", live + "/state"], environment: ["VIGIL_DEBUG_DRAIN_MS": "60000"])
            try d.waitUntilListening()
            // Down to the last block (this small image has 1 KiB blocks).
            for (i, bs) in ["1M", "4k", "1k", "512"].enumerated() {
                _ = try Shell.run(["dd", "if=/dev/zero", "of=\(live)/fill-\(i)", "bs=\(bs)"])
            }
            _ = try Shell.run(["sync", "-f", live])
            let probe = open(live + "/state/probe", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            XCTAssertGreaterThanOrEqual(probe, 0)
            var n = 0, e: Int32 = 0
            for _ in 0..<8 {  // enough for what one record needs, as one write each
                n = write(probe, [UInt8](repeating: 1, count: 300), 300)
                e = errno
                if n < 0 { break }
                fsync(probe)
            }
            close(probe)
            XCTAssertEqual(n, -1, "the disk must be full for this test to mean anything")
            XCTAssertEqual(e, ENOSPC)
            d.signal(SIGTERM)
            XCTAssertTrue(waitForLog(d, "stopping record durable"), d.log)
            d.signal(SIGKILL)
            _ = try d.waitForExit()
            log = d.log
        }, after: { replayed in
            try classification(replayed + "/state")
        })
        XCTAssertEqual(found, "killed-during-drain")
        XCTAssertFalse(log.contains("NOT durable"), log)
    }

    /// Starts vigild on `stateDir` and stops it cleanly (creates the record file).
    private func cleanRun(_ stateDir: String) throws {
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", stateDir])
        try d.waitUntilListening()
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
    }

    /// Every turn the client saw `accepted` (and every session it saw
    /// `opened`) is on the disk after the power cut; turns it saw replied
    /// are complete, the others interrupted. The power goes while the daemon
    /// still runs, mid-stream, with no stop signal at all.
    func testAcknowledgedTurnsSurvivePowerLoss() throws {
        let (sessions, opened, accepted, replied) = try turnsAcrossPowerLoss()
        XCTAssertEqual(opened.count, 8)
        XCTAssertEqual(accepted.count, 40)
        XCTAssertEqual(replied.count, 20)
        XCTAssertEqual(Set(sessions.map { $0["session"] as? String ?? "?" }), Set(opened), "every opened session is on the disk")
        let interrupted = Set(sessions.flatMap { $0["interrupted"] as? [String] ?? [] })
        XCTAssertEqual(interrupted, Set(accepted.keys).subtracting(replied), "exactly the acknowledged turns without a reply are interrupted")
    }

    /// The negative control: acknowledging without the fdatasync must lose
    /// acknowledged turns in this test, or it proves nothing.
    /// Through the library, with a journal I/O that acknowledges without the
    /// fdatasync (a test double: the library has no switch for it).
    func testNegativeControlWithoutJournalSyncLosesTurns() throws {
        let sessions = try PowerCut.onLoopImage("turns-control", live: { live in
            let reactor = try Reactor()
            let fs = try PosixStateFileSystem(path: live + "/state")
            let journal = try TurnJournal(io: UnsyncedJournalIO(fs: fs, disk: reactor.disk), reactor: reactor, logger: reactor.logger)
            var acknowledged = 0
            journal.append(.runStarted(pid: getpid(), bootID: currentBootID())) { _ in }
            for i in 0..<40 {
                let s = "p\(i % 8)"
                if i < 8 { journal.append(.sessionOpened(session: s), joinedToNext: true) { _ in } }
                journal.append(.turnAccepted(session: s, id: "t\(i)", text: "x")) { if case .success = $0 { acknowledged += 1 } }
            }
            let deadline = monotonicNanoseconds() + 10_000_000_000
            while acknowledged < 40 && monotonicNanoseconds() < deadline { try reactor.runOnce(timeoutMs: 50) }
            XCTAssertEqual(acknowledged, 40)
            // The copy below is the power cut; the journal is left as it is.
            withExtendedLifetime(journal) {}
        }, after: { replayed in
            let (status, out) = try runTool(vigilctlPath, ["sessions", "--state-dir", replayed + "/state", "--json"])
            XCTAssertEqual(status, 0, out)
            let o = (try JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any] ?? [:]
            return o["sessions"] as? [[String: Any]] ?? []
        })
        let known = Set(sessions.flatMap { ($0["interrupted"] as? [String] ?? []) })
        XCTAssertLessThan(known.count, 40, "without fdatasync the acknowledged turns must not all survive the power cut")
    }

    private func turnsAcrossPowerLoss() throws -> ([[String: Any]], [String], [String: String], Set<String>) {
        var accepted: [String: String] = [:], replied = Set<String>(), opened: [String] = []
        let sessions = try PowerCut.onLoopImage("turns", live: { live in
            let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", live + "/state"])
            try d.waitUntilListening()
            let c = try LineSocket(port: d.port)
            for i in 0..<40 {
                let s = "p\(i % 8)"
                if i < 8 {
                    c.send(#"{"op":"open","session":"\#(s)"}"# + "\n")
                }
                c.send(#"{"op":"send","session":"\#(s)","id":"t\#(i)","text":"x","work_ms":\#(i % 2 == 0 ? 0 : 60000)}"# + "\n")
            }
            // Read until every request is answered (the even turns also reply).
            var answers = 0
            while answers < 48 + 20, let line = c.nextLine() {
                let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
                switch o["op"] as? String {
                case "opened": opened.append(o["session"] as? String ?? "?"); answers += 1
                case "accepted": accepted[o["id"] as? String ?? "?"] = "p\((Int((o["id"] as? String ?? "t0").dropFirst()) ?? 0) % 8)"; answers += 1
                case "reply": replied.insert(o["id"] as? String ?? "?"); answers += 1
                default: XCTFail("unexpected \(line)"); answers += 1
                }
            }
            kill(d.pid, SIGKILL)  // (the copy below is the power cut; this only frees the mount)
            _ = try d.waitForExit()
        }, after: { replayed in
            let (status, out) = try runTool(vigilctlPath, ["sessions", "--state-dir", replayed + "/state", "--json"])
            XCTAssertEqual(status, 0, out)
            let o = (try JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any] ?? [:]
            return o["sessions"] as? [[String: Any]] ?? []
        })
        return (sessions, opened, accepted, replied)
    }
}
