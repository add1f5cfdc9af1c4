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
