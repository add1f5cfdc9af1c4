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
import VigilSystemd

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
        let runFields: Logger.Metadata = ["previous_run": "\(previous.classification.rawValue)", "previous_boot": "\(previous.previousBoot)"]
        if previous.isUnclean { logger.warning("\(previous.summary)", metadata: runFields) } else { logger.notice("\(previous.summary)", metadata: runFields) }

        let notifier = ServiceNotifier()
        notifier.status("recovering: replaying the turn journal")
        let budget = resolveBudget(notifier)

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
        let recovered = journal.state
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
        // Sockets systemd holds for us (socket activation): served first; our
        // own addresses are bound besides them only when asked for explicitly.
        let passed = SocketActivation.takeListeners()
        for name in passed.ignored { logger.warning("ignoring a passed descriptor that is not a listening stream socket: \(name)") }
        for socket in passed.sockets {
            do {
                try server.adopt(listener: socket.fd, name: "systemd:\(socket.name)")
                logger.notice("listening on systemd:\(socket.name) (fd \(socket.fd), passed by the service manager)")
            } catch {
                logger.critical("cannot serve the socket passed as \(socket.name): \(error)")
                throw ExitCode(VigildExit.listenFailed)
            }
        }
        let ownAddresses = passed.sockets.isEmpty || config.addressesExplicit ? config.addresses : []
        for address in ownAddresses {
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
        // STOPPING=1 only now: the `stopping` record is durable (docs/systemd.md).
        var extender: TimeoutExtender?
        stop.onStopping.append { _ in
            let warning = stop.recordsDurable ? "" : " (the stopping record could NOT be made durable)"
            notifier.stopping(status: "draining: \(gateway.turnsInFlight) turn(s) in flight, \(budget.drainBudget.milliseconds) ms left\(warning)")
            if notifier.isEnabled && config.stopExtend > .zero {
                extender = TimeoutExtender(reactor: reactor, notifier: notifier,
                                           untilNs: monotonicNanoseconds() + budget.stopTimeout.nanosecondsValue)
                extender?.start()
            }
        }
        gateway.drainProgress = { turns, msLeft in notifier.status("draining: \(turns) turn(s) left, \(msLeft) ms left") }
        if measureSignals {
            stop.onStopping.append { info in
                printSignalLatency(info)
                // The record's own stamps: pwrite returned (safe from SIGKILL), fdatasync returned (durable).
                printLatency("signal-visible-ns", info, until: store.lastWriteVisibleNs)
                printLatency("signal-durable-ns", info, until: store.lastWriteDurableNs)
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
        stop.onStopped.append { outcome, abandoned in
            if outcome == .cutShort { gateway.abandon() }
            extender?.stop()
            notifier.status("stopped: \(outcome.rawValue), \(abandoned) turn(s) abandoned")
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
            // Test hook (docs/systemd.md): SIGUSR2 wedges the loop, so the
            // watchdog test can see systemd notice the missing pings.
            if ProcessEnvironment.get("VIGIL_DEBUG_BLOCK_ON_SIGUSR2") == "1" {
                try reactor.onSignal(SIGUSR2) { _ in
                    logger.warning("VIGIL_DEBUG_BLOCK_ON_SIGUSR2: blocking the event loop")
                    while true { sleep(3600) }
                }
            }
        } catch {
            logger.critical("cannot set up the signalfd: \(error)")
            throw ExitCode(VigildExit.osError)
        }
        logger.notice("vigild ready (pid \(getpid()), state \(stateDirectory), disk I/O \(reactor.disk.kind.rawValue), agent \(agent.name))")
        // READY=1 only now: listeners bound and recovery done.
        notifier.ready(status: "serving: \(recovered.sessions.count) session(s), \(recovered.interruptedSessionCount) interrupted at the last stop")
        if notifier.isEnabled { refreshServingStatus(notifier, gateway, reactor, last: "") }
        let watchdog = WatchdogPinger(reactor: reactor, notifier: notifier)
        if let watchdog {
            logger.info("watchdog: pinging every \((watchdog.interval / 2).milliseconds) ms (WatchdogSec=\(watchdog.interval.milliseconds) ms)")
            watchdog.start()
        }

        do { try reactor.run() } catch {
            logger.critical("event loop failed: \(error)")
            throw ExitCode(VigildExit.fatal)
        }
        server.closeAll()
        reactor.close()
        if stop.exitCode != 0 { throw ExitCode(stop.exitCode) }
    }

    /// `STATUS=serving: …` kept current while serving (every 5 s, sent only
    /// when it changed); the drain's own STATUS lines take over at SIGTERM.
    private func refreshServingStatus(_ notifier: ServiceNotifier, _ gateway: SessionGateway, _ reactor: Reactor, last: String) {
        _ = reactor.schedule(after: .seconds(5)) {
            guard !gateway.isDraining else { return }
            let text = "serving: \(gateway.journal.state.sessions.count) session(s), \(gateway.connectionCount) connection(s), \(gateway.turnsInFlight) turn(s) in flight"
            if text != last { notifier.status(text) }
            refreshServingStatus(notifier, gateway, reactor, last: text)
        }
    }

    /// The unit's own TimeoutStopSec when systemd can be asked; else the
    /// flag, the environment, or the default. Plus --stop-extend under systemd.
    private func resolveBudget(_ notifier: ServiceNotifier) -> StopBudget {
        var budget = config.budget
        let underSystemd = notifier.isEnabled || ProcessEnvironment.get("INVOCATION_ID") != nil
        if underSystemd {
            switch StopTimeoutQuery.ask() {
            case .success(let answer):
                if budget.source != .builtInDefault && budget.stopTimeout != answer.timeout {
                    logger.warning("\(budget.source.rawValue) says \(budget.stopTimeout.milliseconds) ms but \(answer.unit) has TimeoutStopSec=\(answer.timeout.milliseconds) ms: following the unit")
                }
                budget = StopBudget(stopTimeout: answer.timeout, source: .serviceManager)
                logger.notice("stop timeout from \(answer.unit) (\(answer.via))")
            case .failure(let e):
                logger.info("stop timeout not taken from the service manager: \(e)")
            }
        }
        if notifier.isEnabled && config.stopExtend > .zero {
            budget = StopBudget(stopTimeout: budget.stopTimeout + config.stopExtend, source: budget.source)
            logger.notice("the drain may ask systemd for up to \(config.stopExtend.milliseconds) ms more (EXTEND_TIMEOUT_USEC)")
        }
        logger.notice("stop timeout \(budget.stopTimeout.milliseconds) ms from \(budget.source.rawValue); drain budget \(budget.drainBudget.milliseconds) ms")
        return budget
    }

    /// Replays the journal and makes this run's start durable in it.
    private func openJournal(_ fs: PosixStateFileSystem, _ reactor: Reactor) throws -> TurnJournal {
        let journal: TurnJournal
        do { journal = try TurnJournal(io: DiskJournalIO(fs: fs, disk: reactor.disk), reactor: reactor, logger: logger) } catch {
            logger.critical("cannot open the turn journal in \(config.stateDirectory): \(error)")
            throw ExitCode(VigildExit.stateDirUnusable)
        }
        let report = journal.report
        if report.damaged.isEmpty && report.snapshotProblem == nil { logger.notice("\(report.summary)") } else { logger.error("\(report.summary)") }
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
