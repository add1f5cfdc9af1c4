import Foundation
import Glibc
import XCTest

/// A real systemd service manager to run vigild under: the sandbox script
/// named by VIGIL_SYSTEMD_SANDBOX (`.ci/run` sets it when ../shared has the
/// tool), else the host's own `systemctl --user` when it answers. Units are
/// written to a temporary directory and installed from there.
final class ServiceManager {
    enum Kind { case sandbox(String), userManager }
    let kind: Kind

    static func find() -> ServiceManager? {
        if let s = ProcessInfo.processInfo.environment["VIGIL_SYSTEMD_SANDBOX"], FileManager.default.isExecutableFile(atPath: s) {
            let m = ServiceManager(.sandbox(s))
            return m.run(["up"]).0 == 0 ? m : nil
        }
        let m = ServiceManager(.userManager)
        return m.run(["ctl", "is-system-running"]).1.contains("running") || m.run(["ctl", "is-system-running"]).1.contains("degraded") ? m : nil
    }

    private init(_ kind: Kind) { self.kind = kind }

    /// Runs a sandbox verb (`up`, `run-unit`, `ctl …`, `journal UNIT`), or
    /// its `systemctl --user` equivalent on a real host.
    @discardableResult
    func run(_ args: [String]) -> (Int32, String) {
        var argv: [String]
        switch kind {
        case .sandbox(let script):
            argv = [script] + args
        case .userManager:
            switch args.first {
            case "ctl": argv = ["systemctl", "--user"] + args.dropFirst()
            case "journal": argv = ["journalctl", "--user", "-u"] + args.dropFirst()
            case "up": argv = ["true"]
            default: argv = ["systemctl", "--user"] + args
            }
        }
        return Self.spawn(argv)
    }

    /// posix_spawnp + waitpid on that pid, output to a file. Not Foundation's
    /// Process: `up` leaves a service manager running behind it, and
    /// Process on Linux was seen never to notice that its child had exited
    /// (a zombie left unreaped, waitUntilExit blocked for good).
    static func spawn(_ argv: [String]) -> (Int32, String) {
        let outPath = NSTemporaryDirectory() + "vigil-sm-\(getpid())-\(UUID().uuidString.prefix(8)).out"
        defer { unlink(outPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cargs.append(nil)
        defer { for c in cargs { free(c) } }
        var pid: pid_t = 0
        let r = posix_spawnp(&pid, argv[0], &actions, nil, cargs, environ)
        guard r == 0 else { return (-1, "posix_spawnp(\(argv[0])): \(String(cString: strerror(r)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return (code, text)
    }

    /// Installs unit files and starts the first.
    func runUnits(_ files: [String]) -> (Int32, String) {
        switch kind {
        case .sandbox: return run(["run-unit"] + files)
        case .userManager:
            let dir = (ProcessInfo.processInfo.environment["XDG_CONFIG_HOME"] ?? NSHomeDirectory() + "/.config") + "/systemd/user"
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for f in files {
                let target = dir + "/" + URL(fileURLWithPath: f).lastPathComponent
                try? FileManager.default.removeItem(atPath: target)
                try? FileManager.default.copyItem(atPath: f, toPath: target)
            }
            run(["ctl", "daemon-reload"])
            return run(["ctl", "start", URL(fileURLWithPath: files[0]).lastPathComponent])
        }
    }

    func property(_ unit: String, _ name: String) -> String {
        run(["ctl", "show", "-p", name, "--value", unit]).1.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func journal(_ unit: String) -> String { run(["journal", unit, "--no-pager"]).1 }

    func remove(_ units: [String]) {
        for u in units { run(["ctl", "stop", u]) }
        for u in units { run(["ctl", "reset-failed", u]) }
    }
}

/// vigild as a real systemd unit (docs/systemd.md): Type=notify, the stop
/// budget from TimeoutStopSec, the watchdog, socket activation.
final class SystemdIntegrationTests: XCTestCase {
    private var manager: ServiceManager!
    private var work = ""
    private var units: [String] = []

    override func setUpWithError() throws {
        guard let m = ServiceManager.find() else {
            throw XCTSkip("no systemd service manager reachable: set VIGIL_SYSTEMD_SANDBOX to ../shared/tools/systemd-sandbox.sh (as .ci/run does) or run on a host with `systemctl --user`")
        }
        manager = m
        work = NSTemporaryDirectory() + "vigil-systemd-\(getpid())-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    }

    override func tearDown() {
        manager?.remove(units)
        try? FileManager.default.removeItem(atPath: work)
    }

    private func unitFile(_ name: String, _ text: String) throws -> String {
        let path = work + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        units.append(name)
        return path
    }

    private func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: sa.sin_port)
    }

    private func service(_ name: String, port: UInt16?, state: String, extra: String = "", args: String = "") throws -> String {
        let listen = port.map { "--listen 127.0.0.1:\($0) " } ?? ""
        return try unitFile(name, """
            [Unit]
            Description=vigild under test
            [Service]
            Type=notify
            NotifyAccess=main
            ExecStart=\(VigildProcess.binary) \(listen)--state-dir \(state) \(args)
            KillMode=mixed
            \(extra)
            """)
    }

    private func waitFor(_ timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    func testStartsActiveWithItsStatusLine() throws {
        let port = freePort(), state = work + "/state"
        let f = try service("vigild-start-\(port).service", port: port, state: state, extra: "TimeoutStopSec=5")
        let unit = URL(fileURLWithPath: f).lastPathComponent
        let r = manager.runUnits([f])
        XCTAssertEqual(r.0, 0, r.1)
        XCTAssertEqual(manager.property(unit, "ActiveState"), "active")
        XCTAssertEqual(manager.property(unit, "StatusText"), "serving: 0 session(s), 0 interrupted at the last stop")
        XCTAssertTrue(manager.journal(unit).contains("stop timeout 5000 ms from service manager"), manager.journal(unit))
        // stderr is the journal here: structured entries with Vigil's own fields.
        let verbose = manager.run(["journal", unit, "--no-pager", "-o", "verbose"]).1
        XCTAssertTrue(verbose.contains("VIGIL_PREVIOUS_RUN=first-start"), verbose)
        XCTAssertTrue(verbose.contains("SYSLOG_IDENTIFIER=vigild"), verbose)
        // The previous-run line comes from the entry point (VigilDaemon).
        XCTAssertTrue(verbose.contains("CODE_FILE=VigilDaemon/Daemon.swift"), verbose)
        XCTAssertEqual(manager.run(["ctl", "stop", unit]).0, 0)
        XCTAssertEqual(manager.property(unit, "Result"), "success")
        XCTAssertEqual(try classification(state), "clean")
    }

    func testStopWithLongTurnsEndsTheDrainItselfWithinTimeoutStopSec() throws {
        let port = freePort(), state = work + "/state"
        let f = try service("vigild-stop-\(port).service", port: port, state: state, extra: "TimeoutStopSec=2")
        let unit = URL(fileURLWithPath: f).lastPathComponent
        XCTAssertEqual(manager.runUnits([f]).0, 0)
        let c = try LineClient(port: port)
        for s in ["h1", "h2", "h3"] {
            c.send(#"{"op":"send","session":"\#(s)","id":"t-\#(s)","text":"x","work_ms":30000}"# + "\n")
            XCTAssertEqual(c.nextLine(), #"{"op":"accepted","id":"t-\#(s)"}"#)
        }
        c.send(#"{"op":"send","session":"idle","id":"q","text":"x"}"# + "\n")
        XCTAssertEqual(c.nextLine(), #"{"op":"accepted","id":"q"}"#)
        XCTAssertTrue(c.nextLine()?.contains("\"reply\"") ?? false)
        let t0 = Date()
        XCTAssertEqual(manager.run(["ctl", "stop", unit]).0, 0)
        let took = Date().timeIntervalSince(t0)
        XCTAssertLessThan(took, 2.0, "vigild ended its drain before systemd's SIGKILL")
        XCTAssertEqual(manager.property(unit, "Result"), "success", "never Result=timeout: \(manager.journal(unit))")
        let report = try lastShutdown(state)
        XCTAssertEqual(report["classification"] as? String, "cut-short")
        XCTAssertEqual((report["interrupted"] as? [[String: Any]] ?? []).compactMap { $0["session"] as? String }, ["h1", "h2", "h3"])
        // The next start marks exactly those sessions interrupted.
        XCTAssertEqual(manager.run(["ctl", "start", unit]).0, 0)
        let c2 = try LineClient(port: port)
        for s in ["h1", "h2", "h3"] {
            c2.send(#"{"op":"open","session":"\#(s)"}"# + "\n")
            XCTAssertTrue(c2.nextLine()?.contains(#""status":"interrupted","interrupted":["t-\#(s)"]"#) ?? false)
        }
        c2.send(#"{"op":"open","session":"idle"}"# + "\n")
        XCTAssertTrue(c2.nextLine()?.contains(#""status":"active""#) ?? false)
        XCTAssertTrue(manager.journal(unit).contains("recovered 4 session(s); 3 interrupted"), manager.journal(unit))
    }

    func testExtendTimeoutLetsALongerDrainFinishCleanly() throws {
        let port = freePort(), state = work + "/state"
        let f = try service("vigild-ext-\(port).service", port: port, state: state, extra: "TimeoutStopSec=1", args: "--stop-extend 3")
        let unit = URL(fileURLWithPath: f).lastPathComponent
        XCTAssertEqual(manager.runUnits([f]).0, 0)
        let c = try LineClient(port: port)
        c.send(#"{"op":"send","session":"x","id":"slow","text":"x","work_ms":2000}"# + "\n")
        XCTAssertEqual(c.nextLine(), #"{"op":"accepted","id":"slow"}"#)
        let t0 = Date()
        XCTAssertEqual(manager.run(["ctl", "stop", unit]).0, 0)
        XCTAssertGreaterThan(Date().timeIntervalSince(t0), 1.5, "the drain outlived TimeoutStopSec=1 thanks to EXTEND_TIMEOUT_USEC")
        XCTAssertEqual(manager.property(unit, "Result"), "success", manager.journal(unit))
        XCTAssertEqual(try classification(state), "clean", "the 2 s turn finished within the extension")
    }

    func testBlockedLoopIsCaughtByTheWatchdog() throws {
        let port = freePort(), state = work + "/state"
        let f = try service("vigild-wd-\(port).service", port: port, state: state,
                            extra: "WatchdogSec=1\nTimeoutStopSec=2\nEnvironment=VIGIL_DEBUG_BLOCK_ON_SIGUSR2=1")
        let unit = URL(fileURLWithPath: f).lastPathComponent
        XCTAssertEqual(manager.runUnits([f]).0, 0)
        usleep(1_500_000)
        XCTAssertEqual(manager.property(unit, "ActiveState"), "active", "pinged in time while the loop runs")
        guard let pid = pid_t(manager.property(unit, "MainPID")), pid > 0 else { return XCTFail("no MainPID") }
        kill(pid, SIGUSR2)
        XCTAssertTrue(waitFor(6) { self.manager.property(unit, "Result") == "watchdog" }, "Result=\(manager.property(unit, "Result")); \(manager.journal(unit))")
    }

    func testSocketActivationRefusesNoConnectionAcrossARestart() throws {
        let port = freePort(), state = work + "/state"
        let name = "vigild-sa-\(port)"
        let sock = try unitFile("\(name).socket", """
            [Socket]
            ListenStream=127.0.0.1:\(port)
            FileDescriptorName=gateway
            [Install]
            WantedBy=sockets.target
            """)
        let svc = try service("\(name).service", port: nil, state: state, extra: "TimeoutStopSec=5")
        XCTAssertEqual(manager.runUnits([sock, svc]).0, 0)
        XCTAssertEqual(manager.run(["ctl", "start", "\(name).service"]).0, 0)
        XCTAssertTrue(manager.journal("\(name).service").contains("listening on systemd:gateway"), manager.journal("\(name).service"))

        // A client connecting in a loop while the service restarts.
        var refused = 0, answered = 0, attempts = 0
        let stop = DispatchSemaphore(value: 0)
        var done = false
        let client = Thread {
            while !done {
                attempts += 1
                guard let c = try? LineClient(port: port) else { refused += 1; continue }
                c.send(#"{"op":"ping"}"# + "\n")
                if c.nextLine() == #"{"op":"pong"}"# { answered += 1 }
            }
            stop.signal()
        }
        client.start()
        usleep(300_000)
        XCTAssertEqual(manager.run(["ctl", "restart", "\(name).service"]).0, 0)
        usleep(300_000)
        XCTAssertEqual(manager.run(["ctl", "restart", "\(name).service"]).0, 0)
        usleep(300_000)
        done = true
        stop.wait()
        XCTAssertEqual(refused, 0, "no connection refused across two restarts (\(attempts) attempts)")
        XCTAssertGreaterThan(answered, 10)
        XCTAssertGreaterThanOrEqual(answered, attempts - 2, "a connection cut by the stop may lose its ping; none is refused")
    }
}
