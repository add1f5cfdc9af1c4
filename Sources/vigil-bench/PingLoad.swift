// The ping load: N connections, `depth` requests in flight on each, on one
// reactor. Every request is the same 14-byte line and every expected reply
// is the same 14-byte line, so the hot path only counts newlines and writes
// a slice of a preallocated buffer of requests: no allocation, no parsing,
// one read(2) and at most one write(2) per readable event.
import Glibc
import VigilReactor

/// `{"op":"ping"}\n`
let pingLine: [UInt8] = Array("{\"op\":\"ping\"}\n".utf8)
/// `{"op":"pong"}\n`
let pongLine: [UInt8] = Array("{\"op\":\"pong\"}\n".utf8)

/// What went wrong during a run (the message is printed as is).
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

final class PingLoad {
    struct Config {
        var address: SocketAddress
        var connections: Int
        var depth: Int
        var warmupNs: UInt64
        var durationNs: UInt64
        /// The server's pid, when its CPU time over the window is wanted.
        var serverPID: Int32?
        /// Latency is recorded per request only with one request in flight.
        var measuresLatency: Bool { depth == 1 }
    }

    /// Per-connection state, in one preallocated array indexed by connection.
    struct Connection {
        var fd: Int32 = -1
        var token: Token?
        /// Request bytes owed to the server but not written yet (EAGAIN).
        var owed = 0
        /// Where in the request line the owed bytes start.
        var phase = 0
        /// CLOCK_MONOTONIC of the last request sent (depth 1 only).
        var sentAt: UInt64 = 0
        var watchingWritable = false
        var bytesIn: UInt64 = 0
        var linesIn: UInt64 = 0
    }

    let config: Config
    let reactor: Reactor
    private let conns: UnsafeMutablePointer<Connection>
    private var opened = 0
    /// `depth + 1` request lines back to back: any owed range fits in it.
    private let requests: UnsafeMutableRawBufferPointer
    private let scratch: UnsafeMutableRawBufferPointer
    private let lineBytes = pingLine.count

    // Counters
    private var replies: UInt64 = 0
    private var startReplies: UInt64 = 0
    private var endReplies: UInt64 = 0
    private var window = MeasuredWindow()
    private var verified = false
    private var failure: BenchError?

    // Latency samples (nanoseconds, saturated at UInt32.max), preallocated.
    private var recording = false
    private var samples: UnsafeMutablePointer<UInt32>?
    private var sampleCapacity = 0
    private var sampleCount = 0
    private var samplesDropped = 0

    init(_ config: Config) throws(SystemCallError) {
        self.config = config
        reactor = try Reactor()
        conns = .allocate(capacity: config.connections)
        conns.initialize(repeating: Connection(), count: config.connections)
        let lines = UnsafeMutableRawBufferPointer.allocate(byteCount: (config.depth + 1) * pingLine.count, alignment: 64)
        pingLine.withUnsafeBytes { src in
            for i in 0...config.depth {
                UnsafeMutableRawBufferPointer(rebasing: lines[(i * src.count)..<((i + 1) * src.count)]).copyMemory(from: src)
            }
        }
        requests = lines
        scratch = .allocate(byteCount: 64 * 1024, alignment: 64)
        if config.measuresLatency {
            // Up to 2 M replies/s for the measured window (≥ 1 M samples,
            // ≤ 32 M = 128 MiB), touched now so no page fault lands in a sample.
            let window = Double(config.durationNs) / 1e9
            sampleCapacity = min(max(Int(window * 2_000_000), 1 << 20), 32 << 20)
            samples = .allocate(capacity: sampleCapacity)
            samples!.initialize(repeating: 0, count: sampleCapacity)
        }
    }

    deinit {
        for i in 0..<opened where conns[i].fd >= 0 {
            if let t = conns[i].token { reactor.deregister(t) }
            StreamSocket.close(conns[i].fd)
        }
        conns.deinitialize(count: config.connections)
        conns.deallocate()
        requests.deallocate()
        scratch.deallocate()
        samples?.deallocate()
        reactor.close()
    }

    struct Result {
        var roundTrips: UInt64
        var elapsedNs: UInt64
        var latency: Latency?
        /// CPU time (ns) the server and this client used in the window.
        var serverCPUNs: UInt64?
        var clientCPUNs: UInt64
        /// All CPUs over the window: busy and stolen time (ns), from /proc/stat.
        var systemBusyNs: UInt64?
        var systemStealNs: UInt64?

        var rate: Double { elapsedNs == 0 ? 0 : Double(roundTrips) * 1e9 / Double(elapsedNs) }
    }

    /// Latency percentiles in nanoseconds.
    struct Latency {
        var samples: Int
        var dropped: Int
        var p50: UInt32
        var p99: UInt32
        var p999: UInt32
        var max: UInt32
    }

    func run() throws(BenchError) -> Result {
        try openConnections()
        for i in 0..<config.connections { send(i, requests: config.depth, now: monotonicNanoseconds()) }
        if let failure { throw failure }

        reactor.schedule(after: .nanoseconds(Int64(config.warmupNs))) { [unowned self] in self.startMeasuring() }
        do { try reactor.run() } catch {
            throw BenchError("event loop failed: \(error)")
        }
        if let failure { throw failure }
        try checkReplies()
        return Result(
            roundTrips: endReplies &- startReplies, elapsedNs: window.elapsedNs, latency: percentiles(),
            serverCPUNs: window.serverCPUNs, clientCPUNs: window.clientCPUNs,
            systemBusyNs: window.systemBusyNs, systemStealNs: window.systemStealNs)
    }

    private func openConnections() throws(BenchError) {
        for i in 0..<config.connections {
            let fd: Int32
            do { fd = try StreamSocket.connect(to: config.address) } catch {
                throw BenchError("connection \(i + 1) of \(config.connections): \(error)")
            }
            conns[i].fd = fd
            opened = i + 1
            do {
                conns[i].token = try reactor.register(fd, interest: .readable) { [unowned self] r in self.onEvent(i, r) }
            } catch {
                throw BenchError("cannot watch connection \(i + 1): \(error)")
            }
        }
    }

    private func startMeasuring() {
        window.start(serverPID: config.serverPID)
        startReplies = replies
        recording = config.measuresLatency
        reactor.schedule(after: .nanoseconds(Int64(config.durationNs))) { [unowned self] in self.stopMeasuring() }
    }

    private func stopMeasuring() {
        window.stop(serverPID: config.serverPID)
        endReplies = replies
        recording = false
        reactor.stop()
    }

    private func abort(_ message: String) {
        if failure == nil { failure = BenchError(message) }
        reactor.stop()
    }

    // MARK: Hot path

    private func onEvent(_ i: Int, _ r: Readiness) {
        if r.contains(.writable) { flush(i) }
        if r.contains(.readable) || r.contains(.hangup) || r.contains(.error) { receive(i) }
    }

    private func receive(_ i: Int) {
        let fd = conns[i].fd
        guard fd >= 0 else { return }
        var lines = 0
        while true {
            let result: IOResult
            do { result = try StreamSocket.read(fd, into: scratch) } catch {
                return lost(i, "\(error)")
            }
            guard case .processed(let n) = result else { break }
            if n == 0 { return lost(i, "server closed the connection") }
            let bytes = scratch.baseAddress!.assumingMemoryBound(to: UInt8.self)
            if !verified { verifyFirstReply(bytes, n) }
            lines &+= countNewlines(bytes, n)
            conns[i].bytesIn &+= UInt64(n)
            if n < scratch.count { break }
        }
        guard lines > 0 else { return }
        conns[i].linesIn &+= UInt64(lines)
        replies &+= UInt64(lines)
        if config.measuresLatency {
            let now = monotonicNanoseconds()
            if recording {
                if sampleCount < sampleCapacity {
                    let d = now &- conns[i].sentAt
                    samples![sampleCount] = d > UInt64(UInt32.max) ? .max : UInt32(d)
                    sampleCount += 1
                } else {
                    samplesDropped += 1
                }
            }
            send(i, requests: lines, now: now)
        } else {
            send(i, requests: lines, now: 0)
        }
    }

    /// Owes `k` more requests to connection `i` and writes what it can.
    @inline(__always)
    private func send(_ i: Int, requests k: Int, now: UInt64) {
        conns[i].owed += k * lineBytes
        conns[i].sentAt = now
        flush(i)
    }

    private func flush(_ i: Int) {
        let fd = conns[i].fd
        while conns[i].owed > 0 {
            let chunk = UnsafeRawBufferPointer(rebasing: requests[conns[i].phase..<(conns[i].phase + conns[i].owed)])
            let result: IOResult
            do { result = try StreamSocket.write(fd, from: chunk) } catch {
                return lost(i, "\(error)")
            }
            guard case .processed(let w) = result else { break }
            conns[i].owed -= w
            conns[i].phase = (conns[i].phase + w) % lineBytes
        }
        let wantWritable = conns[i].owed > 0
        if wantWritable != conns[i].watchingWritable, let t = conns[i].token {
            do { try reactor.reregister(t, interest: wantWritable ? [.readable, .writable] : .readable) } catch {
                return lost(i, "\(error)")
            }
            conns[i].watchingWritable = wantWritable
        }
    }

    private func lost(_ i: Int, _ why: String) {
        abort("connection \(i + 1): \(why)")
        if let t = conns[i].token { reactor.deregister(t) }
        conns[i].token = nil
        StreamSocket.close(conns[i].fd)
        conns[i].fd = -1
    }

    @inline(__always)
    private func countNewlines(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var c = 0
        for k in 0..<n { c &+= p[k] == 0x0A ? 1 : 0 }
        return c
    }

    // MARK: Checks and results

    /// The first bytes ever read start a connection's first reply: it must
    /// be exactly `{"op":"pong"}\n`.
    private func verifyFirstReply(_ p: UnsafePointer<UInt8>, _ n: Int) {
        verified = true
        let got = Array(UnsafeBufferPointer(start: p, count: min(n, 80)))
        if n < pongLine.count || !got.starts(with: pongLine) {
            let text = String(decoding: got.prefix { $0 != 0x0A }, as: UTF8.self)
            abort("unexpected reply '\(text)' (expected {\"op\":\"pong\"})")
        }
    }

    /// Every reply must have been a pong line: each connection received
    /// 14 bytes per complete line, plus at most one partial line.
    private func checkReplies() throws(BenchError) {
        let n = UInt64(pongLine.count)
        for i in 0..<config.connections {
            let c = conns[i]
            if c.bytesIn < c.linesIn * n || c.bytesIn - c.linesIn * n >= n {
                throw BenchError("connection \(i + 1): \(c.bytesIn) bytes in \(c.linesIn) replies: not all replies were {\"op\":\"pong\"}")
            }
        }
    }

    private func percentiles() -> Latency? {
        guard let samples, config.measuresLatency else { return nil }
        let n = sampleCount
        guard n > 0 else { return Latency(samples: 0, dropped: samplesDropped, p50: 0, p99: 0, p999: 0, max: 0) }
        var buf = UnsafeMutableBufferPointer(start: samples, count: n)
        buf.sort()
        // Nearest rank: the smallest sample with at least q·n samples at or below it.
        func rank(_ q: Double) -> UInt32 {
            let r = Int((q * Double(n)).rounded(.up))
            return buf[min(max(r, 1), n) - 1]
        }
        return Latency(samples: n, dropped: samplesDropped, p50: rank(0.5), p99: rank(0.99), p999: rank(0.999), max: buf[n - 1])
    }
}

extension PingLoad.Result {
    /// `ping connections=256 depth=16 duration=5.00s round_trips=… rate=…/s [p50_us=… p99_us=… p999_us=… samples=…]`
    func summary(_ c: PingLoad.Config) -> String {
        var s = "ping connections=\(c.connections) depth=\(c.depth) duration=\(fixed(Double(elapsedNs) / 1e9, 2))s"
        s += " round_trips=\(roundTrips) rate=\(fixed(rate, 0))/s"
        if let l = latency {
            s += " p50_us=\(us(l.p50)) p99_us=\(us(l.p99)) p999_us=\(us(l.p999)) max_us=\(us(l.max)) samples=\(l.samples)"
            if l.dropped > 0 { s += " samples_dropped=\(l.dropped)" }
        }
        s += " client_cpu=\(fixed(cpuShare(clientCPUNs), 2))"
        if let server = serverCPUNs {
            s += " server_cpu=\(fixed(cpuShare(server), 2)) server_ns_per_rt=\(fixed(perRoundTrip(server), 0))"
        }
        if let other = otherCPUNs { s += " other_cpu=\(fixed(cpuShare(other), 2))" }
        if let steal = systemStealNs, steal > 0 { s += " steal=\(fixed(cpuShare(steal), 2))" }
        return s
    }

    func json(_ c: PingLoad.Config) -> String {
        var s = "{\"benchmark\":\"ping\",\"address\":\(jsonString(c.address.description)),\"connections\":\(c.connections),\"depth\":\(c.depth)"
        s += ",\"warmup_s\":\(fixed(Double(c.warmupNs) / 1e9, 3)),\"duration_s\":\(fixed(Double(elapsedNs) / 1e9, 3))"
        s += ",\"round_trips\":\(roundTrips),\"rate_per_s\":\(fixed(rate, 0))"
        if let l = latency {
            s += ",\"latency_us\":{\"samples\":\(l.samples),\"dropped\":\(l.dropped),\"p50\":\(us(l.p50)),\"p99\":\(us(l.p99))"
            s += ",\"p999\":\(us(l.p999)),\"max\":\(us(l.max))}"
        } else {
            s += ",\"latency_us\":null"
        }
        s += ",\"client_cpu\":\(fixed(cpuShare(clientCPUNs), 3))"
        if let server = serverCPUNs {
            s += ",\"server_cpu\":\(fixed(cpuShare(server), 3)),\"server_ns_per_round_trip\":\(fixed(perRoundTrip(server), 0))"
        }
        if let other = otherCPUNs { s += ",\"other_cpu\":\(fixed(cpuShare(other), 3))" }
        if let steal = systemStealNs { s += ",\"steal_cpu\":\(fixed(cpuShare(steal), 3))" }
        return s + "}"
    }

    private func us(_ ns: UInt32) -> String { fixed(Double(ns) / 1000, 1) }
    /// Cores' worth of CPU over the window (1.00 = one core busy throughout).
    private func cpuShare(_ ns: UInt64) -> Double { elapsedNs == 0 ? 0 : Double(ns) / Double(elapsedNs) }
    /// Busy CPU of every other process (and the kernel's own work) in the
    /// window: what the machine did besides this benchmark.
    private var otherCPUNs: UInt64? {
        guard let busy = systemBusyNs else { return nil }
        let ours = clientCPUNs &+ (serverCPUNs ?? 0)
        return busy > ours ? busy - ours : 0
    }
    private func perRoundTrip(_ ns: UInt64) -> Double { roundTrips == 0 ? 0 : Double(ns) / Double(roundTrips) }
}
