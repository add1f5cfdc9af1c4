import Foundation
import Glibc
import VigilTestSupport
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
        return Shell.spawn(argv)
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
