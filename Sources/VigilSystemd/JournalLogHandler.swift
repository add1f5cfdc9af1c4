// A swift-log backend: structured journal entries through sd_journal_sendv
// when stderr is connected to the journal ($JOURNAL_STREAM names stderr's
// device and inode, as systemd.exec(5) says to check), plain stderr lines
// otherwise. Journal fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER,
// CODE_FILE, CODE_LINE, CODE_FUNC, VIGIL_SOURCE (the module), and every
// metadata key upper-cased with a VIGIL_ prefix (e.g. VIGIL_PREVIOUS_RUN).
import CVigil
import Glibc
import Logging

public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    let identifier: String

    public init(identifier: String) {
        self.identifier = identifier
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Whether stderr is the journal's stream (systemd sets JOURNAL_STREAM
    /// to "DEV:INO" of it; a redirected stderr no longer matches).
    public static func stderrIsJournal() -> Bool {
        guard let v = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = v.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }

    /// The journal when stderr goes there, else swift-log's stderr stream.
    public static func bootstrap(identifier: String) {
        if stderrIsJournal() {
            LoggingSystem.bootstrap { _ in JournalLogHandler(identifier: identifier) }
        } else {
            LoggingSystem.bootstrap(StreamLogHandler.standardError)
        }
    }

    /// Sends one entry to journald (swift-log's event API).
    public func log(event: LogEvent) {
        var fields: [String] = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.priority(event.level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
            "CODE_FILE=\(event.file)",
            "CODE_LINE=\(event.line)",
            "CODE_FUNC=\(event.function)",
            "VIGIL_SOURCE=\(event.source)",
        ]
        if let error = event.error { fields.append("ERROR=\(error)") }
        var all = metadata
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        for (k, v) in all { fields.append("VIGIL_\(Self.fieldName(k))=\(v)") }
        Self.send(fields)
    }

    /// syslog(3) priorities, as journald expects them.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Journal field names: A–Z, 0–9 and _, not starting with _ or a digit.
    static func fieldName(_ key: String) -> String {
        var out = ""
        for u in key.uppercased().unicodeScalars {
            out.unicodeScalars.append(("A"..."Z").contains(u) || ("0"..."9").contains(u) ? u : "_")
        }
        return out.isEmpty ? "FIELD" : out
    }

    static func send(_ fields: [String]) {
        // One buffer, so every iovec points into memory that lives for the call.
        var blob: [UInt8] = []
        var ranges: [(start: Int, count: Int)] = []
        for f in fields {
            let start = blob.count
            blob.append(contentsOf: f.utf8)
            ranges.append((start, blob.count - start))
        }
        blob.withUnsafeMutableBytes { b in
            var iov = ranges.map { iovec(iov_base: b.baseAddress! + $0.start, iov_len: $0.count) }
            _ = sd_journal_sendv(&iov, Int32(iov.count))
        }
    }
}
