import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// vigild as a real systemd unit (docs/systemd.md): Type=notify, the stop
/// budget from TimeoutStopSec, the watchdog, socket activation.
final class SystemdIntegrationTests: ServiceManagerTestCase {
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
        let c = try LineSocket(port: port)
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
        let c2 = try LineSocket(port: port)
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
        let c = try LineSocket(port: port)
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
                guard let c = try? LineSocket(port: port) else { refused += 1; continue }
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
