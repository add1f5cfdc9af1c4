// What the application gets from the entry point once the state directory
// is locked, the previous run classified and the loop built.
import Logging
import VigilDurable
import VigilLifecycle
import VigilReactor
import VigilSystemd

/// Handed to the service's factory and to ``DaemonService/start(_:)``.
/// Loop-confined, like the reactor it carries.
public final class DaemonContext: @unchecked Sendable {
    /// The daemon's name (``DaemonConfiguration/name``).
    public let name: String
    /// The single-threaded event loop: register descriptors, timers and
    /// signal handlers (other than the stop signals) here.
    public let reactor: Reactor
    /// What the previous run's shutdown record says happened to it, decided
    /// from the record alone. Log it, branch on it, hand it to your users.
    public let previousRun: PreviousRun
    /// The locked state directory, for the application's own durable files.
    public let stateDirectory: PosixStateFileSystem
    /// The stop timeout in force and the drain's share of it.
    public let budget: StopBudget
    /// The daemon's logger (``DaemonConfiguration/logger``).
    public let logger: Logger
    let notifier: ServiceNotifier
    /// Set once the stop sequence exists (read-only to the service).
    var store: ShutdownRecordStore?
    /// Ends the run without a stop request (DaemonContext+RunEnd.swift).
    var runEnder: ((ChildExit, Int, Int32) -> Bool)?
    /// Listeners a previous instance kept (HandoverService.handOverListeners).
    var handedOverListeners: [HandedOverDescriptor] = []

    init(name: String, reactor: Reactor, previousRun: PreviousRun, stateDirectory: PosixStateFileSystem,
         budget: StopBudget, logger: Logger, notifier: ServiceNotifier) {
        self.name = name
        self.reactor = reactor
        self.previousRun = previousRun
        self.stateDirectory = stateDirectory
        self.budget = budget
        self.logger = logger
        self.notifier = notifier
    }

    /// For a service that replays a journal at its start (after
    /// ``Daemon/run(_:_:)`` made `running` durable): what the replay found.
    /// Damage — acknowledged records lost, files missing — is added to the
    /// previous run's entry in the run history, durably, so `vigilctl
    /// history` still shows it after this run (the report `vigilctl
    /// last-shutdown` gives lasts until the next start). A whole journal
    /// changes nothing; a history that cannot be written is logged.
    public func journalReplayed(_ check: JournalCheck) {
        guard check.isDamaged, var entry = RunHistory.Entry(previousRun) else { return }
        entry.add(journalDamage: check)
        do { _ = try RunHistory.append(entry, in: stateDirectory) } catch {
            logger.error("run history: the journal damage found at this start is not recorded (\(error))")
        }
    }

    /// Whether a service manager listens for notifications (`NOTIFY_SOCKET`).
    public var underServiceManager: Bool { notifier.isEnabled }

    /// A listening socket the previous instance handed over
    /// (``HandoverService/handOverListeners()``) with exactly this state, now
    /// the caller's; nil when there is none. Take yours in the factory or in
    /// ``DaemonService/start(_:)``: the entry point closes the rest after it.
    public func takeHandedOverListener(matching state: [UInt8]) -> Int32? {
        guard let i = handedOverListeners.firstIndex(where: { $0.state == state }) else { return nil }
        return handedOverListeners.remove(at: i).fd
    }

    /// Sends `STATUS=text` to the service manager (nothing without one).
    /// READY=1 and STOPPING=1 are the entry point's: they follow the records.
    public func status(_ text: String) { notifier.status(text) }
}
