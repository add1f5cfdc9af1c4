// The gateway's part of the stop sequence (docs/shutdown.md, step 3): runs
// as the drain task after the `stopping` record is durable.
//  1. new turns are refused with `draining` (the listeners are already closed);
//  2. turns in flight finish within the budget; their completions are still
//     journaled and their replies sent; progress is logged every second;
//  3. agents get SIGTERM when `terminateAhead` of the budget is left (exec:
//     the child may still answer), and are killed when the budget is spent;
//  4. clients are told goodbye and closed; the journal is flushed and closed.
// If the budget runs out first, the stop sequence cancels this task and
// records cut-short; `abandon()` then kills the agents. Those turns stay
// open in the journal, so the next start reports exactly them interrupted.
import Logging
import VigilDurable
import VigilReactor

extension SessionGateway {
    /// Refuses every turn from now on (`draining`). Synchronous: call it in
    /// the stop signal's handler, right after the `stopping` record is
    /// durable, so no turn that arrives later in the same loop iteration is
    /// admitted behind the record's back.
    public func stopAdmitting() {
        isDraining = true
    }

    /// Stops accepting turns and waits for those in flight.
    /// - Parameters:
    ///   - deadlineNs: CLOCK_MONOTONIC end of the drain budget.
    ///   - terminateAhead: how long before the deadline agents are asked to stop.
    public func drain(deadlineNs: UInt64, terminateAhead: Duration) async {
        isDraining = true
        let startTurns = turns.count
        logger.notice("draining: \(startTurns) turn(s) in flight, \(remainingMs(deadlineNs)) ms left")
        let termAt = deadlineNs > terminateAhead.nanosecondsValue ? deadlineNs - terminateAhead.nanosecondsValue : 0
        let termTimer = reactor.schedule(atNanoseconds: termAt) { [weak self] in
            guard let self, !self.turns.isEmpty else { return }
            self.logger.notice("drain: \(self.turns.count) turn(s) still running with \(self.remainingMs(deadlineNs)) ms left: asking agents to stop")
            for t in self.turns.values where t.running?.terminate() == true { t.stoppedByDrain = true }
        }
        // Progress in the log once a second (turns left, time left).
        let progress = reactor.scheduleRepeating(every: .seconds(1)) { [weak self] in
            guard let self else { return }
            self.logger.notice("drain: \(self.turnsInFlight) turn(s) left, \(self.remainingMs(deadlineNs)) ms left")
        }
        defer {
            reactor.cancelTimer(termTimer)
            reactor.cancelTimer(progress)
        }
        if !turns.isEmpty {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    if turns.isEmpty || Task.isCancelled { return c.resume() }
                    var resumed = false
                    let once = { if !resumed { resumed = true; c.resume() } }
                    onIdle.append(once)
                    cancelWaiters.append(once)
                }
            } onCancel: { [weak self] in
                // The stop sequence cancels from the loop thread.
                self?.reactor.deliverOnLoop { [weak self] in self?.wakeCancelled() }
            }
        }
        if Task.isCancelled { return }
        sayGoodbye()
        switch await journal.close(compact: true) {
        case .compacted, .flushed:
            logger.notice("drain: every turn answered; journal flushed and compacted")
        case .compactionFailed(let e):
            logger.error("drain: every turn answered; journal flushed, but NOT compacted (\(e)): its segments are kept and replayed at the next start")
        case .notCompactedAfterFailure(let e):
            logger.error("drain: every turn answered; journal closed without compaction after an earlier I/O failure (\(e))")
        }
    }

    /// The budget is spent: decide every turn one way or the other before
    /// the stop sequence counts what it abandoned. From now on no agent
    /// starts and no completion is journaled; completions queued but not yet
    /// submitted are refused (never on disk: those turns stay open); the
    /// journal batch already in flight is waited for, until `deadlineNs` —
    /// its completions may be durable whatever we do, so their replies are
    /// delivered, before `goodbye`. Then every agent is killed. What is left
    /// in `turnsInFlight` is exactly what the next start reports interrupted.
    /// Returns false if the batch in flight was still undecided at the deadline.
    public func cutShort(deadlineNs: UInt64) async -> Bool {
        isCutShort = true
        let settled = await journal.closeCuttingShort(waitingUntil: deadlineNs)
        if !settled {
            logger.error("drain cut short: a journal batch is still in flight after the budget; \(turnsInFlight) turn(s) may come back completed without their replies delivered")
        }
        abandon()
        return settled
    }

    /// Stops every agent now. Their turns stay open in the journal
    /// (interrupted at the next start); no reply goes out.
    public func abandon() {
        isCutShort = true
        for t in turns.values {
            t.running?.kill()
            t.running = nil
        }
        sayGoodbye()
    }

    func wakeCancelled() {
        let w = cancelWaiters
        cancelWaiters = []
        for f in w { f() }
    }

    func sayGoodbye() {
        // A handover keeps every connection: the next instance answers it.
        if saidGoodbye || handingOver { return }
        saidGoodbye = true
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"goodbye\",\"reason\":\"shutdown\"}\n", to: &o)
        for c in clients.values {
            c.push(o)
            c.connection.closeAfterWriting()
        }
    }

    func remainingMs(_ deadlineNs: UInt64) -> UInt64 {
        let now = monotonicNanoseconds()
        return now >= deadlineNs ? 0 : (deadlineNs - now) / 1_000_000
    }
}
