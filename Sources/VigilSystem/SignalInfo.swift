// What the kernel says about one delivered signal. Plain data below the
// reactor, so a layer that only records a signal (the shutdown record)
// needs no event loop to name it.
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

    /// "SIGTERM", "SIGINT", … or "signal N".
    public var name: String { Self.name(of: signal) }

    /// For embedders and tests that drive a handler without a real signal.
    public init(signal: Int32, senderPID: Int32, senderUID: UInt32, code: Int32, value: UInt64, receivedAtNs: UInt64) {
        self.signal = signal
        self.senderPID = senderPID
        self.senderUID = senderUID
        self.code = code
        self.value = value
        self.receivedAtNs = receivedAtNs
    }

    /// The name of `signal` ("SIGTERM"), or "signal N".
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
        case SIGPWR: "SIGPWR"
        case SIGWINCH: "SIGWINCH"
        case SIGALRM: "SIGALRM"
        default: "signal \(signal)"
        }
    }
}
