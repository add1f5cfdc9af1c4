// What the supervisor needs to know about the program it runs. The
// executable resolves flags and environment variables into this; the
// library reads no VIGIL_* variable.
import Glibc
import VigilReactor

public struct SupervisorConfiguration: Sendable {
    /// When the service manager hears READY=1.
    public enum Readiness: Equatable, Sendable, CustomStringConvertible {
        /// Right after the program is spawned.
        case immediate
        /// When the program sends READY=1 to the NOTIFY_SOCKET it is given.
        case notify
        /// When a TCP connection to HOST:PORT succeeds.
        case tcp(host: String, port: UInt16)

        /// `immediate`, `notify` or `tcp:HOST:PORT` (`tcp:[::1]:8080` for IPv6).
        public init(parsing text: String) throws(ConfigurationError) {
            switch text {
            case "immediate": self = .immediate
            case "notify": self = .notify
            default:
                guard text.hasPrefix("tcp:"), let colon = text.lastIndex(of: ":"), colon > text.index(text.startIndex, offsetBy: 3) else {
                    throw ConfigurationError("invalid readiness '\(text)': expected immediate, notify or tcp:HOST:PORT")
                }
                var host = String(text[text.index(text.startIndex, offsetBy: 4)..<colon])
                if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                guard !host.isEmpty, let port = UInt16(text[text.index(after: colon)...]), port > 0 else {
                    throw ConfigurationError("invalid readiness '\(text)': expected tcp:HOST:PORT with a port 1…65535")
                }
                self = .tcp(host: host, port: port)
            }
        }

        public var description: String {
            switch self {
            case .immediate: "immediate"
            case .notify: "notify"
            case .tcp(let h, let p): h.contains(":") ? "tcp:[\(h)]:\(p)" : "tcp:\(h):\(p)"
            }
        }
    }

    public struct ConfigurationError: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// The program and its arguments (argv[0] is looked up in PATH).
    public var command: [String]
    /// Sent to the program's process group to ask it to stop.
    public var stopSignal: Int32 = SIGTERM
    /// Between the stop request and the stop signal (counted in the budget):
    /// time for load balancers to stop sending work.
    public var stopDelay: Duration = .zero
    public var readiness: Readiness = .immediate
    /// nil: wait for readiness as long as it takes.
    public var readyTimeout: Duration?

    public init(command: [String]) { self.command = command }

    /// The longest state directory path whose sockets (`ledger.sock`,
    /// `notify.sock`) fit a Unix socket address.
    public static var maxStateDirectoryBytes: Int {
        SocketAddress.maxUnixPathBytes - 1 - max(ProgramEnvironment.ledgerSocket.utf8.count, ProgramEnvironment.notifySocket.utf8.count)
    }

    /// The signals a program may be asked to stop with: the usual ones,
    /// WINCH (Apache httpd's graceful stop), and the real-time signals.
    /// Not KILL or STOP, nor those a program ignores or is stopped by by
    /// default (CHLD, CONT, TSTP, TTIN, TTOU, URG): every stop would end in
    /// SIGKILL.
    static let stopSignals: [String: Int32] = ["TERM": SIGTERM, "INT": SIGINT, "QUIT": SIGQUIT, "HUP": SIGHUP, "USR1": SIGUSR1,
                                               "USR2": SIGUSR2, "WINCH": SIGWINCH, "PWR": SIGPWR, "ABRT": SIGABRT, "ALRM": SIGALRM]

    /// For --stop-signal: a name (`TERM`, `SIGTERM`, `RTMIN+3`, `RTMAX-1`)
    /// or the number of one of those signals.
    public static func parseSignal(_ text: String) throws(ConfigurationError) -> Int32 {
        let rtmin = __libc_current_sigrtmin(), rtmax = __libc_current_sigrtmax()
        let invalid = ConfigurationError("invalid stop signal '\(text)': expected TERM, INT, QUIT, HUP, USR1, USR2, WINCH, PWR, ABRT, ALRM, RTMIN+N, RTMAX-N or one of their numbers (not KILL, STOP, or a signal ignored or stopping by default)")
        if let n = Int32(text) {
            guard stopSignals.values.contains(n) || (rtmin...rtmax).contains(n) else { throw invalid }
            return n
        }
        let name = text.uppercased().hasPrefix("SIG") ? String(text.uppercased().dropFirst(3)) : text.uppercased()
        if let s = stopSignals[name] { return s }
        for (prefix, base, sign) in [("RTMIN", rtmin, Int32(1)), ("RTMAX", rtmax, Int32(-1))] where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            let offset: Int32? = rest.isEmpty ? 0 : (rest.first == (sign > 0 ? "+" : "-") ? Int32(rest.dropFirst()) : nil)
            if let offset, offset >= 0, (rtmin...rtmax).contains(base + sign * offset) { return base + sign * offset }
        }
        throw invalid
    }
}
