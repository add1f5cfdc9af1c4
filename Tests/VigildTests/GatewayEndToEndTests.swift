import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// The real vigild: sessions, turns and exact recovery after every kind of
/// stop. Each scenario has idle sessions (every turn answered) and hurt
/// sessions (a long turn in flight at the stop); the next start must mark
/// exactly the hurt ones interrupted, with exactly their turn ids.
final class GatewayEndToEndTests: XCTestCase {
    enum Stop { case clean, cutShort, killedDuringDrain, crash }

    private func json(_ line: String?) -> [String: Any] {
        guard let line, let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return ["unparsed": line ?? "<EOF>"] }
        return o
    }

    private func request(_ c: LineSocket, _ line: String) -> [String: Any] {
        c.send(line + "\n")
        return json(c.nextLine())
    }

    /// Runs one scenario and returns (status of each session after the restart, interrupted ids per session).
    private func scenario(_ stop: Stop) throws {
        let hurtMs = stop == .clean ? 300 : 30_000
        let timeout = stop == .cutShort ? "1.5" : "20"
        let sd = NSTemporaryDirectory() + "vigil-e2e-\(getpid())-\(UUID().uuidString.prefix(6))"
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", sd, "--stop-timeout", timeout], stateDir: sd)
        let dir = d.stateDir
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try d.waitUntilListening()
        let c = try LineSocket(port: d.port)
        let idle = (0..<5).map { "idle-\($0)" }, hurt = (0..<3).map { "hurt-\($0)" }
        for s in idle {
            XCTAssertEqual(request(c, #"{"op":"open","session":"\#(s)"}"#)["status"] as? String, "new")
            XCTAssertEqual(request(c, #"{"op":"send","session":"\#(s)","id":"q1","text":"hi"}"#)["op"] as? String, "accepted")
            XCTAssertEqual(json(c.nextLine())["op"] as? String, "reply")
        }
        let h = try LineSocket(port: d.port)
        for s in hurt {
            XCTAssertEqual(request(h, #"{"op":"send","session":"\#(s)","id":"long-\#(s)","text":"slow","work_ms":\#(hurtMs)}"#)["op"] as? String, "accepted")
        }
        switch stop {
        case .clean:
            d.signal(SIGTERM)
            // The turns in flight still get their replies, then goodbye.
            let lines = (0...hurt.count).map { _ in json(h.nextLine()) }
            XCTAssertEqual(lines.filter { $0["op"] as? String == "reply" }.count, hurt.count, "\(lines)")
            XCTAssertEqual(lines.last?["op"] as? String, "goodbye")
            XCTAssertEqual(try d.waitForExit(), 0)
        case .cutShort:
            let t0 = Date()
            d.signal(SIGTERM)
            XCTAssertEqual(try d.waitForExit(), 0, "a stop that kept its budget exits 0")
            XCTAssertLessThan(Date().timeIntervalSince(t0), 1.5, "ends its own drain before the stop timeout")
            XCTAssertTrue(d.log.contains("cut-short"), d.log)
            let after = json(h.nextLine())
            XCTAssertEqual(after["op"] as? String, "goodbye", "no reply for a cut-off turn: \(after)")
        case .killedDuringDrain:
            d.signal(SIGTERM)
            XCTAssertTrue(waitForLog(d, "draining: \(hurt.count) turn(s) in flight"), d.log)
            kill(d.pid, SIGKILL)
            _ = try d.waitForExit()
        case .crash:
            kill(d.pid, SIGKILL)
            _ = try d.waitForExit()
        }

        // Offline, before the restart: vigilctl names exactly the hurt sessions.
        let report = try lastShutdown(dir)
        let expected: String
        switch stop {
        case .clean: expected = "clean"
        case .cutShort: expected = "cut-short"
        case .killedDuringDrain: expected = "killed-during-drain"
        case .crash: expected = "crash"
        }
        XCTAssertEqual(report["classification"] as? String, expected)
        let listed = (report["interrupted"] as? [[String: Any]] ?? []).map { ($0["session"] as? String ?? "?", $0["turns"] as? [String] ?? []) }
        if stop == .clean {
            XCTAssertTrue(listed.isEmpty, "\(listed)")
        } else {
            XCTAssertEqual(listed.map(\.0), hurt, "exactly the hurt sessions")
            XCTAssertEqual(listed.map(\.1), hurt.map { ["long-\($0)"] })
        }

        // The next start: the same verdict through `open`, per session.
        let next = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir])
        try next.waitUntilListening()
        let c2 = try LineSocket(port: next.port)
        for s in idle {
            let o = request(c2, #"{"op":"open","session":"\#(s)"}"#)
            XCTAssertEqual(o["status"] as? String, "active", "\(stop) \(s): nothing idle is marked")
        }
        for s in hurt {
            let o = request(c2, #"{"op":"open","session":"\#(s)"}"#)
            if stop == .clean {
                XCTAssertEqual(o["status"] as? String, "active", "\(s) finished in the drain")
            } else {
                XCTAssertEqual(o["status"] as? String, "interrupted", "\(stop) \(s): nothing hurt is missed")
                XCTAssertEqual(o["interrupted"] as? [String], ["long-\(s)"])
            }
        }
        XCTAssertEqual(request(c2, #"{"op":"open","session":"never-seen"}"#)["status"] as? String, "new")
        next.signal(SIGTERM)
        XCTAssertEqual(try next.waitForExit(), 0)
    }

    func testCleanStopInterruptsNothing() throws { try scenario(.clean) }
    func testCutShortDrainInterruptsExactlyTheTurnsInFlight() throws { try scenario(.cutShort) }
    func testSIGKILLDuringTheDrainInterruptsExactlyTheTurnsInFlight() throws { try scenario(.killedDuringDrain) }
    func testCrashInterruptsExactlyTheTurnsInFlight() throws { try scenario(.crash) }

    /// Under a stream of turns of random length, SIGKILL at a random moment:
    /// a turn whose reply reached the client is never called interrupted,
    /// and every interrupted turn was one the client saw accepted.
    func testAReplyTheClientHoldsIsNeverCalledInterrupted() throws {
        for trial in 0..<3 {
            let d = try VigildProcess()
            let dir = d.stateDir
            try d.waitUntilListening()
            let clients = try (0..<4).map { _ in try LineSocket(port: d.port) }
            var accepted = Set<String>(), replied = Set<String>()
            for (ci, c) in clients.enumerated() {
                for k in 0..<25 {
                    let id = "c\(ci)-\(k)"
                    c.send(#"{"op":"send","session":"s\#(ci)-\#(k % 5)","id":"\#(id)","text":"t","work_ms":\#(Int.random(in: 0...60))}"# + "\n")
                }
            }
            usleep(useconds_t(20_000 + trial * 15_000))
            kill(d.pid, SIGKILL)
            _ = try d.waitForExit()
            for c in clients {
                c.send("")
                var tv = timeval(tv_sec: 1, tv_usec: 0)
                setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                for l in c.lines(1000) {
                    let o = json(l)
                    if o["op"] as? String == "accepted", let id = o["id"] as? String { accepted.insert(id) }
                    if o["op"] as? String == "reply", let id = o["id"] as? String { replied.insert(id) }
                }
            }
            let report = try lastShutdown(dir)
            let interrupted = Set((report["interrupted"] as? [[String: Any]] ?? []).flatMap { $0["turns"] as? [String] ?? [] })
            XCTAssertTrue(interrupted.isDisjoint(with: replied), "trial \(trial): replied yet interrupted: \(interrupted.intersection(replied))")
            XCTAssertTrue(replied.isSubset(of: accepted))
            // A turn accepted and neither replied nor interrupted had its
            // completion durable just before the kill (the reply was on its way).
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    func testExecAgentRepliesAndNoChildOutlivesVigild() throws {
        let marker = "60.\(UInt32.random(in: 100_000...999_999))"
        let script = "read line; case \"$line\" in slow*) exec sleep \(marker);; *) echo \"$line\" | tr a-z A-Z;; esac"
        let sd = NSTemporaryDirectory() + "vigil-exec-\(getpid())-\(UUID().uuidString.prefix(6))"
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", sd,
                                              "--agent", "exec", "--exec-command", script, "--exec-time-limit", "30"], stateDir: sd)
        let dir = d.stateDir
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try d.waitUntilListening()
        let c = try LineSocket(port: d.port)
        XCTAssertEqual(request(c, #"{"op":"send","session":"x","id":"1","text":"hello"}"#)["op"] as? String, "accepted")
        XCTAssertEqual(json(c.nextLine())["text"] as? String, "HELLO")
        XCTAssertEqual(request(c, #"{"op":"send","session":"x","id":"2","text":"slow"}"#)["op"] as? String, "accepted")
        let deadline = Date().addingTimeInterval(5)
        while childPIDs(marker).isEmpty && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(childPIDs(marker).count, 1, "the slow child runs")
        kill(d.pid, SIGKILL)  // no drain at all: PR_SET_PDEATHSIG must take the child along
        _ = try d.waitForExit()
        let gone = Date().addingTimeInterval(5)
        while !childPIDs(marker).isEmpty && Date() < gone { usleep(10_000) }
        XCTAssertEqual(childPIDs(marker), [], "no child outlives a SIGKILLed vigild")
        let interrupted = (try lastShutdown(dir))["interrupted"] as? [[String: Any]] ?? []
        XCTAssertEqual(interrupted.map { $0["session"] as? String }, ["x"])
        XCTAssertEqual(interrupted.first?["turns"] as? [String], ["2"], "the turn whose child died with vigild")
    }

    /// A failing agent: the turn is completed (not interrupted) and its
    /// client gets `agent_failed` with the reason (docs/protocol.md).
    func testAFailingExecAgentAnswersAgentFailed() throws {
        let sd = NSTemporaryDirectory() + "vigil-exec-\(getpid())-\(UUID().uuidString.prefix(6))"
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", sd,
                                              "--agent", "exec", "--exec-command", "read l; exit 3"], stateDir: sd)
        defer { try? FileManager.default.removeItem(atPath: sd) }
        try d.waitUntilListening()
        let c = try LineSocket(port: d.port)
        XCTAssertEqual(request(c, #"{"op":"send","session":"f","id":"9","text":"x"}"#)["op"] as? String, "accepted")
        let failed = json(c.nextLine())
        XCTAssertEqual(failed["op"] as? String, "error")
        XCTAssertEqual(failed["code"] as? String, "agent_failed")
        XCTAssertEqual(failed["session"] as? String, "f")
        XCTAssertEqual(failed["id"] as? String, "9")
        XCTAssertTrue((failed["message"] as? String ?? "").contains("3"), "\(failed)")
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
        XCTAssertEqual(((try lastShutdown(sd))["interrupted"] as? [[String: Any]])?.count, 0, "completed, not interrupted")
    }

    func testExecBackgroundJobsDoNotHoldTheTurnAndAreKilledWithTheGroup() throws {
        let marker = "62.\(UInt32.random(in: 100_000...999_999))"
        let sd = NSTemporaryDirectory() + "vigil-exec-\(getpid())-\(UUID().uuidString.prefix(6))"
        // The command answers, but leaves a background job holding stdout.
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", sd,
                                              "--agent", "exec", "--exec-command", "read l; echo \"got $l\"; (sleep \(marker) &)",
                                              "--exec-time-limit", "20"], stateDir: sd)
        defer { try? FileManager.default.removeItem(atPath: sd) }
        try d.waitUntilListening()
        let c = try LineSocket(port: d.port)
        let t0 = Date()
        XCTAssertEqual(request(c, #"{"op":"send","session":"bg","id":"1","text":"x"}"#)["op"] as? String, "accepted")
        XCTAssertEqual(json(c.nextLine())["text"] as? String, "got x")
        XCTAssertLessThan(Date().timeIntervalSince(t0), 5, "answered soon after the command exited, not at the time limit")
        let gone = Date().addingTimeInterval(3)
        while !childPIDs(marker).isEmpty && Date() < gone { usleep(10_000) }
        XCTAssertEqual(childPIDs(marker), [], "the background job went with the child's process group")
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
    }

    func testExecChildrenAreStoppedWithinTheBudgetAndTheirTurnsInterrupted() throws {
        let marker = "61.\(UInt32.random(in: 100_000...999_999))"
        let sd = NSTemporaryDirectory() + "vigil-exec-\(getpid())-\(UUID().uuidString.prefix(6))"
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", sd,
                                              "--agent", "exec", "--exec-command", "exec sleep \(marker)", "--stop-timeout", "2"], stateDir: sd)
        let dir = d.stateDir
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try d.waitUntilListening()
        let c = try LineSocket(port: d.port)
        for i in 0..<3 { XCTAssertEqual(request(c, #"{"op":"send","session":"e\#(i)","id":"t","text":"x"}"#)["op"] as? String, "accepted") }
        let deadline = Date().addingTimeInterval(5)
        while childPIDs(marker).count < 3 && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(childPIDs(marker).count, 3)
        let t0 = Date()
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 2.0, "vigild ends the drain itself, before the stop timeout")
        XCTAssertTrue(d.log.contains("asking agents to stop"), d.log)
        let gone = Date().addingTimeInterval(3)
        while !childPIDs(marker).isEmpty && Date() < gone { usleep(10_000) }
        XCTAssertEqual(childPIDs(marker), [])
        let report = try lastShutdown(dir)
        XCTAssertEqual(report["classification"] as? String, "cut-short", "a turn cut off is never a clean stop")
        XCTAssertEqual((report["interrupted"] as? [[String: Any]] ?? []).map { $0["session"] as? String }, ["e0", "e1", "e2"])
    }

    func testVigilctlStatusAndSessionsOnlineAndOffline() throws {
        let d = try VigildProcess()
        let dir = d.stateDir
        try d.waitUntilListening()
        let c = try LineSocket(port: d.port)
        XCTAssertEqual(request(c, #"{"op":"send","session":"v1","id":"a","text":"x","work_ms":60000}"#)["op"] as? String, "accepted")
        // Online: the daemon answers over its control socket.
        let (st, out) = try runTool(vigilctlPath, ["status", "--state-dir", dir, "--json"])
        XCTAssertEqual(st, 0, out)
        let o = json(out)
        XCTAssertEqual(o["running"] as? Bool, true)
        XCTAssertEqual(o["pid"] as? Int, Int(d.pid))
        XCTAssertEqual(o["turns_in_flight"] as? Int, 1)
        XCTAssertEqual(o["draining"] as? Bool, false)
        XCTAssertEqual(o["previous_run"] as? String, "first-start")
        let (hs, human) = try runTool(vigilctlPath, ["status", "--state-dir", dir])
        XCTAssertEqual(hs, 0)
        XCTAssertTrue(human.contains("vigild is running: pid \(d.pid)"), human)
        let (ss, sessions) = try runTool(vigilctlPath, ["sessions", "--state-dir", dir, "--json"])
        XCTAssertEqual(ss, 0)
        let live = json(sessions)["sessions"] as? [[String: Any]] ?? []
        XCTAssertEqual(live.first?["in_flight"] as? [String], ["a"])
        XCTAssertEqual(live.first?["status"] as? String, "active")
        kill(d.pid, SIGKILL)
        _ = try d.waitForExit()
        // Offline: read from the state directory, which is left as it was.
        let before = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        let (os, offline) = try runTool(vigilctlPath, ["status", "--state-dir", dir, "--json"])
        XCTAssertEqual(os, 3, "not running")
        XCTAssertEqual(json(offline)["running"] as? Bool, false)
        XCTAssertEqual(json(offline)["previous_run"] as? String, "crash")
        XCTAssertEqual(json(offline)["interrupted_sessions"] as? Int, 1)
        let (_, off) = try runTool(vigilctlPath, ["sessions", "--state-dir", dir, "--json"])
        XCTAssertEqual((json(off)["sessions"] as? [[String: Any]])?.first?["interrupted"] as? [String], ["a"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), before, "vigilctl changed nothing")
        XCTAssertEqual(try runTool(vigilctlPath, ["status", "--state-dir", dir + "/missing"]).0, 66)
    }

    /// Live `sleep MARKER` processes (the marker is a unique duration).
    private func childPIDs(_ marker: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let cmd = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")) else { return false }
            guard String(decoding: cmd, as: UTF8.self) == "sleep\u{0}\(marker)\u{0}" else { return false }
            // A zombie has been killed already; it only waits for its reaper.
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            return !stat.contains(") Z ")
        }
    }
}
