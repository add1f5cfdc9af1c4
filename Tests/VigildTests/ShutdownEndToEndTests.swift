import CVigil
import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// Runs a tool from the build directory (vigilctl) or the system and returns (status, stdout).
func runTool(_ path: String, _ args: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
    try Shell.run([path] + args, environment: environment, stderr: false)
}

var vigilctlPath: String {
    URL(fileURLWithPath: VigildProcess.binary).deletingLastPathComponent().appendingPathComponent("vigilctl").path
}

/// The previous run's classification as `vigilctl last-shutdown --json` reports it.
func lastShutdown(_ stateDir: String) throws -> [String: Any] {
    let (status, out) = try runTool(vigilctlPath, ["last-shutdown", "--state-dir", stateDir, "--json"])
    XCTAssertEqual(status, 0, out)
    return (try JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any] ?? [:]
}

func classification(_ stateDir: String) throws -> String {
    try lastShutdown(stateDir)["classification"] as? String ?? "?"
}

func waitForLog(_ d: VigildProcess, _ text: String, timeout: Double = 10) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if d.log.contains(text) { return true }
        usleep(2_000)
    }
    return false
}

final class ShutdownEndToEndTests: XCTestCase {
    func testEveryKindOfEndIsClassifiedOnTheNextStart() throws {
        let first = try VigildProcess()
        let dir = first.stateDir
        try first.waitUntilListening()
        XCTAssertTrue(first.log.contains("previous run: first-start"), first.log)
        // While it runs, vigilctl reports what it found at its start, read-only.
        let running = try lastShutdown(dir)
        XCTAssertEqual(running["daemon_running"] as? Bool, true)
        XCTAssertEqual(running["daemon_pid"] as? Int, Int(first.pid))
        XCTAssertEqual(running["classification"] as? String, "first-start")
        first.signal(SIGTERM)
        XCTAssertEqual(try first.waitForExit(), 0)
        XCTAssertEqual(try classification(dir), "clean")

        // Crash: SIGKILL with no stop signal.
        let crashed = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir])
        try crashed.waitUntilListening()
        XCTAssertTrue(crashed.log.contains("previous run: clean"), crashed.log)
        crashed.signal(SIGKILL)
        _ = try crashed.waitForExit()
        XCTAssertEqual(try classification(dir), "crash")

        // Killed during the drain: SIGTERM, the record lands, then SIGKILL.
        let killed = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir], environment: ["VIGIL_DEBUG_DRAIN_MS": "60000"])
        try killed.waitUntilListening()
        XCTAssertTrue(killed.log.contains("previous run: crash"), killed.log)
        killed.signal(SIGTERM)
        XCTAssertTrue(waitForLog(killed, "stopping record durable"), killed.log)
        killed.signal(SIGKILL)
        _ = try killed.waitForExit()
        let k = try lastShutdown(dir)
        XCTAssertEqual(k["classification"] as? String, "killed-during-drain")
        XCTAssertEqual(k["signal"] as? Int, Int(SIGTERM))
        XCTAssertEqual(k["sender_pid"] as? Int, Int(getpid()))
        XCTAssertEqual(k["in_flight"] as? Int, 1)

        // Cut short: the drain outlives the budget; vigild ends it itself, exit 0.
        let cut = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir, "--stop-timeout", "1"], environment: ["VIGIL_DEBUG_DRAIN_MS": "60000"])
        try cut.waitUntilListening()
        XCTAssertTrue(cut.log.contains("previous run: killed-during-drain"), cut.log)
        let t0 = Date()
        cut.signal(SIGTERM)
        XCTAssertEqual(try cut.waitForExit(), 0)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 1.0, "ended before the 1 s stop timeout")
        let c = try lastShutdown(dir)
        XCTAssertEqual(c["classification"] as? String, "cut-short")
        XCTAssertEqual(c["abandoned"] as? Int, 1)
        XCTAssertEqual(c["budget_ms"] as? Int, 750)

        // Second SIGTERM cuts short at once.
        let twice = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir], environment: ["VIGIL_DEBUG_DRAIN_MS": "60000"])
        try twice.waitUntilListening()
        twice.signal(SIGTERM)
        XCTAssertTrue(waitForLog(twice, "stopping record durable"), twice.log)
        twice.signal(SIGTERM)
        XCTAssertEqual(try twice.waitForExit(), 0)
        XCTAssertEqual(try classification(dir), "cut-short")
    }

    func testSecondInstanceIsRefusedNamingTheHolder() throws {
        let first = try VigildProcess()
        try first.waitUntilListening()
        let second = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", first.stateDir])
        XCTAssertEqual(try second.waitForExit(), 75)
        XCTAssertTrue(second.log.contains("another vigild (pid \(first.pid)) holds the state directory lock"), second.log)
        first.signal(SIGTERM)
        XCTAssertEqual(try first.waitForExit(), 0)
        XCTAssertEqual(try classification(first.stateDir), "clean", "the refused instance did not touch the record")
    }

    func testCorruptRecordIsReportedKeptAsideAndTheDaemonStarts() throws {
        let dir = NSTemporaryDirectory() + "vigild-corrupt-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("garbage that is no record".utf8).write(to: URL(fileURLWithPath: dir + "/shutdown.record"))
        XCTAssertEqual(try classification(dir), "corrupt")
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir])
        try d.waitUntilListening()
        XCTAssertTrue(d.log.contains("previous run: corrupt"), d.log)
        XCTAssertTrue(d.log.contains("unreadable record kept as shutdown.record.corrupt-"), d.log)
        let kept = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("shutdown.record.corrupt-") }
        XCTAssertEqual(kept.count, 1)
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
    }

    func testSymlinkedStateDirectoryIsRefused() throws {
        let target = NSTemporaryDirectory() + "vigild-target-\(getpid())"
        let link = NSTemporaryDirectory() + "vigild-link-\(getpid())"
        try? FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        unlink(link)
        symlink(target, link)
        defer { unlink(link) }
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", link])
        XCTAssertEqual(try d.waitForExit(), 73)
        XCTAssertTrue(d.log.contains("refusing a symlink"), d.log)
    }

    func testOrderingUnderStrace() throws {
        guard let strace = ["/usr/bin/strace", "/bin/strace"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("strace is not installed (scripts/setup.sh installs it)")
        }
        guard (try? runTool(strace, ["-o", "/dev/null", "/bin/true"]))?.0 == 0 else {
            throw XCTSkip("ptrace is not permitted here")
        }
        let tracePath = NSTemporaryDirectory() + "vigild-strace-\(getpid()).txt"
        let stateDir = NSTemporaryDirectory() + "vigild-strace-state-\(getpid())"
        try? FileManager.default.removeItem(atPath: stateDir)
        let d = try VigildProcess(arguments: [
            "-f", "-qq", "-o", tracePath,
            "-e", "trace=read,write,writev,pwrite64,close,fsync,fdatasync,openat,rename,renameat,renameat2,sendto,sendmsg,shutdown,signalfd4,io_uring_enter",
            VigildProcess.binary, "--listen", "127.0.0.1:0", "--state-dir", stateDir,
        ], executable: strace)
        try d.waitUntilListening()
        // A client is connected, so a close or goodbye would have something to go to.
        let c = try LineSocket(port: d.port)
        c.send("{\"op\":\"ping\"}\n")
        XCTAssertEqual(c.lines(1).count, 1)
        d.signal(SIGTERM)  // from this process: another process than vigild
        XCTAssertEqual(try d.waitForExit(), 0)
        let lines = try String(contentsOfFile: tracePath, encoding: .utf8).split(separator: "\n").map(String.init)
        try OrderingCheck(lines: lines).verify()
    }

    func testKillRaceNeverClaimsMoreThanHappened() throws {
        // SIGTERM, then SIGKILL d µs later, under load. The next start must
        // never say clean (the drain is long), and must say
        // killed-during-drain whenever the record was durable before the kill.
        let dir = NSTemporaryDirectory() + "vigild-race-\(getpid())"
        var durableSeen = 0, trials = 0
        for d in [0, 50, 200, 500, 1000, 3000] {
            for _ in 0..<4 {
                try? FileManager.default.removeItem(atPath: dir)
                let v = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir],
                                          environment: ["VIGIL_DEBUG_DRAIN_MS": "60000", "VIGIL_DEBUG_SIGNAL_LATENCY": "1"])
                try v.waitUntilListening()
                let load = try LineSocket(port: v.port)
                load.send(String(repeating: "{\"op\":\"ping\"}\n", count: 2000))
                kill(v.pid, SIGTERM)
                if d > 0 { usleep(useconds_t(d)) }
                kill(v.pid, SIGKILL)
                _ = try v.waitForExit()
                trials += 1
                let found = try classification(dir)
                XCTAssertNotEqual(found, "clean", "d=\(d)")
                XCTAssertTrue(["crash", "killed-during-drain"].contains(found), "d=\(d): \(found)")
                if v.log.contains("signal-durable-ns") {
                    durableSeen += 1
                    XCTAssertEqual(found, "killed-during-drain", "d=\(d): the record was durable before the kill")
                }
            }
        }
        XCTAssertGreaterThan(durableSeen, 0, "no trial let the record land: the sweep tested nothing")
        XCTAssertEqual(trials, 24)
    }
}

/// Checks a strace of vigild: after the signalfd read that delivers SIGTERM,
/// the record's in-place write — one pwrite of one 4096-byte slot to the
/// record file's descriptor, then one fdatasync of it — comes before any
/// other write, close, send, open, rename or io_uring submission; the
/// `stopped` record later is the same pair.
struct OrderingCheck {
    let lines: [String]

    struct Call {
        let name: String
        let args: String
        let result: String
    }

    func parse(_ line: String) -> Call? {
        // "PID  name(args)   = result ..." (strace pads before "=")
        var s = Substring(line)
        while let f = s.first, f.isNumber { s = s.dropFirst() }
        s = s.drop(while: { $0 == " " })
        guard let paren = s.firstIndex(of: "("), let eq = s.range(of: " = ", options: .backwards) else { return nil }
        var head = s[..<eq.lowerBound]
        while head.last == " " { head = head.dropLast() }
        guard head.last == ")" else { return nil }
        let args = head[head.index(after: paren)..<head.index(before: head.endIndex)]
        let result = s[eq.upperBound...].split(separator: " ").first.map(String.init) ?? ""
        return Call(name: String(s[..<paren]), args: String(args), result: result)
    }

    func verify() throws {
        let calls = lines.compactMap(parse)
        guard let sfd = calls.first(where: { $0.name == "signalfd4" })?.result else {
            return XCTFail("no signalfd4 in the trace")
        }
        guard let start = calls.firstIndex(where: { $0.name == "read" && $0.args.hasPrefix("\(sfd),") && $0.result == "128" }) else {
            return XCTFail("the signal was never read from the signalfd")
        }
        // The record file's descriptor: opened (created as the tmp file and
        // renamed, on a first start) at start-up and kept open.
        guard let open = calls[..<start].lastIndex(where: {
            $0.name == "openat" && ($0.args.contains("\"shutdown.record.tmp\"") || $0.args.contains("\"shutdown.record\"")) && $0.args.contains("O_WRONLY")
        }) else {
            return XCTFail("the record file was not opened for writing before the signal")
        }
        let recordFD = calls[open].result
        let after = Array(calls[(start + 1)...])
        let relevant = after.filter { ["openat", "write", "writev", "pwrite64", "close", "fsync", "fdatasync", "rename", "renameat", "renameat2", "sendto", "sendmsg", "shutdown", "io_uring_enter"].contains($0.name) }
        let names = relevant.map { call -> String in
            switch call.name {
            case "pwrite64" where call.args.hasPrefix("\(recordFD), "):
                return call.args.hasSuffix(", 4096, 0") || call.args.hasSuffix(", 4096, 4096") ? "pwrite-slot" : "pwrite-record(\(call.args.suffix(12)))"
            case "fdatasync" where call.args == recordFD: return "fdatasync-record"
            case "openat": return "openat(\(call.args.prefix(40)))"
            default: return "\(call.name)(\(call.args.prefix(40)))"
            }
        }
        XCTAssertEqual(Array(names.prefix(2)), ["pwrite-slot", "fdatasync-record"],
                       "after the signalfd read, the record's pwrite and fdatasync come before any other write, close or send")
        XCTAssertEqual(relevant.first?.result, "4096", "the whole slot in one pwrite")
        // `stopped`: the same pair, later.
        let rest = Array(names.dropFirst(2))
        XCTAssertTrue(zip(rest, rest.dropFirst()).contains { $0 == "pwrite-slot" && $1 == "fdatasync-record" }, "the stopped record is one pwrite and one fdatasync too: \(rest)")
        XCTAssertFalse(names.contains { $0.contains("shutdown.record") && $0.hasPrefix("openat") }, "no record file is opened or created after the signal")
    }
}
