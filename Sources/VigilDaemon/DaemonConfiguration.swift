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
    /// Observes the `stopping` record's write: called in the stop signal's
    /// handler right after the record was written (and made durable, unless
    /// ``StoppingRecordWrite/durable`` says otherwise), before anything else
    /// of the stop — the service's ``DaemonService/stopAdmitting(_:)``
    /// included. For measurements: vigild and `vigil run` print the signal's
    /// delay to each stamp with `VIGIL_DEBUG_SIGNAL_LATENCY=1`
    /// (docs/shutdown.md, "Test hooks"). It runs on the loop and delays the
    /// drain: keep it short. nil (the default): nothing is called.
    public var onStoppingRecorded: (@Sendable (StoppingRecordWrite) -> Void)?

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

/// The `stopping` record's write, for ``DaemonConfiguration/onStoppingRecorded``.
public struct StoppingRecordWrite: Sendable {
    /// The stop signal as the handler read it: its `value` is the sender's
    /// `sigqueue` payload, its `receivedAtNs` the signalfd read.
    public let signal: SignalInfo
    /// CLOCK_MONOTONIC when the record's `pwrite` returned: safe from
    /// SIGKILL from then on.
    public let visibleNs: UInt64
    /// CLOCK_MONOTONIC when its `fdatasync` returned: safe from power loss.
    public let durableNs: UInt64
    /// False when the record could not be made durable; the stamps are then
    /// those of the last write that succeeded (0 when none did).
    public let durable: Bool
}
