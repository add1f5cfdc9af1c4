// Starting children from a daemon whose signals are blocked. The C shim
// forks and execs so it can give the child an empty signal mask and default
// dispositions (otherwise it would inherit a blocked SIGTERM) and
// PR_SET_PDEATHSIG(SIGKILL): no child outlives vigild, even a SIGKILLed one.
import CVigil
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

    /// Runs `argv[0]` (looked up in PATH) and returns its pid. The child is
    /// killed with `deathSignal` if this process dies (0: not).
    /// With `environment` ("NAME=value" entries), the child gets exactly
    /// that environment (nil: ours). The child leads its own process group.
    public static func spawn(_ argv: [String], io: StandardIO = StandardIO(), deathSignal: Int32 = SIGKILL, environment: [String]? = nil) throws(SystemCallError) -> pid_t {
        precondition(!argv.isEmpty, "argv must name a program")
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cargs.append(nil)
        defer { for p in cargs { free(p) } }
        var cenv: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup($0) } + [nil] }
        defer { for p in cenv ?? [] { free(p) } }
        let pid: pid_t
        if cenv != nil {
            pid = cvigil_spawn_env(argv[0], cargs, &cenv!, io.stdin ?? -1, io.stdout ?? -1, io.stderr ?? -1, deathSignal)
        } else {
            pid = cvigil_spawn(argv[0], cargs, io.stdin ?? -1, io.stdout ?? -1, io.stderr ?? -1, deathSignal)
        }
        if pid < 0 { throw SystemCallError("spawn(\(argv[0]))", .init(rawValue: -pid)) }
        return pid
    }

    public enum PipeEnd { case read, write }

    /// A close-on-exec pipe whose `ours` end is non-blocking (for the reactor)
    /// and whose other end stays blocking (for the child: O_NONBLOCK is per
    /// open file description and a child's stdio must block).
    public static func pipe(nonblocking ours: PipeEnd) throws(SystemCallError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        if cvigil_pipe_nonblocking(&fds) != 0 { throw SystemCall.lastError("pipe2") }
        let theirs = ours == .read ? fds[1] : fds[0]
        _ = fcntl(theirs, F_SETFL, fcntl(theirs, F_GETFL) & ~O_NONBLOCK)
        return (fds[0], fds[1])
    }
}
