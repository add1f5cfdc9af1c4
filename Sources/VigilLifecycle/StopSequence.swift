// The stop sequence (docs/shutdown.md):
//  1. SIGTERM/SIGINT/SIGQUIT read from the signalfd → in the handler, before
//     anything else: the `stopping` record, durable (file and directory).
//  2. the notification hooks (systemd's STOPPING=1), then a log line;
//  3. the drain as an async task on the reactor, with a budget timer. When
//     the drain returns: `stopped/clean`. When the budget runs out, or a
//     second stop signal arrives: the drain task is cancelled and
//     `stopped/cut-short` records what was abandoned. SIGQUIT skips the drain.
//  4. the loop is stopped; the daemon exits 0 (or 1 if a record could not be
//     made durable — the next start then reports the conservative state).
import Glibc
import Logging
import VigilDurable
import VigilReactor

/// Loop-confined: every member is used on the reactor's thread only (the
/// drain task runs there too, through the reactor's executor).
public final class StopSequence: @unchecked Sendable {
    public enum Phase: String, Sendable {
        case running, draining, stopped
    }

    /// Given to the drain: its deadline, and whether it has been cut short.
    public final class DrainContext: @unchecked Sendable {
        /// CLOCK_MONOTONIC deadline of the drain.
        public let deadlineNs: UInt64
        public let signal: SignalInfo
        public internal(set) var isCutShort = false

        init(deadlineNs: UInt64, signal: SignalInfo) {
            self.deadlineNs = deadlineNs
            self.signal = signal
        }

        public var remaining: Duration {
            let now = monotonicNanoseconds()
            return now >= deadlineNs ? .zero : .nanoseconds(Int64(deadlineNs - now))
        }
    }

    public let reactor: Reactor
    public let store: ShutdownRecordStore
    public let budget: StopBudget
    let logger: Logger

    /// Work in flight right now (recorded at the signal and as `abandoned`).
    public var inFlight: () -> Int = { 0 }
    /// The application's drain. Runs on the loop; should return when done and
    /// honour task cancellation (the budget ran out).
    public var drain: (DrainContext) async -> Void = { _ in }
    /// Run right after the `stopping` record is durable (e.g. STOPPING=1).
    public var onStopping: [(SignalInfo) -> Void] = []
    /// Run after the `stopped` record, before the loop stops.
    public var onStopped: [(ShutdownRecord.Outcome, Int) -> Void] = []

    public private(set) var phase: Phase = .running
    /// 0 when the stop completed and both records are durable, else 1.
    public private(set) var exitCode: Int32 = 0
    public private(set) var context: DrainContext?

    private var drainStartNs: UInt64 = 0
    private var budgetTimer: TimerHandle?
    private var drainTask: Task<Void, Never>?
    private var recordFailure = false
    /// False once a record of this stop could not be made durable (the
    /// hooks run all the same: the process is stopping either way).
    public var recordsDurable: Bool { !recordFailure }

    public init(reactor: Reactor, store: ShutdownRecordStore, budget: StopBudget, logger: Logger) {
        self.reactor = reactor
        self.store = store
        self.budget = budget
        self.logger = logger
    }

    /// Registers the stop signals with the reactor.
    public func install() throws(SystemCallError) {
        for s in [SIGTERM, SIGINT, SIGQUIT] {
            try reactor.onSignal(s) { [unowned self] in self.handle($0) }
        }
    }

    /// Entry point for a stop signal (public so tests and embedders can drive it).
    public func handle(_ info: SignalInfo) {
        switch phase {
        case .running:
            begin(info)
        case .draining:
            logger.notice("second stop signal (\(info.name) from pid \(info.senderPID)): cutting the drain short")
            finish(cutShort: true, reason: "second \(info.name)")
        case .stopped:
            break
        }
    }

    private func begin(_ info: SignalInfo) {
        // Step 1 — nothing may come before this: no log line, no write to a
        // client, no close. The record is durable when markStopping returns.
        let inFlightNow = inFlight()
        var failure: SystemCallError?
        do { try store.markStopping(signal: info, budgetMs: budget.drainBudget.milliseconds, inFlight: inFlightNow) } catch {
            failure = error
        }
        phase = .draining
        drainStartNs = monotonicNanoseconds()
        if let failure {
            recordFailure = true
            logger.error("the stopping record is NOT durable (\(failure)); the next start will see an older state")
        }
        // Step 2.
        for hook in onStopping { hook(info) }
        logger.notice("\(info.name) from pid \(info.senderPID) (uid \(info.senderUID)): stopping record durable; draining \(inFlightNow) in flight, budget \(budget.drainBudget.milliseconds) ms of \(budget.stopTimeout.milliseconds) ms (\(budget.source))")
        if info.signal == SIGQUIT {
            finish(cutShort: inFlightNow > 0, reason: "SIGQUIT: no drain")
            return
        }
        // Step 3.
        let ctx = DrainContext(deadlineNs: drainStartNs + budget.drainBudget.nanosecondsValue, signal: info)
        context = ctx
        budgetTimer = reactor.schedule(atNanoseconds: ctx.deadlineNs) { [unowned self] in
            self.finish(cutShort: true, reason: "drain budget of \(self.budget.drainBudget.milliseconds) ms spent")
        }
        drainTask = reactor.spawn { [unowned self] in
            await self.drain(ctx)
            if self.phase == .draining { self.finish(cutShort: false, reason: "drain complete") }
        }
    }

    private func finish(cutShort: Bool, reason: String) {
        guard phase == .draining else { return }
        phase = .stopped
        context?.isCutShort = cutShort
        if let t = budgetTimer { reactor.cancelTimer(t) }
        if cutShort { drainTask?.cancel() }
        let abandoned = cutShort ? inFlight() : 0
        let outcome: ShutdownRecord.Outcome = cutShort ? .cutShort : .clean
        let drainMs = (monotonicNanoseconds() - drainStartNs) / 1_000_000
        do { try store.markStopped(outcome: outcome, abandoned: abandoned, drainMs: drainMs) } catch {
            recordFailure = true
            logger.error("the stopped record is NOT durable (\(error)); the next start will report killed-during-drain")
        }
        exitCode = recordFailure ? 1 : 0
        logger.notice("stopped: \(outcome.rawValue) (\(reason)), \(abandoned) abandoned, drain took \(drainMs) ms")
        for hook in onStopped { hook(outcome, abandoned) }
        reactor.stop()
    }
}
