// `vigil run` end to end: the binary, a shell program, the shutdown record
// as vigilctl reads it (docs/run.md).
import Foundation
import Glibc
import VigilTestSupport
import XCTest

final class VigilRunTests: XCTestCase {
    override func tearDown() { VigilRunProcess.removeScratch() }

    /// A program that drains in 0.3 s: clean; the restart's program sees
    /// VIGIL_PREVIOUS_RUN=clean, and VIGIL_PREVIOUS_RUN_FILE holds exactly
    /// what `vigilctl last-shutdown --json` prints meanwhile.
    func testCleanStopThenRestartSeesPreviousRun() throws {
        let dir = try VigilRunProcess.scratch()
        let prog = try script(dir, "drain.sh", """
            echo "prev=$VIGIL_PREVIOUS_RUN budget=$VIGIL_STOP_BUDGET_MS ledger=$VIGIL_LEDGER notify=${NOTIFY_SOCKET:-none}"
            cp "$VIGIL_PREVIOUS_RUN_FILE" "\(dir)/seen.json"
            echo copied
            trap 'sleep 0.3; echo drained; exit 0' TERM
            while :; do sleep 0.05; done
            """)
        let first = try VigilRunProcess(["--stop-timeout", "3"], command: [prog], stateDir: dir + "/state")
        try first.waitFor("copied", inOutput: true)
        XCTAssertTrue(first.output.contains("prev=first-start budget=2700 ledger=\(dir)/state/ledger.sock notify=none"), first.output)
        first.signal(SIGTERM)
        XCTAssertEqual(try first.waitForExit(), 0, first.log)
        XCTAssertTrue(first.output.contains("drained"))
        var record = try VigilRunProcess.lastShutdown(dir + "/state")
        XCTAssertEqual(record["classification"] as? String, "clean", "\(record)")
        XCTAssertEqual(record["in_flight"] as? Int, 1, "the program itself is in flight at the signal")
        XCTAssertEqual(record["program_exit_status"] as? Int, 0, "the program's own status, kept with the stop: \(record)")

        let second = try VigilRunProcess(["--stop-timeout", "3"], command: [prog], stateDir: dir + "/state")
        try second.waitFor("copied", inOutput: true)
        XCTAssertTrue(second.output.contains("prev=clean"), second.output)
        let seen = try String(contentsOfFile: dir + "/seen.json", encoding: .utf8)
        let printed = try VigilRunProcess.vigilctl(["last-shutdown", "--json"], stateDir: dir + "/state")
        XCTAssertEqual(seen, printed)
        second.signal(SIGTERM)
        XCTAssertEqual(try second.waitForExit(), 0)
        record = try VigilRunProcess.lastShutdown(dir + "/state")
        XCTAssertEqual(record["classification"] as? String, "clean")
    }

    /// A program that ignores SIGTERM: SIGKILL to its group at the budget's
    /// end, `cut-short`, vigil exits 0 by itself before the stop timeout.
    func testProgramIgnoringTermIsCutShortWithinTheBudget() throws {
        let dir = try VigilRunProcess.scratch()
        // The background sleep is a second member of the group: it must die too.
        let prog = try script(dir, "stubborn.sh", "trap '' TERM\nsleep 1000 &\necho $! > \(dir)/grandchild\nwhile :; do sleep 0.05; done\n")
        let run = try VigilRunProcess(["--stop-timeout", "1.5"], command: [prog], stateDir: dir + "/state")
        try run.waitUntilStarted()
        usleep(300_000)
        let grandchild = pid_t(try String(contentsOfFile: dir + "/grandchild", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))!
        let start = Date()
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0, run.log)
        let took = Date().timeIntervalSince(start)
        let record = try VigilRunProcess.lastShutdown(dir + "/state")
        // The record is written at the drain budget (1.25 s of 1.5 s); the
        // bound leaves room for this test's own polling on a loaded machine.
        // Ending before a real supervisor's SIGKILL is checked under
        // systemd (Result=success) and podman (exit code 0).
        XCTAssertLessThan(took, 2.0, "vigil ends the stop by itself")
        XCTAssertGreaterThan(took, 1.0)
        XCTAssertLessThanOrEqual(record["drain_ms"] as? Int ?? 99_999, 1_400, "cut short at the budget: \(record)")
        XCTAssertEqual(record["classification"] as? String, "cut-short", "\(record)")
        XCTAssertEqual(record["abandoned"] as? Int, 1)
        XCTAssertTrue(kill(grandchild, 0) != 0, "the whole group was killed")
    }

    func testSecondTermCutsShortAtOnce() throws {
        let dir = try VigilRunProcess.scratch()
        let prog = try script(dir, "slow.sh", "trap 'sleep 5; exit 0' TERM\nwhile :; do sleep 0.05; done\n")
        let run = try VigilRunProcess(["--stop-timeout", "10"], command: [prog], stateDir: dir + "/state")
        try run.waitUntilStarted()
        usleep(200_000)
        run.signal(SIGTERM)
        try run.waitFor("stopping record durable")
        let start = Date()
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
        XCTAssertEqual(try VigilRunProcess.lastShutdown(dir + "/state")["classification"] as? String, "cut-short")
    }

    func testQuitSkipsTheGracePeriod() throws {
        let dir = try VigilRunProcess.scratch()
        let prog = try script(dir, "slow.sh", "trap 'sleep 5; exit 0' TERM\nwhile :; do sleep 0.05; done\n")
        let run = try VigilRunProcess(["--stop-timeout", "10"], command: [prog], stateDir: dir + "/state")
        try run.waitUntilStarted()
        usleep(200_000)
        let start = Date()
        run.signal(SIGQUIT)
        XCTAssertEqual(try run.waitForExit(), 0)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
        XCTAssertEqual(try VigilRunProcess.lastShutdown(dir + "/state")["classification"] as? String, "cut-short")
    }

    /// --stop-delay: the stop signal comes only after the delay (in the budget).
    func testStopDelayComesBeforeTheStopSignal() throws {
        let dir = try VigilRunProcess.scratch()
        let prog = try script(dir, "p.sh", "trap 'echo term; exit 0' TERM\nwhile :; do sleep 0.02; done\n")
        let run = try VigilRunProcess(["--stop-timeout", "5", "--stop-delay", "0.6", "--stop-signal", "TERM"], command: [prog], stateDir: dir + "/state")
        try run.waitUntilStarted()
        usleep(200_000)
        let start = Date()
        run.signal(SIGINT)
        try run.waitFor("term", inOutput: true)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.6)
        XCTAssertEqual(try run.waitForExit(), 0)
        XCTAssertTrue(run.log.contains("budget 3900 ms") || run.log.contains("program budget 4100 ms"), run.log)
    }

    /// VIGIL_DEBUG_SIGNAL_LATENCY=1 (docs/shutdown.md, "Test hooks"), as
    /// vigild's: a SIGTERM carrying a CLOCK_MONOTONIC stamp in its sigqueue
    /// payload is answered with its delay to the handler, to the stopping
    /// record's pwrite and to its fdatasync, in that order.
    func testStopSignalLatencyHook() throws {
        let dir = try VigilRunProcess.scratch()
        let run = try VigilRunProcess([], command: ["sleep", "30"], stateDir: dir + "/state",
                                      environment: ["VIGIL_DEBUG_SIGNAL_LATENCY": "1"])
        try run.waitUntilStarted()
        XCTAssertEqual(run.sendStamped(SIGTERM), 0)
        XCTAssertEqual(try run.waitForExit(), 0, run.log)
        let (handler, visible, durable) = run.stopSignalStamps()
        XCTAssertGreaterThan(handler, 0, run.log)
        XCTAssertLessThanOrEqual(handler, visible, run.log)
        XCTAssertLessThanOrEqual(visible, durable, run.log)
        XCTAssertLessThan(durable, 10_000_000_000, run.log)
        // Without the variable, nothing of the kind is printed.
        let quiet = try VigilRunProcess([], command: ["sleep", "30"], stateDir: dir + "/state2")
        try quiet.waitUntilStarted()
        XCTAssertEqual(quiet.sendStamped(SIGTERM), 0)
        XCTAssertEqual(try quiet.waitForExit(), 0)
        XCTAssertFalse(quiet.log.contains("signal-durable-ns"), quiet.log)
    }

    func testStopSignalIsConfigurable() throws {
        let dir = try VigilRunProcess.scratch()
        let prog = try script(dir, "p.sh", "trap 'echo usr2; exit 0' USR2\ntrap '' TERM\nwhile :; do sleep 0.02; done\n")
        let run = try VigilRunProcess(["--stop-signal", "SIGUSR2"], command: [prog], stateDir: dir + "/state")
        try run.waitUntilStarted()
        usleep(200_000)
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)
        XCTAssertTrue(run.output.contains("usr2"))
        XCTAssertEqual(try VigilRunProcess.lastShutdown(dir + "/state")["classification"] as? String, "clean")
    }

    func testSignalsAreForwarded() throws {
        let dir = try VigilRunProcess.scratch()
        let prog = try script(dir, "p.sh", """
            for s in HUP USR1 USR2 WINCH; do trap "echo got-$s" $s; done
            echo up
            while :; do sleep 0.02; done
            """)
        let run = try VigilRunProcess([], command: [prog], stateDir: dir + "/state")
        try run.waitFor("up", inOutput: true)
        for (s, name) in [(SIGHUP, "HUP"), (SIGUSR1, "USR1"), (SIGUSR2, "USR2"), (SIGWINCH, "WINCH")] {
            run.signal(s)
            try run.waitFor("got-\(name)", inOutput: true)
        }
        XCTAssertTrue(run.process.isRunning, "vigil itself is not stopped by them")
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)
    }

    /// The program ends by itself: vigil exits with its code (128+N for a
    /// signal); the next start says crash — clean only for exit 0.
    func testUnrequestedExitPassesTheCodeAndIsRecorded() throws {
        let dir = try VigilRunProcess.scratch()
        for (body, code, verdict, key, value) in [
            ("exit 3", Int32(3), "crash", "program_exit_status", 3),
            ("kill -KILL $$", Int32(137), "crash", "program_exit_signal", 9),
            ("exit 0", Int32(0), "clean", "program_exit_status", 0),
        ] {
            let prog = try script(dir, "end.sh", "sleep 0.2\n\(body)\n")
            let run = try VigilRunProcess([], command: [prog], stateDir: dir + "/state")
            XCTAssertEqual(try run.waitForExit(), code, run.log)
            let record = try VigilRunProcess.lastShutdown(dir + "/state")
            XCTAssertEqual(record["classification"] as? String, verdict, "\(body): \(record)")
            XCTAssertEqual(record[key] as? Int, value, "\(body): \(record)")
        }
    }

    /// `vigilctl history`: every ended run, newest first; a damaged history
    /// is reported and never stops a start.
    func testRunHistory() throws {
        let dir = try VigilRunProcess.scratch()
        let state = dir + "/state"
        for body in ["exit 3", "exit 0"] {
            let run = try VigilRunProcess([], command: ["/bin/sh", "-c", "sleep 0.1; \(body)"], stateDir: state)
            _ = try run.waitForExit()
        }
        var run = try VigilRunProcess([], command: ["sleep", "30"], stateDir: state)
        try run.waitUntilStarted()
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)
        func history() throws -> [[String: Any]] {
            let text = try VigilRunProcess.vigilctl(["history", "--json"], stateDir: state)
            return ((try JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any])?["runs"] as? [[String: Any]] ?? []
        }
        var runs = try history()
        XCTAssertEqual(runs.map { $0["class"] as? String }, ["clean", "clean", "crash"], "\(runs)")
        XCTAssertEqual(runs[0]["signal"] as? Int, 15)
        XCTAssertEqual(runs[0]["sender_pid"] as? Int, Int(getpid()))
        XCTAssertFalse((runs[0]["sender_comm"] as? String ?? "").isEmpty, "the sender (this test) still existed: \(runs[0])")
        XCTAssertEqual(runs[2]["program_exit_status"] as? Int, 3)
        XCTAssertNotNil(runs[0]["boot_id"] as? String)
        // Damage: a start goes on, the readable runs are kept.
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: state + "/run-history"))
        h.seekToEndOfFile()
        h.write(Data("0badc0de torn\n".utf8))
        h.closeFile()
        run = try VigilRunProcess([], command: ["true"], stateDir: state)
        XCTAssertEqual(try run.waitForExit(), 0)
        XCTAssertTrue(run.log.contains("run history: 1 damaged line(s) skipped"), run.log)
        runs = try history()
        XCTAssertEqual(runs.count, 4, "three runs from the history, the last from its record: \(runs)")
    }

    func testMissingProgramExits127AndBadFlagsExit64() throws {
        let dir = try VigilRunProcess.scratch()
        let run = try VigilRunProcess([], command: ["/nonexistent/program"], stateDir: dir + "/state")
        XCTAssertEqual(try run.waitForExit(), 127)
        XCTAssertTrue(run.log.contains("cannot start /nonexistent/program"), run.log)
        let longDir = dir + "/" + String(repeating: "d", count: 100)
        for (bad, command, state) in [(["--stop-signal", "NOPE"], ["true"], dir + "/state2"), (["--ready", "tcp:nohost"], ["true"], dir + "/state2"),
                                      (["--stop-delay", "-1"], ["true"], dir + "/state2"), (["--stop-timeout", "2", "--stop-delay", "3"], ["true"], dir + "/state2"),
                                      // The delay would leave the program no time (drain budget 1750 ms).
                                      (["--stop-timeout", "2", "--stop-delay", "1.9"], ["true"], dir + "/state2"),
                                      // Ignored or stopping by default: every stop would end in SIGKILL.
                                      (["--stop-signal", "17"], ["true"], dir + "/state2"), (["--stop-signal", "CONT"], ["true"], dir + "/state2"),
                                      // A mistyped option is not a program to run.
                                      ([], ["--bogus", "true"], dir + "/state2"),
                                      // Its sockets would not fit a Unix socket address.
                                      ([], ["true"], longDir),
                                      // An address that does not resolve: refused before the program runs.
                                      (["--ready", "tcp:nonexistent.invalid:80"], ["true"], dir + "/state4")] {
            let r = try VigilRunProcess(bad, command: command, stateDir: state, separator: command.first != "--bogus")
            XCTAssertEqual(try r.waitForExit(), 64, "\(bad) \(command): \(r.log)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: longDir), "nothing was opened")
        let rt = try VigilRunProcess(["--stop-signal", "RTMIN+2"], command: ["true"], stateDir: dir + "/state5")
        XCTAssertEqual(try rt.waitForExit(), 0, "a real-time stop signal is accepted: \(rt.log)")
        let none = try VigilRunProcess([], command: [], stateDir: dir + "/state3")
        XCTAssertEqual(try none.waitForExit(), 64)
        // --help before any program is vigil's own (not a program to run).
        let help = try VigilRunProcess(["--help"], command: [], stateDir: dir + "/state6", separator: false)
        XCTAssertEqual(try help.waitForExit(), 0, help.log)
        XCTAssertTrue(help.output.contains("VIGIL_STOP_TIMEOUT") && help.output.contains("--stop-delay"), help.output)
    }

    func testAStateDirectoryIsLockedAgainstASecondVigil() throws {
        let dir = try VigilRunProcess.scratch()
        let first = try VigilRunProcess([], command: ["sleep", "30"], stateDir: dir + "/state")
        try first.waitUntilStarted()
        let second = try VigilRunProcess([], command: ["true"], stateDir: dir + "/state")
        XCTAssertEqual(try second.waitForExit(), 75)
        let status = try VigilRunProcess.lastShutdown(dir + "/state")
        XCTAssertEqual(status["daemon_running"] as? Bool, true)
        first.signal(SIGTERM)
        XCTAssertEqual(try first.waitForExit(), 0)
    }

    /// --ready tcp: READY=1 only once the port accepts; --ready-timeout
    /// exceeded: the program is stopped and vigil exits 69.
    func testReadyTcpAndReadyTimeout() throws {
        let dir = try VigilRunProcess.scratch()
        let notify = try NotifyListener(path: dir + "/notify")
        let port = 25000 + UInt16(getpid() % 400)
        let prog = try script(dir, "serve.sh", "sleep 0.5\nexec python3 -c 'import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", \(port))); s.listen(); time.sleep(60)'\n")
        let run = try VigilRunProcess(["--ready", "tcp:127.0.0.1:\(port)"], command: [prog], stateDir: dir + "/state", environment: ["NOTIFY_SOCKET": dir + "/notify"])
        let ready = notify.waitFor("READY=1", timeout: 10)
        XCTAssertNotNil(ready, run.log)
        XCTAssertTrue(run.log.contains("program ready (tcp:127.0.0.1:\(port))"), run.log)
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)

        let never = try VigilRunProcess(["--ready", "tcp:127.0.0.1:\(port + 400)", "--ready-timeout", "0.5"], command: ["sleep", "30"], stateDir: dir + "/state")
        XCTAssertEqual(try never.waitForExit(), 69, never.log)
        XCTAssertTrue(never.log.contains("did not become ready"), never.log)
        // A program that stops cleanly when told to is still a failed run:
        // the next start must not hear `clean`.
        let polite = try script(dir, "polite.sh", "trap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n")
        let failed = try VigilRunProcess(["--ready", "tcp:127.0.0.1:\(port + 400)", "--ready-timeout", "0.5"], command: [polite], stateDir: dir + "/state")
        XCTAssertEqual(try failed.waitForExit(), 69, failed.log)
        let record = try VigilRunProcess.lastShutdown(dir + "/state")
        XCTAssertEqual(record["classification"] as? String, "crash", "\(record)")
        XCTAssertEqual(record["program_exit_status"] as? Int, 0)
    }

    /// --ready notify: the program's READY/STATUS/WATCHDOG reach the service
    /// manager; its STOPPING=1 and MAINPID= do not.
    func testReadyNotifyProxyFiltersTheProgramsMessages() throws {
        let dir = try VigilRunProcess.scratch()
        let notify = try NotifyListener(path: dir + "/notify")
        let prog = try script(dir, "n.sh", """
            python3 - <<'PY'
            import os, socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            for m in ["STATUS=warming up", "MAINPID=1\\nSTOPPING=1", "READY=1\\nSTATUS=serving", "WATCHDOG=1", "EXTEND_TIMEOUT_USEC=5000000"]:
                s.sendto(m.encode(), os.environ["NOTIFY_SOCKET"])
            PY
            echo sent
            while :; do sleep 0.05; done
            """)
        let run = try VigilRunProcess(["--ready", "notify"], command: [prog], stateDir: dir + "/state", environment: ["NOTIFY_SOCKET": dir + "/notify"])
        try run.waitFor("sent", inOutput: true)
        XCTAssertNotNil(notify.waitFor("EXTEND_TIMEOUT_USEC=5000000", timeout: 5), "\(notify.messages)")
        let all = notify.messages.joined(separator: "|")
        XCTAssertTrue(all.contains("STATUS=warming up"), all)
        XCTAssertTrue(all.contains("READY=1\nSTATUS=serving"), all)
        XCTAssertTrue(all.contains("WATCHDOG=1"), all)
        XCTAssertFalse(all.contains("MAINPID"), all)
        XCTAssertFalse(all.contains("STOPPING"), "no STOPPING=1 before vigil's own stop: \(all)")
        XCTAssertFalse(notify.messages.first { $0.hasPrefix("READY=1") && $0.contains("running: pid") } != nil, "READY=1 comes from the program, not at spawn: \(all)")
        run.signal(SIGTERM)
        XCTAssertEqual(try run.waitForExit(), 0)
        XCTAssertNotNil(notify.waitFor("STOPPING=1", timeout: 2))
    }
}

/// A NOTIFY_SOCKET stand-in: collects the datagrams vigil sends.
final class NotifyListener {
    let fd: Int32
    private(set) var messages: [String] = []

    init(path: String) throws {
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { for (i, b) in bytes.enumerated() { $0[i] = b } }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(r, 0)
    }

    deinit { close(fd) }

    func waitFor(_ text: String, timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let m = messages.first(where: { $0.contains(text) }) { return m }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 50) > 0 {
                var b = [UInt8](repeating: 0, count: 4096)
                let n = b.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { messages.append(String(decoding: b[0..<n], as: UTF8.self)) }
            }
        }
        return messages.first(where: { $0.contains(text) })
    }
}
