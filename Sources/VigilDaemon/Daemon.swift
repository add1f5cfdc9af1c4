// The entry point: Vigil's order-critical start and stop wiring, once, for
// any daemon. Each step depends on the one before it (docs/embedding.md):
//  1. stop signals blocked, before any thread exists, so only the signalfd
//     ever sees them;
//  2. the state directory (0700, no symlink) and its lock: one instance;
//  3. the previous run classified from its record, then `running` durable —
//     only under the lock, so two instances never overwrite each other;
//  4. the budget (the unit's TimeoutStopSec under systemd), the reactor;
//  5. the application built and started; then the stop sequence, SIGCHLD
//     reaping, READY=1 (only now: recovery done, descriptors registered),
//     the watchdog from the loop's own timer, STATUS refreshes;
//  6. the loop, until the stop sequence has made `stopped` durable.
// At a stop signal (in the handler): `stopping` durable → stopAdmitting() →
// STOPPING=1 → drain task with the budget timer → `stopped` → abandon().
import Glibc
import Logging
import VigilDurable
import VigilLifecycle
import VigilReactor
import VigilSystemd

/// Runs a daemon with Vigil's stop guarantees: a durable `stopping` record
/// before any drain work, a drain that ends within the supervisor's budget,
/// an exact verdict on the previous run, and systemd's notify protocol.
///
/// A complete `main.swift` is in docs/embedding.md. In short:
///
/// ```swift
/// let config = DaemonConfiguration(name: "worker", stateDirectory: "/var/lib/worker", logger: logger)
/// exit(Daemon.run(config) { context in Worker(context) })
/// ```
public enum Daemon {
    /// Blocks the stop signals (TERM, INT, QUIT, HUP, USR1/2, CHLD, PWR) and
    /// every other signal that would kill the process by default (ALRM,
    /// VTALRM, PROF, IO, XCPU, XFSZ, SYS, STKFLT, the real-time ones), and
    /// ignores SIGPIPE. ``run(_:makeService:)`` calls it first; call it
    /// yourself as the first statement of `main` when anything before `run`
    /// could start a thread (threads inherit the mask).
    public static func blockSignals() {
        SignalSource.blockDaemonSignals()
        StraySignals.block()
    }

    /// Runs the daemon to the end and returns the exit code to use
    /// (``DaemonExit``). Call it from `main`, on the main thread, before
    /// starting any thread of your own.
    /// - Parameters:
    ///   - configuration: name, state directory, stop budget, logger.
    ///   - makeService: builds the application once the state directory is
    ///     locked, the previous run classified and the reactor created. It
    ///     runs on the loop's thread; throwing ``DaemonFailure`` chooses the
    ///     exit code, any other error exits 1.
    public static func run<Service: DaemonService>(
        _ configuration: DaemonConfiguration,
        makeService: (DaemonContext) throws -> Service
    ) -> Int32 {
        blockSignals()
        let logger = configuration.logger
        let name = configuration.name
        if let threads = processThreadCount(), threads > 1 {
            logger.warning("\(threads) threads existed before the stop signals were blocked: block them first thing in main (SignalSource.blockDaemonSignals()), or a stop signal may kill the process without a record")
        }
        guard isValidName(name) else {
            logger.critical("invalid daemon name '\(name)': letters, digits, '-', '_' and '.' only")
            return DaemonExit.usage
        }

        // 2. The state directory and the lock.
        let directory = configuration.stateDirectory
        let stateFS: PosixStateFileSystem
        do {
            stateFS = try PosixStateFileSystem(path: directory)
            // Owned by us, writable by nobody else: another user could
            // otherwise replace the record or take the lock.
            try stateFS.checkPrivate()
            try stateFS.checkWritable()
        } catch {
            logger.critical("state directory \(directory) is unusable: \(error)")
            return DaemonExit.stateDirectoryUnusable
        }
        let lock: StateDirectoryLock
        do { lock = try StateDirectoryLock.acquire(in: stateFS, holderFile: lockFileName(name)) } catch {
            switch error {
            case .held(let pid?):
                logger.critical("another \(name) (pid \(pid)) holds the state directory lock (\(directory)); refusing to start")
                return DaemonExit.locked
            case .held(nil):
                logger.critical("\(error) (\(directory)); refusing to start")
                return DaemonExit.locked
            case .system:
                logger.critical("\(error) (\(directory)); refusing to start")
                return DaemonExit.stateDirectoryUnusable
            }
        }
        // Held until this function returns: the kernel drops it at exit.
        defer { withExtendedLifetime(lock) {} }
        // After the lock, so a running instance is reported as such (75):
        // a FIFO or device in place of a state file would block or fail
        // every later step. Refused by name before anything opens it.
        do { try refuseNonRegularFiles(in: stateFS, named: { isLibraryStateFile($0, daemon: name) }) } catch {
            logger.critical("state directory \(directory) is unusable: \(error)")
            return DaemonExit.stateDirectoryUnusable
        }

        // 3. The verdict on the previous run, then `running`.
        let store = ShutdownRecordStore(fs: stateFS)
        // The run that ended joins the history before its record is
        // overwritten (a crash in between appends it again: replaced, not
        // doubled). Never stops a start.
        recordHistory(PreviousRun.classify(store.read(), currentBootID: currentBootID()), stateFS, logger)
        let previous: PreviousRun
        do {
            let running = ShutdownRecord(running: getpid(), bootID: currentBootID(), startedAtNs: wallClockNanoseconds(), version: configuration.version)
            previous = try store.takeOver(running: running, currentBootID: running.bootID)
        } catch {
            logger.critical("cannot make the shutdown record durable in \(directory): \(error)")
            return DaemonExit.stateDirectoryUnusable
        }
        let runFields: Logger.Metadata = ["previous_run": "\(previous.classification.rawValue)", "previous_boot": "\(previous.previousBoot)"]
        if previous.isUnclean { logger.warning("\(previous.summary)", metadata: runFields) } else { logger.notice("\(previous.summary)", metadata: runFields) }

        // 4. Budget and loop.
        let notifier = ServiceNotifier()
        let unit = configuration.workUnitName
        let budget = resolveBudget(configuration, notifier)
        let reactor: Reactor
        do { reactor = try Reactor(options: configuration.reactorOptions, logger: logger) } catch {
            logger.critical("cannot create the event loop: \(error)")
            return DaemonExit.osError
        }
        defer { reactor.close() }

        // Connections a previous instance handed over (systemd's fd store),
        // validated before any service code runs.
        let inherited = Handover.take(daemonName: name, logger: logger)

        // 5. The application.
        let context = DaemonContext(name: name, reactor: reactor, previousRun: previous, stateDirectory: stateFS,
                                    budget: budget, logger: logger, notifier: notifier)
        context.store = store
        context.handedOverListeners = inherited.listeners
        let service: Service
        do {
            // Orphans re-parented to us (PID 1 in a container, a subreaper)
            // are reaped; children watched through pidfds go to their owners.
            // Registered before the service starts, so it may replace it.
            try reactor.onSignal(SIGCHLD) { _ in reactor.reapChildren() }
            service = try makeService(context)
            try service.start(context)
            if let handing = service as? any HandoverService {
                handing.adopt(inherited.handover)
            } else {
                for c in inherited.handover.connections { close(c.fd) }
                if !inherited.handover.connections.isEmpty {
                    logger.warning("handover: \(inherited.handover.connections.count) connection(s) passed, but \(name) does not adopt connections: closed")
                }
            }
            for l in context.handedOverListeners {
                close(l.fd)
                logger.warning("handover: a listener of the previous instance was not taken (state \(String(decoding: l.state, as: UTF8.self))): closed")
            }
            context.handedOverListeners = []
            // Adopted (or refused): out of the store, so a crash of this
            // instance does not hand them, stale, to the next one.
            if inherited.passedAny { Handover.removeStored() }
        } catch let failure as DaemonFailure {
            logger.critical("\(failure.message)")
            return failure.exitCode
        } catch {
            logger.critical("\(name) could not start: \(error)")
            return DaemonExit.fatal
        }

        let stop = StopSequence(reactor: reactor, store: store, budget: budget, logger: logger)
        stop.inFlight = { service.workInFlight }
        var extender: TimeoutExtender?
        var drainStatus: TimerHandle?
        var handover: RestartIntent?
        stop.onStopping.append { info in
            if let observe = configuration.onStoppingRecorded {
                observe(StoppingRecordWrite(signal: info, visibleNs: store.lastWriteVisibleNs, durableNs: store.lastWriteDurableNs,
                                            durable: stop.recordsDurable))
            }
            // Is this a restart the fd store survives? Asked before
            // stopAdmitting, so the service keeps (unwatched) what the next
            // instance needs; nothing else runs on the loop meanwhile, so
            // nothing is admitted after the record. FDSTORE=1 only ever
            // follows a durable `stopping` record.
            if let handing = service as? any HandoverService, info.signal == SIGTERM, notifier.isEnabled, stop.recordsDurable {
                handover = decideHandover(logger)
                if handover != nil { handing.prepareHandover() }
            }
            // Nothing may be admitted after the record that counted the
            // work in flight.
            service.stopAdmitting(info)
            // STOPPING=1 only now: the `stopping` record is durable (or the
            // log and STATUS say it is not).
            let warning = stop.recordsDurable ? "" : " (the stopping record could NOT be made durable)"
            notifier.stopping(status: "draining: \(service.workInFlight) \(unit) in flight, \(budget.drainBudget.milliseconds) ms left\(warning)")
            if notifier.isEnabled && configuration.stopExtend > .zero {
                extender = TimeoutExtender(reactor: reactor, notifier: notifier,
                                           untilNs: monotonicNanoseconds() + budget.stopTimeout.nanosecondsValue)
                extender?.start()
            }
            if notifier.isEnabled {
                let deadline = monotonicNanoseconds() + budget.drainBudget.nanosecondsValue
                drainStatus = reactor.scheduleRepeating(every: .seconds(1)) {
                    let now = monotonicNanoseconds()
                    let left = now >= deadline ? 0 : (deadline - now) / 1_000_000
                    notifier.status("draining: \(service.workInFlight) \(unit) left, \(left) ms left")
                }
            }
        }
        stop.drain = { ctx in
            await service.drain(DrainDeadline(monotonicNanoseconds: ctx.deadlineNs, signal: ctx.signal))
        }
        // Budget spent: every unit is decided before `abandoned` is counted.
        stop.settle = { deadlineNs in
            await service.settle(DrainDeadline(monotonicNanoseconds: deadlineNs, signal: stop.context?.signal ?? SignalInfo(signal: SIGTERM, senderPID: 0, senderUID: 0, code: 0, value: 0, receivedAtNs: 0)))
        }
        stop.onStopped.append { outcome, abandoned in
            if let t = drainStatus { reactor.cancelTimer(t) }
            extender?.stop()
            if outcome == .cutShort { service.abandon() }
            if let intent = handover, let handing = service as? any HandoverService {
                let connections = handing.handOver()
                let listeners = handing.handOverListeners()
                do {
                    try Handover.store(connections, listeners: listeners, daemonName: name, storeMax: intent.storeMax)
                    logger.notice("handover: \(connections.count) connection(s) stored in the fd store of \(intent.unit) for the next instance")
                    // The detail goes into the record only now that the store has them.
                    do { try store.markHandedOver(connections: connections.count) } catch {
                        logger.error("the stopped record does not say the connections were handed over (\(error))")
                    }
                    notifier.status("stopped: \(outcome.rawValue), \(abandoned) \(unit) abandoned, \(connections.count) connection(s) handed over")
                    return
                } catch {
                    logger.error("handover failed (\(error)): the clients are told goodbye")
                    handing.handoverFailed()
                }
            }
            notifier.status("stopped: \(outcome.rawValue), \(abandoned) \(unit) abandoned")
        }
        // A supervised program's own end (DaemonContext+RunEnd.swift).
        var runEndExitCode: Int32?
        context.runEnder = { exit, openWork, exitCode in
            guard stop.endWithoutStop() else { return false }
            runEndExitCode = endRunWithoutStop(store, exit, openWork, exitCode, logger, notifier, reactor)
            return true
        }
        do {
            try stop.install()
            try StraySignals.install(on: reactor, logger: logger, name: name) { stop.handle($0) }
        } catch {
            logger.critical("cannot set up the signalfd: \(error)")
            return DaemonExit.osError
        }

        logger.notice("\(name) ready (pid \(getpid()), state \(directory), stop timeout \(budget.stopTimeout.milliseconds) ms)")
        if !service.sendsReadyItself { notifier.ready(status: service.readyStatus ?? "serving") }
        if notifier.isEnabled { refreshStatus(service, notifier, reactor, stop) }
        // Kept until the loop ends: its timer holds it weakly.
        let watchdog = WatchdogPinger(reactor: reactor, notifier: notifier)
        if let watchdog {
            logger.info("watchdog: pinging every \((watchdog.interval / 2).milliseconds) ms (WatchdogSec=\(watchdog.interval.milliseconds) ms)")
            watchdog.start()
        }
        defer { withExtendedLifetime(watchdog) {} }

        // 6. The loop.
        do { try reactor.run() } catch {
            logger.critical("event loop failed: \(error)")
            return DaemonExit.fatal
        }
        service.finish()
        return runEndExitCode ?? stop.exitCode
    }

    /// The handover rule (docs/systemd.md): asked of the manager at the stop.
    static func decideHandover(_ logger: Logger) -> RestartIntent? {
        switch RestartIntentQuery.ask() {
        case .success(let intent):
            if intent.survivesInStore && intent.storeMax < Handover.storeEntries {
                logger.warning("handover: not this time: FileDescriptorStoreMax=\(intent.storeMax) of \(intent.unit) is below the \(Handover.storeEntries) entries a handover needs; clients are told goodbye")
                return nil
            } else if intent.survivesInStore {
                logger.notice("handover: this stop is a restart the fd store survives (\(intent.explanation)): connections are kept for the next instance")
                return intent
            }
            logger.info("handover: not this time (\(intent.explanation)); clients are told goodbye")
        case .failure(let e):
            logger.info("handover: cannot tell whether this stop is a restart (\(e)); clients are told goodbye")
        }
        return nil
    }

    /// STATUS= kept current while serving: every 5 s, sent only when the
    /// service's line changed. The drain's own lines take over at the signal.
    private static func refreshStatus(_ service: some DaemonService, _ notifier: ServiceNotifier, _ reactor: Reactor, _ stop: StopSequence) {
        var last = service.statusLine
        var handle: TimerHandle?
        handle = reactor.scheduleRepeating(every: .seconds(5)) {
            guard stop.phase == .running else {
                if let h = handle { reactor.cancelTimer(h) }
                return
            }
            let line = service.statusLine
            if let line, line != last { notifier.status(line) }
            last = line
        }
    }

    /// The unit's own TimeoutStopSec when systemd can be asked; else what the
    /// executable configured. Plus the extension window under systemd.
    static func resolveBudget(_ configuration: DaemonConfiguration, _ notifier: ServiceNotifier) -> StopBudget {
        let logger = configuration.logger
        var budget = configuration.stopBudget
        // INVOCATION_ID: started by systemd even without Type=notify.
        let underSystemd = notifier.isEnabled || getenv("INVOCATION_ID") != nil
        if underSystemd && configuration.followServiceManagerTimeout {
            switch StopTimeoutQuery.ask() {
            case .success(let answer):
                if budget.source != .builtInDefault && budget.stopTimeout != answer.timeout {
                    logger.warning("\(budget.source) says \(budget.stopTimeout.milliseconds) ms but \(answer.unit) has TimeoutStopSec=\(answer.timeout.milliseconds) ms: following the unit")
                }
                budget = StopBudget(stopTimeout: answer.timeout, source: .serviceManager)
                logger.notice("stop timeout from \(answer.unit) (\(answer.via))")
            case .failure(let e):
                logger.info("stop timeout not taken from the service manager: \(e)")
            }
        }
        if !underSystemd && budget.source == .builtInDefault, let runtime = ContainerRuntime.detect() {
            // The runtime cannot be asked (ContainerRuntime.swift): say what
            // the default assumes, so a longer or shorter grace period is
            // configured rather than discovered by a SIGKILL.
            let known = runtime.defaultGracePeriod.map { "its default grace period is \($0.milliseconds / 1000) s" } ?? "its grace period is unknown"
            logger.warning("running in \(runtime == .other ? runtime.rawValue : "a \(runtime.rawValue) container"), which does not tell its stop grace period (\(known)): the stop timeout is the built-in \(budget.stopTimeout.milliseconds) ms; configure it to the grace period the container is stopped with")
        }
        if notifier.isEnabled && configuration.stopExtend > .zero {
            budget = StopBudget(stopTimeout: budget.stopTimeout + configuration.stopExtend, source: budget.source)
            logger.notice("the drain may ask systemd for up to \(configuration.stopExtend.milliseconds) ms more (EXTEND_TIMEOUT_USEC)")
        }
        logger.notice("stop timeout \(budget.stopTimeout.milliseconds) ms from \(budget.source); drain budget \(budget.drainBudget.milliseconds) ms")
        return budget
    }

    /// The entry point's own files: the record, the report, the lock, and
    /// any temporary file of an atomic replace.
    static func isLibraryStateFile(_ file: String, daemon name: String) -> Bool {
        file == ShutdownRecordStore.recordName || file == ShutdownRecordStore.reportName || file == RunHistory.fileName
            || file == lockFileName(name) || file.hasSuffix(".tmp")
    }

    /// The file in the state directory naming the lock holder's pid:
    /// `NAME.lock` (vigild: `vigild.lock`, as every vigild before it).
    public static func lockFileName(_ daemonName: String) -> String { "\(daemonName).lock" }

    /// Throws naming the first file `matching` that is not a regular file.
    public static func refuseNonRegularFiles(in fs: PosixStateFileSystem, named matching: (String) -> Bool) throws(SystemCallError) {
        for name in try fs.list() where matching(name) {
            if let kind = fs.nonRegularType(name) {
                throw SystemCallError("state file \(name) is \(kind), not a regular file (remove it)", .invalidArgument)
            }
        }
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" || $0 == "."
        } && name != "." && name != ".."
    }

    /// Threads of this process (/proc/self/status), nil when unreadable.
    static func processThreadCount() -> Int? {
        guard let f = fopen("/proc/self/status", "re") else { return nil }
        defer { fclose(f) }
        var line = [UInt8](repeating: 0, count: 256)
        while line.withUnsafeMutableBufferPointer({ b in
            b.withMemoryRebound(to: CChar.self) { fgets($0.baseAddress, Int32($0.count), f) }
        }) != nil {
            let s = String(decoding: line.prefix(while: { $0 != 0 }), as: UTF8.self)
            if s.hasPrefix("Threads:") {
                return Int(String(s.dropFirst(8).filter { $0.isNumber }))
            }
        }
        return nil
    }
}
