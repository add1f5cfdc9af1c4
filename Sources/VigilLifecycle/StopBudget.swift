// How long the daemon has to stop, and how much of it the drain may use.
// The supervisor's stop timeout (systemd's TimeoutStopSec, a container's
// grace period) is the hard limit: SIGKILL follows it. The drain gets the
// timeout minus a safety margin that covers writing the `stopped` record and
// exiting, so the daemon ends its own drain and never needs the SIGKILL.
import Glibc

public struct StopBudget: Sendable, Equatable {
    public enum Source: String, Sendable {
        case commandLine = "--stop-timeout"
        case environment = "VIGIL_STOP_TIMEOUT"
        case serviceManager = "service manager"
        case builtInDefault = "default"
    }

    /// Docker's and Kubernetes' defaults are 10 s and 30 s, systemd's 90 s:
    /// the smallest is the one a daemon cannot afford to overrun.
    public static let defaultStopTimeout: Duration = .seconds(10)

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

    public var drainBudget: Duration { stopTimeout - safetyMargin }

    public struct InvalidTimeout: Error, CustomStringConvertible {
        public let text: String
        public let origin: String
        public var description: String { "invalid stop timeout '\(text)' from \(origin): expected seconds > 0, e.g. 10 or 2.5" }
    }

    /// `--stop-timeout`, else `VIGIL_STOP_TIMEOUT`, else the default.
    public static func resolve(commandLine: String?, environment: String? = ProcessEnvironment.get("VIGIL_STOP_TIMEOUT")) throws(InvalidTimeout) -> StopBudget {
        if let text = commandLine {
            return StopBudget(stopTimeout: try parse(text, origin: "--stop-timeout"), source: .commandLine)
        }
        if let text = environment, !text.isEmpty {
            return StopBudget(stopTimeout: try parse(text, origin: "VIGIL_STOP_TIMEOUT"), source: .environment)
        }
        return StopBudget(stopTimeout: defaultStopTimeout, source: .builtInDefault)
    }

    static func parse(_ text: String, origin: String) throws(InvalidTimeout) -> Duration {
        guard let seconds = Double(text), seconds > 0, seconds.isFinite, seconds <= 86_400 else {
            throw InvalidTimeout(text: text, origin: origin)
        }
        return .nanoseconds(Int64(seconds * 1e9))
    }
}

public enum ProcessEnvironment {
    public static func get(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
