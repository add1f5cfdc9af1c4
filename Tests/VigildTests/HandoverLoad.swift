import Foundation
import Glibc

/// Clients of a gateway under restart (docs/benchmarks.md, "Handover"):
/// half with a session sending a turn every `interval`, half pinging at
/// the same pace, each with at most one request outstanding. Driven from
/// one thread with poll(2). It counts what a client would notice: EOF or
/// reset, `goodbye`, requests that never got their answer, error lines;
/// and each answer's latency (send → pong / reply / interrupted event),
/// counted from the first request that failed before it, if any: the pause
/// the client sees, reconnect and re-open included.
final class HandoverLoad {
    struct Figures {
        var requests = 0, answered = 0, failed = 0
        var disconnects = 0, goodbyes = 0, reconnects = 0, interrupted = 0
        var errors: [String] = []
        var latenciesNs: [UInt64] = []

        func percentile(_ p: Double) -> Double {
            guard !latenciesNs.isEmpty else { return 0 }
            let s = latenciesNs.sorted()
            return Double(s[min(s.count - 1, Int(Double(s.count) * p))]) / 1e6
        }
        var summary: String {
            String(format: "%d requests, %d answered, %d failed, %d disconnects, %d goodbyes, %d reconnects, %d interrupted; latency ms p50 %.2f p99 %.2f max %.2f",
                   requests, answered, failed, disconnects, goodbyes, reconnects, interrupted, percentile(0.5), percentile(0.99), percentile(1.0))
        }
    }

    private final class Client {
        var fd: Int32 = -1
        let turns: Bool
        let session: String
        var buffer: [UInt8] = []
        /// Outstanding request: id (turns) and when it was sent; nil when idle.
        var outstanding: (id: String, sentNs: UInt64)?
        /// When the first request that failed since the last answer was sent:
        /// the pause this client sees runs from there to its next answer.
        var failedSinceNs: UInt64?
        var opening = false
        var nextNs: UInt64 = 0
        var seq = 0
        init(turns: Bool, session: String) {
            self.turns = turns
            self.session = session
        }
    }

    let port: UInt16
    let interval: UInt64
    let reconnect: Bool
    private var clients: [Client] = []
    private(set) var figures = Figures()
    private let lock = NSLock()
    private var stopSending = false
    private var finished = false
    private var thread: Thread?

    init(port: UInt16, clients: Int, interval: Duration = .milliseconds(100), reconnect: Bool) {
        self.port = port
        self.interval = UInt64(interval.components.attoseconds / 1_000_000_000) + UInt64(interval.components.seconds) * 1_000_000_000
        self.reconnect = reconnect
        for i in 0..<clients { self.clients.append(Client(turns: i % 2 == 0, session: "load-\(port)-\(i)")) }
    }

    static func nowNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Connects every client (turn clients open their session), then drives
    /// them on a thread until ``finish(timeout:)``.
    func start() throws {
        for c in clients {
            guard connect(c) else { throw NSError(domain: "HandoverLoad", code: 1, userInfo: [NSLocalizedDescriptionKey: "connect failed: errno \(errno)"]) }
        }
        let t = Thread { [self] in loop() }
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// Stops sending, waits until every outstanding request is answered (or
    /// `timeout`), and returns the figures. Outstanding at the end: failed.
    func finish(timeout: Double = 15) -> Figures {
        lock.withLock { stopSending = true }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if lock.withLock({ clients.allSatisfy { $0.outstanding == nil && !$0.opening } }) { break }
            usleep(20_000)
        }
        lock.withLock { finished = true }
        while thread?.isFinished == false { usleep(10_000) }
        for c in clients where c.outstanding != nil {
            figures.failed += 1
            figures.errors.append("\(c.session): no answer to \(c.outstanding!.id)")
        }
        for c in clients where c.fd >= 0 { close(c.fd); c.fd = -1 }
        return figures
    }

    private func connect(_ c: Client) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { close(fd); return false }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        c.fd = fd
        c.buffer = []
        if c.turns {
            c.opening = true
            write(c, #"{"op":"open","session":"\#(c.session)"}"# + "\n")
        }
        c.nextNs = Self.nowNs() + UInt64.random(in: 0..<interval)
        return true
    }

    private func write(_ c: Client, _ text: String) {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(c.fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EAGAIN { usleep(100); continue }
            if n <= 0 { return }  // the read side sees the EOF/reset
            sent += n
        }
    }

    private func loop() {
        var polls = [pollfd](repeating: pollfd(), count: clients.count)
        var buf = [UInt8](repeating: 0, count: 65536)
        while !lock.withLock({ finished }) {
            let now = Self.nowNs()
            let sending = !lock.withLock { stopSending }
            lock.lock()
            for c in clients {
                if c.fd < 0 {
                    if reconnect && sending && now >= c.nextNs {
                        if connect(c) { figures.reconnects += 1 } else { c.nextNs = now + 10_000_000 }
                    }
                    continue
                }
                guard sending, c.outstanding == nil, !c.opening, now >= c.nextNs else { continue }
                c.seq += 1
                let id = "m\(c.seq)"
                c.outstanding = (id, now)
                figures.requests += 1
                write(c, c.turns ? #"{"op":"send","session":"\#(c.session)","id":"\#(id)","text":"x"}"# + "\n" : #"{"op":"ping"}"# + "\n")
            }
            for (i, c) in clients.enumerated() { polls[i] = pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0) }
            lock.unlock()
            let n = poll(&polls, nfds_t(polls.count), 5)
            guard n > 0 else { continue }
            lock.lock()
            for (i, c) in clients.enumerated() where polls[i].revents != 0 && c.fd >= 0 {
                let r = buf.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
                if r < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                if r <= 0 {
                    disconnected(c)
                    continue
                }
                c.buffer.append(contentsOf: buf[0..<r])
                while let nl = c.buffer.firstIndex(of: 0x0A) {
                    let line = String(decoding: c.buffer[..<nl], as: UTF8.self)
                    c.buffer.removeSubrange(...nl)
                    handle(line, c)
                }
            }
            lock.unlock()
        }
    }

    private func disconnected(_ c: Client) {
        figures.disconnects += 1
        close(c.fd)
        c.fd = -1
        c.opening = false
        if let o = c.outstanding {
            figures.failed += 1
            figures.errors.append("\(c.session): disconnected with \(o.id) unanswered")
            c.failedSinceNs = c.failedSinceNs ?? o.sentNs
            c.outstanding = nil
        }
        c.nextNs = Self.nowNs() + 10_000_000
    }

    private func done(_ c: Client) {
        if let o = c.outstanding { figures.latenciesNs.append(Self.nowNs() - (c.failedSinceNs ?? o.sentNs)) }
        c.failedSinceNs = nil
        figures.answered += 1
        c.outstanding = nil
        c.nextNs = Self.nowNs() + interval
    }

    private func handle(_ line: String, _ c: Client) {
        if line.contains(#""op":"goodbye""#) { figures.goodbyes += 1; return }
        if c.opening, line.contains(#""op":"opened""#) { c.opening = false; return }
        guard let o = c.outstanding else {
            figures.errors.append("\(c.session): unexpected \(line)")
            return
        }
        if !c.turns {
            if line == #"{"op":"pong"}"# { return done(c) }
        } else if line.contains(#""id":"\#(o.id)""#) {
            if line.contains(#""op":"accepted""#) { return }
            if line.contains(#""op":"reply""#) { return done(c) }
            if line.contains(#""op":"interrupted""#) { figures.interrupted += 1; return done(c) }
        }
        // An error (draining, unavailable…): the request failed.
        figures.errors.append("\(c.session): \(line)")
        if line.contains(#""op":"error""#) {
            figures.failed += 1
            c.failedSinceNs = c.failedSinceNs ?? o.sentNs
            c.outstanding = nil
            c.nextNs = Self.nowNs() + interval
        }
    }
}
