// Replay at start-up: snapshot, then segments in order. Stops at the first
// invalid record of a segment; if intact records follow (found by their
// sync word, CRC and sequence), the damaged range is reported and replay
// goes on; otherwise it is a torn tail, cut off and reported. Nothing is
// skipped silently.
import Glibc
import Logging
import VigilSystem

public struct JournalReplayReport: Sendable, Equatable {
    public struct Range: Sendable, Equatable, CustomStringConvertible {
        public let segment: String
        public let offset: UInt64
        public let bytes: UInt64
        public var description: String { "\(segment) at offset \(offset), \(bytes) bytes" }

        public init(segment: String, offset: UInt64, bytes: UInt64) {
            self.segment = segment
            self.offset = offset
            self.bytes = bytes
        }
    }

    public var snapshotSequence: UInt64?
    /// A snapshot that could not be read (its state is lost; reported loudly).
    public var snapshotProblem: String?
    public var segmentsRead = 0
    public var recordsReplayed = 0
    /// Torn tails cut off (normal after a crash: never acknowledged data).
    public var truncated: [Range] = []
    /// Damaged ranges in the middle (bit rot, overwritten blocks): records lost.
    public var damaged: [Range] = []
    /// Sequence numbers missing between intact records (from damaged ranges).
    public var missingSequences: UInt64 = 0
    public var createdSegment: String?
    public var durationNs: UInt64 = 0
    /// Files the manifest lists that are gone (deleted, or lost with the disk).
    public var missingFiles: [String] = []
    /// Acknowledged records beyond the last one found: the manifest says
    /// records up to `expectedSequence` were durable (a segment cut short).
    public var tailRecordsLost: UInt64 = 0
    /// The manifest's durable sequence (nil: no usable manifest).
    public var expectedSequence: UInt64?
    /// A manifest that could not be read: nothing to check against.
    public var manifestProblem: String?
    /// Journal files without a manifest (an older version wrote them, or
    /// it was deleted): a deleted last segment cannot be detected this time.
    public var manifestAbsent = false
    /// Listed segments found empty (their header had been durable).
    public var emptiedSegments: [String] = []
    /// Of `missingSequences` and `damaged`: what an earlier start already
    /// reported (still in the files until compaction removes them).
    public var knownMissingSequences: UInt64 = 0
    public var knownDamaged: [Range] = []

    /// Acknowledged records that are not there (gaps and a lost tail).
    public var recordsLost: UInt64 { missingSequences - min(knownMissingSequences, missingSequences) + tailRecordsLost }

    /// What is missing or damaged, in the form vigilctl and the log show.
    public var check: JournalCheck {
        var c = JournalCheck()
        c.missing = missingFiles
        c.recordsLost = recordsLost
        c.problems = damaged.filter { !knownDamaged.contains($0) }.map { "damaged range: \($0)" }
            + emptiedSegments.map { "segment \($0) is empty although its header had been durable" }
            + (snapshotProblem.map { ["snapshot unreadable: \($0)"] } ?? [])
            + (manifestProblem.map { ["manifest unreadable: \($0)"] } ?? [])
        return c
    }

    public var summary: String {
        var s = "journal replay: \(recordsReplayed) records from \(segmentsRead) segment(s)"
        if let seq = snapshotSequence { s += " after snapshot at sequence \(seq)" }
        s += " in \(durationNs / 1_000_000) ms"
        for t in truncated { s += "; torn tail dropped: \(t)" }
        for d in damaged { s += "; DAMAGED range skipped: \(d)" }
        if missingSequences > 0 { s += "; \(missingSequences) record(s) missing from the sequence" }
        if knownMissingSequences > 0 || !knownDamaged.isEmpty { s += " (already reported at an earlier start: \(knownMissingSequences) missing, \(knownDamaged.count) damaged range(s))" }
        if !missingFiles.isEmpty { s += "; FILES MISSING: \(missingFiles.joined(separator: ", "))" }
        for e in emptiedSegments { s += "; SEGMENT EMPTIED: \(e)" }
        if tailRecordsLost > 0 { s += "; \(tailRecordsLost) acknowledged record(s) cut off the end (expected up to sequence \(expectedSequence ?? 0))" }
        if let p = snapshotProblem { s += "; SNAPSHOT UNREADABLE: \(p)" }
        if let p = manifestProblem { s += "; MANIFEST UNREADABLE: \(p)" }
        if manifestAbsent { s += "; no manifest (missing files cannot be detected this time)" }
        if check.isDamaged { s += "; ACKNOWLEDGED DATA MAY BE LOST" }
        return s
    }
}

struct JournalReplayer {
    let fs: any StateFileSystem
    let logger: Logger
    /// Inspection (vigilctl): report a torn tail or an empty segment, change nothing.
    var readOnly = false
    /// Whether the run that wrote the journal is over (its open turns are interrupted).
    var runIsOver = true

    struct Result {
        var state: JournalState
        var lastSequence: UInt64
        /// Segments in order; the last one is the append target.
        var segments: [String]
        /// Where to append in the last segment (nil: no usable segment).
        var appendOffset: UInt64?
        var report: JournalReplayReport
    }

    func replay() throws(SystemCallError) -> Result {
        let start = monotonicNanoseconds()
        var report = JournalReplayReport()
        var state = JournalState()
        var last: UInt64 = 0
        var manifest: JournalManifest?
        if let bytes = try fs.read(JournalManifest.fileName) {
            do { manifest = try JournalManifest.decode(bytes) } catch { report.manifestProblem = error.reason }
        }
        report.expectedSequence = manifest?.durableSequence
        let snapshotBytes = try fs.read(JournalSnapshot.fileName)
        if let expected = manifest?.snapshotSequence {
            if snapshotBytes == nil { report.missingFiles.append(JournalSnapshot.fileName) }
            if let (_, covered) = snapshotBytes.flatMap({ try? JournalSnapshot.decode($0) }), covered < expected {
                report.snapshotProblem = "covers sequence \(covered), older than the \(expected) expected"
            }
        }
        if let bytes = snapshotBytes {
            do {
                let (s, seq) = try JournalSnapshot.decode(bytes)
                state = s
                last = seq
                report.snapshotSequence = seq
            } catch {
                report.snapshotProblem = error.reason
                // Kept aside for inspection, so the next compaction cannot
                // overwrite the evidence.
                if !readOnly {
                    let kept = "\(JournalSnapshot.fileName).corrupt-\(wallClockNanoseconds())"
                    if (try? fs.rename(JournalSnapshot.fileName, to: kept)) != nil {
                        try? fs.syncDirectory()
                        report.snapshotProblem = error.reason + " (kept as \(kept))"
                    }
                }
            }
        }
        var segments = try fs.list().compactMap { name in JournalFormat.firstSequence(ofSegment: name).map { (name, $0) } }
            .sorted { $0.1 < $1.1 }.map(\.0)
        if let manifest {
            let present = Set(segments)
            report.missingFiles += manifest.segments.filter { !present.contains($0) }
        } else if report.manifestProblem == nil && (snapshotBytes != nil || !segments.isEmpty) {
            report.manifestAbsent = true
        }
        let listed = Set(manifest?.segments ?? [])
        var appendOffset: UInt64?
        var index = 0
        while index < segments.count {
            let name = segments[index]
            let isLast = index == segments.count - 1
            guard let bytes = try fs.read(name) else { index += 1; continue }
            report.segmentsRead += 1
            let outcome = bytes.withUnsafeBytes { b in
                replaySegment(name: name, b, isLast: isLast, state: &state, last: &last, report: &report)
            }
            switch outcome {
            case .ok(let end):
                if isLast { appendOffset = end }
            case .tornTail(let end):
                if isLast { appendOffset = end }
                if readOnly { break }
                // Cut it off so the next append starts on a clean end.
                let h = try fs.openForWriting(name)
                defer { try? fs.close(h) }
                try fs.truncate(h, to: end)
                try fs.sync(h)
            case .unusable:
                // Listed in the manifest: its header had been durable, so
                // this is not a segment whose creation a crash cut short.
                if listed.contains(name) { report.emptiedSegments.append(name) }
                if readOnly { segments.remove(at: index); continue }
                // A last segment whose header never became durable: it was
                // being created when the process died; nothing was in it.
                try fs.remove(name)
                try fs.syncDirectory()
                segments.remove(at: index)
                continue
            }
            index += 1
        }
        // Records the manifest says were acknowledged and that are not here
        // (a segment deleted or cut short). A torn tail beyond them is the
        // normal end of a crash and stays silent.
        if let expected = manifest?.durableSequence, expected > last { report.tailRecordsLost = expected - last }
        if let manifest {
            report.knownMissingSequences = min(manifest.knownGaps, report.missingSequences)
            report.knownDamaged = report.damaged.filter { manifest.knownRanges.contains("\($0.segment)@\($0.offset)") }
        }
        // Whatever is still open belonged to a run that is gone.
        if runIsOver { state.endRun() }
        report.durationNs = monotonicNanoseconds() - start
        return Result(state: state, lastSequence: last, segments: segments, appendOffset: appendOffset, report: report)
    }

    enum SegmentOutcome {
        case ok(end: UInt64)
        case tornTail(end: UInt64)
        case unusable
    }

    private func replaySegment(name: String, _ b: UnsafeRawBufferPointer, isLast: Bool,
                               state: inout JournalState, last: inout UInt64, report: inout JournalReplayReport) -> SegmentOutcome {
        var pos = JournalFormat.segmentHeaderSize
        if JournalFormat.parseSegmentHeader(b) == nil {
            if isLast && b.count <= JournalFormat.segmentHeaderSize { return .unusable }
            report.damaged.append(.init(segment: name, offset: 0, bytes: UInt64(min(b.count, pos))))
            if b.count <= pos { return .ok(end: UInt64(b.count)) }
        }
        while pos < b.count {
            switch JournalFormat.parseFrame(UnsafeRawBufferPointer(rebasing: b[pos...])) {
            case .record(let record, let seq, let size):
                if seq > last {
                    // From 0 too: a first segment that does not start at 1
                    // (or right after the snapshot) means one was lost.
                    if seq != last + 1 { report.missingSequences += seq - last - 1 }
                    state.apply(record)
                    last = seq
                    report.recordsReplayed += 1
                }
                pos += size
            case .incomplete, .invalid:
                if let next = nextIntactFrame(b, after: pos, last: last) {
                    report.damaged.append(.init(segment: name, offset: UInt64(pos), bytes: UInt64(next - pos)))
                    pos = next
                    continue
                }
                let dropped = UInt64(b.count - pos)
                if isLast {
                    report.truncated.append(.init(segment: name, offset: UInt64(pos), bytes: dropped))
                    return .tornTail(end: UInt64(pos))
                }
                report.damaged.append(.init(segment: name, offset: UInt64(pos), bytes: dropped))
                return .ok(end: UInt64(b.count))
            }
        }
        return .ok(end: UInt64(pos))
    }

    /// The next offset after `pos` holding an intact frame with a newer sequence.
    private func nextIntactFrame(_ b: UnsafeRawBufferPointer, after pos: Int, last: UInt64) -> Int? {
        var i = pos + 1
        let s0 = UInt8(truncatingIfNeeded: JournalFormat.sync)
        while i + JournalFormat.recordHeaderSize <= b.count {
            if b[i] == s0, case .record(_, let seq, _) = JournalFormat.parseFrame(UnsafeRawBufferPointer(rebasing: b[i...])), seq > last {
                return i
            }
            i += 1
        }
        return nil
    }
}

/// Reads a journal without changing it (no truncation, no removal): what
/// `vigilctl` shows for a stopped daemon, or for a running one.
public enum JournalInspector {
    /// - Parameter runIsOver: false while the daemon that writes it is running
    ///   (its open turns are in flight, not interrupted).
    public static func read(_ fs: any StateFileSystem, runIsOver: Bool, logger: Logger = Logger(label: "vigil.journal")) throws(SystemCallError) -> (state: JournalState, report: JournalReplayReport) {
        let r = try JournalReplayer(fs: fs, logger: logger, readOnly: true, runIsOver: runIsOver).replay()
        return (r.state, r.report)
    }

    /// What the running daemon's journal found missing or damaged when it
    /// opened (kept in its manifest); nil without a readable manifest.
    public static func foundAtLastOpen(_ fs: any StateFileSystem) throws(SystemCallError) -> JournalCheck? {
        guard let bytes = try fs.read(JournalManifest.fileName) else { return nil }
        return (try? JournalManifest.decode(bytes))?.foundAtOpen
    }
}
