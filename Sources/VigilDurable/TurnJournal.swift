// The turn journal: append-only segments of framed records, group-committed
// on the reactor (docs/journal.md).
//
// Durability contract: an append's completion reports success only once
// its record, and every record before it, is on disk (write + fdatasync
// returned). Appends made during one loop iteration go to the kernel as one
// write followed by one fdatasync; only one such batch is in flight at a
// time — were two in flight, the second's fdatasync could return before the
// first's write landed, and a crash would leave a hole: replay would report
// it as damage and lose the first batch's records, which had been
// acknowledged. Appends arriving meanwhile form the next batch (at most
// `maxBatchBytes`): the busier the daemon, the larger the batches.
import Glibc
import Logging
import VigilReactor

public enum JournalError: Error, Equatable, CustomStringConvertible {
    /// The disk is full: nothing of this batch is durable; retry later.
    case noSpace(SystemCallError)
    /// An I/O error: the journal stops accepting appends (the state of the
    /// page cache after a failed fsync is unknowable).
    case failed(SystemCallError)
    case closed
    /// A record larger than the format allows.
    case tooLarge(Int)

    public var description: String {
        switch self {
        case .noSpace(let e): "journal: disk full (\(e))"
        case .failed(let e): "journal: I/O failure, appends disabled (\(e))"
        case .closed: "journal: closed"
        case .tooLarge(let n): "journal: record of \(n) bytes exceeds the limit"
        }
    }
}

public final class TurnJournal {
    public struct Options: Sendable {
        /// A new segment is started once the current one exceeds this.
        public var segmentLimit: UInt64 = 64 << 20
        /// Compact (snapshot + delete old segments) when this many full segments pile up.
        public var compactAfterSegments = 4
        /// Records per group commit (benchmarks set 1 to measure one
        /// fdatasync per record; production leaves it unlimited).
        public var maxBatchRecords = Int.max
        /// Bytes per group commit: one write(2) stays far below the 2 GiB a
        /// single write may move, and a huge backlog is flushed in steps.
        public var maxBatchBytes = 16 << 20
        /// Drop sessions with nothing open and nothing interrupted
        /// (``JournalState/forgetSettledSessions()``): for journals whose
        /// sessions only name units of work. Off: every session is kept.
        public var forgetsSettledSessions = false
        public init() {}
    }

    public let io: any JournalIO
    let reactor: Reactor
    let logger: Logger
    let options: Options

    /// Sessions and turns as of the last durable record.
    public private(set) var state: JournalState
    /// What replay found at open.
    public let report: JournalReplayReport

    private var segmentName: String
    private var segmentHandle: StateFileHandle
    private var appendOffset: UInt64
    private var closedSegments: [String]
    /// Sequence of the last durable record.
    public private(set) var durableSequence: UInt64

    private typealias Pending = (record: JournalRecord, joinedToNext: Bool, completion: (Result<UInt64, JournalError>) -> Void)
    private var queue: [Pending] = []
    private var batchInFlight = false
    private var inFlightRecords = 0
    private var failure: JournalError?
    private var isClosed = false
    private var idleWaiters: [() -> Void] = []

    /// Statistics for benchmarks and `stats`.
    public private(set) var batchesWritten = 0
    public private(set) var recordsWritten = 0

    /// Opens the journal in `io.fs` (replaying it), registers the group
    /// commit with the reactor. Synchronous: this is start-up.
    public init(io: any JournalIO, reactor: Reactor, logger: Logger, options: Options = Options()) throws(SystemCallError) {
        self.io = io
        self.reactor = reactor
        self.logger = logger
        self.options = options
        var replay = try JournalReplayer(fs: io.fs, logger: logger).replay()
        state = replay.state
        if options.forgetsSettledSessions { state.forgetSettledSessions() }
        durableSequence = replay.lastSequence
        closedSegments = replay.segments
        // Only a last segment that replay found an end for is appended to; an
        // earlier one stays in closedSegments (compacted like the others).
        if let end = replay.appendOffset, let last = closedSegments.popLast() {
            segmentName = last
            segmentHandle = try io.fs.openForWriting(last)
            appendOffset = end
        } else {
            // No usable segment: start one after everything known.
            let name = JournalFormat.segmentName(firstSequence: durableSequence + 1)
            segmentHandle = try Self.createSegment(name, firstSequence: durableSequence + 1, fs: io.fs)
            segmentName = name
            appendOffset = UInt64(JournalFormat.segmentHeaderSize)
            replay.report.createdSegment = name
        }
        report = replay.report
        snapshotSequence = replay.report.snapshotProblem == nil ? replay.report.snapshotSequence : nil
        // The new baseline: what replay found (its damage reported above, and
        // kept in the manifest for vigilctl while this run lives).
        try writeManifest(foundAtOpen: report.check)
        reactor.onIteration { [unowned self] in self.submitBatch() }
    }

    /// The sequence the current snapshot covers (nil: no snapshot).
    private var snapshotSequence: UInt64?
    private var foundAtOpen = JournalCheck()
    /// Sequence gaps still in the segments (0 once compaction removed them).
    private lazy var knownGaps: UInt64 = report.missingSequences

    /// Records, durably, what the directory must hold from now on. Always
    /// written after the files it lists are durable, and before any file
    /// it no longer lists is removed: a crash in between leaves an extra
    /// file (harmless), never a listed one missing.
    private func writeManifest(foundAtOpen: JournalCheck? = nil) throws(SystemCallError) {
        if let foundAtOpen { self.foundAtOpen = foundAtOpen }
        var segments = closedSegments
        if segmentHandle >= 0 { segments.append(segmentName) }
        var m = JournalManifest(snapshotSequence: snapshotSequence, durableSequence: durableSequence,
                                segments: segments, foundAtOpen: self.foundAtOpen)
        // Damage reported at open stays in the files it is in until
        // compaction removes them: known, so not reported as new loss again.
        m.knownGaps = knownGaps
        m.knownRanges = report.damaged.filter { segments.contains($0.segment) }.map { "\($0.segment)@\($0.offset)" }
        try AtomicFile.replace(JournalManifest.fileName, with: m.encode(), in: io.fs)
    }

    /// Whether `name` is one of the journal's files in its directory.
    public static func isJournalFile(_ name: String) -> Bool {
        name == JournalSnapshot.fileName || name == JournalManifest.fileName || JournalFormat.firstSequence(ofSegment: name) != nil
    }

    static func createSegment(_ name: String, firstSequence: UInt64, fs: any StateFileSystem) throws(SystemCallError) -> StateFileHandle {
        // Header durable and the name durable before any record goes in.
        let h = try fs.create(name)
        do throws(SystemCallError) {
            try fs.write(h, JournalFormat.segmentHeader(firstSequence: firstSequence))
            try fs.sync(h)
            try fs.syncDirectory()
        } catch {
            try? fs.close(h)
            throw error
        }
        return h
    }

    /// Records accepted but not yet durable, or durable but not yet reported.
    public var pendingAppends: Int { queue.count + inFlightRecords }

    /// Appends `record`; `completion` runs on the loop with its sequence
    /// number once it is durable, or with the error.
    /// With `joinedToNext`, the record goes into the same group commit as the
    /// next one appended (records of one request are durable together or not at all).
    public func append(_ record: JournalRecord, joinedToNext: Bool = false, completion: @escaping (Result<UInt64, JournalError>) -> Void) {
        // Refusals are delivered on the loop like every other completion,
        // never from inside append (callers may hold state half-updated).
        if isClosed { return reactor.deliverOnLoop { completion(.failure(.closed)) } }
        if let failure { return reactor.deliverOnLoop { [failure] in completion(.failure(failure)) } }
        // Replay rejects frames whose body exceeds maxBody: such a record must
        // never be acknowledged.
        let size = record.bodySize
        if size > JournalFormat.maxBody { return reactor.deliverOnLoop { completion(.failure(.tooLarge(size))) } }
        // The batch goes out at the end of a loop iteration. An append made
        // outside one (before run(), between runOnce calls) must not wait
        // for an unrelated event: a queued job makes the next poll return at once.
        if queue.isEmpty && !batchInFlight { reactor.deliverOnLoop {} }
        queue.append((record, joinedToNext, completion))
    }

    /// Appends and waits until durable.
    public func append(_ record: JournalRecord) async throws(JournalError) -> UInt64 {
        reactor.assertOnLoopPublic()
        let result: Result<UInt64, JournalError> = await withCheckedContinuation { cont in
            append(record) { cont.resume(returning: $0) }
        }
        return try result.get()
    }

    /// Called at the end of every loop iteration: everything queued since
    /// the last batch goes out as one write + fdatasync. `early`: called by
    /// the previous batch's completion, before its callbacks run; then a
    /// batch that needs a new segment is left to the iteration's end (a
    /// failed rollover fails the batch at once, and its refusals must not
    /// come before the previous batch's successes). True when submitted.
    @discardableResult
    private func submitBatch(early: Bool = false) -> Bool {
        guard !batchInFlight, !queue.isEmpty else { return false }
        var take = 0, batchBytes = 0
        while take < queue.count {
            let b = JournalFormat.recordHeaderSize + queue[take].record.bodySize
            // Limits cut only between requests, never after a joined record.
            let atBoundary = take > 0 && !queue[take - 1].joinedToNext
            if atBoundary && (take >= options.maxBatchRecords || batchBytes + b > options.maxBatchBytes) { break }
            batchBytes += b
            take += 1
        }
        let rollsOver = appendOffset > UInt64(JournalFormat.segmentHeaderSize) && appendOffset + UInt64(batchBytes) > options.segmentLimit
        if early && rollsOver { return false }
        let batch: [Pending]
        if take == queue.count {
            batch = queue
            queue.removeAll(keepingCapacity: true)
        } else {
            batch = Array(queue.prefix(take))
            queue.removeFirst(take)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(batchBytes)
        var seq = durableSequence
        for item in batch {
            seq += 1
            JournalFormat.appendFrame(item.record, sequence: seq, to: &bytes)
        }
        if rollsOver {
            do { try rollOver(firstSequence: durableSequence + 1) } catch {
                fail(batch, with: classify(error))
                return false
            }
        }
        batchInFlight = true
        inFlightRecords = batch.count
        let offset = appendOffset
        io.writeAndSync(segmentHandle, bytes, at: offset) { [unowned self] error in
            self.batchInFlight = false
            self.inFlightRecords = 0
            if let error {
                // The file may now hold part (or all) of the failed batch
                // beyond appendOffset. Its sequence numbers will be reused by
                // the next batch, so those bytes must go: replay could
                // otherwise resync onto a stale frame and resurrect it.
                var outcome = self.classify(error)
                do throws(SystemCallError) {
                    try self.io.fs.truncate(self.segmentHandle, to: offset)
                    try self.io.fs.dataSync(self.segmentHandle)
                } catch {
                    outcome = .failed(error)
                }
                self.fail(batch, with: outcome)
                return
            }
            self.appendOffset = offset + UInt64(bytes.count)
            self.batchesWritten += 1
            self.recordsWritten += batch.count
            var s = self.durableSequence
            for item in batch {
                s += 1
                self.state.apply(item.record)
            }
            self.durableSequence = s
            // What queued while this batch was on its way goes to the disk
            // before this batch's completions run: they answer clients, which
            // takes the loop a while (with 64 ledger clients: 275 µs after a
            // 304 µs fdatasync), and the disk would idle meanwhile. Only
            // where the submission really starts now (io_uring); appends made
            // by the completions go into the batch after.
            if !self.queue.isEmpty && self.reactor.canSubmitDiskWorkNow && self.submitBatch(early: true) {
                self.reactor.submitDiskWorkNow()
            }
            // Completions after the state is updated, in sequence order.
            var n = s - UInt64(batch.count)
            for item in batch {
                n += 1
                item.completion(.success(n))
            }
            self.compactIfNeeded()
            if self.queue.isEmpty && !self.batchInFlight { self.notifyIdle() }
        }
        return true
    }

    private func classify(_ e: SystemCallError) -> JournalError {
        e.errno == .noSpace || e.errno == .diskQuotaExceeded ? .noSpace(e) : .failed(e)
    }

    private func fail(_ batch: [Pending], with error: JournalError) {
        if case .failed = error {
            failure = error
            logger.critical("\(error)")
        } else {
            logger.error("\(error); \(batch.count) appends refused")
        }
        for item in batch { item.completion(.failure(error)) }
        if case .failed = error {
            let rest = queue
            queue.removeAll()
            for item in rest { item.completion(.failure(error)) }
        }
        if queue.isEmpty { notifyIdle() }
    }

    private func rollOver(firstSequence: UInt64) throws(SystemCallError) {
        let name = JournalFormat.segmentName(firstSequence: firstSequence)
        let h = try Self.createSegment(name, firstSequence: firstSequence, fs: io.fs)
        try? io.fs.close(segmentHandle)
        closedSegments.append(segmentName)
        segmentName = name
        segmentHandle = h
        appendOffset = UInt64(JournalFormat.segmentHeaderSize)
        logger.debug("journal: new segment \(name)")
        // Not listing the new segment is safe (an unlisted segment is still
        // read); only the check for its loss is weaker until the next write.
        do { try writeManifest() } catch { logger.error("journal manifest not updated after rollover: \(error)") }
    }

    private func compactIfNeeded() {
        guard closedSegments.count >= options.compactAfterSegments else { return }
        do { try compact(includingCurrent: false) } catch {
            logger.error("journal compaction failed (segments kept): \(error)")
        }
    }

    /// Snapshot of the durable state, then the segments it covers are removed.
    /// A crash in between leaves segments whose records replay skips.
    private func compact(includingCurrent: Bool) throws(SystemCallError) {
        try AtomicFile.replace(JournalSnapshot.fileName, with: JournalSnapshot.encode(state, coveredSequence: durableSequence), in: io.fs)
        let previousSnapshot = snapshotSequence, previousGaps = knownGaps
        snapshotSequence = durableSequence
        // Replay skips every record up to the snapshot: no old gap is seen again.
        knownGaps = 0
        // The manifest stops listing the covered segments before they go.
        let keptClosed = closedSegments
        closedSegments = []
        let handle = segmentHandle
        if includingCurrent { segmentHandle = -1 }
        do { try writeManifest() } catch {
            // Nothing removed: the old manifest still matches the files.
            snapshotSequence = previousSnapshot
            knownGaps = previousGaps
            closedSegments = keptClosed
            segmentHandle = handle
            throw error
        }
        var removed = keptClosed
        if includingCurrent {
            try? io.fs.close(handle)
            removed.append(segmentName)
        }
        for name in removed { try io.fs.remove(name) }
        try io.fs.syncDirectory()
        logger.info("journal compacted: snapshot at sequence \(durableSequence), \(removed.count) segment(s) removed")
    }

    private func notifyIdle() {
        let w = idleWaiters
        idleWaiters = []
        for f in w { f() }
    }

    /// Waits until every queued append has completed (the drain's last step).
    public func flush() async {
        reactor.assertOnLoopPublic()
        if queue.isEmpty && !batchInFlight { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            idleWaiters.append { c.resume() }
        }
        // A batch that completed may have queued more (none after close).
        if !queue.isEmpty || batchInFlight { await flush() }
    }

    /// For a stop whose budget ran out: takes no more appends, refuses what
    /// is queued (those records were never submitted: they complete with
    /// `.closed` now, and will never be on disk), and waits — until
    /// `deadlineNs` at most — for the batch already in flight, whose records
    /// may be durable whatever the caller does: its completions run as usual,
    /// so the caller can deliver what they acknowledge. Returns true when no
    /// batch is left in flight (the journal is then closed), false when one
    /// still is at the deadline: its outcome is unknown.
    public func closeCuttingShort(waitingUntil deadlineNs: UInt64) async -> Bool {
        reactor.assertOnLoopPublic()
        isClosed = true
        let refused = queue
        queue.removeAll()
        for item in refused { item.completion(.failure(.closed)) }
        if batchInFlight {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                var resumed = false
                var timer: TimerHandle?
                let once = { [reactor] in
                    if resumed { return }
                    resumed = true
                    if let t = timer { reactor.cancelTimer(t) }
                    c.resume()
                }
                idleWaiters.append(once)
                timer = reactor.schedule(atNanoseconds: deadlineNs, once)
            }
        }
        if batchInFlight { return false }
        // Exact now: every record up to durableSequence was acknowledged.
        if failure == nil {
            do { try writeManifest() } catch { logger.error("journal manifest not updated at close: \(error)") }
        }
        if segmentHandle >= 0 { try? io.fs.close(segmentHandle) }
        segmentHandle = -1
        return true
    }

    /// How `close` ended, for the caller's log line.
    public enum CloseOutcome: Equatable, Sendable {
        /// Flushed, snapshotted, every segment removed.
        case compacted
        /// Flushed; not asked to compact.
        case flushed
        /// Flushed, but the snapshot or the removal failed: segments kept
        /// (nothing lost; the next start replays them).
        case compactionFailed(SystemCallError)
        /// Appends were disabled by an I/O failure: not compacted.
        case notCompactedAfterFailure(JournalError)
    }

    /// Flushes, then closes. With `compact`, the state is snapshotted and all
    /// segments removed, so the next start reads one small file.
    @discardableResult
    public func close(compact: Bool) async -> CloseOutcome {
        await flush()
        isClosed = true
        var outcome = CloseOutcome.flushed
        if let failure {
            outcome = .notCompactedAfterFailure(failure)
        } else if !compact {
            // Exact now: every record up to durableSequence was acknowledged.
            do { try writeManifest() } catch { logger.error("journal manifest not updated at close: \(error)") }
        } else {
            do {
                try self.compact(includingCurrent: true)
                outcome = .compacted
            } catch {
                logger.error("journal compaction at close failed (segments kept): \(error)")
                outcome = .compactionFailed(error)
                try? writeManifest()
            }
        }
        if segmentHandle >= 0 { try? io.fs.close(segmentHandle) }
        segmentHandle = -1
        return outcome
    }
}

extension Reactor {
    /// Public form of the on-loop assertion, for layers above the reactor.
    public func assertOnLoopPublic(_ api: StaticString = #function) {
        precondition(isOnLoopThread, "\(api) must be called on the reactor's thread")
    }
}
