// What the journal directory must contain, so replay can tell a file that
// was deleted or cut short from one that was never written (docs/journal.md,
// "Manifest"). Replaced with AtomicFile whenever that changes: at open,
// after a new segment is durable, before compaction removes segments, and
// when the journal is closed (then `durable` is exact: the last record
// acknowledged). Text, one `key=value` per line:
//   vigil-journal-manifest 1
//   snapshot=<covered sequence>     absent: no snapshot is expected
//   durable=<sequence>              every record up to it was acknowledged
//   segment=<name>                  one per segment that must exist
//   found_records_lost=<n>          what the start that wrote it found
//   found_missing=<name>            (vigilctl shows it while that run lives)
//   found_problem=<text>
//   known_gaps=<n>                  damage already reported (not new loss):
//   known_range=<segment>@<offset>  sequence gaps, damaged ranges
//   crc32c=<8 hex digits>           over every byte before this line

struct JournalManifest: Equatable {
    static let fileName = "journal.manifest"
    static let header = "vigil-journal-manifest 1"

    var snapshotSequence: UInt64?
    var durableSequence: UInt64
    var segments: [String]
    /// The check made by the open that wrote this manifest.
    var foundAtOpen = JournalCheck()
    /// Damage still in the files that an earlier open already reported
    /// (gaps in the sequence, damaged ranges): reported again in the
    /// summary, but not as new loss. Compaction clears what it removes.
    var knownGaps: UInt64 = 0
    var knownRanges: [String] = []

    func encode() -> [UInt8] {
        var text = Self.header + "\n"
        if let s = snapshotSequence { text += "snapshot=\(s)\n" }
        text += "durable=\(durableSequence)\n"
        for name in segments { text += "segment=\(name)\n" }
        if foundAtOpen.recordsLost > 0 { text += "found_records_lost=\(foundAtOpen.recordsLost)\n" }
        for name in foundAtOpen.missing { text += "found_missing=\(name)\n" }
        for p in foundAtOpen.problems { text += "found_problem=\(p.replacingNewlines())\n" }
        if knownGaps > 0 { text += "known_gaps=\(knownGaps)\n" }
        for r in knownRanges { text += "known_range=\(r)\n" }
        var bytes = Array(text.utf8)
        bytes += Array("crc32c=\(hex8(CRC32C.checksum(bytes)))\n".utf8)
        return bytes
    }

    struct Invalid: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    static func decode(_ bytes: [UInt8]) throws(Invalid) -> JournalManifest {
        // The CRC line is the last one; everything before it is covered.
        guard bytes.last == 0x0A, let crcStart = bytes.dropLast().lastIndex(of: 0x0A).map({ $0 + 1 }) else {
            throw Invalid(reason: "truncated")
        }
        let crcLine = String(decoding: bytes[crcStart..<(bytes.count - 1)], as: UTF8.self)
        guard crcLine.hasPrefix("crc32c="), let stored = UInt32(crcLine.dropFirst(7), radix: 16) else { throw Invalid(reason: "no checksum line") }
        guard CRC32C.checksum(Array(bytes[0..<crcStart])) == stored else { throw Invalid(reason: "CRC32C mismatch") }
        let lines = String(decoding: bytes[0..<crcStart], as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
        guard lines.first.map(String.init) == header else { throw Invalid(reason: "unsupported manifest version") }
        var m = JournalManifest(snapshotSequence: nil, durableSequence: 0, segments: [])
        var sawDurable = false
        for line in lines.dropFirst() {
            guard let eq = line.firstIndex(of: "=") else { throw Invalid(reason: "malformed line") }
            let key = line[..<eq], value = String(line[line.index(after: eq)...])
            switch key {
            case "snapshot":
                guard let v = UInt64(value) else { throw Invalid(reason: "bad snapshot sequence") }
                m.snapshotSequence = v
            case "durable":
                guard let v = UInt64(value) else { throw Invalid(reason: "bad durable sequence") }
                m.durableSequence = v
                sawDurable = true
            case "segment": m.segments.append(value)
            case "found_records_lost": m.foundAtOpen.recordsLost = UInt64(value) ?? 0
            case "found_missing": m.foundAtOpen.missing.append(value)
            case "found_problem": m.foundAtOpen.problems.append(value)
            case "known_gaps": m.knownGaps = UInt64(value) ?? 0
            case "known_range": m.knownRanges.append(value)
            default: break  // later versions may add keys
            }
        }
        guard sawDurable else { throw Invalid(reason: "no durable sequence") }
        return m
    }
}

/// What replay found missing or damaged, against what the manifest (and the
/// sequence numbers themselves) say must be there.
public struct JournalCheck: Sendable, Equatable {
    /// Files the manifest lists that are gone (`snapshot`, segment names).
    public var missing: [String] = []
    /// Acknowledged records that are not there: gaps in the sequence, and
    /// records the manifest says were durable beyond the last one found.
    public var recordsLost: UInt64 = 0
    /// One line per other problem: damaged ranges, an unreadable snapshot or
    /// manifest, an emptied segment.
    public var problems: [String] = []

    public init() {}

    /// Something acknowledged may be gone: sessions may come back incomplete.
    public var isDamaged: Bool { !missing.isEmpty || recordsLost > 0 || !problems.isEmpty }
}

private func hex8(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 8 - s.count) + s
}

extension String {
    fileprivate func replacingNewlines() -> String {
        String(map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }
}
