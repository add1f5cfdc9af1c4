// The ledger load (`vigil run`'s $VIGIL_LEDGER, docs/run.md): N clients on
// one reactor, each with exactly one request outstanding — begin, wait for
// its ok, end, wait for its ok, next unit — as a program's workers would.
// Every ok is a record made durable by the ledger's group commit, so the
// rate is records per second and the begin → ok time is what a worker
// waits before it may start its work.
//
// After the measured window every client ends the unit it has open, so the
// ledger is left with none (a stop after the load is clean, and the next
// start reports nothing interrupted).
//
// The client must cost little next to the server on a 2-core machine: one
// read(2) and one write(2) per answer, requests built into a preallocated
// buffer, no allocation per request, answers checked by their prefix.
import Glibc
import VigilReactor

final class LedgerLoad {
    struct Config {
        var address: SocketAddress
        var clients: Int
        var warmupNs: UInt64
        var durationNs: UInt64
        /// Session names are `PREFIX-cK`, ids `uN` (unique per session and run).
        var prefix: String
        /// The server's pid, when its CPU time over the window is wanted.
        var serverPID: Int32?
    }

    /// Per-client state, in one preallocated array indexed by client.
    struct Client {
        var fd: Int32 = -1
        var token: Token?
        /// Units begun; the current one's id is `u<begun>`.
        var begun: UInt64 = 0
        /// The outstanding request is an end (else a begin).
        var ending = false
        /// CLOCK_MONOTONIC when the outstanding request was written.
        var sentAt: UInt64 = 0
        /// Bytes of a partial answer line received so far.
        var partial = 0
        /// Request bytes not written yet (EAGAIN, rare: one small line).
        var owed = 0
        var watchingWritable = false
    }

    let config: Config
    let reactor: Reactor
    private let clients: UnsafeMutablePointer<Client>
    private var opened = 0
    /// Per client, its request line being written (at most `lineCapacity`).
    private let lines: UnsafeMutablePointer<UInt8>
    private let lineCapacity = 2048
    private var lineLength: UnsafeMutablePointer<Int>
    /// Per client, the answer line being assembled (answers are short).
    private let answers: UnsafeMutablePointer<UInt8>
    private let answerCapacity = 512
    private let scratch: UnsafeMutableRawBufferPointer
    private let sessions: [[UInt8]]

    // Counters
    private var records: UInt64 = 0
    private var startRecords: UInt64 = 0
    private var endRecords: UInt64 = 0
    private var window = MeasuredWindow()
    private var failure: BenchError?
    /// The window is over: clients end their open unit and begin no other.
    private var finishing = false
    private var finished = 0

    // Latency samples (nanoseconds, saturated at UInt32.max), preallocated:
    // begin → ok and end → ok separately.
    private var recording = false
    private let beginSamples: SampleBuffer
    private let endSamples: SampleBuffer

    init(_ config: Config) throws(SystemCallError) {
        self.config = config
        reactor = try Reactor()
        clients = .allocate(capacity: config.clients)
        clients.initialize(repeating: Client(), count: config.clients)
        lines = .allocate(capacity: config.clients * lineCapacity)
        lineLength = .allocate(capacity: config.clients)
        lineLength.initialize(repeating: 0, count: config.clients)
        answers = .allocate(capacity: config.clients * answerCapacity)
        scratch = .allocate(byteCount: 4096, alignment: 64)
        sessions = (0..<config.clients).map { Array("\(config.prefix)-c\($0)".utf8) }
        // A durable record takes ≥ tens of µs: 200 k/s of each kind is ample.
        let capacity = min(max(Int(Double(config.durationNs) / 1e9 * 200_000), 1 << 16), 16 << 20)
        beginSamples = SampleBuffer(capacity: capacity)
        endSamples = SampleBuffer(capacity: capacity)
    }

    deinit {
        for i in 0..<opened where clients[i].fd >= 0 {
            if let t = clients[i].token { reactor.deregister(t) }
            StreamSocket.close(clients[i].fd)
        }
        clients.deinitialize(count: config.clients)
        clients.deallocate()
        lines.deallocate()
        lineLength.deallocate()
        answers.deallocate()
        scratch.deallocate()
        reactor.close()
    }

    struct Result {
        /// Durable records (begin and end oks) in the window.
        var records: UInt64
        var elapsedNs: UInt64
        var begin: SampleBuffer.Latency
        var end: SampleBuffer.Latency
        var serverCPUNs: UInt64?
        var clientCPUNs: UInt64
        var systemBusyNs: UInt64?
        var systemStealNs: UInt64?

        var rate: Double { elapsedNs == 0 ? 0 : Double(records) * 1e9 / Double(elapsedNs) }
    }

    func run() throws(BenchError) -> Result {
        try openClients()
        let now = monotonicNanoseconds()
        for i in 0..<config.clients { sendNext(i, now: now) }
        if let failure { throw failure }
        reactor.schedule(after: .nanoseconds(Int64(config.warmupNs))) { [unowned self] in self.startMeasuring() }
        do { try reactor.run() } catch { throw BenchError("event loop failed: \(error)") }
        if let failure { throw failure }
        return Result(records: endRecords &- startRecords, elapsedNs: window.elapsedNs,
                      begin: beginSamples.percentiles(), end: endSamples.percentiles(),
                      serverCPUNs: window.serverCPUNs, clientCPUNs: window.clientCPUNs,
                      systemBusyNs: window.systemBusyNs, systemStealNs: window.systemStealNs)
    }

    private func openClients() throws(BenchError) {
        for i in 0..<config.clients {
            let fd: Int32
            do { fd = try StreamSocket.connect(to: config.address) } catch {
                throw BenchError("client \(i + 1) of \(config.clients): \(error)")
            }
            clients[i].fd = fd
            opened = i + 1
            do {
                clients[i].token = try reactor.register(fd, interest: .readable) { [unowned self] r in self.onEvent(i, r) }
            } catch {
                throw BenchError("cannot watch client \(i + 1): \(error)")
            }
        }
    }

    private func startMeasuring() {
        window.start(serverPID: config.serverPID)
        startRecords = records
        recording = true
        reactor.schedule(after: .nanoseconds(Int64(config.durationNs))) { [unowned self] in self.stopMeasuring() }
    }

    private func stopMeasuring() {
        window.stop(serverPID: config.serverPID)
        endRecords = records
        recording = false
        // Every client's open unit ended (at most one answer away), within 10 s.
        finishing = true
        reactor.schedule(after: .seconds(10)) { [unowned self] in
            self.abort("\(self.config.clients - self.finished) client(s) still without an answer 10 s after the window")
        }
    }

    private func abort(_ message: String) {
        if failure == nil { failure = BenchError(message) }
        reactor.stop()
    }

    // MARK: Requests

    private static let beginHead: [UInt8] = Array("{\"op\":\"begin\",\"session\":\"".utf8)
    private static let endHead: [UInt8] = Array("{\"op\":\"end\",\"session\":\"".utf8)
    private static let idHead: [UInt8] = Array("\",\"id\":\"u".utf8)
    private static let tail: [UInt8] = Array("\"}\n".utf8)
    /// Every answer this load expects starts so (`{"op":"ok","id":"u…"}`).
    private static let okHead: [UInt8] = Array("{\"op\":\"ok\"".utf8)

    /// Builds client `i`'s next request (end of the open unit, or begin of a
    /// new one) into its line buffer and writes it.
    private func sendNext(_ i: Int, now: UInt64) {
        if !clients[i].ending { clients[i].begun &+= 1 }
        let line = lines + i * lineCapacity
        var n = 0
        func put(_ bytes: [UInt8]) {
            bytes.withUnsafeBufferPointer { b in
                (line + n).update(from: b.baseAddress!, count: b.count)
                n += b.count
            }
        }
        put(clients[i].ending ? Self.endHead : Self.beginHead)
        put(sessions[i])
        put(Self.idHead)
        // The id's decimal digits, most significant first.
        var v = clients[i].begun, digits = 0
        repeat { digits += 1; v /= 10 } while v > 0
        v = clients[i].begun
        for k in stride(from: digits - 1, through: 0, by: -1) {
            line[n + k] = UInt8(ascii: "0") + UInt8(v % 10)
            v /= 10
        }
        n += digits
        put(Self.tail)
        lineLength[i] = n
        clients[i].owed = n
        clients[i].sentAt = now
        flush(i)
    }

    private func flush(_ i: Int) {
        let fd = clients[i].fd
        let line = lines + i * lineCapacity
        while clients[i].owed > 0 {
            let start = lineLength[i] - clients[i].owed
            let result: IOResult
            do { result = try StreamSocket.write(fd, from: UnsafeRawBufferPointer(start: line + start, count: clients[i].owed)) } catch {
                return lost(i, "\(error)")
            }
            guard case .processed(let w) = result else { break }
            clients[i].owed -= w
        }
        let wantWritable = clients[i].owed > 0
        if wantWritable != clients[i].watchingWritable, let t = clients[i].token {
            do { try reactor.reregister(t, interest: wantWritable ? [.readable, .writable] : .readable) } catch {
                return lost(i, "\(error)")
            }
            clients[i].watchingWritable = wantWritable
        }
    }

    // MARK: Answers

    private func onEvent(_ i: Int, _ r: Readiness) {
        if r.contains(.writable) { flush(i) }
        if r.contains(.readable) || r.contains(.hangup) || r.contains(.error) { receive(i) }
    }

    private func receive(_ i: Int) {
        let fd = clients[i].fd
        guard fd >= 0 else { return }
        let result: IOResult
        do { result = try StreamSocket.read(fd, into: scratch) } catch { return lost(i, "\(error)") }
        guard case .processed(let n) = result else { return }
        if n == 0 { return lost(i, "the ledger closed the connection") }
        let bytes = scratch.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let answer = answers + i * answerCapacity
        for k in 0..<n {
            let b = bytes[k]
            if b == 0x0A {
                guard k == n - 1 else {
                    return abort("client \(i + 1): more than one answer to one request")
                }
                return answered(i, length: clients[i].partial)
            }
            guard clients[i].partial < answerCapacity else {
                return abort("client \(i + 1): an answer longer than \(answerCapacity) bytes")
            }
            answer[clients[i].partial] = b
            clients[i].partial += 1
        }
    }

    /// A whole answer line (without its newline) is in client `i`'s buffer.
    private func answered(_ i: Int, length: Int) {
        let now = monotonicNanoseconds()
        clients[i].partial = 0
        let answer = answers + i * answerCapacity
        let ok = length >= Self.okHead.count && Self.okHead.withUnsafeBufferPointer { head in
            memcmp(answer, head.baseAddress!, head.count) == 0
        }
        guard ok else {
            let text = String(decoding: UnsafeBufferPointer(start: answer, count: min(length, 300)), as: UTF8.self)
            return abort("client \(i + 1): unexpected answer '\(text)' to \(clients[i].ending ? "end" : "begin") of u\(clients[i].begun)")
        }
        records &+= 1
        if recording {
            let d = now &- clients[i].sentAt
            (clients[i].ending ? endSamples : beginSamples).add(d)
        }
        if finishing && clients[i].ending {
            // This client's last unit has ended.
            finished += 1
            if finished == config.clients { reactor.stop() }
            return
        }
        clients[i].ending.toggle()
        sendNext(i, now: now)
    }

    private func lost(_ i: Int, _ why: String) {
        abort("client \(i + 1): \(why)")
        if let t = clients[i].token { reactor.deregister(t) }
        clients[i].token = nil
        StreamSocket.close(clients[i].fd)
        clients[i].fd = -1
    }
}

/// Latency samples in nanoseconds (saturated at UInt32.max), preallocated
/// and touched up front so no page fault lands in a measurement.
final class SampleBuffer {
    private let samples: UnsafeMutablePointer<UInt32>
    private let capacity: Int
    private(set) var count = 0
    private(set) var dropped = 0

    init(capacity: Int) {
        self.capacity = capacity
        samples = .allocate(capacity: capacity)
        samples.initialize(repeating: 0, count: capacity)
    }

    deinit { samples.deallocate() }

    @inline(__always)
    func add(_ ns: UInt64) {
        guard count < capacity else { dropped += 1; return }
        samples[count] = ns > UInt64(UInt32.max) ? .max : UInt32(ns)
        count += 1
    }

    /// Nearest rank: the smallest sample with at least q·n samples at or below it.
    func percentiles() -> Latency {
        let n = count
        guard n > 0 else { return Latency(samples: 0, dropped: dropped, p50: 0, p99: 0, p999: 0, max: 0) }
        var buf = UnsafeMutableBufferPointer(start: samples, count: n)
        buf.sort()
        func rank(_ q: Double) -> UInt32 {
            let r = Int((q * Double(n)).rounded(.up))
            return buf[min(max(r, 1), n) - 1]
        }
        return Latency(samples: n, dropped: dropped, p50: rank(0.5), p99: rank(0.99), p999: rank(0.999), max: buf[n - 1])
    }

    /// Percentiles in nanoseconds.
    struct Latency {
        var samples: Int
        var dropped: Int
        var p50: UInt32
        var p99: UInt32
        var p999: UInt32
        var max: UInt32
    }
}

extension LedgerLoad.Result {
    /// `ledger clients=64 duration=5.00s records=… rate=…/s begin_p50_us=… …`
    func summary(_ c: LedgerLoad.Config) -> String {
        var s = "ledger clients=\(c.clients) duration=\(fixed(Double(elapsedNs) / 1e9, 2))s records=\(records) rate=\(fixed(rate, 0))/s"
        s += " begin_p50_us=\(us(begin.p50)) begin_p99_us=\(us(begin.p99)) begin_p999_us=\(us(begin.p999)) begin_max_us=\(us(begin.max))"
        s += " end_p50_us=\(us(end.p50)) end_p99_us=\(us(end.p99)) samples=\(begin.samples)"
        if begin.dropped + end.dropped > 0 { s += " samples_dropped=\(begin.dropped + end.dropped)" }
        s += " client_cpu=\(fixed(cpuShare(clientCPUNs), 2))"
        if let server = serverCPUNs {
            s += " server_cpu=\(fixed(cpuShare(server), 2)) server_us_per_record=\(fixed(perRecord(server) / 1000, 1))"
        }
        if let other = otherCPUNs { s += " other_cpu=\(fixed(cpuShare(other), 2))" }
        if let steal = systemStealNs, steal > 0 { s += " steal=\(fixed(cpuShare(steal), 2))" }
        return s
    }

    func json(_ c: LedgerLoad.Config) -> String {
        var s = "{\"benchmark\":\"ledger\",\"address\":\(jsonString(c.address.description)),\"clients\":\(c.clients)"
        s += ",\"warmup_s\":\(fixed(Double(c.warmupNs) / 1e9, 3)),\"duration_s\":\(fixed(Double(elapsedNs) / 1e9, 3))"
        s += ",\"records\":\(records),\"records_per_s\":\(fixed(rate, 1))"
        s += ",\"begin_us\":\(latency(begin)),\"end_us\":\(latency(end))"
        s += ",\"client_cpu\":\(fixed(cpuShare(clientCPUNs), 3))"
        if let server = serverCPUNs {
            s += ",\"server_cpu\":\(fixed(cpuShare(server), 3)),\"server_us_per_record\":\(fixed(perRecord(server) / 1000, 2))"
        }
        if let other = otherCPUNs { s += ",\"other_cpu\":\(fixed(cpuShare(other), 3))" }
        if let steal = systemStealNs { s += ",\"steal_cpu\":\(fixed(cpuShare(steal), 3))" }
        return s + "}"
    }

    private func latency(_ l: SampleBuffer.Latency) -> String {
        "{\"samples\":\(l.samples),\"dropped\":\(l.dropped),\"p50\":\(us(l.p50)),\"p99\":\(us(l.p99)),\"p999\":\(us(l.p999)),\"max\":\(us(l.max))}"
    }

    private func us(_ ns: UInt32) -> String { fixed(Double(ns) / 1000, 1) }
    private func cpuShare(_ ns: UInt64) -> Double { elapsedNs == 0 ? 0 : Double(ns) / Double(elapsedNs) }
    private var otherCPUNs: UInt64? {
        guard let busy = systemBusyNs else { return nil }
        let ours = clientCPUNs &+ (serverCPUNs ?? 0)
        return busy > ours ? busy - ours : 0
    }
    private func perRecord(_ ns: UInt64) -> Double { records == 0 ? 0 : Double(ns) / Double(records) }
}
