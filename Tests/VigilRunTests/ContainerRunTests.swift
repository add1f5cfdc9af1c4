// `vigil run` as PID 1 of a real container (rootful podman with runc, via
// ../shared/tools/container.sh): `podman stop -t 2` against a program that
// ignores SIGTERM, signal forwarding, reaping of orphans, exit codes.
import Foundation
import Glibc
import VigilTestSupport
import XCTest

final class ContainerRunTests: XCTestCase {
    private var tool = ""
    private var names: [String] = []
    private var work = ""
    private static var imageBuilt = false

    override func setUpWithError() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        tool = ProcessInfo.processInfo.environment["VIGIL_CONTAINER_TOOL"] ?? root.deletingLastPathComponent().appendingPathComponent("shared/tools/container.sh").path
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: tool) else { throw XCTSkip("needs root and \(tool)") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/podman") else { throw XCTSkip("podman is not installed (\(tool) install)") }
        work = try VigilRunProcess.scratch()
        if !Self.imageBuilt {
            let r = Self.sh([tool, "build", "vigil-run-test", VigilRunProcess.binary("vigil")], env: ["CT_BIND_SWIFT": "1"])
            guard r.0 == 0 else { throw XCTSkip("cannot build the test image: \(r.1)") }
            Self.imageBuilt = true
        }
    }

    override func tearDown() {
        for n in names { _ = Self.sh([tool, "rm", n]) }
        VigilRunProcess.removeScratch()
    }

    /// Shell.spawn: podman leaves conmon behind, holding the output.
    static func sh(_ argv: [String], env: [String: String] = [:]) -> (Int32, String) { Shell.spawn(argv, environment: env) }

    private func start(_ name: String, options: [String], program: String) throws -> String {
        let state = work + "/\(name)-state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let full = "vr-\(name)-\(getpid())"
        names.append(full)
        let r = Self.sh([tool, "run", full, "vigil-run-test", "-v", "/opt/swift:/opt/swift:ro", "-v", "\(state):/state",
                         "--", "/app/vigil", "run", "--state-dir", "/state"] + options + ["--", "/bin/sh", "-c", program])
        guard r.0 == 0 else { throw XCTSkip("cannot run a container here: \(r.1)") }
        return full
    }

    private func logs(_ name: String) -> String { Self.sh([tool, "logs", name]).1 }

    private func waitFor(_ name: String, _ text: String, timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if logs(name).contains(text) { return true }
            usleep(50_000)
        }
        return false
    }

    func testPodmanStopAgainstAProgramIgnoringTermIsCutShortInTime() throws {
        // A grandchild in the group, and an orphan re-parented to PID 1.
        let name = try start("stop", options: ["--stop-timeout", "2"], program: "trap '' TERM; sleep 1000 & (sleep 1000 &); echo up; while :; do sleep 0.05; done")
        XCTAssertTrue(waitFor(name, "up"), logs(name))
        let stop = Self.sh([tool, "stop", name, "2"])
        let seconds = Double(stop.1.split(separator: "\n").last.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? "") ?? 99
        // Exit code 0, not 137: vigil ended the stop itself, before podman's
        // SIGKILL (the seconds include podman's own overhead, ~0.1 s).
        XCTAssertEqual(Self.sh([tool, "code", name]).1.trimmingCharacters(in: .whitespacesAndNewlines), "0", logs(name))
        XCTAssertLessThan(seconds, 3.0, stop.1)
        XCTAssertTrue(logs(name).contains("stopped: cut-short"), logs(name))
        XCTAssertTrue(logs(name).contains("vigil ready (pid 1,"), logs(name))
        XCTAssertFalse(logs(name).contains("does not tell its stop grace period"), "a stop timeout was given")
        XCTAssertEqual(try VigilRunProcess.lastShutdown(work + "/stop-state")["classification"] as? String, "cut-short")
    }

    func testForwardsSignalsReapsOrphansAndPassesTheExitCode() throws {
        let name = try start("pid1", options: [], program: """
            trap 'echo got-hup' HUP
            trap 'echo got-usr1' USR1
            for i in 1 2 3 4 5 6 7 8 9 10; do (sleep 0.1 &); done
            echo spawned
            while [ ! -e /state/exit-now ]; do sleep 0.05; done
            exit 7
            """)
        XCTAssertTrue(waitFor(name, "spawned"), logs(name))
        // No --stop-timeout: the built-in 10 s, and a warning that podman cannot be asked.
        XCTAssertTrue(logs(name).contains("running in a podman container, which does not tell its stop grace period (its default grace period is 10 s)"), logs(name))
        usleep(500_000)  // the orphans have exited: PID 1 must have reaped them
        let stats = Self.sh([tool, "exec", name, "/bin/sh", "-c", "cat /proc/[0-9]*/stat"]).1
        XCTAssertFalse(stats.contains(") Z "), "no zombie left: \(stats)")
        for (sig, text) in [("HUP", "got-hup"), ("USR1", "got-usr1")] {
            XCTAssertEqual(Self.sh([tool, "podman", "kill", "--signal", sig, name]).0, 0)
            XCTAssertTrue(waitFor(name, text), logs(name))
        }
        FileManager.default.createFile(atPath: work + "/pid1-state/exit-now", contents: nil)
        var code = ""
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let state = Self.sh([tool, "podman", "inspect", "-f", "{{.State.Status}}", name]).1
            if state.contains("exited") { code = Self.sh([tool, "code", name]).1.trimmingCharacters(in: .whitespacesAndNewlines); break }
            usleep(50_000)
        }
        XCTAssertEqual(code, "7", "the program's own code, so a restart policy sees the failure: \(logs(name))")
        XCTAssertEqual(try VigilRunProcess.lastShutdown(work + "/pid1-state")["classification"] as? String, "crash")
    }
}
