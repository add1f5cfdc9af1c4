// Reading, taking over and advancing the shutdown record in the state
// directory. The record file (format 2, ShutdownRecordSlot) is created once
// at its full size — tmp file, fsync, rename, directory fsync — and from then
// on every transition is one `pwrite` of one 4096-byte slot and one
// `fdatasync`: safe from SIGKILL once the pwrite has returned (the kernel has
// the page), durable against power loss once the fdatasync has, and the
// fdatasync needs no file-system journal commit because no name, size or
// allocation changes. Synchronous syscalls, deliberately not io_uring: the
// `stopping` record must be written before the signal handler returns and
// anything else (a drain task, a log line) runs. A format-1 file (earlier
// versions' rename-based record) is still read, and replaced by a format-2
// file at the next take-over.
import Glibc
import VigilSystem

public final class ShutdownRecordStore {
    public static let recordName = "shutdown.record"
    /// The previous run's classification as decided at this run's start,
    /// kept so `vigilctl last-shutdown` can report it while we run.
    public static let reportName = "last-shutdown.json"

    public enum ReadResult: Sendable, Equatable {
        case absent
        case valid(ShutdownRecord)
        case corrupt(String)
    }

    /// What is in the record file, by format.
    enum Found {
        case absent
        case version1(ReadResult)
        case slots(ShutdownRecordSlot.FileContents)
        case unreadable(String)

        var result: ReadResult {
            switch self {
            case .absent: return .absent
            case .version1(let r): return r
            case .unreadable(let why): return .corrupt(why)
            case .slots(let contents):
                if let newest = contents.newest { return .valid(newest.slot.record) }
                return .corrupt("no valid slot (\(contents.reasons))")
            }
        }
    }

    public let fs: any StateFileSystem
    /// The record as last made durable by this process.
    public private(set) var current: ShutdownRecord?
    /// CLOCK_MONOTONIC when the last transition's `pwrite` returned (safe
    /// from SIGKILL) and when its flush returned (durable); for benchmarks.
    public private(set) var lastWriteVisibleNs: UInt64 = 0
    public private(set) var lastWriteDurableNs: UInt64 = 0

    /// The record file, open for the life of the store (O_NOFOLLOW, 0600).
    private var handle: StateFileHandle?
    /// The slot holding the newest record this process knows to be durable;
    /// the next write goes to the other one. Unchanged after a failed write,
    /// so a retry overwrites the same, possibly torn, slot.
    private var durableSlot = 0
    private var sequence: UInt64 = 0
    private var slotBuffer = [UInt8](repeating: 0, count: ShutdownRecordSlot.size)

    public init(fs: any StateFileSystem) {
        self.fs = fs
    }

    deinit {
        if let handle { try? fs.close(handle) }
    }

    /// Reads the record without changing anything.
    public func read() -> ReadResult { find().result }

    func find() -> Found {
        let bytes: [UInt8]?
        do { bytes = try fs.read(Self.recordName) } catch {
            return .unreadable("cannot read \(Self.recordName): \(error)")
        }
        guard let bytes else { return .absent }
        if ShutdownRecordSlot.isSlotFile(bytes) { return .slots(ShutdownRecordSlot.decodeFile(bytes)) }
        do { return .version1(.valid(try ShutdownRecord(version1: bytes))) } catch {
            return .version1(.corrupt(error.reason))
        }
    }

    /// Start-up, with the directory lock held: classify the previous run,
    /// set an unreadable record aside, keep the report, then make `running`
    /// durable — in place when the file has format 2 and a valid slot,
    /// otherwise by creating the format-2 file (first use, migration from
    /// format 1, or after a corrupt file was set aside). The previous record
    /// is overwritten only by that last step, so a crash anywhere in here
    /// leaves either the old record (classified the same way next time) or
    /// the new `running` one.
    public func takeOver(running: ShutdownRecord, currentBootID: String) throws(SystemCallError) -> PreviousRun {
        let found = find()
        var previous = PreviousRun.classify(found.result, currentBootID: currentBootID)
        if previous.classification == .corrupt {
            let kept = "\(Self.recordName).corrupt-\(running.startedAtNs)"
            try fs.rename(Self.recordName, to: kept)
            try fs.syncDirectory()
            previous.keptAs = kept
        }
        try AtomicFile.replace(Self.reportName, with: Array((previous.json() + "\n").utf8), in: fs)
        // (A sequence number near its end — only a crafted file has one —
        // starts a new file rather than wrap.)
        if case .slots(let contents) = found, let newest = contents.newest, newest.slot.sequence < UInt64.max / 2 {
            handle = try fs.openForWriting(Self.recordName)
            durableSlot = newest.index
            sequence = newest.slot.sequence
            try write(running)
        } else {
            try create(running)
        }
        warmUpEncoding()
        return previous
    }

    /// Encodes (and throws away) records like the later transitions', so
    /// the signal handler does not pay for first use of their code paths
    /// and runtime metadata between the signal and its pwrite.
    private func warmUpEncoding() {
        guard var r = current else { return }
        r.state = .stopping
        r.signal = 15; r.senderPID = 1; r.senderUID = 0
        r.stopRequestedAtNs = wallClockNanoseconds(); r.budgetMs = 1; r.inFlight = 0
        _ = ShutdownRecordSlot(sequence: sequence + 1, record: r).encode(into: &slotBuffer)
        r.state = .stopped
        r.outcome = .clean; r.abandoned = 0; r.drainMs = 0; r.stoppedAtNs = wallClockNanoseconds()
        _ = ShutdownRecordSlot(sequence: sequence + 2, record: r).encode(into: &slotBuffer)
    }

    /// The signal handler's first act: one pwrite, one fdatasync.
    public func markStopping(signal: SignalInfo, budgetMs: UInt64, inFlight: Int) throws(SystemCallError) {
        guard var r = current else { preconditionFailure("markStopping before takeOver") }
        r.state = .stopping
        r.signal = signal.signal
        r.senderPID = signal.senderPID
        r.senderUID = signal.senderUID
        r.stopRequestedAtNs = wallClockNanoseconds()
        r.budgetMs = budgetMs
        r.inFlight = inFlight
        try write(r)
    }

    /// The drain is over (clean, or cut short with `abandoned` items).
    public func markStopped(outcome: ShutdownRecord.Outcome, abandoned: Int, drainMs: UInt64) throws(SystemCallError) {
        guard var r = current else { preconditionFailure("markStopped before takeOver") }
        r.senderCommand = senderCommand
        if let p = programExit { (r.programExitStatus, r.programExitSignal) = p }
        r.state = .stopped
        r.outcome = outcome
        r.abandoned = abandoned
        r.drainMs = drainMs
        r.stoppedAtNs = wallClockNanoseconds()
        try write(r)
    }

    /// The stop signal's sender's command name, stored with `stopped`
    /// (set after the `stopping` record; never read in the signal handler).
    public var senderCommand: String?

    /// A supervised program's end during a requested stop (its exit status,
    /// or the signal that killed it), stored with `stopped` (`vigil run`).
    public var programExit: (status: Int32?, signal: Int32?)?

    /// A supervised program ended without a stop request (`vigil run`).
    /// Exit 0 with no unit of work open is a clean end: `stopped/clean`.
    /// Anything else keeps the state `running`, so every reader — older
    /// ones too — classifies it as a crash; the exit status or signal and
    /// the open units (`abandoned`) are added for the next start to report.
    /// `status`: the program's exit status; else `signal`: the signal that
    /// killed it. `runFailed`: the supervisor failed the run anyway (the
    /// program was not ready in time): never clean.
    public func markProgramExited(status: Int32?, signal: Int32?, openWork: Int, runFailed: Bool = false) throws(SystemCallError) {
        guard var r = current else { preconditionFailure("markProgramExited before takeOver") }
        r.programExitStatus = status
        r.programExitSignal = status == nil ? signal : nil
        r.abandoned = openWork
        r.stoppedAtNs = wallClockNanoseconds()
        if status == 0 && openWork == 0 && !runFailed {
            r.state = .stopped
            r.outcome = .clean
            r.drainMs = 0
        }
        try write(r)
    }

    /// After a `stopped` record: this stop gave `connections` to the service
    /// manager's fd store for the next instance. The same `stopped` record
    /// again with that detail (one more pwrite + fdatasync, into the other
    /// slot): written only once the store has them, so the detail is never
    /// claimed for a handover that failed; a death in between leaves the
    /// record without it.
    public func markHandedOver(connections: Int) throws(SystemCallError) {
        guard var r = current, r.state == .stopped else { preconditionFailure("markHandedOver before markStopped") }
        r.handedOver = connections
        try write(r)
    }

    /// The report written by the running instance at its start, if any.
    public func readReport() -> String? {
        guard let b = try? fs.read(Self.reportName) else { return nil }
        return String(decoding: b, as: UTF8.self).trimmingCharacters(in: "\n")
    }

    // MARK: Writing

    /// Encodes into `slotBuffer`, allocated and touched at start-up: the
    /// signal handler's encoding allocates nothing.
    private func encodeSlot(_ r: ShutdownRecord, sequence: UInt64) throws(SystemCallError) {
        guard ShutdownRecordSlot(sequence: sequence, record: r).encode(into: &slotBuffer) else {
            throw SystemCallError("encode \(Self.recordName): payload of \(r.payload().count) bytes exceeds a slot's \(ShutdownRecordSlot.maxPayload)", .fileTooLarge)
        }
    }

    /// Creates the format-2 file holding `running` in slot 0 and an empty
    /// slot 1, at its final size, its blocks allocated by real writes (not a
    /// hole: later overwrites must need no allocation, so a full disk cannot
    /// refuse them), file and directory fsync'd. The descriptor stays open
    /// for the in-place writes.
    private func create(_ running: ShutdownRecord) throws(SystemCallError) {
        // (`running` at a take-over; any record when recreating the file.)
        try encodeSlot(running, sequence: 1)
        let bytes = slotBuffer + [UInt8](repeating: 0, count: ShutdownRecordSlot.size)
        let tmp = Self.recordName + ".tmp"
        let h = try fs.create(tmp)
        do throws(SystemCallError) {
            try fs.write(h, bytes)
            try fs.sync(h)
            try fs.rename(tmp, to: Self.recordName)
        } catch {
            try? fs.close(h)
            try? fs.remove(tmp)
            throw error
        }
        do throws(SystemCallError) {
            try fs.syncDirectory()
        } catch {
            try? fs.close(h)
            throw error
        }
        handle = h
        durableSlot = 0
        sequence = 1
        current = running
        lastWriteDurableNs = monotonicNanoseconds()
        lastWriteVisibleNs = lastWriteDurableNs
    }

    /// One transition in place: the slot not holding the newest durable
    /// record, one pwrite, one fdatasync. Nothing else, so that the signal
    /// handler's first syscalls are exactly these two.
    private func write(_ r: ShutdownRecord) throws(SystemCallError) {
        guard let handle else { preconditionFailure("record write before takeOver") }
        // The sequence grows even when a write fails, so whatever the failed
        // write left in its slot is older than the retry's.
        sequence += 1
        let target = 1 - durableSlot
        try encodeSlot(r, sequence: sequence)
        do throws(SystemCallError) {
            try fs.write(handle, slotBuffer, at: UInt64(target * ShutdownRecordSlot.size))
        } catch {
            throw SystemCallError("pwrite(\(Self.recordName), slot \(target))", error.errno)
        }
        lastWriteVisibleNs = monotonicNanoseconds()
        do throws(SystemCallError) { try fs.dataSync(handle) } catch {
            throw SystemCallError("fdatasync(\(Self.recordName), slot \(target))", error.errno)
        }
        lastWriteDurableNs = monotonicNanoseconds()
        durableSlot = target
        current = r
        // After the flush, so the check costs the stop nothing: a file
        // that is no longer under the name (removed, or replaced by a
        // rename or a restore while we ran) would take every record to
        // an inode the next start never reads.
        if !fs.names(Self.recordName, handle) { try recreate(r) }
    }

    /// The record file under the name is not the one we hold: `r`, already
    /// durable in the old inode, is written again as a new file (tmp,
    /// fsync, rename, directory fsync) and the old descriptor let go. We
    /// hold the directory lock, so whatever stood under the name is not
    /// another instance's.
    private func recreate(_ r: ShutdownRecord) throws(SystemCallError) {
        let old = handle
        do throws(SystemCallError) { try create(r) } catch {
            throw SystemCallError("\(Self.recordName) was replaced or removed while in use, and recreating it failed: \(error)", error.errno)
        }
        if let old { try? fs.close(old) }
        filesRecreated += 1
    }

    /// How many times this store found its file removed or replaced after a
    /// write and wrote the record again under the name (for a warning).
    public private(set) var filesRecreated = 0
}

/// CLOCK_REALTIME in nanoseconds (for humans; never compared for decisions).
public func wallClockNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
public func currentBootID() -> String {
    guard let f = fopen("/proc/sys/kernel/random/boot_id", "r") else { return "unknown" }
    defer { fclose(f) }
    var buf = [UInt8](repeating: 0, count: 64)
    let read = buf.withUnsafeMutableBufferPointer { b in
        b.withMemoryRebound(to: CChar.self) { fgets($0.baseAddress, Int32($0.count), f) != nil }
    }
    guard read else { return "unknown" }
    return String(decoding: buf.prefix(while: { $0 != 0 }), as: UTF8.self).trimmingCharacters(in: "\n")
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.last == set { s = s.dropLast() }
        while s.first == set { s = s.dropFirst() }
        return String(s)
    }
}
