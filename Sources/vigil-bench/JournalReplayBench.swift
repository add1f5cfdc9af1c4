// Replay speed: N records written in large group commits, the journal closed
// without compaction (so every record stays in the segments and must be
// replayed), then a new TurnJournal opened on the directory and timed —
// once with the segments evicted from the page cache (as after a reboot),
// once with them cached (as after a quick restart).
//
// The records are what the gateway writes: one sessionOpened per session,
// then turnAccepted/turnCompleted pairs spread round-robin over the sessions,
// so the rebuilt state stays small and replay time is the journal's.
import Glibc
import VigilDurable
import VigilReactor

/// Loop-confined: every member is used on the reactor's thread only.
final class JournalReplayBench: @unchecked Sendable {
    struct Config {
        var parent: String
        var records: Int
        var batch: Int
        var sessions: Int
        var ioUring: IOUringMode
        var textBytes: Int
    }

    /// One timed open of the journal.
    struct Open {
        /// Reactor created + TurnJournal.init returned (appends accepted from here).
        var readyNs: UInt64
        /// The replayer's own figure (snapshot and segments read, records applied).
        var replayNs: UInt64
        var recordsReplayed: Int
        var segmentsRead: Int
        var sessions: Int
        var interruptedTurns: Int

        var rate: Double { replayNs == 0 ? 0 : Double(recordsReplayed) * 1e9 / Double(replayNs) }
    }

    struct Result {
        var filesystem: String
        var directory: String
        var backend: String
        var segments: Int
        var bytes: UInt64
        var writeNs: UInt64
        var batches: Int
        /// Whether every segment's pages were dropped before the cold open.
        var evicted: Bool
        var cold: Open
        var warm: Open
    }

    let config: Config
    private let text: String
    private let reply: String
    private let names: [String]

    private var reactor: Reactor!
    private var journal: TurnJournal!
    private var nextRecord = 0
    private var durableRecords = 0
    private var failure: BenchError?

    init(_ config: Config) {
        self.config = config
        text = String(repeating: "t", count: config.textBytes)
        reply = String(repeating: "r", count: config.textBytes)
        names = (0..<config.sessions).map { "bench-session-\($0)" }
    }

    func run() throws(BenchError) -> Result {
        let dir = try makeScratchDirectory(in: config.parent)
        defer { removeScratchDirectory(dir) }
        let fsName = filesystemName(dir)
        warnIfNotADisk(fsName, dir)

        let (writeNs, batches, backend) = try write(dir)
        let (segments, bytes) = segmentFiles(dir)
        let evicted = evict(dir, segments)
        let cold = try open(dir)
        let warm = try open(dir)
        return Result(
            filesystem: fsName, directory: config.parent, backend: backend, segments: segments.count, bytes: bytes,
            writeNs: writeNs, batches: batches, evicted: evicted, cold: cold, warm: warm)
    }

    // MARK: Writing

    /// Record `k` of the workload.
    private func record(_ k: Int) -> JournalRecord {
        let s = config.sessions
        if k < s { return .sessionOpened(session: names[k]) }
        let pair = (k - s) / 2
        let session = names[pair % s]
        let id = String(pair / s)
        return (k - s) % 2 == 0
            ? .turnAccepted(session: session, id: id, text: text)
            : .turnCompleted(session: session, id: id, reply: reply)
    }

    private func write(_ dir: String) throws(BenchError) -> (ns: UInt64, batches: Int, backend: String) {
        var jo = TurnJournal.Options()
        // Everything must stay in segments for the replay to read.
        jo.compactAfterSegments = .max
        let (reactor, journal) = try openBenchJournal(dir, ioUring: config.ioUring, options: jo)
        defer { reactor.close() }
        self.reactor = reactor
        self.journal = journal
        var start: UInt64 = 0
        // The clock starts with the loop's first job.
        reactor.deliverOnLoop { [unowned self] in
            start = monotonicNanoseconds()
            self.appendChunk()
        }
        do { try reactor.run() } catch {
            throw BenchError("event loop failed: \(error)")
        }
        let ns = monotonicNanoseconds() - start
        if let failure { throw failure }
        let batches = self.journal.batchesWritten
        self.journal = nil
        self.reactor = nil
        return (ns, batches, reactor.disk.kind.rawValue)
    }

    /// Appends the next `batch` records in one iteration (one group commit);
    /// the last one's completion starts the next chunk.
    private func appendChunk() {
        let end = min(nextRecord + config.batch, config.records)
        for k in nextRecord..<end {
            journal.append(record(k)) { [unowned self] r in
                if case .failure(let e) = r {
                    if self.failure == nil { self.failure = BenchError("append of record \(k + 1) failed: \(e)") }
                    return self.closeAndStop()
                }
                self.durableRecords += 1
                guard self.durableRecords == end else { return }
                if end == self.config.records { self.closeAndStop() } else { self.appendChunk() }
            }
        }
        nextRecord = end
    }

    private var closing = false

    private func closeAndStop() {
        guard !closing else { return }
        closing = true
        reactor.spawn { [unowned self] in
            await self.journal.close(compact: false)
            self.reactor.stop()
        }
    }

    // MARK: Reopening

    private func segmentFiles(_ dir: String) -> (names: [String], bytes: UInt64) {
        guard let fs = try? PosixStateFileSystem(path: dir, create: false), let all = try? fs.list() else { return ([], 0) }
        let names = all.filter { $0.hasSuffix(".seg") }.sorted()
        var total: UInt64 = 0
        for name in names {
            var st = stat()
            if stat("\(dir)/\(name)", &st) == 0 { total += UInt64(st.st_size) }
        }
        return (names, total)
    }

    /// Drops the segments' (clean, fdatasynced) pages from the page cache,
    /// so the first open reads them from the disk.
    private func evict(_ dir: String, _ names: [String]) -> Bool {
        var all = !names.isEmpty
        for name in names {
            let fd = Glibc.open("\(dir)/\(name)", O_RDONLY | O_CLOEXEC)
            if fd < 0 { all = false; continue }
            if posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0 { all = false }
            Glibc.close(fd)
        }
        return all
    }

    private func open(_ dir: String) throws(BenchError) -> Open {
        let start = monotonicNanoseconds()
        var options = Reactor.Options()
        options.ioUring = config.ioUring
        let reactor: Reactor
        do { reactor = try Reactor(options: options) } catch {
            throw BenchError("cannot create the event loop: \(error)")
        }
        defer { reactor.close() }
        let journal: TurnJournal
        do {
            let fs = try PosixStateFileSystem(path: dir, create: false)
            journal = try TurnJournal(io: DiskJournalIO(fs: fs, disk: reactor.disk), reactor: reactor, logger: reactor.logger)
        } catch {
            throw BenchError("cannot reopen the journal in \(dir): \(error)")
        }
        let ready = monotonicNanoseconds()
        let report = journal.report
        guard report.recordsReplayed == config.records, report.damaged.isEmpty, report.truncated.isEmpty else {
            throw BenchError("replay did not find the \(config.records) records written: \(report.summary)")
        }
        let open = Open(
            readyNs: ready - start, replayNs: report.durationNs, recordsReplayed: report.recordsReplayed,
            segmentsRead: report.segmentsRead, sessions: journal.state.sessions.count,
            interruptedTurns: journal.state.sessions.values.reduce(0) { $0 + $1.interruptedTurns.count })
        // Close it on its loop, like any journal (nothing is appended).
        self.reactor = reactor
        self.journal = journal
        closing = false
        closeAndStop()
        do { try reactor.run() } catch {
            throw BenchError("event loop failed: \(error)")
        }
        self.journal = nil
        self.reactor = nil
        return open
    }
}

extension JournalReplayBench.Result {
    /// `journal-replay records=… segments=… mib=… write_rate=…/s cold_ready_ms=… cold_replay_ms=… cold_rate=…/s warm_… evicted=yes fs=… dir=…`
    func summary(_ c: JournalReplayBench.Config) -> String {
        var s = "journal-replay records=\(c.records) sessions=\(c.sessions) segments=\(segments) mib=\(fixed(Double(bytes) / 1_048_576, 1))"
        s += " write_backend=\(backend) write_batches=\(batches) write_s=\(fixed(Double(writeNs) / 1e9, 2)) write_rate=\(fixed(writeRate, 0))/s"
        for (name, o) in [("cold", cold), ("warm", warm)] {
            s += " \(name)_ready_ms=\(fixed(Double(o.readyNs) / 1e6, 1)) \(name)_replay_ms=\(fixed(Double(o.replayNs) / 1e6, 1)) \(name)_rate=\(fixed(o.rate, 0))/s"
        }
        s += " evicted=\(evicted ? "yes" : "no") fs=\(filesystem) dir=\(directory)"
        return s
    }

    func json(_ c: JournalReplayBench.Config) -> String {
        var s = "{\"benchmark\":\"journal-replay\",\"records\":\(c.records),\"sessions\":\(c.sessions),\"text_bytes\":\(c.textBytes)"
        s += ",\"segments\":\(segments),\"bytes\":\(bytes),\"write_backend\":\(jsonString(backend)),\"write_batches\":\(batches)"
        s += ",\"write_s\":\(fixed(Double(writeNs) / 1e9, 3)),\"write_rate_per_s\":\(fixed(writeRate, 0))"
        for (name, o) in [("cold", cold), ("warm", warm)] {
            s += ",\"\(name)\":{\"ready_ms\":\(fixed(Double(o.readyNs) / 1e6, 2)),\"replay_ms\":\(fixed(Double(o.replayNs) / 1e6, 2))"
            s += ",\"records_per_s\":\(fixed(o.rate, 0)),\"records_replayed\":\(o.recordsReplayed),\"segments_read\":\(o.segmentsRead)"
            s += ",\"sessions\":\(o.sessions),\"interrupted_turns\":\(o.interruptedTurns)}"
        }
        s += ",\"evicted\":\(evicted),\"filesystem\":\(jsonString(filesystem)),\"dir\":\(jsonString(directory))"
        return s + "}"
    }

    private var writeRate: Double { writeNs == 0 ? 0 : Double(cold.recordsReplayed) * 1e9 / Double(writeNs) }
}
