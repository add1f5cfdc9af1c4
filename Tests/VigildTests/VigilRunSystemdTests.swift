import Foundation
import Glibc
import XCTest

/// `vigil run` as a real systemd unit (docs/run.md): the budget from
/// TimeoutStopSec, cut-short instead of systemd's SIGKILL, the previous run
/// in the program's environment, the notify proxy.
final class VigilRunSystemdTests: ServiceManagerTestCase {
    override class var workPrefix: String { "vigil-run-sd" }

    private var vigil: String { URL(fileURLWithPath: VigildProcess.binary).deletingLastPathComponent().appendingPathComponent("vigil").path }

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: vigil) else { throw XCTSkip("vigil is not built") }
        try super.setUpWithError()
    }

    private func unit(_ name: String, program: String, options: String = "", extra: String) throws -> (file: String, name: String) {
        let prog = work + "/\(name).sh"
        try ("#!/bin/sh\n" + program).write(toFile: prog, atomically: true, encoding: .utf8)
        chmod(prog, 0o755)
        let unitName = "vigil-run-\(name)-\(getpid()).service"
        let path = try unitFile(unitName, """
            [Unit]
            Description=vigil run under test
            [Service]
            Type=notify
            NotifyAccess=main
            ExecStart=\(vigil) run --state-dir \(work)/\(name)-state \(options) -- \(prog)
            KillMode=mixed
            \(extra)
            """)
        return (path, unitName)
    }

    private func record(_ name: String) throws -> [String: Any] { try lastShutdown(work + "/\(name)-state") }

    func testProgramIgnoringTermIsCutShortBeforeSystemdKills() throws {
        let u = try unit("stubborn", program: "trap '' TERM\nwhile :; do sleep 0.05; done\n", extra: "TimeoutStopSec=2")
        let r = manager.runUnits([u.file])
        XCTAssertEqual(r.0, 0, r.1)
        XCTAssertEqual(manager.property(u.name, "ActiveState"), "active")
        XCTAssertTrue(manager.journal(u.name).contains("stop timeout 2000 ms from service manager"), manager.journal(u.name))
        let t0 = Date()
        XCTAssertEqual(manager.run(["ctl", "stop", u.name]).0, 0)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 2.0, "vigil ended the stop itself")
        XCTAssertEqual(manager.property(u.name, "Result"), "success", manager.journal(u.name))
        XCTAssertEqual(try record("stubborn")["classification"] as? String, "cut-short")
        XCTAssertFalse(manager.journal(u.name).contains("Killing process"), "vigil was never SIGKILLed: \(manager.journal(u.name))")
    }

    func testDrainingProgramStopsCleanAndTheRestartSeesIt() throws {
        let u = try unit("drain", program: "echo \"previous=$VIGIL_PREVIOUS_RUN\"\ntrap 'sleep 0.3; exit 0' TERM\nwhile :; do sleep 0.05; done\n", extra: "TimeoutStopSec=5")
        XCTAssertEqual(manager.runUnits([u.file]).0, 0)
        usleep(300_000)
        XCTAssertEqual(manager.run(["ctl", "stop", u.name]).0, 0)
        XCTAssertEqual(manager.property(u.name, "Result"), "success")
        let rec = try record("drain")
        XCTAssertEqual(rec["classification"] as? String, "clean", "\(rec)")
        XCTAssertEqual(manager.run(["ctl", "start", u.name]).0, 0)
        XCTAssertTrue(waitFor(5) { self.manager.journal(u.name).contains("previous=clean") }, manager.journal(u.name))
        XCTAssertEqual(manager.run(["ctl", "stop", u.name]).0, 0)
    }

    func testReadyNotifyWaitsForTheProgramsReadyAndDropsItsStopping() throws {
        let u = try unit("notify", program: """
            sleep 0.3
            python3 -c 'import os,socket; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); [s.sendto(m, os.environ["NOTIFY_SOCKET"]) for m in (b"READY=1\\nSTATUS=program serving", b"WATCHDOG=1", b"STOPPING=1")]'
            while :; do sleep 0.05; done
            """, options: "--ready notify --ready-timeout 10", extra: "TimeoutStopSec=5")
        let t0 = Date()
        XCTAssertEqual(manager.runUnits([u.file]).0, 0, manager.journal(u.name))
        XCTAssertGreaterThan(Date().timeIntervalSince(t0), 0.25, "start waits for the program's READY=1")
        XCTAssertEqual(manager.property(u.name, "ActiveState"), "active", "the program's STOPPING=1 was dropped")
        XCTAssertEqual(manager.property(u.name, "StatusText"), "program serving")
        XCTAssertEqual(manager.run(["ctl", "stop", u.name]).0, 0)
        XCTAssertEqual(manager.property(u.name, "Result"), "success")
    }
}
