// vigild's life, in order (docs/architecture.md, docs/shutdown.md):
//  1. the state directory and its lock; the previous run's shutdown record
//     is classified and replaced by `running` (only while we hold the lock);
//  2. the reactor; the turn journal is replayed and a `run started` record
//     made durable, so every turn the dead run left open is interrupted from
//     now on, exactly;
//  3. listeners (and the control socket), the stop sequence, READY;
//  4. the loop, until the stop sequence has written `stopped`.
import ArgumentParser
import Glibc
import Logging
import VigilDurable
import VigilGateway
import VigilLifecycle
import VigilReactor

struct VigildDaemon {
    let config: VigildConfiguration
    let logger: Logger

    func run() throws {
        let stateDirectory = config.stateDirectory
        let stateFS: PosixStateFileSystem
        do {
            stateFS = try PosixStateFileSystem(path: stateDirectory)
            try stateFS.checkWritable()
        } catch {
            logger.critical("state directory \(stateDirectory) is unusable: \(error)")
            throw ExitCode(VigildExit.stateDirUnusable)
        }
        let lock: StateDirectoryLock
        do { lock = try StateDirectoryLock.acquire(in: stateFS) } catch {
            logger.critical("\(error) (\(stateDirectory)); refusing to start")
            if case .held = error { throw ExitCode(VigildExit.locked) }
            throw ExitCode(VigildExit.stateDirUnusable)
        }
        defer { withExtendedLifetime(lock) {} }
        let store = ShutdownRecordStore(fs: stateFS)
        let previous: PreviousRun
        do {
            let running = ShutdownRecord(running: getpid(), bootID: currentBootID(), startedAtNs: wallClockNanoseconds(), version: VigildDefaults.version)
            previous = try store.takeOver(running: running, currentBootID: running.bootID)
        } catch {
            logger.critical("cannot make the shutdown record durable in \(stateDirectory): \(error)")
            throw ExitCode(VigildExit.stateDirUnusable)
        }
        if previous.isUnclean { logger.warning("\(previous.summary)") } else { logger.notice("\(previous.summary)") }
        let budget = config.budget
        logger.notice("stop timeout \(budget.stopTimeout.milliseconds) ms from \(budget.source.rawValue); drain budget \(budget.drainBudget.milliseconds) ms")

        // Benchmark hook (docs/benchmarks.md): a sender stamps CLOCK_MONOTONIC
        // into the sigqueue payload; vigild prints the delay to the handler
        // (and, for stop signals, to the durable stopping record).
        let measureSignals = ProcessEnvironment.get("VIGIL_DEBUG_SIGNAL_LATENCY") == "1"

        let reactor: Reactor
        do { reactor = try Reactor(logger: logger) } catch {
            logger.critical("cannot create the event loop: \(error)")
            throw ExitCode(VigildExit.osError)
        }

        let journal = try openJournal(stateFS, reactor)
        let agent: any Agent
        switch config.agent {
        case .echo: agent = EchoAgent(reactor: reactor)
        case .exec: agent = ExecAgent(reactor: reactor, command: config.execCommand ?? "", timeLimit: config.execTimeLimit, logger: logger)
        }
        var options = SessionGateway.Options()
        options.maxConnections = config.maxConnections
        options.idleTimeout = config.idleTimeout
        let gateway = SessionGateway(reactor: reactor, journal: journal, agent: agent, logger: logger, options: options)
        gateway.statusFields = [("version", VigildDefaults.version), ("state_dir", stateDirectory),
                                ("previous_run", previous.classification.rawValue), ("disk_io", reactor.disk.kind.rawValue)]
        let server = LineServer(reactor: reactor, handler: gateway, logger: logger)
        for address in config.addresses {
            do {
                let bound = try server.listen(on: address)
                logger.notice("listening on \(bound)")
            } catch {
                logger.critical("cannot listen on \(address): \(error)")
                throw ExitCode(VigildExit.listenFailed)
            }
        }
        var keep: Set<String> = []
        if let path = config.controlSocket {
            do {
                let bound = try server.listen(on: .unix(path: path))
                keep.insert(bound.description)
                logger.info("control requests on \(bound) (own user only)")
            } catch {
                logger.critical("cannot listen on the control socket \(path): \(error)")
                throw ExitCode(VigildExit.listenFailed)
            }
        }

        // Test hook (docs/shutdown.md): VIGIL_DEBUG_DRAIN_MS=N makes the drain
        // hold one unit of work for N ms before the turns' drain, so the budget
        // paths can be exercised without turns.
        let debugDrainMs = ProcessEnvironment.get("VIGIL_DEBUG_DRAIN_MS").flatMap { Int($0) }
        var debugWork = debugDrainMs == nil ? 0 : 1

        let stop = StopSequence(reactor: reactor, store: store, budget: budget, logger: logger)
        stop.inFlight = { gateway.turnsInFlight + debugWork }
        if measureSignals {
            stop.onStopping.append { info in
                printSignalLatency(info)
                printLatency("signal-durable-ns", info, until: monotonicNanoseconds())
            }
        }
        stop.drain = { ctx in
            // The control socket stays open: `vigilctl status` shows the drain.
            server.closeListeners(keeping: keep)
            if let ms = debugDrainMs {
                do { try await reactor.sleep(for: .milliseconds(ms)) } catch { return }
                debugWork = 0
            }
            let ahead = min(.seconds(2), budget.drainBudget / 4)
            await gateway.drain(deadlineNs: ctx.deadlineNs, terminateAhead: ahead)
        }
        stop.onStopped.append { outcome, _ in
            if outcome == .cutShort { gateway.abandon() }
        }
        do {
            try stop.install()
            try reactor.onSignal(SIGHUP) { _ in logger.info("SIGHUP ignored (no configuration to reload)") }
            // Children of exec turns are reaped through their pidfds; anything
            // else (orphans re-parented to us as PID 1) here, so no zombie stays.
            try reactor.onSignal(SIGCHLD) { _ in reactor.reapChildren() }
            if measureSignals {
                try reactor.onSignal(SIGUSR1) { printSignalLatency($0) }
            }
        } catch {
            logger.critical("cannot set up the signalfd: \(error)")
            throw ExitCode(VigildExit.osError)
        }
        logger.notice("vigild ready (pid \(getpid()), state \(stateDirectory), disk I/O \(reactor.disk.kind.rawValue), agent \(agent.name))")

        do { try reactor.run() } catch {
            logger.critical("event loop failed: \(error)")
            throw ExitCode(VigildExit.fatal)
        }
        server.closeAll()
        reactor.close()
        if stop.exitCode != 0 { throw ExitCode(stop.exitCode) }
    }

    /// Replays the journal and makes this run's start durable in it.
    private func openJournal(_ fs: PosixStateFileSystem, _ reactor: Reactor) throws -> TurnJournal {
        let journal: TurnJournal
        do { journal = try TurnJournal(io: DiskJournalIO(fs: fs, disk: reactor.disk), reactor: reactor, logger: logger) } catch {
            logger.critical("cannot open the turn journal in \(config.stateDirectory): \(error)")
            throw ExitCode(VigildExit.stateDirUnusable)
        }
        let report = journal.report
        if report.damaged.isEmpty && report.snapshotProblem == nil { logger.info("\(report.summary)") } else { logger.error("\(report.summary)") }
        var started: Result<UInt64, JournalError>?
        journal.append(.runStarted(pid: getpid(), bootID: currentBootID())) { started = $0 }
        while started == nil {
            do { try reactor.runOnce(timeoutMs: 100) } catch {
                logger.critical("event loop failed during start-up: \(error)")
                throw ExitCode(VigildExit.osError)
            }
        }
        if case .failure(let e) = started! {
            logger.critical("cannot record this run's start in the journal: \(e)")
            throw ExitCode(VigildExit.stateDirUnusable)
        }
        let state = journal.state
        let interrupted = state.interruptedSessions
        let turns = interrupted.reduce(0) { $0 + (state.sessions[$1]?.interruptedTurns.count ?? 0) }
        if interrupted.isEmpty {
            logger.notice("recovered \(state.sessions.count) session(s); none interrupted")
        } else {
            let shown = interrupted.prefix(20).joined(separator: ", ")
            logger.warning("recovered \(state.sessions.count) session(s); \(interrupted.count) interrupted with \(turns) turn(s) cut off: \(shown)\(interrupted.count > 20 ? ", …" : "")")
        }
        return journal
    }
}
