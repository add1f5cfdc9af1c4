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
    /// Run when the drain is cut short (budget, second signal, SIGQUIT),
    /// before `abandoned` is counted and the `stopped` record written: the
    /// application must settle work whose outcome is still being decided
    /// (e.g. a journal write in flight that may yet make a turn complete), so
    /// that what it then reports in flight is exactly what was abandoned. It
    /// must return by `deadlineNs` (the stop timeout minus room for the
    /// record); false means it could not settle: the outcome of the work in
    /// flight is unknown, so no `stopped` record claims it — the `stopping`
    /// record stays (the next start says killed-during-drain) and the exit is 1.
    public var settle: ((_ deadlineNs: UInt64) async -> Bool)?
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
    /// The stop is decided (cut short or complete); settle may still run.
    private var settling = false
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

    /// The run ends without a stop request (a supervised program exited by
    /// itself): no stop signal may begin a stop sequence from now on, whose
    /// `stopping` record would overwrite the one describing this end.
    /// Returns false when a stop has already begun (that stop decides).
    public func endWithoutStop() -> Bool {
        guard phase == .running else { return false }
        phase = .stopped
        return true
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
            logger.error("the stopping record is NOT durable (\(failure)); the next start will report \(nextStartVerdict)")
        }
        // Step 2.
        for hook in onStopping { hook(info) }
        let recordState = failure == nil ? "stopping record durable" : "stopping record NOT durable"
        logger.notice("\(info.name) from pid \(info.senderPID) (uid \(info.senderUID)): \(recordState); draining \(inFlightNow) in flight, budget \(budget.drainBudget.milliseconds) ms of \(budget.stopTimeout.milliseconds) ms (\(budget.source))")
        warnIfRecordFileWasReplaced()
        if info.signal == SIGQUIT {
            finish(cutShort: inFlightNow > 0, reason: "SIGQUIT: no drain")
            return
        }
        // The sender's name, for the `stopped` record and the run history:
        // read only now, after the record and the hooks, while it may still exist.
        store.senderCommand = Self.commandName(of: info.senderPID)
        // Step 3.
        let ctx = DrainContext(deadlineNs: drainStartNs + budget.drainBudget.nanosecondsValue, signal: info)
        context = ctx
        budgetTimer = reactor.schedule(atNanoseconds: ctx.deadlineNs) { [unowned self] in
            self.finish(cutShort: true, reason: "drain budget of \(self.budget.drainBudget.milliseconds) ms spent")
        }
        drainTask = reactor.spawn { [unowned self] in
            await self.drain(ctx)
            self.finish(cutShort: false, reason: "drain complete")
        }
    }

    /// `/proc/PID/comm` without its newline (15 bytes at most), nil when
    /// the process is gone or unreadable (pid 0: the kernel).
    static func commandName(of pid: Int32) -> String? {
        guard pid > 0, let f = fopen("/proc/\(pid)/comm", "re") else { return nil }
        defer { fclose(f) }
        var buf = [CChar](repeating: 0, count: 64)
        guard fgets(&buf, Int32(buf.count), f) != nil else { return nil }
        let name = String(decoding: buf.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? nil : name
    }

    private func finish(cutShort: Bool, reason: String) {
        guard phase == .draining, !settling else { return }
        settling = true
        context?.isCutShort = cutShort
        if let t = budgetTimer { reactor.cancelTimer(t) }
        if cutShort { drainTask?.cancel() }
        guard cutShort, let settle else { return record(cutShort: cutShort, reason: reason) }
        // Settle before counting: the loop keeps running (journal
        // completions, replies) until settle returns. Half the safety margin
        // is left for the record and the exit.
        let now = monotonicNanoseconds()
        let end = drainStartNs + budget.stopTimeout.nanosecondsValue - budget.safetyMargin.nanosecondsValue / 2
        let deadline = max(end, now + budget.safetyMargin.nanosecondsValue / 2)
        _ = reactor.spawn { [unowned self] in
            if await settle(deadline) {
                self.record(cutShort: true, reason: reason)
            } else {
                self.phase = .stopped
                self.recordFailure = true
                self.exitCode = 1
                self.logger.error("stopped: cut short (\(reason)); work in flight could not be settled in time, so no stopped record claims it: the next start will report \(self.nextStartVerdict)")
                for hook in self.onStopped { hook(.cutShort, self.inFlight()) }
                self.reactor.stop()
            }
        }
    }

    /// What the next start will conclude when no `stopped` record lands:
    /// the last durable record decides (`stopping`, or else `running`).
    /// Read back, not guessed: a failed write may still have renamed its file
    /// into place (the fsync failed after), or may have left the older one.
    private var nextStartVerdict: String {
        PreviousRun.classify(store.read(), currentBootID: "").classification.rawValue
    }

    private var recreationsReported = 0

    /// The store found its file removed or replaced after a write and wrote
    /// the record again under its name: worth an operator's attention.
    private func warnIfRecordFileWasReplaced() {
        guard store.filesRecreated > recreationsReported else { return }
        recreationsReported = store.filesRecreated
        logger.warning("\(ShutdownRecordStore.recordName) was removed or replaced by another file while this process ran; the record was written again under its name")
    }

    private func record(cutShort: Bool, reason: String) {
        phase = .stopped
        // A drain that returned with work still in flight did not finish
        // it: that work is abandoned, and the stop was not clean.
        let abandoned = inFlight()
        let outcome: ShutdownRecord.Outcome = cutShort || abandoned > 0 ? .cutShort : .clean
        let drainMs = (monotonicNanoseconds() - drainStartNs) / 1_000_000
        do { try store.markStopped(outcome: outcome, abandoned: abandoned, drainMs: drainMs) } catch {
            recordFailure = true
            logger.error("the stopped record is NOT durable (\(error)); the next start will report \(nextStartVerdict)")
        }
        warnIfRecordFileWasReplaced()
        exitCode = recordFailure ? 1 : 0
        logger.notice("stopped: \(outcome.rawValue) (\(reason)), \(abandoned) abandoned, drain took \(drainMs) ms")
        for hook in onStopped { hook(outcome, abandoned) }
        reactor.stop()
    }
}
