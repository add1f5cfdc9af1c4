// Starting children from a daemon whose signals are blocked: posix_spawn
// with an explicitly empty signal mask and default dispositions, otherwise
// the child would inherit the mask and ignore SIGTERM.
import Glibc

public enum ChildSpawner {
    /// Descriptors to give the child as its stdin/stdout/stderr (nil: inherit).
    public struct StandardIO {
        public var stdin: Int32?
        public var stdout: Int32?
        public var stderr: Int32?
        public init(stdin: Int32? = nil, stdout: Int32? = nil, stderr: Int32? = nil) {
            self.stdin = stdin
            self.stdout = stdout
            self.stderr = stderr
        }
    }

    /// Runs `argv[0]` (looked up in PATH) and returns its pid.
    public static func spawn(_ argv: [String], io: StandardIO = StandardIO()) throws(SystemCallError) -> pid_t {
        precondition(!argv.isEmpty, "argv must name a program")
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in SignalSource.daemonSignals + [SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let fd = io.stdin { posix_spawn_file_actions_adddup2(&actions, fd, 0) }
        if let fd = io.stdout { posix_spawn_file_actions_adddup2(&actions, fd, 1) }
        if let fd = io.stderr { posix_spawn_file_actions_adddup2(&actions, fd, 2) }

        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cargs.append(nil)
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let r = posix_spawnp(&pid, argv[0], &actions, &attr, cargs, environ)
        if r != 0 { throw SystemCallError("posix_spawnp(\(argv[0]))", .init(rawValue: r)) }
        return pid
    }
}
