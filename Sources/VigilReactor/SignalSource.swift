// Signals as ordinary events: blocked in every thread, read from a signalfd
// that sits in the epoll set. No async-signal-safety constraints apply to
// the handlers, and the reactor can order them before all other work.
import CVigil
import Glibc

/// What the kernel told us about one delivered signal (`signalfd_siginfo`).
public struct SignalInfo: Sendable, Equatable {
    public let signal: Int32
    /// Sender's pid and uid (0 for the kernel, e.g. SIGCHLD or a tty).
    public let senderPID: Int32
    public let senderUID: UInt32
    /// `si_code`: SI_USER for kill(2), SI_QUEUE for sigqueue(3), …
    public let code: Int32
    /// The sigqueue payload (`ssi_ptr`), 0 for kill(2).
    public let value: UInt64
    /// CLOCK_MONOTONIC when the reactor read it from the signalfd.
    public let receivedAtNs: UInt64

    public var name: String { SignalSource.name(of: signal) }

    /// For embedders and tests that drive a handler without a real signal.
    public init(signal: Int32, senderPID: Int32, senderUID: UInt32, code: Int32, value: UInt64, receivedAtNs: UInt64) {
        self.signal = signal
        self.senderPID = senderPID
        self.senderUID = senderUID
        self.code = code
        self.value = value
        self.receivedAtNs = receivedAtNs
    }
}

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

    public static func name(of signal: Int32) -> String {
        switch signal {
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        case SIGHUP: "SIGHUP"
        case SIGQUIT: "SIGQUIT"
        case SIGUSR1: "SIGUSR1"
        case SIGUSR2: "SIGUSR2"
        case SIGCHLD: "SIGCHLD"
        case SIGKILL: "SIGKILL"
        default: "signal \(signal)"
        }
    }
}
