// How long the daemon has to stop, and how much of it the drain may use.
// The supervisor's stop timeout (systemd's TimeoutStopSec, a container's
// grace period) is the hard limit: SIGKILL follows it. The drain gets the
// timeout minus a safety margin that covers writing the `stopped` record and
// exiting, so the daemon ends its own drain and never needs the SIGKILL.
import Glibc

/// The supervisor's stop timeout and the drain's share of it.
public struct StopBudget: Sendable, Equatable {
    /// Where the stop timeout came from, for log lines ("--stop-timeout",
    /// an environment variable, the service manager, the default).
    public struct Source: Sendable, Equatable, CustomStringConvertible {
        public let description: String

        /// A value the executable was configured with; `origin` names it as
        /// the user wrote it (a flag or an environment variable).
        public static func configured(_ origin: String) -> Source { Source(description: origin) }
        /// The unit's `TimeoutStopUSec`, asked of systemd.
        public static let serviceManager = Source(description: "service manager")
        /// ``StopBudget/defaultStopTimeout``.
        public static let builtInDefault = Source(description: "default")
    }

    /// Docker's and Kubernetes' defaults are 10 s and 30 s, systemd's 90 s:
    /// the smallest is the one a daemon cannot afford to overrun.
    public static let defaultStopTimeout: Duration = .seconds(10)

    /// Time between the stop signal and the supervisor's SIGKILL.
    public let stopTimeout: Duration
    public let source: Source

    public init(stopTimeout: Duration, source: Source) {
        self.stopTimeout = stopTimeout
        self.source = source
    }

    /// 10% of the timeout, at least 250 ms and at most 2 s, and never more
    /// than half of it (a 200 ms timeout leaves a 100 ms drain).
    public var safetyMargin: Duration {
        let tenth = stopTimeout / 10
        let clamped = min(max(tenth, .milliseconds(250)), .seconds(2))
        return min(clamped, stopTimeout / 2)
    }

    /// What the drain may use: the timeout less the safety margin that
    /// covers the `stopped` record and the exit.
    public var drainBudget: Duration { stopTimeout - safetyMargin }

    public struct InvalidTimeout: Error, CustomStringConvertible {
        public let text: String
        public let origin: String
        public var description: String { "invalid stop timeout '\(text)' from \(origin): expected seconds > 0, e.g. 10 or 2.5" }
    }

    /// The first configured value of `candidates` (in order of precedence,
    /// e.g. the flag, then an environment variable), else the default.
    /// - Parameter candidates: text as given (nil or empty: not given) and
    ///   the name of where it came from, for the log and for errors.
    public static func resolve(_ candidates: [(text: String?, origin: String)]) throws(InvalidTimeout) -> StopBudget {
        for c in candidates {
            if let text = c.text, !text.isEmpty {
                return StopBudget(stopTimeout: try parseSeconds(text, origin: c.origin), source: .configured(c.origin))
            }
        }
        return StopBudget(stopTimeout: defaultStopTimeout, source: .builtInDefault)
    }

    /// Seconds, fractional allowed, more than 0 and at most a day.
    public static func parseSeconds(_ text: String, origin: String) throws(InvalidTimeout) -> Duration {
        guard let seconds = Double(text), seconds > 0, seconds.isFinite, seconds <= 86_400 else {
            throw InvalidTimeout(text: text, origin: origin)
        }
        return .nanoseconds(Int64(seconds * 1e9))
    }
}
