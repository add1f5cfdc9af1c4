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
            }
        case .runStarted:
            endRun()
        case .interruptionCleared(let s):
            if sessions[s]?.interruptedTurns.isEmpty == false { interruptedSessionCount -= 1 }
            sessions[s]?.interruptedTurns = []
        }
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
