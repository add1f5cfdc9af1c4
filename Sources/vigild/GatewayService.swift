// vigild's application on the Daemon entry point: the turn journal, the
// session gateway, its listeners and the control socket. The entry point
// owns the order (lock, record, budget, signals, READY, the stop); this file
// only says what vigild serves and how it drains.
import ArgumentParser
import Glibc
import Logging
import VigilDaemon
import VigilDurable
import VigilGateway
import VigilReactor
import VigilSystemd

final class GatewayService: DaemonService {
    let config: VigildConfiguration
    let context: DaemonContext
    let logger: Logger
    let reactor: Reactor
    let journal: TurnJournal
    let gateway: SessionGateway
    let server: LineServer
    let agentName: String
    /// Listeners kept open through the drain (the control socket:
    /// `vigilctl status` shows the drain).
    private var keep: Set<String> = []
    /// Benchmark hook (docs/benchmarks.md): a sender stamps CLOCK_MONOTONIC
    /// into the sigqueue payload; vigild prints the delay to the handler of
    /// SIGUSR1 (stop signals: VigildDaemon's onStoppingRecorded).
    private let measureSignals = ProcessEnvironment.get("VIGIL_DEBUG_SIGNAL_LATENCY") == "1"
    /// Test hook (docs/shutdown.md): VIGIL_DEBUG_DRAIN_MS=N makes the drain
    /// hold one unit of work for N ms before the turns' drain, so the budget
    /// paths can be exercised without turns.
    private let debugDrainMs = ProcessEnvironment.get("VIGIL_DEBUG_DRAIN_MS").flatMap { Int($0) }
    private var debugWork: Int

    /// Replays the journal (this run's start durable in it), then binds.
    init(config: VigildConfiguration, context: DaemonContext) throws {
        self.config = config
        self.context = context
        logger = context.logger
        reactor = context.reactor
        debugWork = debugDrainMs == nil ? 0 : 1
        context.status("recovering: replaying the turn journal")
        do { try Daemon.refuseNonRegularFiles(in: context.stateDirectory, named: TurnJournal.isJournalFile) } catch {
            throw DaemonFailure(exitCode: VigildExit.stateDirUnusable, "state directory \(config.stateDirectory) is unusable: \(error)")
        }
        journal = try Self.openJournal(context, stateDirectory: config.stateDirectory)
        let agent: any Agent
        switch config.agent {
        case .echo: agent = EchoAgent(reactor: reactor)
        case .exec: agent = ExecAgent(reactor: reactor, command: config.execCommand ?? "", timeLimit: config.execTimeLimit, logger: logger)
        }
        agentName = agent.name
        var options = SessionGateway.Options()
        options.maxConnections = config.maxConnections
        options.idleTimeout = config.idleTimeout
        gateway = SessionGateway(reactor: reactor, journal: journal, agent: agent, logger: logger, options: options)
        gateway.statusFields = [("version", VigildDefaults.version), ("state_dir", config.stateDirectory),
                                ("previous_run", context.previousRun.classification.rawValue), ("disk_io", reactor.disk.kind.rawValue)]
        server = LineServer(reactor: reactor, handler: gateway, logger: logger)
        try bind()
    }

    /// Sockets systemd holds for us (socket activation) are served first;
    /// our own addresses are bound besides them only when asked for explicitly.
    private func bind() throws {
        let passed = SocketActivation.takeListeners()
        for name in passed.ignored { logger.warning("ignoring a passed descriptor that is not a listening stream socket: \(name)") }
        for socket in passed.sockets {
            do {
                try server.adopt(listener: socket.fd, name: "systemd:\(socket.name)")
                logger.notice("listening on systemd:\(socket.name) (fd \(socket.fd), passed by the service manager)")
            } catch {
                throw DaemonFailure(exitCode: VigildExit.listenFailed, "cannot serve the socket passed as \(socket.name): \(error)")
            }
        }
        let ownAddresses = passed.sockets.isEmpty || config.addressesExplicit ? config.addresses : []
        for address in ownAddresses {
            // Kept open through a restart by the previous instance (handover).
            if let fd = context.takeHandedOverListener(matching: Array(address.description.utf8)) {
                var unlinkPath: String?
                if case .unix(let path) = address { unlinkPath = path }
                do {
                    try server.adopt(listener: fd, name: address.description, unlinkPath: unlinkPath)
                    logger.notice("listening on \(address) (kept open through the restart)")
                    continue
                } catch {
                    close(fd)
                    logger.warning("cannot serve the listener kept for \(address): \(error); binding it again")
                }
            }
            do {
                let bound = try server.listen(on: address)
                logger.notice("listening on \(bound)")
            } catch {
                throw DaemonFailure(exitCode: VigildExit.listenFailed, "cannot listen on \(address): \(error)")
            }
        }
        if let path = config.controlSocket {
            do {
                let bound = try server.listen(on: .unix(path: path))
                keep.insert(bound.description)
                logger.info("control requests on \(bound) (own user only)")
            } catch {
                throw DaemonFailure(exitCode: VigildExit.listenFailed, "cannot listen on the control socket \(path): \(error)")
            }
        }
    }

    func start(_ context: DaemonContext) throws {
        do {
            try reactor.onSignal(SIGHUP) { [logger] _ in logger.info("SIGHUP ignored (no configuration to reload)") }
            if measureSignals {
                try reactor.onSignal(SIGUSR1) { printSignalLatency($0) }
            }
            // Test hook (docs/systemd.md): SIGUSR2 wedges the loop, so the
            // watchdog test can see systemd notice the missing pings.
            if ProcessEnvironment.get("VIGIL_DEBUG_BLOCK_ON_SIGUSR2") == "1" {
                try reactor.onSignal(SIGUSR2) { [logger] _ in
                    logger.warning("VIGIL_DEBUG_BLOCK_ON_SIGUSR2: blocking the event loop")
                    while true { sleep(3600) }
                }
            }
        } catch {
            throw DaemonFailure(exitCode: VigildExit.osError, "cannot set up the signalfd: \(error)")
        }
        logger.info("serving with disk I/O \(reactor.disk.kind.rawValue), agent \(agentName)")
    }

    var workInFlight: Int { gateway.turnsInFlight + debugWork }

    func stopAdmitting(_ signal: SignalInfo) {
        // A handover keeps our own listeners open, unwatched: clients that
        // connect meanwhile wait in the backlog for the next instance.
        if gateway.handingOver { server.pauseListeners(keeping: keep) } else { server.closeListeners(keeping: keep) }
        gateway.stopAdmitting()
    }

    func drain(_ deadline: DrainDeadline) async {
        if let ms = debugDrainMs {
            do { try await reactor.sleep(for: .milliseconds(ms)) } catch { return }
            debugWork = 0
        }
        let ahead = min(.seconds(2), context.budget.drainBudget / 4)
        await gateway.drain(deadlineNs: deadline.monotonicNanoseconds, terminateAhead: ahead)
    }

    /// Every turn decided: replied to (its completion durable), or left open
    /// and so interrupted at the next start.
    func settle(_ deadline: DrainDeadline) async -> Bool {
        await gateway.cutShort(deadlineNs: deadline.monotonicNanoseconds)
    }

    func abandon() { gateway.abandon() }

    var readyStatus: String? {
        let state = journal.state
        return "serving: \(state.sessions.count) session(s), \(state.interruptedSessionCount) interrupted at the last stop"
    }

    var statusLine: String? {
        "serving: \(journal.state.sessions.count) session(s), \(gateway.connectionCount) connection(s), \(gateway.turnsInFlight) turn(s) in flight"
    }

    func finish() { server.closeAll() }

    /// Replays the journal and makes this run's start durable in it.
    private static func openJournal(_ context: DaemonContext, stateDirectory: String) throws -> TurnJournal {
        let logger = context.logger
        let reactor = context.reactor
        let journal: TurnJournal
        do { journal = try TurnJournal(io: DiskJournalIO(fs: context.stateDirectory, disk: reactor.disk), reactor: reactor, logger: logger) } catch {
            throw DaemonFailure(exitCode: VigildExit.stateDirUnusable, "cannot open the turn journal in \(stateDirectory): \(error)")
        }
        let report = journal.report
        let check = report.check
        if !check.isDamaged && report.damaged.isEmpty { logger.notice("\(report.summary)") } else { logger.error("\(report.summary)") }
        if check.isDamaged {
            let missing = check.missing.isEmpty ? "" : "; missing: \(check.missing.joined(separator: ", "))"
            logger.error("the turn journal lost acknowledged data: \(check.recordsLost) record(s)\(missing); sessions may come back incomplete or as new — every `opened` of this run says journal_damaged, and `vigilctl last-shutdown --json` shows the journal object")
        }
        context.journalReplayed(check)
        var started: Result<UInt64, JournalError>?
        journal.append(.runStarted(pid: getpid(), bootID: currentBootID())) { started = $0 }
        while started == nil {
            do { try reactor.runOnce(timeoutMs: 100) } catch {
                throw DaemonFailure(exitCode: VigildExit.osError, "event loop failed during start-up: \(error)")
            }
        }
        if case .failure(let e) = started! {
            throw DaemonFailure(exitCode: VigildExit.stateDirUnusable, "cannot record this run's start in the journal: \(e)")
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

/// Restarts nobody notices (docs/systemd.md, "Handover"): under systemd with
/// a fd store, a restart hands the client connections to the next instance.
extension GatewayService: HandoverService {
    func adopt(_ handover: InheritedHandover) {
        var refused = handover.refused.count
        for c in handover.connections where gateway.adoptConnection(fd: c.fd, state: c.state, server: server) != nil { refused += 1 }
        if !handover.connections.isEmpty || refused > 0 {
            logger.notice("handover: resumed \(handover.connections.count - (refused - handover.refused.count)) connection(s) of the previous instance, refused \(refused)")
        }
    }

    func prepareHandover() { gateway.prepareHandover(server: server) }

    func handOver() -> [HandedOverDescriptor] {
        gateway.handOverConnections(server: server).map { HandedOverDescriptor(fd: $0.fd, state: $0.state) }
    }

    /// Our own listeners (a socket unit's are systemd's, and come back anyway).
    func handOverListeners() -> [HandedOverDescriptor] {
        server.pausedListeners.filter { !$0.address.hasPrefix("systemd:") }.map { HandedOverDescriptor(fd: $0.fd, state: Array($0.address.utf8)) }
    }

    func handoverFailed() { gateway.handoverFailed() }
}
