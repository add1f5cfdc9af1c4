// The ledger: which units of work a supervised program began and ended,
// durable in the turn journal (docs/run.md). begin → `turnAccepted`, end →
// `turnCompleted`, resolve → `interruptionCleared`; every run first makes a
// `runStarted` record durable, so whatever was open when an earlier run
// ended — however it ended — is interrupted from then on. An answer is
// given only once its record is durable (group commit: one fdatasync for
// every record of a loop iteration).
import Glibc
import Logging
import VigilDaemon
import VigilDurable
import VigilReactor

/// Why a ledger request was refused (the `code` of an error answer).
public enum LedgerRefusal: Error, Equatable, Sendable {
    /// `begin` of a unit already open in this run.
    case alreadyOpen
    /// `end` of a unit not open in this run.
    case notOpen
    /// The journal could not make the record durable (disk full, I/O error, closed).
    case notDurable(String)

    public var code: StaticString {
        switch self {
        case .alreadyOpen: "already_open"
        case .notOpen: "not_open"
        case .notDurable: "not_durable"
        }
    }

    public var message: String {
        switch self {
        case .alreadyOpen: "this id is already open in this session"
        case .notOpen: "no open unit with this id in this session"
        case .notDurable(let why): "not recorded: \(why)"
        }
    }
}

/// Loop-confined.
public final class Ledger {
    public let journal: TurnJournal
    let logger: Logger
    /// Units open as far as requests go: durable begins and begins on
    /// their way to disk, minus ends on their way. Checked by every request,
    /// so a begin and its end may be in the same group commit. One flat set
    /// (one hash per request, no per-session set made and dropped as a
    /// session's units open and close).
    private var open: Set<OpenUnit> = []
    public var openCount: Int { open.count }

    private struct OpenUnit: Hashable {
        let session: String
        let id: String
    }

    /// Opens (replays) the journal in the state directory and makes this
    /// run's start durable in it. Synchronous: this is start-up.
    public init(_ context: DaemonContext) throws(DaemonFailure) {
        logger = context.logger
        let reactor = context.reactor
        do {
            try Daemon.refuseNonRegularFiles(in: context.stateDirectory, named: TurnJournal.isJournalFile)
            // Sessions only name units of work here: one that has nothing
            // open or interrupted is forgotten (a session per conversation
            // must not grow the ledger forever).
            var options = TurnJournal.Options()
            options.forgetsSettledSessions = true
            journal = try TurnJournal(io: DiskJournalIO(fs: context.stateDirectory, disk: reactor.disk), reactor: reactor, logger: context.logger, options: options)
        } catch {
            throw DaemonFailure(exitCode: DaemonExit.stateDirectoryUnusable, "cannot open the ledger's journal in \(context.stateDirectory.path): \(error)")
        }
        let check = journal.report.check
        if check.isDamaged {
            logger.error("the ledger's journal lost acknowledged data: \(check.recordsLost) record(s); `vigilctl last-shutdown --json` shows the journal object")
        }
        context.journalReplayed(check)
        var started: Result<UInt64, JournalError>?
        journal.append(.runStarted(pid: getpid(), bootID: currentBootID())) { started = $0 }
        while started == nil {
            do { try reactor.runOnce(timeoutMs: 100) } catch {
                throw DaemonFailure(exitCode: DaemonExit.osError, "event loop failed during start-up: \(error)")
            }
        }
        if case .failure(let e) = started! {
            throw DaemonFailure(exitCode: DaemonExit.stateDirectoryUnusable, "cannot record this run's start in the ledger's journal: \(e)")
        }
    }

    /// Work begun and never ended in earlier runs, not yet resolved, by session name.
    public var interrupted: [(session: String, ids: [String])] {
        let state = journal.state
        return state.interruptedSessions.map { ($0, state.sessions[$0]?.interruptedTurns ?? []) }
    }

    public func begin(session: String, id: String, completion: @escaping (Result<Void, LedgerRefusal>) -> Void) {
        let unit = OpenUnit(session: session, id: id)
        guard open.insert(unit).inserted else { return completion(.failure(.alreadyOpen)) }
        journal.append(.turnAccepted(session: session, id: id, text: "")) { [unowned self] result in
            switch result {
            case .success: completion(.success(()))
            case .failure(let e):
                open.remove(unit)
                completion(.failure(.notDurable("\(e)")))
            }
        }
    }

    public func end(session: String, id: String, completion: @escaping (Result<Void, LedgerRefusal>) -> Void) {
        let unit = OpenUnit(session: session, id: id)
        guard open.remove(unit) != nil else { return completion(.failure(.notOpen)) }
        journal.append(.turnCompleted(session: session, id: id, reply: "")) { [unowned self] result in
            switch result {
            case .success: completion(.success(()))
            case .failure(let e):
                open.insert(unit)
                completion(.failure(.notDurable("\(e)")))
            }
        }
    }

    /// The program has dealt with `session`'s interrupted work. A session
    /// with none is answered at once (nothing to record).
    public func resolve(session: String, completion: @escaping (Result<Void, LedgerRefusal>) -> Void) {
        guard journal.state.status(of: session) == .interrupted else { return completion(.success(())) }
        journal.append(.interruptionCleared(session: session)) { result in
            switch result {
            case .success: completion(.success(()))
            case .failure(let e): completion(.failure(.notDurable("\(e)")))
            }
        }
    }
}
