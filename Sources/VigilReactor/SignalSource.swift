// Signals as ordinary events: blocked in every thread, read from a signalfd
// that sits in the epoll set. No async-signal-safety constraints apply to
// the handlers, and the reactor can order them before all other work.
import CVigil
import Glibc

public enum SignalSource {
    /// The signals a Vigil daemon reads from its signalfd.
    public static let daemonSignals: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD]

    /// Call first thing in `main`, before anything can start a thread:
    /// threads inherit the mask, so no thread will ever take these signals
    /// through a handler, and the signalfd sees every one of them. SIGPIPE is
    /// ignored so a write to a closed socket is an EPIPE error, not a death.
    public static func blockDaemonSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in daemonSignals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Blocks `signals` in the calling thread (the reactor does this for the
    /// signals it is asked to handle, for code that did not call
    /// `blockDaemonSignals` early, e.g. tests).
    static func block(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Creates the signalfd, or updates the mask of an existing one.
    static func signalfd(existing: Int32, signals: [Int32]) throws(SystemCallError) -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        return try syscallRetrying("signalfd") {
            CVigil.signalfd(existing, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        }
    }

    /// Reads one pending signal; nil once the signalfd is empty (callers loop).
    static func readOne(_ fd: Int32) throws(SystemCallError) -> SignalInfo? {
        var info = signalfd_siginfo()
        let size = MemoryLayout<signalfd_siginfo>.size
        let r = try withUnsafeMutableBytes(of: &info) { (buf) throws(SystemCallError) -> IOResult in
            try Syscall.read(fd, buf.baseAddress!, size)
        }
        guard case .processed(let n) = r, n == size else { return nil }
        return SignalInfo(
            signal: Int32(info.ssi_signo), senderPID: Int32(bitPattern: info.ssi_pid),
            senderUID: info.ssi_uid, code: info.ssi_code, value: info.ssi_ptr,
            receivedAtNs: monotonicNanoseconds())
    }

    /// The signal's name ("SIGTERM"), or "signal N".
    public static func name(of signal: Int32) -> String { SignalInfo.name(of: signal) }
}
