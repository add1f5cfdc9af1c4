// Session-level loads against vigild's full protocol, on one reactor:
//  - turns: N sessions, one connection each, each with one turn in flight
//    (send → accepted → reply → next send): durable turns per second, where
//    every turn costs two group-committed journal records;
//  - drain: T turns of random work_ms put in flight, then SIGTERM to the
//    server: how long until every connection got its goodbye, and how many
//    replies arrived before it;
//  - open: C sessions opened, pipelined, to fill a journal for start-up timing.
// Turns are fsync-bound (milliseconds), so this path may allocate per line.
import Glibc
import VigilReactor

final class TurnLoad {
    enum Mode {
        case turns(workMs: Int)
        case drain(turns: Int, maxWorkMs: Int, serverPID: Int32)
        case open(sessions: Int)
    }

    struct Config {
        var address: SocketAddress
        var connections: Int
        var mode: Mode
        var warmupNs: UInt64
        var durationNs: UInt64
        /// Distinguishes runs against the same state directory.
        var prefix: String
    }

    final class Connection {
        let index: Int
        var fd: Int32 = -1
        var token: Token?
        var inbox: [UInt8] = []
        var outbox: [UInt8] = []
        var sent = 0
        var accepted = 0
        var replied = 0
        var goodbye = false
        var closed = false
        init(index: Int) { self.index = index }
    }

    struct Result {
        var turns: UInt64 = 0
        var elapsedNs: UInt64 = 0
        var accepted = 0
        var replies = 0
        var refused = 0
        var goodbyes = 0
        /// drain: SIGTERM → last connection closed by the server.
        var drainNs: UInt64 = 0
        var rate: Double { elapsedNs == 0 ? 0 : Double(turns) * 1e9 / Double(elapsedNs) }
    }

    let config: Config
    let reactor: Reactor
    private var conns: [Connection] = []
    private var result = Result()
    private var measuring = false
    private var startNs: UInt64 = 0
    private var startTurns: UInt64 = 0
    private var completed: UInt64 = 0
    private var signalledNs: UInt64 = 0
    private var closedCount = 0
    private var failure: BenchError?
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 64)
    private var rng = SystemRandomNumberGenerator()

    init(_ config: Config) throws(SystemCallError) {
        self.config = config
        reactor = try Reactor()
    }

    deinit {
        for c in conns where c.fd >= 0 {
            if let t = c.token { reactor.deregister(t) }
            StreamSocket.close(c.fd)
        }
        scratch.deallocate()
        reactor.close()
    }

    func run() throws(BenchError) -> Result {
        for i in 0..<config.connections {
            let c = Connection(index: i)
            do { c.fd = try StreamSocket.connect(to: config.address) } catch {
                throw BenchError("connection \(i + 1) of \(config.connections): \(error)")
            }
            do {
                c.token = try reactor.register(c.fd, interest: .readable) { [unowned self, unowned c] r in self.onEvent(c, r) }
            } catch {
                throw BenchError("cannot watch connection \(i + 1): \(error)")
            }
            conns.append(c)
        }
        switch config.mode {
        case .turns:
            for c in conns { sendTurn(c) }
            reactor.schedule(after: .nanoseconds(Int64(config.warmupNs))) { [unowned self] in
                self.measuring = true
                self.startNs = monotonicNanoseconds()
                self.startTurns = self.completed
                self.reactor.schedule(after: .nanoseconds(Int64(self.config.durationNs))) { [unowned self] in
                    self.result.turns = self.completed - self.startTurns
                    self.result.elapsedNs = monotonicNanoseconds() - self.startNs
                    self.reactor.stop()
                }
            }
        case .drain(let turns, let maxWorkMs, _):
            for k in 0..<turns {
                let c = conns[k % conns.count]
                queueTurn(c, workMs: Int.random(in: 0...maxWorkMs, using: &rng))
            }
            for c in conns { flush(c) }
        case .open(let sessions):
            for k in 0..<sessions {
                let c = conns[k % conns.count]
                c.outbox.append(contentsOf: "{\"op\":\"open\",\"session\":\"\(config.prefix)-s\(k)\"}\n".utf8)
                c.sent += 1
            }
            for c in conns { flush(c) }
        }
        do { try reactor.run() } catch { throw BenchError("event loop failed: \(error)") }
        if let failure { throw failure }
        for c in conns {
            result.accepted += c.accepted
            result.replies += c.replied
            result.goodbyes += c.goodbye ? 1 : 0
        }
        return result
    }

    private func queueTurn(_ c: Connection, workMs: Int) {
        let id = "\(config.prefix)-\(c.index)-\(c.sent)"
        c.outbox.append(contentsOf: "{\"op\":\"send\",\"session\":\"\(config.prefix)-s\(c.index)\",\"id\":\"\(id)\",\"text\":\"t\",\"work_ms\":\(workMs)}\n".utf8)
        c.sent += 1
    }

    private func sendTurn(_ c: Connection) {
        guard case .turns(let workMs) = config.mode else { return }
        queueTurn(c, workMs: workMs)
        flush(c)
    }

    private func onEvent(_ c: Connection, _ r: Readiness) {
        if r.contains(.writable) { flush(c) }
        if r.contains(.readable) || r.contains(.hangup) || r.contains(.error) { receive(c) }
    }

    private func receive(_ c: Connection) {
        while !c.closed {
            let res: IOResult
            do { res = try StreamSocket.read(c.fd, into: scratch) } catch { return closed(c, error: "\(error)") }
            guard case .processed(let n) = res else { break }
            if n == 0 { return closed(c, error: nil) }
            c.inbox.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
            if n < scratch.count { break }
        }
        var start = 0
        while let nl = c.inbox[start...].firstIndex(of: 0x0A) {
            line(c, String(decoding: c.inbox[start..<nl], as: UTF8.self))
            start = nl + 1
        }
        c.inbox.removeFirst(start)
    }

    private func line(_ c: Connection, _ l: String) {
        if l.hasPrefix("{\"op\":\"accepted\"") {
            c.accepted += 1
        } else if l.hasPrefix("{\"op\":\"reply\"") {
            c.replied += 1
            completed += 1
            if case .turns = config.mode { sendTurn(c) }
        } else if l.hasPrefix("{\"op\":\"opened\"") {
            c.accepted += 1
            completed += 1
            if case .open(let sessions) = config.mode, completed == UInt64(sessions) { reactor.stop() }
        } else if l.hasPrefix("{\"op\":\"goodbye\"") {
            c.goodbye = true
        } else if l.contains("\"code\":\"draining\"") {
            result.refused += 1
        } else {
            abort("unexpected line on connection \(c.index + 1): \(l.prefix(200))")
        }
        if case .drain(let turns, _, let pid) = config.mode, signalledNs == 0 {
            let acks = conns.reduce(0) { $0 + $1.accepted }
            if acks == turns {
                // Everything is in flight and durable: stop the server now.
                signalledNs = monotonicNanoseconds()
                if kill(pid, SIGTERM) != 0 { abort("kill(\(pid), SIGTERM) failed: errno \(errno)") }
            }
        }
    }

    private func flush(_ c: Connection) {
        var written = 0
        while written < c.outbox.count {
            let res: IOResult
            do {
                res = try c.outbox.withUnsafeBytes { (b) throws(SystemCallError) -> IOResult in
                    try StreamSocket.write(c.fd, from: UnsafeRawBufferPointer(rebasing: b[written...]))
                }
            } catch { return closed(c, error: "\(error)") }
            guard case .processed(let k) = res else { break }
            written += k
        }
        c.outbox.removeFirst(written)
        if let t = c.token { try? reactor.reregister(t, interest: c.outbox.isEmpty ? .readable : [.readable, .writable]) }
    }

    private func closed(_ c: Connection, error: String?) {
        guard !c.closed else { return }
        c.closed = true
        if let t = c.token { reactor.deregister(t) }
        c.token = nil
        StreamSocket.close(c.fd)
        c.fd = -1
        guard case .drain = config.mode, signalledNs > 0 else {
            return abort("connection \(c.index + 1) closed by the server\(error.map { ": \($0)" } ?? "")")
        }
        closedCount += 1
        if closedCount == conns.count {
            result.drainNs = monotonicNanoseconds() - signalledNs
            reactor.stop()
        }
    }

    private func abort(_ message: String) {
        if failure == nil { failure = BenchError(message) }
        reactor.stop()
    }
}
