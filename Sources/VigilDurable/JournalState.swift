// What the journal says about sessions and turns: rebuilt by replay, kept up
// to date as records become durable. Applying a record is the only way it
// changes; replay adds one step, `endRun()` at the end (the run that wrote
// the journal is over). The live state equals a replayed one because every
// run begins with a durable `runStarted` record, which applies the same step.

public struct SessionRecord: Equatable, Sendable {
    /// Turns accepted and not completed, in acceptance order.
    public var openTurns: [String] = []
    /// Turns that were open when their run ended, not yet acknowledged by the client.
    public var interruptedTurns: [String] = []

    public init(openTurns: [String] = [], interruptedTurns: [String] = []) {
        self.openTurns = openTurns
        self.interruptedTurns = interruptedTurns
    }
}

public enum SessionStatus: String, Sendable {
    case new, active, interrupted
}

public struct JournalState: Equatable, Sendable {
    public private(set) var sessions: [String: SessionRecord] = [:]
    /// Number of turns accepted and not completed, over all sessions.
    public private(set) var openTurnCount = 0
    /// Sessions with interrupted turns (kept by `apply`, so `stats` and
    /// `status` need no pass over every session).
    public private(set) var interruptedSessionCount = 0
    /// Whether a session with nothing open and nothing interrupted is
    /// dropped (``forgetSettledSessions()``).
    public private(set) var forgetsSettledSessions = false

    public init() {}

    init(sessions: [String: SessionRecord]) {
        self.sessions = sessions
        openTurnCount = sessions.values.reduce(0) { $0 + $1.openTurns.count }
        interruptedSessionCount = sessions.values.reduce(0) { $0 + ($1.interruptedTurns.isEmpty ? 0 : 1) }
    }

    public func status(of session: String) -> SessionStatus {
        guard let s = sessions[session] else { return .new }
        return s.interruptedTurns.isEmpty ? .active : .interrupted
    }

    /// Sessions with interrupted turns, sorted by name.
    public var interruptedSessions: [String] {
        sessions.filter { !$0.value.interruptedTurns.isEmpty }.map(\.key).sorted()
    }

    public mutating func apply(_ record: JournalRecord) {
        switch record {
        case .sessionOpened(let s):
            if sessions[s] == nil { sessions[s] = SessionRecord() }
        case .turnAccepted(let s, let id, _):
            sessions[s, default: SessionRecord()].openTurns.append(id)
            openTurnCount += 1
        case .turnCompleted(let s, let id, _):
            if let i = sessions[s]?.openTurns.firstIndex(of: id) {
                sessions[s]!.openTurns.remove(at: i)
                openTurnCount -= 1
                forgetIfSettled(s)
            }
        case .runStarted:
            endRun()
        case .interruptionCleared(let s):
            if sessions[s]?.interruptedTurns.isEmpty == false { interruptedSessionCount -= 1 }
            sessions[s]?.interruptedTurns = []
            forgetIfSettled(s)
        }
    }

    /// From now on, a session with no open and no interrupted turn is
    /// dropped, and those there are now go at once. For journals whose
    /// sessions only name units of work (`vigil run`'s ledger): memory and
    /// snapshots then grow with the work outstanding, not with every session
    /// ever seen. Not for a protocol that tells a known session from a new
    /// one (vigild's `open`). Replay applies records without it; the owner
    /// turns it on after, which yields the same state.
    public mutating func forgetSettledSessions() {
        forgetsSettledSessions = true
        sessions = sessions.filter { !$0.value.openTurns.isEmpty || !$0.value.interruptedTurns.isEmpty }
    }

    private mutating func forgetIfSettled(_ s: String) {
        guard forgetsSettledSessions, let r = sessions[s], r.openTurns.isEmpty, r.interruptedTurns.isEmpty else { return }
        sessions[s] = nil
    }

    /// The run that wrote the open turns is gone: they are interrupted.
    mutating func endRun() {
        guard openTurnCount > 0 else { return }
        for (name, var s) in sessions where !s.openTurns.isEmpty {
            if s.interruptedTurns.isEmpty { interruptedSessionCount += 1 }
            s.interruptedTurns.append(contentsOf: s.openTurns)
            s.openTurns = []
            sessions[name] = s
        }
        openTurnCount = 0
    }
}
