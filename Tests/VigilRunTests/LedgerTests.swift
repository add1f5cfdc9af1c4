// The ledger socket: answers, errors, ordering, permissions, and the
// interrupted set across runs (docs/run.md).
import Foundation
import Glibc
import XCTest

final class LedgerTests: XCTestCase {
    override func tearDown() { VigilRunProcess.removeScratch() }

    func testAnswersAndErrorsKeepTheConnectionUsable() throws {
        let dir = try VigilRunProcess.scratch()
        let run = try VigilRunProcess([], command: ["sleep", "60"], stateDir: dir + "/state")
        try run.waitUntilStarted()
        var st = stat()
        XCTAssertEqual(stat(run.ledgerPath, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        let c = try LedgerClient(path: run.ledgerPath)
        XCTAssertEqual(c.request(#"{"op":"begin","session":"s1","id":"t1"}"#) as NSDictionary, ["op": "ok", "id": "t1"])
        func code(_ line: String) -> String? { c.request(line)["code"] as? String }
        XCTAssertEqual(code(#"{"op":"begin","session":"s1","id":"t1"}"#), "already_open")
        XCTAssertEqual(code(#"{"op":"end","session":"s1","id":"nope"}"#), "not_open")
        XCTAssertEqual(code(#"{"op":"end","session":"other","id":"t1"}"#), "not_open")
        XCTAssertEqual(code(#"{"op":"frobnicate"}"#), "unknown_op")
        XCTAssertEqual(code(#"{"op":"begin","session":"s1"}"#), "missing_field")
        XCTAssertEqual(code(#"{"session":"s1"}"#), "missing_field")
        XCTAssertEqual(code(#"{"op":"begin","session":"s1","id":7}"#), "bad_field")
        XCTAssertEqual(code(#"{"op":"begin","session":"","id":"x"}"#), "bad_field")
        // Names decoding would change (to U+FFFD) could collide: refused.
        XCTAssertEqual(code(#"{"op":"begin","session":"s1","id":"\udc80"}"#), "bad_field")
        c.sendBytes(Array(#"{"op":"begin","session":"s1","id":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8) + [0x0A])
        XCTAssertEqual(c.nextObject()["code"] as? String, "bad_field", "invalid UTF-8")
        XCTAssertEqual(c.request(#"{"op":"begin","session":"s1","id":"\ud83d\ude00"}"#) as NSDictionary, ["op": "ok", "id": "\u{1F600}"], "a surrogate pair is a character")
        XCTAssertEqual(c.request(#"{"op":"end","session":"s1","id":"😀"}"#)["op"] as? String, "ok", "the same id, sent as UTF-8")
        XCTAssertEqual(code(#"{"op":"begin""#), "bad_json")
        XCTAssertEqual(code("not json"), "bad_json")
        // Over the 16 KiB limit, within one read and across several.
        XCTAssertEqual(code(#"{"op":"begin","session":"s1","id":""# + String(repeating: "x", count: 20_000) + #""}"#), "line_too_long")
        XCTAssertEqual(code(#"{"op":"begin","session":"s1","id":""# + String(repeating: "x", count: 100_000) + #""}"#), "line_too_long")
        XCTAssertEqual(code(#"{"op":"begin","session":"s1","id":""# + String(repeating: "x", count: 20_000) + #""}"#), "line_too_long")
        XCTAssertEqual(c.request(#"{"op":"end","session":"s1","id":"t1"}"#) as NSDictionary, ["op": "ok", "id": "t1"])
        XCTAssertEqual(c.request(#"{"op":"interrupted"}"#) as NSDictionary, ["op": "interrupted", "sessions": []])
        XCTAssertEqual(c.request(#"{"op":"resolve","session":"s1"}"#) as NSDictionary, ["op": "ok"])
        // Every error above has an answer; answers come in request order.
        c.sendLine(#"{"op":"begin","session":"s2","id":"a"}"# + "\n" + #"{"op":"nope"}"# + "\n" + #"{"op":"end","session":"s2","id":"a"}"#)
        XCTAssertEqual(c.nextLine(), #"{"op":"ok","id":"a"}"#)
        XCTAssertTrue(c.nextLine()?.contains("unknown_op") == true)
        XCTAssertEqual(c.nextLine(), #"{"op":"ok","id":"a"}"#)
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)
        XCTAssertEqual(try VigilRunProcess.lastShutdown(dir + "/state")["classification"] as? String, "clean")
    }

    /// A client that pipelines requests with large answers (`interrupted`
    /// with ~450 KB of ids) and does not read them: vigil builds them as the
    /// client reads (backpressure), so its memory stays bounded, other
    /// clients are answered at once, a SIGTERM is recorded at once, and the
    /// client still gets every answer, in order, when it reads.
    func testPipelinedLargeAnswersAreBuiltAsTheClientReads() throws {
        let dir = try VigilRunProcess.scratch()
        var run = try VigilRunProcess([], command: ["sleep", "60"], stateDir: dir + "/state")
        try run.waitUntilStarted()
        let filler = try LedgerClient(path: run.ledgerPath)
        let id = String(repeating: "i", count: 100)
        for batch in 0..<4 {
            filler.send((0..<500).map { #"{"op":"begin","session":"big","id":"\#(id)\#(batch * 500 + $0)"}"# + "\n" }.joined())
            XCTAssertEqual(filler.lines(500).count, 500)
        }
        kill(run.programPID!, SIGKILL)  // a crash: 2000 units interrupted
        _ = try run.waitForExit()

        run = try VigilRunProcess([], command: ["sleep", "60"], stateDir: dir + "/state")
        try run.waitUntilStarted()
        func peakKB() -> Int {
            (try? String(contentsOfFile: "/proc/\(run.pid)/status", encoding: .utf8))?
                .split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
                .flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[1]) } ?? 0
        }
        let before = peakKB()
        let greedy = try LedgerClient(path: run.ledgerPath)
        greedy.send(String(repeating: #"{"op":"interrupted"}"# + "\n", count: 300))  // ~70 MB of answers
        usleep(500_000)
        let other = try LedgerClient(path: run.ledgerPath)
        let t0 = Date()
        XCTAssertEqual(other.request(#"{"op":"begin","session":"s","id":"1"}"#)["op"] as? String, "ok")
        XCTAssertLessThan(Date().timeIntervalSince(t0), 2, "another client is not held up")
        XCTAssertLessThan(peakKB() - before, 30_000, "answers are not all built at once (peak RSS \(before) → \(peakKB()) kB)")
        var answered = 0
        greedy.setTimeout(20)
        while answered < 300, let line = greedy.nextLine() {
            XCTAssertTrue(line.hasPrefix(#"{"op":"interrupted","sessions":[{"session":"big","ids":["#), String(line.prefix(80)))
            answered += 1
        }
        XCTAssertEqual(answered, 300, "every answer arrives, in order")
        XCTAssertEqual(other.request(#"{"op":"end","session":"s","id":"1"}"#)["op"] as? String, "ok")
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0, run.log)
    }

    /// The benchmark's load (`vigil-bench ledger`, docs/benchmarks.md) and
    /// its floor run against a real ledger, and the load ends every unit
    /// it began: the stop after it is clean.
    func testBenchLedgerLoadAndFloor() throws {
        let bench = VigilRunProcess.binary("vigil-bench")
        guard FileManager.default.isExecutableFile(atPath: bench) else { throw XCTSkip("vigil-bench is not built at \(bench)") }
        let dir = try VigilRunProcess.scratch()
        let run = try VigilRunProcess([], command: ["sleep", "60"], stateDir: dir + "/state")
        try run.waitUntilStarted()
        func json(_ args: [String]) throws -> [String: Any] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: bench)
            p.arguments = args + ["--json"]
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "vigil-bench \(args)")
            return (try JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        }
        let load = try json(["ledger", "--connect", "unix:" + run.ledgerPath, "--clients", "4", "--duration", "0.3", "--warmup", "0.1",
                             "--server-pid", "\(run.pid)"])
        XCTAssertGreaterThan(load["records"] as? Int ?? 0, 0, "\(load)")
        XCTAssertGreaterThan((load["begin_us"] as? [String: Any])?["samples"] as? Int ?? 0, 0, "\(load)")
        XCTAssertGreaterThan((load["end_us"] as? [String: Any])?["samples"] as? Int ?? 0, 0, "\(load)")
        XCTAssertNotNil(load["server_cpu"], "\(load)")
        let floor = try json(["fsync-floor", "--dir", dir, "--records", "20"])
        XCTAssertEqual(floor["records"] as? Int, 20, "\(floor)")
        XCTAssertGreaterThan(floor["records_per_s"] as? Double ?? 0, 0, "\(floor)")
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir).contains { $0.hasPrefix("fsync-floor.") }, "the floor's file is removed")
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)
        let record = try VigilRunProcess.lastShutdown(dir + "/state")
        XCTAssertEqual(record["classification"] as? String, "clean", "\(record)")
    }

    func testAnotherUidIsRefused() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to connect as another uid") }
        let dir = try VigilRunProcess.scratch()
        let run = try VigilRunProcess([], command: ["sleep", "60"], stateDir: dir + "/state")
        try run.waitUntilStarted()
        // Let uid 65534 reach the socket past the directory's mode: only
        // the peer check is left to refuse it. The refusal is sent at
        // connect, before any request (one sent now could meet the close).
        chmod(dir, 0o711)
        chmod(dir + "/state", 0o711)
        chmod(run.ledgerPath, 0o666)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
                       "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print(s.makefile().readline())", run.ledgerPath]
        p.currentDirectoryURL = URL(fileURLWithPath: "/")
        let pipe = Pipe()
        p.standardOutput = pipe
        let errPath = dir + "/setpriv.err"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: errPath)
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        XCTAssertTrue(out.contains("\"code\":\"forbidden\""), out + err)
        chmod(dir + "/state", 0o700)
        run.signal(SIGTERM)
        _ = try run.waitForExit()
    }

    /// Work begun and not ended is interrupted in the next run, whether the
    /// run stopped cleanly or its program crashed; resolve clears it durably.
    func testInterruptedWorkAcrossRunsAndResolve() throws {
        let dir = try VigilRunProcess.scratch()
        var run = try VigilRunProcess([], command: ["sleep", "60"], stateDir: dir + "/state")
        try run.waitUntilStarted()
        var c = try LedgerClient(path: run.ledgerPath)
        for (s, t) in [("a", "1"), ("a", "2"), ("b", "1"), ("c", "9")] {
            XCTAssertEqual(c.request(#"{"op":"begin","session":"\#(s)","id":"\#(t)"}"#)["op"] as? String, "ok")
        }
        XCTAssertEqual(c.request(#"{"op":"end","session":"a","id":"1"}"#)["op"] as? String, "ok")
        XCTAssertEqual(c.request(#"{"op":"end","session":"c","id":"9"}"#)["op"] as? String, "ok")
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)
        var record = try VigilRunProcess.lastShutdown(dir + "/state")
        XCTAssertEqual(record["classification"] as? String, "cut-short", "open units make the stop not clean")
        XCTAssertEqual(record["abandoned"] as? Int, 2)
        let interrupted = (record["interrupted"] as? [[String: Any]])?.map { "\($0["session"]!):\($0["turns"]!)" }
        XCTAssertEqual(interrupted?.count, 2, "\(record)")
        // The text names the program that owns the directory and its units.
        let text = try VigilRunProcess.vigilctl(["last-shutdown"], stateDir: dir + "/state")
        XCTAssertTrue(text.contains("a: 2") && text.contains("vigil run is not running"), text)
        XCTAssertFalse(text.contains("vigild"), text)

        run = try VigilRunProcess([], command: ["sleep", "60"], stateDir: dir + "/state")
        try run.waitUntilStarted()
        c = try LedgerClient(path: run.ledgerPath)
        XCTAssertEqual(c.interrupted(), ["a": ["2"], "b": ["1"]])
        XCTAssertEqual(c.request(#"{"op":"resolve","session":"a"}"#) as NSDictionary, ["op": "ok"])
        XCTAssertEqual(c.interrupted(), ["b": ["1"]])
        // The program crashes with a unit open: that one joins the set.
        XCTAssertEqual(c.request(#"{"op":"begin","session":"d","id":"x"}"#)["op"] as? String, "ok")
        kill(run.programPID!, SIGKILL)
        XCTAssertEqual(try run.waitForExit(), 137)
        record = try VigilRunProcess.lastShutdown(dir + "/state")
        XCTAssertEqual(record["classification"] as? String, "crash")
        XCTAssertEqual(record["abandoned"] as? Int, 1)

        run = try VigilRunProcess([], command: ["sleep", "60"], stateDir: dir + "/state")
        try run.waitUntilStarted()
        c = try LedgerClient(path: run.ledgerPath)
        XCTAssertEqual(c.interrupted(), ["b": ["1"], "d": ["x"]])
        let sessions = try VigilRunProcess.vigilctl(["sessions"], stateDir: dir + "/state")
        XCTAssertTrue(sessions.contains("b") && sessions.contains("d"), sessions)
        XCTAssertTrue(sessions.contains("interrupted units: x"), sessions)
        let running = try VigilRunProcess.vigilctl(["last-shutdown"], stateDir: dir + "/state")
        XCTAssertTrue(running.contains("vigil run is running (pid \(run.pid))"), running)
        XCTAssertEqual(c.request(#"{"op":"begin","session":"e","id":"y"}"#)["op"] as? String, "ok")
        let status = try VigilRunProcess.vigilctl(["status"], stateDir: dir + "/state")
        XCTAssertTrue(status.contains("vigil run is running: pid \(run.pid), 1 ledger unit(s) open"), status)
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)
    }
}
