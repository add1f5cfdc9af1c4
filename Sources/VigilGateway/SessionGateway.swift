// The session gateway: wire protocol v1 (docs/protocol.md) on top of the
// turn journal. What it promises a client:
//  - `opened` for a new session only once `session opened` is durable, so a
//    session opened before a restart is never `new` after it;
//  - `accepted` only once the turn is durable in the journal;
//  - `reply` only once the turn's completion is durable, so a client never
//    holds a reply for a turn the next start calls interrupted.
// Everything runs on the reactor's thread.
import Glibc
import Logging
import VigilDurable
import VigilReactor

/// Loop-confined: used on the reactor's thread only (the drain task runs
/// there too, through the reactor's executor).
public final class SessionGateway: LineHandler, @unchecked Sendable {
    public struct Options: Sendable {
        /// Connections beyond this get `too_many_connections` and are closed.
        public var maxConnections = 16384
        /// A connection with no input and no turn in flight for this long is closed.
        public var idleTimeout: Duration = .seconds(300)
        public init() {}
    }

    struct TurnKey: Hashable {
        let session: String
        let id: String
    }

    /// A turn of this run, from its `send` until its reply is sent.
    final class LiveTurn {
        enum Phase { case accepting, running, completing, unrecorded }
        let key: TurnKey
        let text: String
        let workMs: Int
        var phase = Phase.accepting
        var running: (any RunningTurn)?
        /// Reply (or failure) waiting for its completion record.
        var outcome: AgentResult?
        /// The connection that sent it (its count of turns in flight).
        weak var origin: ClientConnection?
        /// Its agent was told to stop by the drain: whatever it returns now
        /// is not its answer, so the turn stays open (interrupted at the next
        /// start) and the drain cannot call itself clean.
        var stoppedByDrain = false
        init(key: TurnKey, text: String, workMs: Int) {
            self.key = key
            self.text = text
            self.workMs = workMs
        }
    }

    public let reactor: Reactor
    public let journal: TurnJournal
    let agent: any Agent
    let logger: Logger
    let options: Options
    let startedAtNs = monotonicNanoseconds()

    var clients: [UInt64: ClientConnection] = [:]
    var turns: [TurnKey: LiveTurn] = [:]
    /// Connection that last opened or sent on a session: where its replies go.
    var owners: [String: UInt64] = [:]
    /// New sessions whose `session opened` record is not durable yet, with
    /// the `open` requests waiting for it.
    var pendingOpens: [String: [(client: ClientConnection, slot: Int)]] = [:]
    /// Completion records refused (disk full), retried on a timer.
    var completionRetries: [LiveTurn] = []
    var retryTimer: TimerHandle?
    var idleSweep: TimerHandle?

    public internal(set) var isDraining = false
    /// The journal's replay found acknowledged data missing at this start.
    public let journalDamaged: Bool
    /// The drain's budget is spent (`cutShort`): no agent starts and no
    /// completion is journaled any more; open turns stay open (interrupted).
    public internal(set) var isCutShort = false
    var saidGoodbye = false
    /// Called when the last turn in flight is done (the drain waits on it).
    var onIdle: [() -> Void] = []
    var cancelWaiters: [() -> Void] = []
    /// Called every second of the drain with (turns left, ms left): systemd's STATUS=.
    public var drainProgress: ((Int, UInt64) -> Void)?
    /// Extra fields for `status` (the daemon's previous run, version…).
    public var statusFields: [(String, String)] = []

    public private(set) var totals = Totals()
    /// Pings answered (outside `totals`: the hot path touches one word).
    @exclusivity(unchecked) public private(set) var pings = 0
    /// Idle-sweep counter; a connection's activity is stamped with it.
    @exclusivity(unchecked) var tick = 0
    public struct Totals: Sendable {
        public var connectionsAccepted = 0
        public var turnsAccepted = 0
        public var turnsCompleted = 0
        public var turnsRefused = 0
        public var badRequests = 0
    }

    public init(reactor: Reactor, journal: TurnJournal, agent: any Agent, logger: Logger, options: Options = Options()) {
        self.reactor = reactor
        self.journal = journal
        journalDamaged = journal.report.check.isDamaged
        self.agent = agent
        self.logger = logger
        self.options = options
        scheduleIdleSweep()
    }

    /// Turns accepted (or being accepted) and not yet answered: the work in flight.
    public var turnsInFlight: Int { turns.count }
    public var connectionCount: Int { clients.count }

    // MARK: LineHandler

    public func connectionOpened(_ connection: LineConnection) {
        totals.connectionsAccepted += 1
        if clients.count >= options.maxConnections {
            var out: [UInt8] = []
            JSONWriter.appendError(code: "too_many_connections", message: "connection limit of \(options.maxConnections) reached; try again later", to: &out)
            connection.send(out)
            connection.closeAfterWriting()
            logger.warning("connection refused: limit of \(options.maxConnections) reached")
            return
        }
        let client = ClientConnection(connection, tick: tick)
        clients[connection.id] = client
        connection.userData = client
    }

    public func connectionClosed(_ connection: LineConnection) {
        connection.userData = nil  // ClientConnection holds the connection: break the cycle
        guard let client = clients.removeValue(forKey: connection.id) else { return }
        for s in client.ownedSessions where owners[s] == connection.id { owners[s] = nil }
    }

    /// Replies of `session` go to `client` from now on.
    private func own(_ session: String, _ client: ClientConnection) {
        if let previous = owners[session], previous != client.connection.id { clients[previous]?.ownedSessions.remove(session) }
        owners[session] = client.connection.id
        client.ownedSessions.insert(session)
    }

    /// A half-closed client still gets its `accepted` answers and the
    /// replies of its turns; the connection closes once they are sent.
    public func inputEnded(_ connection: LineConnection) -> Bool {
        guard let data = connection.userData else { return false }
        let client = unsafeDowncast(data, to: ClientConnection.self)
        return client.isWaiting || client.turnsInFlight > 0
    }

    public func lineTooLong(limit: Int, from connection: LineConnection, out: inout [UInt8]) {
        totals.badRequests += 1
        var e: [UInt8] = []
        JSONWriter.appendError(code: "bad_request", message: "line longer than \(limit) bytes; closing the connection", to: &e)
        if let c = connection.userData.map({ unsafeDowncast($0, to: ClientConnection.self) }) { c.answer(e, out: &out) } else { out += e }
    }

    public func handle(line: UnsafeRawBufferPointer, from connection: LineConnection, out: inout [UInt8]) {
        // Set in connectionOpened; nil only for a connection over the limit.
        guard let data = connection.userData else { return }
        let client = unsafeDowncast(data, to: ClientConnection.self)
        client.lastActivityTick = tick
        // The hot path: a ping needs one scan and no allocation.
        if Request.isPing(line) {
            pings &+= 1
            if client.isWaiting { client.answer(Array("{\"op\":\"pong\"}\n".utf8), out: &out) }
            else { JSONWriter.append("{\"op\":\"pong\"}\n", to: &out) }
            return
        }
        let (request, problem) = Request.parse(line)
        guard let request else {
            return badRequest(problem ?? "invalid request", client, &out)
        }
        switch request.op {
        case .ping:
            pings &+= 1
            if client.isWaiting { client.answer(Array("{\"op\":\"pong\"}\n".utf8), out: &out) }
            else { JSONWriter.append("{\"op\":\"pong\"}\n", to: &out) }
        case .open:
            open(request, client, &out)
        case .send:
            send(request, client, &out)
        case .stats:
            client.answer(statsLine(), out: &out)
        case .status, .sessions:
            guard client.isTrustedPeer else {
                totals.badRequests += 1
                var e: [UInt8] = []
                JSONWriter.appendError(code: "forbidden", message: "control requests are accepted only on the Unix socket from the daemon's own user", to: &e)
                return client.answer(e, out: &out)
            }
            // The listing is one line that grows with the sessions: a trusted
            // control client may hold more than the usual unread-output bound.
            if request.op == .sessions { connection.unsentLimit = .max }
            client.answer(request.op == .status ? statusLine() : sessionsLine(), out: &out)
        case .unknown(let name):
            badRequest("unknown op '\(name)'", client, &out)
        }
    }

    func badRequest(_ message: String, _ client: ClientConnection, _ out: inout [UInt8]) {
        totals.badRequests += 1
        var e: [UInt8] = []
        JSONWriter.appendError(code: "bad_request", message: message, to: &e)
        client.answer(e, out: &out)
    }

    // MARK: open

    func open(_ r: Request, _ client: ClientConnection, _ out: inout [UInt8]) {
        guard let session = r.session else { return badRequest("missing field 'session'", client, &out) }
        if let p = Identifier.problem(session, field: "session") { return badRequest(p, client, &out) }
        own(session, client)
        if pendingOpens[session] != nil {
            pendingOpens[session]!.append((client, client.reserve()))
            return
        }
        if journal.state.status(of: session) == .new {
            pendingOpens[session] = [(client, client.reserve())]
            journal.append(.sessionOpened(session: session)) { [weak self] result in
                self?.sessionOpenDurable(session, result)
            }
            return
        }
        client.answer(openedLine(session), out: &out)
    }

    private func sessionOpenDurable(_ session: String, _ result: Result<UInt64, JournalError>) {
        let waiters = pendingOpens.removeValue(forKey: session) ?? []
        for w in waiters {
            switch result {
            case .success: w.client.fill(w.slot, with: openedLine(session, wasNew: true))
            case .failure(let e): w.client.fill(w.slot, with: unavailable(e, id: nil))
            }
        }
    }

    /// `{"op":"opened","session":S,"status":…,"interrupted":[…],"in_flight":[…]}`:
    /// `interrupted` lists the turns the last stop cut off, `in_flight` the
    /// turns of this run accepted and not yet answered (after a reconnect).
    func openedLine(_ session: String, wasNew: Bool = false) -> [UInt8] {
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"opened\",\"session\":", to: &o)
        JSONWriter.appendString(session, to: &o)
        let record = wasNew ? nil : journal.state.sessions[session]
        let status = wasNew ? SessionStatus.new : journal.state.status(of: session)
        JSONWriter.append(",\"status\":", to: &o)
        JSONWriter.appendString(status.rawValue, to: &o)
        JSONWriter.append(",\"interrupted\":", to: &o)
        appendStringArray(record?.interruptedTurns ?? [], to: &o)
        JSONWriter.append(",\"in_flight\":", to: &o)
        appendStringArray(record?.openTurns ?? [], to: &o)
        // Acknowledged records were lost (docs/journal.md, "Manifest"): this
        // session's history may be incomplete — or it may have existed
        // although it now reads `new`. Said on every `opened` of this run.
        if journalDamaged { JSONWriter.append(",\"journal_damaged\":true", to: &o) }
        JSONWriter.append("}\n", to: &o)
        return o
    }

    // MARK: send

    func send(_ r: Request, _ client: ClientConnection, _ out: inout [UInt8]) {
        guard let session = r.session else { return badRequest("missing field 'session'", client, &out) }
        guard let id = r.id else { return badRequest("missing field 'id'", client, &out) }
        guard let text = r.text else { return badRequest("missing field 'text'", client, &out) }
        if let p = Identifier.problem(session, field: "session") ?? Identifier.problem(id, field: "id") {
            return badRequest(p, client, &out)
        }
        let workMs = r.workMs ?? 0
        if workMs > Request.maxWorkMs { return badRequest("field 'work_ms' must be at most \(Request.maxWorkMs)", client, &out) }
        if isDraining {
            totals.turnsRefused += 1
            var e: [UInt8] = []
            JSONWriter.append("{\"op\":\"error\",\"code\":\"draining\",\"id\":", to: &e)
            JSONWriter.appendString(id, to: &e)
            JSONWriter.append(",\"message\":\"the daemon is stopping; send this turn again after the restart\"}\n", to: &e)
            return client.answer(e, out: &out)
        }
        let key = TurnKey(session: session, id: id)
        if turns[key] != nil { return badRequest("turn '\(id)' of session '\(session)' is already in flight", client, &out) }
        own(session, client)

        // Records of one request go into the same group commit, in order.
        if journal.state.status(of: session) == .new && pendingOpens[session] == nil {
            pendingOpens[session] = []
            journal.append(.sessionOpened(session: session), joinedToNext: true) { [weak self] in self?.sessionOpenDurable(session, $0) }
        } else if journal.state.status(of: session) == .interrupted {
            // The client carries on: it has been told (docs/protocol.md).
            // Same group commit as the turn, never split from it.
            journal.append(.interruptionCleared(session: session), joinedToNext: true) { _ in }
        }
        let turn = LiveTurn(key: key, text: text, workMs: workMs)
        turn.origin = client
        turns[key] = turn
        client.turnsInFlight += 1
        let slot = client.reserve()
        journal.append(.turnAccepted(session: session, id: id, text: text)) { [weak self, weak client] result in
            guard let self else { return }
            switch result {
            case .success:
                self.totals.turnsAccepted += 1
                var a: [UInt8] = []
                JSONWriter.append("{\"op\":\"accepted\",\"id\":", to: &a)
                JSONWriter.appendString(id, to: &a)
                JSONWriter.append("}\n", to: &a)
                client?.fill(slot, with: a)
                self.startAgent(turn)
            case .failure(let e):
                self.totals.turnsRefused += 1
                client?.fill(slot, with: self.unavailable(e, id: id))
                self.finishTurn(turn)
            }
        }
    }

    func unavailable(_ e: JournalError, id: String?) -> [UInt8] {
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"error\",\"code\":\"unavailable\"", to: &o)
        if let id {
            JSONWriter.append(",\"id\":", to: &o)
            JSONWriter.appendString(id, to: &o)
        }
        JSONWriter.append(",\"message\":", to: &o)
        let why: String
        switch e {
        case .noSpace: why = "the state disk is full; nothing of this request was kept; retry later"
        case .closed: why = "the daemon is stopping"
        default: why = "the journal cannot write (\(e)); nothing of this request was kept"
        }
        JSONWriter.appendString(why, to: &o)
        JSONWriter.append("}\n", to: &o)
        return o
    }

    // MARK: agent and completion

    func startAgent(_ turn: LiveTurn) {
        // Accepted in the batch the cut-short waited for: it stays open.
        if isCutShort { return }
        turn.phase = .running
        let work = TurnWork(session: turn.key.session, id: turn.key.id, text: turn.text, workMs: turn.workMs)
        turn.running = agent.start(work) { [weak self, weak turn] result in
            guard let self, let turn else { return }
            turn.running = nil
            if turn.stoppedByDrain {
                self.logger.notice("turn \(turn.key.session)/\(turn.key.id) stopped by the drain: left open, it will be reported interrupted")
                return
            }
            turn.outcome = result
            self.recordCompletion(turn)
        }
    }

    func recordCompletion(_ turn: LiveTurn) {
        guard let outcome = turn.outcome else { return }
        // After the cut-short nothing new may become durable: the turn stays
        // open, counted as abandoned and interrupted at the next start.
        if isCutShort { return }
        turn.phase = .completing
        let reply: String
        switch outcome {
        case .reply(let t): reply = t
        case .failed(let why): reply = "agent failed: \(why)"
        }
        journal.append(.turnCompleted(session: turn.key.session, id: turn.key.id, reply: reply)) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success:
                self.totals.turnsCompleted += 1
                self.deliver(turn, outcome)
                self.finishTurn(turn)
            case .failure(.noSpace):
                // Not durable, so not sent; retried until space returns or
                // the drain gives up (then the turn is interrupted, exactly).
                self.completionRetries.append(turn)
                self.scheduleRetry()
            case .failure(let e):
                // Not durable, so it stays open in the journal: it is
                // interrupted at the next start, and it stays in `turns`
                // here so this run's stop cannot be recorded as clean (nor
                // the same id accepted twice). The client hears why.
                if e == .closed && self.isCutShort {
                    self.logger.notice("turn \(turn.key.session)/\(turn.key.id): finished after the drain budget; left open, it will be reported interrupted")
                } else {
                    self.logger.error("turn \(turn.key.session)/\(turn.key.id): completion not recorded (\(e)); it will be reported interrupted")
                }
                turn.phase = .unrecorded
                if let owner = self.owners[turn.key.session], let client = self.clients[owner] {
                    var o: [UInt8] = []
                    JSONWriter.append("{\"op\":\"error\",\"code\":\"unavailable\",\"session\":", to: &o)
                    JSONWriter.appendString(turn.key.session, to: &o)
                    JSONWriter.append(",\"id\":", to: &o)
                    JSONWriter.appendString(turn.key.id, to: &o)
                    JSONWriter.append(",\"message\":\"the reply could not be recorded; the turn will be reported interrupted\"}\n", to: &o)
                    client.push(o)
                }
            }
        }
    }

    private func scheduleRetry() {
        guard retryTimer == nil else { return }
        retryTimer = reactor.schedule(after: .milliseconds(500)) { [weak self] in
            guard let self else { return }
            self.retryTimer = nil
            let again = self.completionRetries
            self.completionRetries = []
            for t in again { self.recordCompletion(t) }
        }
    }

    func deliver(_ turn: LiveTurn, _ outcome: AgentResult) {
        var o: [UInt8] = []
        switch outcome {
        case .reply(let text):
            JSONWriter.append("{\"op\":\"reply\",\"session\":", to: &o)
            JSONWriter.appendString(turn.key.session, to: &o)
            JSONWriter.append(",\"id\":", to: &o)
            JSONWriter.appendString(turn.key.id, to: &o)
            JSONWriter.append(",\"text\":", to: &o)
            JSONWriter.appendString(text, to: &o)
            JSONWriter.append("}\n", to: &o)
        case .failed(let why):
            JSONWriter.append("{\"op\":\"error\",\"code\":\"agent_failed\",\"session\":", to: &o)
            JSONWriter.appendString(turn.key.session, to: &o)
            JSONWriter.append(",\"id\":", to: &o)
            JSONWriter.appendString(turn.key.id, to: &o)
            JSONWriter.append(",\"message\":", to: &o)
            JSONWriter.appendString(why, to: &o)
            JSONWriter.append("}\n", to: &o)
        }
        if let owner = owners[turn.key.session], let client = clients[owner] { client.push(o) }
    }

    func finishTurn(_ turn: LiveTurn) {
        turns[turn.key] = nil
        turn.origin?.turnsInFlight -= 1
        turn.origin?.closeIfDone()
        if turns.isEmpty {
            let waiters = onIdle
            onIdle = []
            for w in waiters { w() }
        }
    }

    // MARK: idle connections

    private func scheduleIdleSweep() {
        let period = min(options.idleTimeout, .seconds(1))
        // Idle for `needed` whole periods at least, so for the timeout at least.
        let needed = Int((options.idleTimeout.nanosecondsValue + period.nanosecondsValue - 1) / max(period.nanosecondsValue, 1))
        idleSweep = reactor.schedule(after: period) { [weak self] in
            guard let self else { return }
            tick += 1
            for c in Array(clients.values) where c.turnsInFlight == 0 && !c.isWaiting && tick - c.lastActivityTick > needed {
                logger.info("closing connection \(c.connection.id): idle for more than \(options.idleTimeout)")
                var o: [UInt8] = []
                JSONWriter.append("{\"op\":\"goodbye\",\"reason\":\"idle\"}\n", to: &o)
                c.connection.send(o)
                c.connection.closeAfterWriting()
            }
            scheduleIdleSweep()
        }
    }

    // MARK: stats, status, sessions

    func statsLine() -> [UInt8] {
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"stats\"", to: &o)
        appendNumber("connections", clients.count, &o)
        appendNumber("sessions", journal.state.sessions.count, &o)
        appendNumber("turns_in_flight", turns.count, &o)
        appendNumber("interrupted_sessions", journal.state.interruptedSessionCount, &o)
        appendNumber("connections_accepted", totals.connectionsAccepted, &o)
        appendNumber("turns_accepted", totals.turnsAccepted, &o)
        appendNumber("turns_completed", totals.turnsCompleted, &o)
        appendNumber("turns_refused", totals.turnsRefused, &o)
        appendNumber("bad_requests", totals.badRequests, &o)
        appendNumber("pings", pings, &o)
        appendNumber("journal_batches", journal.batchesWritten, &o)
        appendNumber("journal_records", journal.recordsWritten, &o)
        JSONWriter.append(isDraining ? ",\"draining\":true}\n" : ",\"draining\":false}\n", to: &o)
        return o
    }

    func statusLine() -> [UInt8] {
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"status\"", to: &o)
        appendNumber("pid", Int(getpid()), &o)
        appendNumber("uptime_ms", Int((monotonicNanoseconds() - startedAtNs) / 1_000_000), &o)
        appendNumber("connections", clients.count, &o)
        appendNumber("sessions", journal.state.sessions.count, &o)
        appendNumber("interrupted_sessions", journal.state.interruptedSessionCount, &o)
        appendNumber("turns_in_flight", turns.count, &o)
        JSONWriter.append(isDraining ? ",\"draining\":true" : ",\"draining\":false", to: &o)
        JSONWriter.append(journalDamaged ? ",\"journal_damaged\":true" : ",\"journal_damaged\":false", to: &o)
        JSONWriter.append(",\"agent\":", to: &o)
        JSONWriter.appendString(agent.name, to: &o)
        for (k, v) in statusFields {
            JSONWriter.append(",", to: &o)
            JSONWriter.appendString(k, to: &o)
            JSONWriter.append(":", to: &o)
            JSONWriter.appendString(v, to: &o)
        }
        JSONWriter.append("}\n", to: &o)
        return o
    }

    func sessionsLine() -> [UInt8] {
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"sessions\",\"sessions\":", to: &o)
        SessionListing.append(journal.state, to: &o)
        JSONWriter.append("}\n", to: &o)
        return o
    }

    func appendNumber(_ name: StaticString, _ value: Int, _ o: inout [UInt8]) {
        JSONWriter.append(",\"", to: &o)
        JSONWriter.append(name, to: &o)
        JSONWriter.append("\":", to: &o)
        o.append(contentsOf: String(value).utf8)
    }
}

func appendStringArray(_ items: [String], to o: inout [UInt8]) {
    JSONWriter.append("[", to: &o)
    for (i, s) in items.enumerated() {
        if i > 0 { JSONWriter.append(",", to: &o) }
        JSONWriter.appendString(s, to: &o)
    }
    JSONWriter.append("]", to: &o)
}
