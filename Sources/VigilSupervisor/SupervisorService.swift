// `vigil run`'s application on the Daemon entry point: one program, run as
// the leader of its own process group, given Vigil's stop guarantees
// (docs/run.md). The entry point does the ordering (lock, verdict,
// `running`, the `stopping` record in the signal handler, STOPPING=1, the
// budget); this service spawns the program, forwards signals, serves the
// ledger and, at a stop, asks the group to stop and waits for all of it.
//
// Work in flight (the `stopping` record's `in_flight`, a cut-short
// `abandoned`) = the ledger's open units, plus 1 while the program runs:
// a stop is clean only when the whole group ended by itself and no unit
// was left open.
import CVigil
import Glibc
import Logging
import VigilDaemon
import VigilDurable
import VigilReactor

/// Exit codes of `vigil run` besides the entry point's (``DaemonExit``).
public enum SupervisorExit {
    /// The program was not ready within --ready-timeout (EX_UNAVAILABLE).
    public static let notReady: Int32 = 69
    /// The program could not be started: not found (as a shell says).
    public static let notFound: Int32 = 127
    /// The program could not be started: not executable, or another error.
    public static let cannotExecute: Int32 = 126

    /// The program's status as an exit code: its own, or 128+N after signal N.
    public static func code(for exit: ChildExit) -> Int32 {
        switch exit {
        case .exited(let c): c
        case .signaled(let s): 128 + s
        }
    }
}

/// Loop-confined, like the reactor.
public final class SupervisorService: DaemonService, @unchecked Sendable {
    public let configuration: SupervisorConfiguration
    let context: DaemonContext
    let reactor: Reactor
    let logger: Logger
    public let ledger: Ledger
    let ledgerServer: LedgerServer
    private let readiness: ReadinessWatch
    private var readyTimer: TimerHandle?
    private var readyFailed = false
    private var child: ChildHandle?
    /// The program's pid, also its process group's id.
    public private(set) var programPID: pid_t = 0
    public private(set) var programExit: ChildExit?
    private var stopRequested = false
    private var killedGroup = false

    /// Opens the ledger (replaying its journal; this run's start durable in it).
    public init(_ context: DaemonContext, configuration: SupervisorConfiguration) throws(DaemonFailure) {
        precondition(!configuration.command.isEmpty, "the command must name a program")
        self.configuration = configuration
        self.context = context
        reactor = context.reactor
        logger = context.logger
        ledger = try Ledger(context)
        ledgerServer = LedgerServer(ledger: ledger, reactor: context.reactor, logger: context.logger)
        readiness = ReadinessWatch(context, readiness: configuration.readiness)
    }

    /// The program's share of the budget: the drain's, minus the stop delay.
    public var programBudget: Duration {
        let b = context.budget.drainBudget - configuration.stopDelay
        return b > .zero ? b : .zero
    }

    // MARK: DaemonService

    public func start(_ context: DaemonContext) throws {
        let directory = context.stateDirectory.path.hasSuffix("/") ? context.stateDirectory.path : context.stateDirectory.path + "/"
        // The budget is final only now (a unit's TimeoutStopSec wins): a
        // delay that leaves the program no time would make every stop a
        // SIGKILL with no stop signal before it.
        if configuration.stopDelay > .zero && configuration.stopDelay >= context.budget.drainBudget {
            throw DaemonFailure(exitCode: DaemonExit.usage, "--stop-delay (\(configuration.stopDelay.milliseconds) ms) must be shorter than the drain budget (\(context.budget.drainBudget.milliseconds) ms of a \(context.budget.stopTimeout.milliseconds) ms stop timeout from \(context.budget.source)): the program would get no time to stop")
        }
        // Orphaned descendants come back to us (as they do to a PID 1), so
        // they are reaped and the group's end can be waited for.
        if getpid() != 1 && cvigil_set_child_subreaper() != 0 {
            logger.warning("cannot become a child subreaper: orphans of the program go to init")
        }
        let ledgerPath = directory + ProgramEnvironment.ledgerSocket
        do { try ledgerServer.listen(at: ledgerPath) } catch {
            throw DaemonFailure(exitCode: DaemonExit.stateDirectoryUnusable, "cannot listen on the ledger socket \(ledgerPath): \(error) (the state directory's path may be at most \(SupervisorConfiguration.maxStateDirectoryBytes) bytes)")
        }
        let interrupted = ledger.interrupted
        if !interrupted.isEmpty {
            let units = interrupted.reduce(0) { $0 + $1.ids.count }
            logger.warning("\(units) unit(s) of work in \(interrupted.count) session(s) were interrupted in earlier runs and are not resolved yet")
        }
        let previousFile = directory + ProgramEnvironment.previousRunFile
        let previousJSON = ProgramEnvironment.previousRunJSON(context.previousRun, interrupted: interrupted, check: ledger.journal.report.check)
        do { try AtomicFile.replace(ProgramEnvironment.previousRunFile, with: Array((previousJSON + "\n").utf8), in: context.stateDirectory) } catch {
            throw DaemonFailure(exitCode: DaemonExit.stateDirectoryUnusable, "cannot write \(previousFile): \(error)")
        }
        var added: [(String, String)] = [
            ("VIGIL_PREVIOUS_RUN", context.previousRun.classification.rawValue),
            ("VIGIL_PREVIOUS_RUN_FILE", previousFile),
            ("VIGIL_STOP_BUDGET_MS", "\(programBudget.milliseconds)"),
            ("VIGIL_LEDGER", ledgerPath),
        ]
        if configuration.readiness == .notify {
            do { added.append(("NOTIFY_SOCKET", try readiness.bindNotifySocket(at: directory + ProgramEnvironment.notifySocket))) } catch {
                throw DaemonFailure(exitCode: DaemonExit.stateDirectoryUnusable, "cannot create the program's notify socket: \(error)")
            }
        }
        // Forwarded as they are, to the program alone (a shell passes them on itself).
        for s in [SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH] {
            try reactor.onSignal(s) { [unowned self] info in
                logger.info("forwarding \(info.name) from pid \(info.senderPID) to the program (pid \(programPID))")
                try? child?.send(s)
            }
        }

        // A `tcp:` address that does not resolve fails the start before
        // anything runs (probing starts now; nothing listens there yet).
        if case .tcp = configuration.readiness {
            do { try readiness.startProbing() } catch {
                readiness.close()
                throw DaemonFailure(exitCode: DaemonExit.usage, "--ready \(configuration.readiness): \(error)")
            }
        }

        let pid: pid_t
        do {
            // PR_SET_PDEATHSIG(SIGKILL): a vigil that dies (SIGKILL, crash)
            // takes the program with it; the next start finds its open work.
            pid = try ChildSpawner.spawn(configuration.command, deathSignal: SIGKILL, environment: ProgramEnvironment.build(adding: added))
        } catch {
            readiness.close()
            let code = error.errno == .noSuchFileOrDirectory ? SupervisorExit.notFound : SupervisorExit.cannotExecute
            throw DaemonFailure(exitCode: code, "cannot start \(configuration.command[0]): \(error)")
        }
        programPID = pid
        do { child = try reactor.watchChild(pid: pid) { [unowned self] exit in programEnded(exit) } } catch {
            // Its whole group, not only the leader: nothing may outlive a failed start.
            _ = kill(-pid, SIGKILL)
            readiness.close()
            throw error
        }
        logger.notice("started \(configuration.command.joined(separator: " ")) as pid \(pid) (its own process group); program budget \(programBudget.milliseconds) ms, stop signal \(SignalSource.name(of: configuration.stopSignal)) after \(configuration.stopDelay.milliseconds) ms; ledger \(ledgerPath)")

        if configuration.readiness != .immediate, let limit = configuration.readyTimeout {
            readiness.onReady = { [unowned self] in
                if let t = readyTimer { reactor.cancelTimer(t); readyTimer = nil }
            }
            readyTimer = reactor.schedule(after: limit) { [unowned self] in notReadyInTime(limit) }
        }
    }

    public var sendsReadyItself: Bool { configuration.readiness != .immediate }

    /// The program counts as one unit until it ends by itself: killed by
    /// vigil's SIGKILL, it stays counted (abandoned).
    public var workInFlight: Int { ledger.openCount + (programExit == nil || killedGroup ? 1 : 0) }

    public var statusLine: String? {
        "running: pid \(programPID), \(ledger.openCount) unit(s) of work open"
    }

    public var readyStatus: String? { "running: pid \(programPID)" }

    public func stopAdmitting(_ signal: SignalInfo) {
        // The ledger keeps serving: the program ends its work while it stops.
        stopRequested = true
        if let t = readyTimer { reactor.cancelTimer(t); readyTimer = nil }
        readiness.close()
    }

    public func drain(_ deadline: DrainDeadline) async {
        if configuration.stopDelay > .zero && programExit == nil {
            context.status("stopping: \(SignalSource.name(of: configuration.stopSignal)) to the program in \(configuration.stopDelay.milliseconds) ms")
            // Cut short if the program ends meanwhile: nothing is left to signal.
            let until = monotonicNanoseconds() + configuration.stopDelay.nanosecondsValue
            while programExit == nil {
                let now = monotonicNanoseconds()
                guard now < until else { break }
                do { try await reactor.sleep(for: .nanoseconds(Int64(min(until - now, 20_000_000)))) } catch { return }
            }
        }
        signalGroup(configuration.stopSignal)
        context.status("stopping: waiting for the program's process group, \(ledger.openCount) unit(s) open")
        guard await waitForGroup(untilNs: nil) else { return }
        await ledger.journal.flush()
        ledgerServer.closeAll()
    }

    /// The budget is spent (or a second stop signal, or SIGQUIT): SIGKILL
    /// to the whole group, then the ledger's last batch decided, so the
    /// count of open units is exact when the `stopped` record takes it.
    public func settle(_ deadline: DrainDeadline) async -> Bool {
        if programExit == nil || !groupGone { signalGroup(SIGKILL) }
        _ = await waitForGroup(untilNs: deadline.monotonicNanoseconds)
        return await ledger.journal.closeCuttingShort(waitingUntil: deadline.monotonicNanoseconds)
    }

    public func abandon() {
        if !groupGone { _ = kill(-programPID, SIGKILL) }
        ledgerServer.closeAll()
    }

    public func finish() {
        readiness.close()
        ledgerServer.closeAll()
    }

    // MARK: The program

    private func programEnded(_ exit: ChildExit) {
        programExit = exit
        context.programExited(exit)
        logger.notice("program (pid \(programPID)) \(exit)\(stopRequested ? "" : " without a stop request")")
        // A requested stop waits for the group in the drain.
        if stopRequested { return }
        if let t = readyTimer { reactor.cancelTimer(t); readyTimer = nil }
        readiness.close()
        // The rest of its group does not outlive it (a container's PID 1
        // would take it down anyway; a unit's cgroup would be killed).
        if !groupGone {
            logger.notice("the program's process group outlives it: SIGKILL to the rest")
            signalGroup(SIGKILL)
        }
        _ = reactor.spawn { [unowned self] in
            _ = await waitForGroup(untilNs: monotonicNanoseconds() + 1_000_000_000)
            await ledger.journal.flush()
            let code = readyFailed ? SupervisorExit.notReady : SupervisorExit.code(for: exit)
            context.endRun(programExit: exit, openWork: ledger.openCount, exitCode: code)
        }
    }

    private func notReadyInTime(_ limit: Duration) {
        readyTimer = nil
        guard !readiness.isReady, programExit == nil, !stopRequested else { return }
        readyFailed = true
        logger.critical("the program did not become ready (\(configuration.readiness)) within --ready-timeout \(limit.milliseconds) ms: stopping it")
        context.status("not ready within \(limit.milliseconds) ms: stopping the program")
        readiness.close()
        signalGroup(configuration.stopSignal)
        _ = reactor.schedule(after: programBudget) { [unowned self] in
            if programExit == nil || !groupGone { signalGroup(SIGKILL) }
        }
    }

    /// Signals the program's whole process group (its pipelines and
    /// helpers too).
    private func signalGroup(_ signal: Int32) {
        guard programPID > 0 else { return }
        if kill(-programPID, signal) == 0 {
            if signal == SIGKILL && (stopRequested || programExit == nil) { killedGroup = true }
        } else if errno != ESRCH {
            logger.error("kill(-\(programPID), \(SignalSource.name(of: signal))) failed: \(String(cString: strerror(errno)))")
        }
    }

    /// No process is left in the program's group (zombies of ours are
    /// reaped by the entry point's SIGCHLD handler as they appear).
    private var groupGone: Bool { programPID > 0 && kill(-programPID, 0) != 0 && errno == ESRCH }

    /// Waits until the program is reaped and its group is empty; false when
    /// `untilNs` passed first or the wait was cancelled.
    private func waitForGroup(untilNs: UInt64?) async -> Bool {
        while !(programExit != nil && groupGone) {
            if let u = untilNs, monotonicNanoseconds() >= u { return false }
            do { try await reactor.sleep(for: .milliseconds(5)) } catch { return false }
            reactor.reapChildren()
        }
        return true
    }
}
