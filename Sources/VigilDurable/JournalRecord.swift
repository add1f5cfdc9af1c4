// The records of the turn journal (docs/journal.md). Bodies are
// length-prefixed UTF-8 strings, little-endian.

public enum JournalRecord: Equatable, Sendable {
    /// A session became known (durable before `opened` is answered).
    case sessionOpened(session: String)
    /// A turn was accepted (durable before `accepted` is answered).
    case turnAccepted(session: String, id: String, text: String)
    /// A turn's reply (durable before the reply is sent).
    case turnCompleted(session: String, id: String, reply: String)
    /// A new daemon run begins: every turn still open belonged to a run that
    /// is gone, and is interrupted from here on.
    case runStarted(pid: Int32, bootID: String)
    /// The session's client carried on after being told of its interrupted
    /// turns: the session is no longer `interrupted`.
    case interruptionCleared(session: String)

    public var typeCode: UInt8 {
        switch self {
        case .sessionOpened: 1
        case .turnAccepted: 2
        case .turnCompleted: 3
        case .runStarted: 4
        case .interruptionCleared: 5
        }
    }

    /// The encoded body's length (strings are length-prefixed UTF-8).
    public var bodySize: Int {
        switch self {
        case .sessionOpened(let s), .interruptionCleared(let s): 4 + s.utf8.count
        case .turnAccepted(let s, let id, let t), .turnCompleted(let s, let id, let t): 12 + s.utf8.count + id.utf8.count + t.utf8.count
        case .runStarted(_, let boot): 8 + boot.utf8.count
        }
    }

    func encodeBody(into out: inout [UInt8]) {
        switch self {
        case .sessionOpened(let s): out.appendString(s)
        case .turnAccepted(let s, let id, let text): out.appendString(s); out.appendString(id); out.appendString(text)
        case .turnCompleted(let s, let id, let reply): out.appendString(s); out.appendString(id); out.appendString(reply)
        case .runStarted(let pid, let boot): out.appendLE(UInt32(bitPattern: pid)); out.appendString(boot)
        case .interruptionCleared(let s): out.appendString(s)
        }
    }

    /// Decodes a body; nil when it does not parse (a damaged record).
    static func decode(type: UInt8, body: UnsafeRawBufferPointer) -> JournalRecord? {
        var r = BodyReader(body)
        let rec: JournalRecord?
        switch type {
        case 1: rec = r.string().map { .sessionOpened(session: $0) }
        case 2:
            guard let s = r.string(), let id = r.string(), let t = r.string() else { return nil }
            rec = .turnAccepted(session: s, id: id, text: t)
        case 3:
            guard let s = r.string(), let id = r.string(), let t = r.string() else { return nil }
            rec = .turnCompleted(session: s, id: id, reply: t)
        case 4:
            guard let pid = r.u32(), let boot = r.string() else { return nil }
            rec = .runStarted(pid: Int32(bitPattern: pid), bootID: boot)
        case 5: rec = r.string().map { .interruptionCleared(session: $0) }
        default: return nil
        }
        return r.atEnd ? rec : nil
    }
}

struct BodyReader {
    let b: UnsafeRawBufferPointer
    var i = 0
    init(_ b: UnsafeRawBufferPointer) { self.b = b }

    var atEnd: Bool { i == b.count }

    mutating func u32() -> UInt32? {
        guard i + 4 <= b.count else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(b[i + k]) << (8 * k) }
        i += 4
        return v
    }

    mutating func u64() -> UInt64? {
        guard i + 8 <= b.count else { return nil }
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(b[i + k]) << (8 * k) }
        i += 8
        return v
    }

    mutating func string() -> String? {
        guard let n = u32(), i + Int(n) <= b.count else { return nil }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: b[i..<(i + Int(n))]), as: UTF8.self)
        i += Int(n)
        return s
    }
}

extension Array where Element == UInt8 {
    mutating func appendString(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            appendLE(UInt32(utf8.count))
            append(contentsOf: utf8)
        }
    }
}
