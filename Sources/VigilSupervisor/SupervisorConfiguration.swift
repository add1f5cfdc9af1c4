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

    /// `TERM`, `SIGTERM` or a number (1…64), for --stop-signal.
    public static func parseSignal(_ text: String) throws(ConfigurationError) -> Int32 {
        if let n = Int32(text), (1...64).contains(n), n != SIGKILL, n != SIGSTOP { return n }
        let name = text.uppercased().hasPrefix("SIG") ? String(text.uppercased().dropFirst(3)) : text.uppercased()
        let known: [String: Int32] = ["TERM": SIGTERM, "INT": SIGINT, "QUIT": SIGQUIT, "HUP": SIGHUP, "USR1": SIGUSR1,
                                      "USR2": SIGUSR2, "WINCH": SIGWINCH, "PWR": SIGPWR, "ABRT": SIGABRT, "ALRM": SIGALRM]
        guard let s = known[name] else {
            throw ConfigurationError("invalid stop signal '\(text)': expected a name such as TERM, INT, QUIT, HUP, USR1 or a number (not KILL or STOP)")
        }
        return s
    }
}
