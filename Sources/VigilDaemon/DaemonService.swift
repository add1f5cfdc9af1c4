// The one protocol an application implements to get Vigil's stop
// guarantees. `Daemon.run` calls its members in a fixed order; the order is
// the point (docs/embedding.md).
import VigilReactor

/// The application inside a daemon built on ``Daemon``: what it serves, how
/// much work it has in flight, and how it stops.
///
/// ``Daemon/run(_:makeService:)`` calls the members in this order, all on
/// the reactor's thread:
/// 1. ``start(_:)`` once, after the state directory is locked, the previous
///    run classified and `running` made durable; READY=1 follows its return.
/// 2. ``workInFlight`` whenever the daemon needs the count (at the stop
///    signal, in STATUS lines, and as the `abandoned` count of a cut-short stop).
/// 3. At SIGTERM/SIGINT/SIGQUIT: ``stopAdmitting(_:)``, synchronously, right
///    after the `stopping` record is durable and before anything else of
///    the loop iteration runs.
/// 4. ``drain(_:)`` as a task on the loop (not after SIGQUIT), until it
///    returns (`stopped/clean`) or the budget runs out (the task is
///    cancelled, `stopped/cut-short`).
/// 5. After a cut-short stop: ``settle(_:)`` until every unit is decided, then
///    the `stopped` record, then ``abandon()``.
/// 6. ``finish()`` after the loop has ended, before the process exits.
public protocol DaemonService: AnyObject {
    /// Registers the service's descriptors, timers and signal handlers on
    /// `context.reactor`. Throwing ends the daemon with the error's exit
    /// code (``DaemonFailure``) or 1, before READY=1 is sent.
    func start(_ context: DaemonContext) throws

    /// Units of work accepted and not yet finished. The `stopping` record
    /// stores it as `in_flight`, a cut-short `stopped` record as `abandoned`.
    var workInFlight: Int { get }

    /// Refuse new work from now on: close or stop watching listeners, answer
    /// new requests with a refusal. Called inside the stop signal's handler,
    /// after the `stopping` record is durable and before any other callback
    /// of the same loop iteration, so nothing is admitted after the record
    /// whose `in_flight` count it would falsify. Must not block or await.
    func stopAdmitting(_ signal: SignalInfo)

    /// Finishes the work in flight before `deadline`, then returns (the stop
    /// is then `clean`). Runs on the loop. When the budget is spent the task
    /// is cancelled: return promptly and leave unfinished work unfinished
    /// (``abandon()`` follows).
    ///
    /// Called with the stop signal that began the stop; SIGQUIT skips it.
    func drain(_ deadline: DrainDeadline) async

    /// The drain was cut short (budget spent, a second stop signal, or
    /// SIGQUIT with work in flight): stop what is still running now. The
    /// `stopped` record, with the abandoned count, is already durable.
    func abandon()

    /// The budget ran out (or a second stop signal came) while the drain was
    /// still running: decide every unit of work before the `stopped` record
    /// counts what was abandoned — e.g. wait for a journal write already on
    /// its way to disk, so a unit it completes is answered, not counted as
    /// abandoned. Return true when ``workInFlight`` is now exactly what was
    /// abandoned; false if that could not be settled by `deadline` (then no
    /// `stopped` record is written: the next start says killed-during-drain,
    /// and the exit code is 1). Default: true, at once.
    func settle(_ deadline: DrainDeadline) async -> Bool

    /// One line for systemd's STATUS= while serving (refreshed every few
    /// seconds when it changes); nil sends none. Default: nil.
    var statusLine: String? { get }

    /// The STATUS= text sent with READY=1. Default: ``statusLine``.
    var readyStatus: String? { get }

    /// After the loop ended: close what is left. Default: nothing.
    func finish()

    /// True when the service says READY=1 itself, through
    /// ``DaemonContext/ready(status:)`` (e.g. once a supervised program is
    /// ready); the entry point then does not send it after ``start(_:)``.
    /// Default: false.
    var sendsReadyItself: Bool { get }
}

extension DaemonService {
    /// No STATUS= line while serving.
    public var statusLine: String? { nil }
    /// The same line as ``statusLine``.
    public var readyStatus: String? { statusLine }
    /// Nothing to close.
    public func finish() {}
    /// Nothing to settle: ``workInFlight`` is already exact.
    public func settle(_ deadline: DrainDeadline) async -> Bool { true }
    /// The entry point sends READY=1 after ``start(_:)``.
    public var sendsReadyItself: Bool { false }
}

/// When the drain must be over, given to ``DaemonService/drain(_:)``.
public struct DrainDeadline: Sendable {
    /// CLOCK_MONOTONIC nanoseconds (the clock of `monotonicNanoseconds()` in VigilReactor).
    public let monotonicNanoseconds: UInt64
    /// The stop signal that began the stop.
    public let signal: SignalInfo

    /// A deadline at CLOCK_MONOTONIC `monotonicNanoseconds`, for a stop begun by `signal`.
    public init(monotonicNanoseconds: UInt64, signal: SignalInfo) {
        self.monotonicNanoseconds = monotonicNanoseconds
        self.signal = signal
    }

    /// Time left until the deadline (zero once it has passed).
    public var remaining: Duration {
        let now = VigilReactor.monotonicNanoseconds()
        return now >= monotonicNanoseconds ? .zero : .nanoseconds(Int64(monotonicNanoseconds - now))
    }
}

/// Thrown by ``DaemonService/start(_:)`` to end the daemon with a specific
/// exit code (e.g. 69, EX_UNAVAILABLE, when a port cannot be bound).
public struct DaemonFailure: Error, CustomStringConvertible {
    /// The process's exit code.
    public let exitCode: Int32
    /// Logged at critical level before the daemon exits.
    public let message: String

    /// A start failure that ends the daemon with `exitCode`.
    public init(exitCode: Int32, _ message: String) {
        self.exitCode = exitCode
        self.message = message
    }

    /// The message.
    public var description: String { message }
}
