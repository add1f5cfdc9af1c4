// The session gateway: wire protocol v1 (docs/protocol.md) on top of the
// turn journal. What it promises a client:
//  - `opened` for a new session only once `session opened` is durable, so a
//    session opened before a restart is never `new` after it;
//  - `accepted` only once the turn is durable in the journal;
//  - `reply` only once the turn's completion is durable, so a client never
//    holds a reply for a turn the next start calls interrupted.
// Everything runs on the reactor's thread. This file holds the state and
// the protocol dispatch; the rest of the gateway is split by job:
// GatewayOpen (open), GatewayTurns (the turn state machine),
// GatewayReplyRouting (which connection gets a session's replies),
// GatewayDiskFull (refusals and completion retries), GatewayIdleSweep,
// GatewayRenderers (stats, status, sessions), GatewayDrain (the stop).
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
    /// This stop hands the connections over (no goodbye; GatewayHandover).
    public internal(set) var handingOver = false
    /// Called when the last turn in flight is done (the drain waits on it).
    var onIdle: [() -> Void] = []
    var cancelWaiters: [() -> Void] = []
    /// Extra fields for `status` (the daemon's previous run, version…).
    public var statusFields: [(String, String)] = []

    public internal(set) var totals = Totals()
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
        startIdleSweep()
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
}
