// The run history: the last 100 runs of a state directory, one line each,
// durable across reboots (docs/shutdown.md#run-history). At every start the
// entry point appends the run that just ended, as its shutdown record
// describes it, and rewrites the file atomically (AtomicFile: the old or the
// new history survives any crash). Each line carries its own CRC32C, so a
// damaged line is reported and skipped, never fatal: a corrupt or truncated
// history never stops a start.
//
//   line := CRC32C-of-payload as 8 hex digits, " ", payload, "\n"
//   payload := key=value fields separated by TAB (values hold no TAB or newline)
import VigilSystem

public struct RunHistory: Sendable, Equatable {
    public static let fileName = "run-history"
    /// Runs kept.
    public static let limit = 100

    /// One run, as its last durable record described it.
    public struct Entry: Sendable, Equatable {
        public var fields: [(String, String)]
        public static func == (a: Entry, b: Entry) -> Bool { a.fields.elementsEqual(b.fields) { $0 == $1 } }

        public init(fields: [(String, String)]) { self.fields = fields }

        public subscript(key: String) -> String? { fields.first { $0.0 == key }?.1 }

        /// The run `previous` describes (nil for a first start: no run ended).
        public init?(_ previous: PreviousRun) {
            guard previous.classification != .firstStart else { return nil }
            var f: [(String, String)] = [("class", previous.classification.rawValue)]
            if let r = previous.record {
                f.append(("pid", "\(r.pid)"))
                f.append(("boot_id", r.bootID))
                f.append(("started_at_ns", "\(r.startedAtNs)"))
                f.append(("version", r.version))
                if let v = r.stopRequestedAtNs { f.append(("stop_requested_at_ns", "\(v)")) }
                if let v = r.stoppedAtNs { f.append(("ended_at_ns", "\(v)")) }
                if let v = r.signal { f.append(("signal", "\(v)")) }
                if let v = r.senderPID { f.append(("sender_pid", "\(v)")) }
                if let v = r.senderUID { f.append(("sender_uid", "\(v)")) }
                if let v = r.senderCommand { f.append(("sender_comm", v)) }
                if let v = r.budgetMs { f.append(("budget_ms", "\(v)")) }
                if let v = r.drainMs { f.append(("drain_ms", "\(v)")) }
                if let v = r.inFlight { f.append(("in_flight", "\(v)")) }
                if let v = r.abandoned { f.append(("abandoned", "\(v)")) }
                if let v = r.handedOver { f.append(("handed_over", "\(v)")) }
                if let v = r.programExitStatus { f.append(("program_exit_status", "\(v)")) }
                if let v = r.programExitSignal { f.append(("program_exit_signal", "\(v)")) }
            }
            if previous.previousBoot { f.append(("previous_boot", "true")) }
            if let why = previous.corruption { f.append(("corruption", why)) }
            self.fields = f.map { ($0.0, Self.clean($0.1)) }
        }

        /// Adds a field (a TAB or newline in the value becomes a space).
        public mutating func add(_ key: String, _ value: String) {
            fields.append((Self.clean(key), Self.clean(value)))
        }

        /// Adds what a journal's replay at the next start found missing:
        /// `journal_records_lost`, `journal_missing` (comma-separated) and
        /// `journal_problems` (the count of other problems). Nothing when
        /// the journal is whole.
        public mutating func add(journalDamage check: JournalCheck) {
            guard check.isDamaged else { return }
            add("journal_records_lost", "\(check.recordsLost)")
            if !check.missing.isEmpty { add("journal_missing", check.missing.joined(separator: ",")) }
            if !check.problems.isEmpty { add("journal_problems", "\(check.problems.count)") }
        }

        static func clean(_ s: String) -> String {
            String(s.unicodeScalars.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : Character($0) })
        }

        var payload: String { fields.map { "\($0.0)=\($0.1)" }.joined(separator: "\t") }

        var line: String {
            let p = Array(payload.utf8)
            let crc = p.withUnsafeBytes { CRC32C.checksum($0) }
            let hex = String(crc, radix: 16)
            return String(repeating: "0", count: 8 - hex.count) + hex + " " + payload + "\n"
        }
    }

    /// Oldest first.
    public var entries: [Entry] = []
    /// Lines that failed their check (damaged, or cut by a torn write).
    public var damagedLines = 0
    /// Why the file could not be read at all, if so.
    public var problem: String?

    public init(entries: [Entry] = []) { self.entries = entries }

    /// Reads the history in `fs`; never throws (problems are reported in it).
    public static func read(_ fs: any StateFileSystem) -> RunHistory {
        var h = RunHistory()
        let bytes: [UInt8]?
        do { bytes = try fs.read(fileName) } catch {
            h.problem = "cannot read \(fileName): \(error)"
            return h
        }
        guard let bytes else { return h }
        for raw in bytes.split(separator: 10, omittingEmptySubsequences: true) {
            guard raw.count > 9, raw[raw.startIndex + 8] == 32,
                  let stored = UInt32(String(decoding: raw.prefix(8), as: UTF8.self), radix: 16) else {
                h.damagedLines += 1
                continue
            }
            let payload = Array(raw.dropFirst(9))
            guard payload.withUnsafeBytes({ CRC32C.checksum($0) }) == stored else {
                h.damagedLines += 1
                continue
            }
            let fields = String(decoding: payload, as: UTF8.self).split(separator: "\t").map { part -> (String, String) in
                let kv = part.split(separator: "=", maxSplits: 1)
                return (String(kv[0]), kv.count > 1 ? String(kv[1]) : "")
            }
            h.entries.append(Entry(fields: fields))
        }
        return h
    }

    /// Appends `entry` to what is readable now, keeps the last ``limit``,
    /// and replaces the file atomically (durable when this returns).
    @discardableResult
    public static func append(_ entry: Entry, in fs: any StateFileSystem) throws(SystemCallError) -> RunHistory {
        var h = read(fs)
        // The same run again (a start that crashed before overwriting its
        // predecessor's record): replaced, so no run is listed twice.
        if let last = h.entries.last, last["pid"] == entry["pid"], last["started_at_ns"] == entry["started_at_ns"], entry["pid"] != nil {
            h.entries.removeLast()
        }
        h.entries.append(entry)
        if h.entries.count > limit { h.entries.removeFirst(h.entries.count - limit) }
        let text = h.entries.map(\.line).joined()
        try AtomicFile.replace(fileName, with: Array(text.utf8), in: fs)
        return h
    }
}
