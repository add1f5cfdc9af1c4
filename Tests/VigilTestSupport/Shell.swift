// A command's status and combined output, for the tests' system tools
// (mkfs, mount, cp, vigilctl).
import Foundation
import Glibc

public enum Shell {
    /// Runs `args` through /usr/bin/env (so PATH finds it) and waits.
    /// - Parameter stderr: include stderr in the output (default) or drop it.
    @discardableResult
    public static func run(_ args: [String], environment: [String: String] = [:], stderr: Bool = true) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        if !environment.isEmpty {
            var env = ProcessInfo.processInfo.environment
            for (k, v) in environment { env[k] = v }
            p.environment = env
        }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = stderr ? pipe : FileHandle.nullDevice
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self))
    }

    /// posix_spawnp + waitpid on that pid, stdout and stderr to a file.
    /// Not Foundation's Process, for tools that leave a process behind them
    /// holding the output (the systemd sandbox's `up`, podman's conmon):
    /// Process on Linux was seen never to notice that such a child had
    /// exited (a zombie left unreaped, waitUntilExit blocked for good).
    /// - Returns: the exit code (128+N after signal N) and the output.
    public static func spawn(_ argv: [String], environment: [String: String] = [:]) -> (status: Int32, output: String) {
        let outPath = "/tmp/vigil-spawn-\(getpid())-\(UUID().uuidString.prefix(8)).out"
        defer { unlink(outPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        var cenv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for c in cargs + cenv { free(c) } }
        var pid: pid_t = 0
        let r = posix_spawnp(&pid, argv[0], &actions, nil, &cargs, &cenv)
        guard r == 0 else { return (-1, "posix_spawnp(\(argv[0])): \(String(cString: strerror(r)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return (code, text)
    }
}
