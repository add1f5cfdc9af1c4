// A snapshot of the journal state as of one sequence number, so replay reads
// only the segments after it. Written with AtomicFile (never torn).
//   "VIGILSNP" | version u16 | reserved u16 | covered sequence u64 | session count u32
//   per session: name | open count u32 | ids... | interrupted count u32 | ids...   (strings length-prefixed)
//   crc32c u32 over everything before it

enum JournalSnapshot {
    static let magic: [UInt8] = Array("VIGILSNP".utf8)
    static let fileName = "snapshot"

    static func encode(_ state: JournalState, coveredSequence: UInt64) -> [UInt8] {
        var out = magic
        out.appendLE(UInt16(1))
        out.appendLE(UInt16(0))
        out.appendLE(coveredSequence)
        out.appendLE(UInt32(state.sessions.count))
        for (name, s) in state.sessions.sorted(by: { $0.key < $1.key }) {
            out.appendString(name)
            out.appendLE(UInt32(s.openTurns.count))
            for id in s.openTurns { out.appendString(id) }
            out.appendLE(UInt32(s.interruptedTurns.count))
            for id in s.interruptedTurns { out.appendString(id) }
        }
        out.appendLE(CRC32C.checksum(out))
        return out
    }

    struct Invalid: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    static func decode(_ bytes: [UInt8]) throws(Invalid) -> (JournalState, UInt64) {
        guard bytes.count >= 28, Array(bytes[0..<8]) == magic else { throw Invalid(reason: "not a snapshot") }
        let stored = bytes.readLE(UInt32.self, at: bytes.count - 4)
        guard CRC32C.checksum(Array(bytes[0..<(bytes.count - 4)])) == stored else { throw Invalid(reason: "CRC32C mismatch") }
        guard bytes.readLE(UInt16.self, at: 8) == 1 else { throw Invalid(reason: "unsupported snapshot version") }
        let covered = bytes.readLE(UInt64.self, at: 12)
        let result: (JournalState, UInt64)? = bytes.withUnsafeBytes { b in
            var r = BodyReader(UnsafeRawBufferPointer(rebasing: b[20..<(b.count - 4)]))
            guard let count = r.u32() else { return nil }
            var sessions: [String: SessionRecord] = [:]
            for _ in 0..<count {
                guard let name = r.string(), let nOpen = r.u32() else { return nil }
                var s = SessionRecord()
                for _ in 0..<nOpen { guard let id = r.string() else { return nil }; s.openTurns.append(id) }
                guard let nInt = r.u32() else { return nil }
                for _ in 0..<nInt { guard let id = r.string() else { return nil }; s.interruptedTurns.append(id) }
                sessions[name] = s
            }
            return r.atEnd ? (JournalState(sessions: sessions), covered) : nil
        }
        guard let result else { throw Invalid(reason: "malformed snapshot body") }
        return result
    }
}
