// Per-connection state of the gateway: responses leave in request order.
// A request answered at once (ping, stats, most errors) goes straight into
// the read batch's output while nothing is waiting; once a request waits for
// the journal (open of a new session, send), later answers queue behind it
// in slots and leave when the slots before them are filled. Journal
// completions arrive in sequence order, so slots fill front to back.
import DequeModule
import Glibc
import VigilReactor

final class ClientConnection {
    let connection: LineConnection
    /// Answers not yet sent, oldest first; nil = still waiting for the journal.
    @exclusivity(unchecked) private var slots = Deque<[UInt8]?>()
    /// Absolute number of the first slot in `slots`.
    private var firstSlot = 0
    /// Bytes of filled answers queued behind a waiting slot: bounded like
    /// the server's unsent output, or a client pipelining behind a stalled
    /// disk could make the daemon hold without limit.
    private var queuedBytes = 0
    static let maxQueuedBytes = 8 << 20
    /// Turns of this connection accepted (or being accepted) and not answered.
    var turnsInFlight = 0
    /// Sessions whose replies go to this connection (forgotten when it closes).
    var ownedSessions: Set<String> = []
    /// The gateway's idle-sweep tick at the last input (a counter, not a
    /// clock: no clock_gettime per line).
    @exclusivity(unchecked) var lastActivityTick: Int
    /// Unix socket peer of the daemon's own user (may use control requests).
    let isTrustedPeer: Bool

    init(_ connection: LineConnection, tick: Int) {
        self.connection = connection
        lastActivityTick = tick
        isTrustedPeer = ClientConnection.peerIsOwnUser(connection.fd)
    }

    var isWaiting: Bool { !slots.isEmpty }

    /// An answer produced now: into `out` when nothing waits, else queued.
    func answer(_ bytes: [UInt8], out: inout [UInt8]) {
        if slots.isEmpty { out.append(contentsOf: bytes) } else { queue(bytes) }
    }

    /// An answer produced later (not inside a read callback).
    func push(_ bytes: [UInt8]) {
        if slots.isEmpty { connection.send(bytes) } else { queue(bytes) }
    }

    private func queue(_ bytes: [UInt8]) {
        slots.append(bytes)
        queuedBytes += bytes.count
        if queuedBytes > Self.maxQueuedBytes { connection.server.dropSlowClient(connection, queued: queuedBytes) }
    }

    /// Reserves the place of an answer that the journal will decide.
    func reserve() -> Int {
        slots.append(nil)
        return firstSlot + slots.count - 1
    }

    func fill(_ slot: Int, with bytes: [UInt8]) {
        let i = slot - firstSlot
        guard i >= 0, i < slots.count else { return }
        slots[i] = bytes
        var ready: [UInt8] = []
        queuedBytes += bytes.count  // counted out below with the rest
        while let head = slots.first, let bytes = head {
            ready.append(contentsOf: bytes)
            queuedBytes -= bytes.count
            slots.removeFirst()
            firstSlot += 1
        }
        if !ready.isEmpty { connection.send(ready) }
        closeIfDone()
    }

    /// After a half-close: close once nothing more is due to this client.
    func closeIfDone() {
        if connection.inputEnded && slots.isEmpty && turnsInFlight == 0 && !connection.isClosed {
            connection.closeAfterWriting()
        }
    }

    /// A Unix socket peer running as the daemon's own user.
    static func peerIsOwnUser(_ fd: Int32) -> Bool {
        StreamSocket.unixPeerUID(fd) == geteuid()
    }
}
