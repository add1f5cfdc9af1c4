// Durable turns per second through the turn journal. N sessions share one
// reactor and one TurnJournal; each loops
//   append turnAccepted → durable → append turnCompleted → durable
// driven by the journal's completion callbacks (what the gateway does:
// `accepted` is answered only once the first record is durable, the reply
// sent only once the second is). A turn counts when its completion record is
// durable. The appends made in one loop iteration form one group commit, so
// with N sessions a batch holds up to N records; maxBatchRecords = 1 is the
// one-fdatasync-per-record baseline.
import Glibc
import VigilDurable
import VigilReactor

/// Loop-confined: every member is used on the reactor's thread only (the
/// closing task runs there too, through the reactor's executor).
final class JournalTurnLoad: @unchecked Sendable {
    struct Config {
        /// A fresh directory is made in it for the journal.
        var parent: String
        var sessions: Int
        var warmupNs: UInt64
        var durationNs: UInt64
        var maxBatchRecords: Int
        var ioUring: IOUringMode
        var textBytes: Int

        var batching: String {
            switch maxBatchRecords {
            case 1: "per-record"
            case .max: "group"
            default: "max-\(maxBatchRecords)"
            }
        }
    }

    struct Result {
        var backend: String
        var fallbackReason: String?
        var filesystem: String
        var directory: String
        var turns: UInt64
        var elapsedNs: UInt64
        /// Group commits (one write + one fdatasync each) in the window.
        var batches: Int
        var records: Int
        /// Turn latency: turnAccepted appended → turnCompleted durable.
        var latency: LatencySummary
        var samplesDropped: Int
        var cpuNs: UInt64
        var systemBusyNs: UInt64?
        /// Other processes' user time in the window (the noise figure).
        var otherUserNs: UInt64?

        var rate: Double { elapsedNs == 0 ? 0 : Double(turns) * 1e9 / Double(elapsedNs) }
    }

    let config: Config
    private let text: String
    private let reply: String
    private let names: [String]
    /// Per session: the number of its current turn and when it was accepted.
    private var turnNumber: [Int]
    private var turnID: [String]
    private var startedAt: [UInt64]

    private var reactor: Reactor!
    private var journal: TurnJournal!
    private var turns: UInt64 = 0
    private var stopping = false
    private var failure: BenchError?

    // The measured window.
    private var startNs: UInt64 = 0, endNs: UInt64 = 0
    private var startTurns: UInt64 = 0, endTurns: UInt64 = 0
    private var startBatches = 0, endBatches = 0
    private var startRecords = 0, endRecords = 0
    private var startCPU: UInt64 = 0, endCPU: UInt64 = 0
    private var startSystem: SystemCPU?, endSystem: SystemCPU?
    private var startUser: UserCPU?, endUser: UserCPU?

    // Turn latencies (ns, saturated), preallocated so no allocation or page
    // fault of the recorder lands in the window.
    private var recording = false
    private let samples: UnsafeMutablePointer<UInt32>
    private let sampleCapacity: Int
    private var sampleCount = 0
    private var samplesDropped = 0

    init(_ config: Config) {
        self.config = config
        text = String(repeating: "t", count: config.textBytes)
        reply = String(repeating: "r", count: config.textBytes)
        names = (0..<config.sessions).map { "bench-session-\($0)" }
        turnNumber = Array(repeating: 0, count: config.sessions)
        turnID = Array(repeating: "", count: config.sessions)
        startedAt = Array(repeating: 0, count: config.sessions)
        sampleCapacity = min(max(Int(Double(config.durationNs) / 1e9 * 500_000), 1 << 20), 16 << 20)
        samples = .allocate(capacity: sampleCapacity)
        samples.initialize(repeating: 0, count: sampleCapacity)
    }

    deinit { samples.deallocate() }

    func run() throws(BenchError) -> Result {
        let dir = try makeScratchDirectory(in: config.parent)
        defer { removeScratchDirectory(dir) }
        let fsName = filesystemName(dir)
        warnIfNotADisk(fsName, dir)

        var jo = TurnJournal.Options()
        jo.maxBatchRecords = config.maxBatchRecords
        let (reactor, journal) = try openBenchJournal(dir, ioUring: config.ioUring, options: jo)
        // The journal's iteration observer holds it unowned: it must outlive
        // every turn of the loop, so both live until the loop has stopped.
        defer { reactor.close() }
        self.reactor = reactor
        self.journal = journal

        // The load starts with the loop's first job.
        reactor.deliverOnLoop { [unowned self] in
            // Each session becomes known first (as `open` does), then loops.
            for i in 0..<self.config.sessions {
                self.journal.append(.sessionOpened(session: self.names[i])) { [unowned self] r in
                    guard self.check(r, "sessionOpened") else { return }
                    self.accept(i)
                }
            }
            self.reactor.schedule(after: .nanoseconds(Int64(self.config.warmupNs))) { [unowned self] in self.startMeasuring() }
        }
        do { try reactor.run() } catch {
            throw BenchError("event loop failed: \(error)")
        }
        if let failure { throw failure }

        var busy: UInt64?
        if let a = startSystem, let b = endSystem { busy = b.busyNs &- a.busyNs }
        return Result(
            backend: reactor.disk.kind.rawValue, fallbackReason: reactor.disk.fallbackReason,
            filesystem: fsName, directory: config.parent,
            turns: endTurns &- startTurns, elapsedNs: endNs &- startNs,
            batches: endBatches - startBatches, records: endRecords - startRecords,
            latency: LatencySummary(UnsafeMutableBufferPointer(start: samples, count: sampleCount)),
            samplesDropped: samplesDropped, cpuNs: endCPU &- startCPU, systemBusyNs: busy,
            otherUserNs: UserCPU.others(startUser, endUser))
    }

    // MARK: The session loop

    private func accept(_ i: Int) {
        guard !stopping else { return }
        turnNumber[i] += 1
        let id = String(turnNumber[i])
        turnID[i] = id
        startedAt[i] = monotonicNanoseconds()
        journal.append(.turnAccepted(session: names[i], id: id, text: text)) { [unowned self] r in
            guard self.check(r, "turnAccepted") else { return }
            self.complete(i)
        }
    }

    private func complete(_ i: Int) {
        guard !stopping else { return }
        journal.append(.turnCompleted(session: names[i], id: turnID[i], reply: reply)) { [unowned self] r in
            guard self.check(r, "turnCompleted") else { return }
            self.turns &+= 1
            if self.recording {
                if self.sampleCount < self.sampleCapacity {
                    let d = monotonicNanoseconds() &- self.startedAt[i]
                    self.samples[self.sampleCount] = d > UInt64(UInt32.max) ? .max : UInt32(d)
                    self.sampleCount += 1
                } else {
                    self.samplesDropped += 1
                }
            }
            self.accept(i)
        }
    }

    /// false (and the run ends) when an append was refused.
    private func check(_ r: Swift.Result<UInt64, JournalError>, _ what: String) -> Bool {
        if case .failure(let e) = r {
            // Appends refused because the run is closing are expected.
            if stopping, case .closed = e { return false }
            if failure == nil { failure = BenchError("\(what) append failed: \(e)") }
            finish()
            return false
        }
        return true
    }

    // MARK: Window

    private func startMeasuring() {
        startCPU = ownCPUNanoseconds()
        startSystem = SystemCPU.read()
        startUser = UserCPU.read()
        startNs = monotonicNanoseconds()
        startTurns = turns
        startBatches = journal.batchesWritten
        startRecords = journal.recordsWritten
        recording = true
        reactor.schedule(after: .nanoseconds(Int64(config.durationNs))) { [unowned self] in self.stopMeasuring() }
    }

    private func stopMeasuring() {
        endNs = monotonicNanoseconds()
        endTurns = turns
        endBatches = journal.batchesWritten
        endRecords = journal.recordsWritten
        endCPU = ownCPUNanoseconds()
        endSystem = SystemCPU.read()
        endUser = UserCPU.read()
        recording = false
        finish()
    }

    /// No new turns; what is in flight completes, the journal closes (no
    /// compaction: the directory is removed anyway), then the loop stops.
    private func finish() {
        guard !stopping else { return }
        stopping = true
        reactor.spawn { [unowned self] in
            await self.journal.close(compact: false)
            self.reactor.stop()
        }
    }
}

extension JournalTurnLoad.Result {
    /// `journal-turns backend=io_uring batching=group sessions=256 duration=3.00s turns=… rate=…/s batches=… fsyncs_per_s=… records_per_batch=… p50_us=… p99_us=… cpu=… other_cpu=… other_user_cpu=… fs=…`
    func summary(_ c: JournalTurnLoad.Config) -> String {
        let seconds = Double(elapsedNs) / 1e9
        var s = "journal-turns backend=\(backend) batching=\(c.batching) sessions=\(c.sessions) duration=\(fixed(seconds, 2))s"
        s += " turns=\(turns) rate=\(fixed(rate, 0))/s batches=\(batches) fsyncs_per_s=\(fixed(perSecond(batches), 0))"
        s += " records_per_batch=\(fixed(batches == 0 ? 0 : Double(records) / Double(batches), 1))"
        s += " p50_us=\(microseconds(latency.p50)) p99_us=\(microseconds(latency.p99)) max_us=\(microseconds(latency.maximum))"
        if samplesDropped > 0 { s += " samples_dropped=\(samplesDropped)" }
        s += " cpu=\(fixed(share(cpuNs), 2))"
        if let other = otherCPUNs { s += " other_cpu=\(fixed(share(other), 2))" }
        if let user = otherUserNs { s += " other_user_cpu=\(fixed(share(user), 2))" }
        s += " fs=\(filesystem) dir=\(directory)"
        if let why = fallbackReason, backend != "io_uring" { s += " fallback=\"\(why)\"" }
        return s
    }

    func json(_ c: JournalTurnLoad.Config) -> String {
        var s = "{\"benchmark\":\"journal-turns\",\"backend\":\(jsonString(backend)),\"batching\":\(jsonString(c.batching))"
        s += ",\"sessions\":\(c.sessions),\"text_bytes\":\(c.textBytes),\"warmup_s\":\(fixed(Double(c.warmupNs) / 1e9, 3))"
        s += ",\"duration_s\":\(fixed(Double(elapsedNs) / 1e9, 3)),\"turns\":\(turns),\"rate_per_s\":\(fixed(rate, 0))"
        s += ",\"batches\":\(batches),\"records\":\(records),\"fsyncs_per_s\":\(fixed(perSecond(batches), 0))"
        s += ",\"latency_us\":{\"samples\":\(latency.samples),\"dropped\":\(samplesDropped),\"p50\":\(microseconds(latency.p50))"
        s += ",\"p99\":\(microseconds(latency.p99)),\"max\":\(microseconds(latency.maximum))}"
        s += ",\"cpu\":\(fixed(share(cpuNs), 3))"
        if let other = otherCPUNs { s += ",\"other_cpu\":\(fixed(share(other), 3))" }
        if let user = otherUserNs { s += ",\"other_user_cpu\":\(fixed(share(user), 3))" }
        s += ",\"filesystem\":\(jsonString(filesystem)),\"dir\":\(jsonString(directory))"
        if let why = fallbackReason { s += ",\"fallback_reason\":\(jsonString(why))" }
        return s + "}"
    }

    private func perSecond(_ n: Int) -> Double { elapsedNs == 0 ? 0 : Double(n) * 1e9 / Double(elapsedNs) }
    private func share(_ ns: UInt64) -> Double { elapsedNs == 0 ? 0 : Double(ns) / Double(elapsedNs) }
    /// What the rest of the machine used meanwhile (noise).
    private var otherCPUNs: UInt64? {
        guard let busy = systemBusyNs else { return nil }
        return busy > cpuNs ? busy - cpuNs : 0
    }
}
