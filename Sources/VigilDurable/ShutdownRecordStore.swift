// Reading, taking over and advancing the shutdown record in the state
// directory. Every transition is an `AtomicFile.replace`: data fsync,
// rename, directory fsync — synchronous syscalls, deliberately not io_uring,
// because the `stopping` record must be durable before the signal handler
// returns and anything else (a drain task, a log line) runs.
import Glibc
import VigilReactor

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

    public let fs: any StateFileSystem
    /// The record as last made durable by this process.
    public private(set) var current: ShutdownRecord?

    /// false only for the crash tests' negative control.
    let syncDirectory: Bool

    public init(fs: any StateFileSystem, syncDirectory: Bool = !AtomicFile.skipDirectorySync) {
        self.fs = fs
        self.syncDirectory = syncDirectory
    }

    /// Reads the record without changing anything.
    public func read() -> ReadResult {
        let bytes: [UInt8]?
        do { bytes = try fs.read(Self.recordName) } catch {
            return .corrupt("cannot read \(Self.recordName): \(error)")
        }
        guard let bytes else { return .absent }
        do { return .valid(try ShutdownRecord(decoding: bytes)) } catch {
            return .corrupt(error.reason)
        }
    }

    /// Start-up, with the directory lock held: classify the previous run,
    /// set an unreadable record aside, keep the report, then make `running`
    /// durable. The old record is replaced only by the last step, so a crash
    /// anywhere in here leaves either the old record (classified the same
    /// way next time) or the new `running` one.
    public func takeOver(running: ShutdownRecord, currentBootID: String) throws(SystemCallError) -> PreviousRun {
        var previous = PreviousRun.classify(read(), currentBootID: currentBootID)
        if previous.classification == .corrupt {
            let kept = "\(Self.recordName).corrupt-\(running.startedAtNs)"
            try fs.rename(Self.recordName, to: kept)
            try fs.syncDirectory()
            previous.keptAs = kept
        }
        try AtomicFile.replace(Self.reportName, with: Array((previous.json() + "\n").utf8), in: fs, syncDirectory: syncDirectory)
        try AtomicFile.replace(Self.recordName, with: running.encoded(), in: fs, syncDirectory: syncDirectory)
        current = running
        return previous
    }

    /// The signal handler's first act.
    public func markStopping(signal: SignalInfo, budgetMs: UInt64, inFlight: Int) throws(SystemCallError) {
        guard var r = current else { preconditionFailure("markStopping before takeOver") }
        r.state = .stopping
        r.signal = signal.signal
        r.senderPID = signal.senderPID
        r.senderUID = signal.senderUID
        r.stopRequestedAtNs = wallClockNanoseconds()
        r.budgetMs = budgetMs
        r.inFlight = inFlight
        try AtomicFile.replace(Self.recordName, with: r.encoded(), in: fs, syncDirectory: syncDirectory)
        current = r
    }

    /// The drain is over (clean, or cut short with `abandoned` items).
    public func markStopped(outcome: ShutdownRecord.Outcome, abandoned: Int, drainMs: UInt64) throws(SystemCallError) {
        guard var r = current else { preconditionFailure("markStopped before takeOver") }
        r.state = .stopped
        r.outcome = outcome
        r.abandoned = abandoned
        r.drainMs = drainMs
        r.stoppedAtNs = wallClockNanoseconds()
        try AtomicFile.replace(Self.recordName, with: r.encoded(), in: fs, syncDirectory: syncDirectory)
        current = r
    }

    /// The report written by the running instance at its start, if any.
    public func readReport() -> String? {
        guard let b = try? fs.read(Self.reportName) else { return nil }
        return String(decoding: b, as: UTF8.self).trimmingCharacters(in: "\n")
    }
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
    var buf = [CChar](repeating: 0, count: 64)
    guard fgets(&buf, 64, f) != nil else { return "unknown" }
    return String(cString: buf).trimmingCharacters(in: "\n")
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.last == set { s = s.dropLast() }
        while s.first == set { s = s.dropFirst() }
        return String(s)
    }
}
