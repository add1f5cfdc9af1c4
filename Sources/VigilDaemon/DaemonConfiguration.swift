// What `Daemon.run` needs to know before anything starts. Flags and
// environment variables are the executable's business: it resolves them and
// passes values here; the library reads no application variable.
import Logging
import VigilLifecycle
import VigilReactor

/// The settings of a daemon built on ``Daemon``.
public struct DaemonConfiguration: Sendable {
    /// The daemon's name: log lines, STATUS text and the lock holder's
    /// description say it. Letters, digits, `-`, `_` and `.` only.
    public var name: String
    /// Where the shutdown record, the lock and the application's own durable
    /// state live. Created with mode 0700 when missing; refused when it is a
    /// symlink, not a directory, or not writable.
    public var stateDirectory: String
    /// The supervisor's stop timeout as configured (flag, environment or
    /// default). Under systemd the unit's `TimeoutStopSec` wins when
    /// ``followServiceManagerTimeout`` is true.
    public var stopBudget: StopBudget
    /// Under systemd: how much longer than the stop timeout the drain may
    /// ask for, with `EXTEND_TIMEOUT_USEC`. Zero: never.
    public var stopExtend: Duration = .zero
    /// Ask the service manager for the unit's `TimeoutStopUSec` (sd-bus)
    /// when running under systemd.
    public var followServiceManagerTimeout = true
    /// How STATUS= lines name the service's units of work ("draining: 3
    /// request(s) in flight, …").
    public var workUnitName = "request(s)"
    /// Stored in the `running` record (`vigilctl last-shutdown` shows it).
    public var version: String = "0"
    /// The event loop's options (io_uring or the syscall fallback, batches).
    public var reactorOptions = Reactor.Options()
    /// Where the entry point logs its own steps; the service gets it too.
    public var logger: Logger

    /// - Parameters:
    ///   - name: see ``name``.
    ///   - stateDirectory: see ``stateDirectory``.
    ///   - stopBudget: the configured stop timeout; the default is 10 s.
    ///   - logger: see ``logger``.
    public init(name: String, stateDirectory: String, stopBudget: StopBudget = StopBudget(stopTimeout: StopBudget.defaultStopTimeout, source: .builtInDefault), logger: Logger) {
        self.name = name
        self.stateDirectory = stateDirectory
        self.stopBudget = stopBudget
        self.logger = logger
    }
}
