// The gateway's part of a handover (docs/systemd.md, "Handover"): at a
// restart with an fd store its connections are not told goodbye but given,
// with the state that is not in the kernel, to the next instance.
// Per connection (version 1, integers little-endian):
//   u8 version | u32 n + pending input | u32 n + unsent output
//   | u32 n × (u16 n + session) sessions it owns
//   | u32 n × (u16 n + session, u16 n + id) turns it sent that the drain cut short
// What the client sent after the pause is still in the socket's buffer, in
// order behind `pending`; what it is owed goes out before anything new.
import Glibc
import Logging
import VigilReactor

extension SessionGateway {
    static let handoverVersion: UInt8 = 1

    /// In the stop signal's handler: this stop hands over. Reading stops
    /// (requests wait in the kernel for the next instance); turns in flight
    /// still finish and are answered; nobody is told goodbye.
    public func prepareHandover(server: LineServer) {
        handingOver = true
        server.pauseReading()
    }

    /// The connections to store, each with its encoded state. A connection
    /// that cannot be resumed exactly (half-closed, closing, or with an
    /// answer still waiting for the journal), or that was accepted during
    /// the drain (the control socket stays served), is told goodbye and closed.
    public func handOverConnections(server: LineServer) -> [(fd: Int32, state: [UInt8])] {
        var result: [(Int32, [UInt8])] = []
        var goodbye: [UInt8] = []
        JSONWriter.append("{\"op\":\"goodbye\",\"reason\":\"shutdown\"}\n", to: &goodbye)
        var cutShort: [UInt64: [TurnKey]] = [:]
        for t in turns.values {
            if let origin = t.origin { cutShort[origin.connection.id, default: []].append(t.key) }
        }
        for conn in server.openConnections where !conn.isClosed {
            guard let client = clients[conn.id], !conn.inputEnded, !conn.closeAfterFlush, !client.isWaiting, !conn.acceptedWhilePaused else {
                conn.send(goodbye)
                conn.closeAfterWriting()
                continue
            }
            let (pending, unsent) = server.handoverState(of: conn)
            var o: [UInt8] = [Self.handoverVersion]
            Self.putBytes(&o, pending)
            Self.putBytes(&o, unsent)
            let owned = client.ownedSessions.filter { owners[$0] == conn.id }.sorted()
            Self.put32(&o, UInt32(owned.count))
            for s in owned { Self.putString(&o, s) }
            let interrupted = (cutShort[conn.id] ?? []).sorted { ($0.session, $0.id) < ($1.session, $1.id) }
            Self.put32(&o, UInt32(interrupted.count))
            for k in interrupted {
                Self.putString(&o, k.session)
                Self.putString(&o, k.id)
            }
            result.append((conn.fd, o))
        }
        return result
    }

    /// The store refused: the goodbye a plain stop would have said, now.
    public func handoverFailed() {
        handingOver = false
        sayGoodbye()
    }

    /// Resumes a connection handed over by the previous instance. A state
    /// that does not decode exactly is refused: the connection is closed,
    /// never served on a guess. Returns why it was refused, nil when adopted.
    @discardableResult
    public func adoptConnection(fd: Int32, state: [UInt8], server: LineServer) -> String? {
        guard let s = Self.decodeHandover(state) else {
            close(fd)
            logger.warning("handover: connection (fd \(fd)) refused: its state does not decode; closed")
            return "state does not decode"
        }
        let conn: LineConnection
        do { conn = try server.adopt(connection: fd, pending: s.pending, unsent: s.unsent) } catch {
            close(fd)
            logger.error("handover: cannot watch an adopted connection: \(error)")
            return "cannot watch: \(error)"
        }
        guard let client = clients[conn.id], !conn.isClosed else { return "refused at the connection limit" }
        for session in s.owned where owners[session] == nil { own(session, client) }
        // Turns the previous drain cut short: told now, never silently dropped.
        for (session, id) in s.interrupted {
            var e: [UInt8] = []
            JSONWriter.append("{\"op\":\"interrupted\",\"session\":", to: &e)
            JSONWriter.appendString(session, to: &e)
            JSONWriter.append(",\"id\":", to: &e)
            JSONWriter.appendString(id, to: &e)
            JSONWriter.append(",\"reason\":\"restart\",\"message\":\"the restart's drain ran out of time before this turn finished; no reply will come\"}\n", to: &e)
            client.push(e)
        }
        return nil
    }

    struct HandoverConnectionState: Equatable {
        var pending: [UInt8]
        var unsent: [UInt8]
        var owned: [String]
        var interrupted: [(String, String)]
        static func == (a: Self, b: Self) -> Bool {
            a.pending == b.pending && a.unsent == b.unsent && a.owned == b.owned
                && a.interrupted.map { [$0.0, $0.1] } == b.interrupted.map { [$0.0, $0.1] }
        }
    }

    /// Strict: every length in bounds, no trailing byte, every id valid.
    static func decodeHandover(_ b: [UInt8]) -> HandoverConnectionState? {
        var i = 0
        func u32() -> Int? {
            guard i + 4 <= b.count else { return nil }
            defer { i += 4 }
            return Int((0..<4).reduce(UInt32(0)) { $0 | UInt32(b[i + $1]) << UInt32(8 * $1) })
        }
        func bytes(_ n: Int) -> [UInt8]? {
            guard n <= b.count - i else { return nil }
            defer { i += n }
            return Array(b[i..<(i + n)])
        }
        func string() -> String? {
            guard i + 2 <= b.count else { return nil }
            let n = Int(b[i]) | Int(b[i + 1]) << 8
            i += 2
            guard let raw = bytes(n) else { return nil }
            let s = String(decoding: raw, as: UTF8.self)
            return Identifier.problem(s, field: "session") == nil ? s : nil
        }
        guard b.first == handoverVersion else { return nil }
        i = 1
        guard let pn = u32(), let pending = bytes(pn), let un = u32(), let unsent = bytes(un), let on = u32() else { return nil }
        var owned: [String] = []
        for _ in 0..<on {
            guard let s = string() else { return nil }
            owned.append(s)
        }
        guard let tn = u32() else { return nil }
        var interrupted: [(String, String)] = []
        for _ in 0..<tn {
            guard let s = string(), let id = string() else { return nil }
            interrupted.append((s, id))
        }
        guard i == b.count else { return nil }
        return HandoverConnectionState(pending: pending, unsent: unsent, owned: owned, interrupted: interrupted)
    }

    static func put32(_ o: inout [UInt8], _ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { o.append(UInt8((v >> UInt32(s)) & 0xFF)) } }
    static func putBytes(_ o: inout [UInt8], _ b: [UInt8]) {
        put32(&o, UInt32(b.count))
        o += b
    }
    static func putString(_ o: inout [UInt8], _ s: String) {
        let b = Array(s.utf8)
        o += [UInt8(b.count & 0xFF), UInt8(b.count >> 8)]
        o += b
    }
}
