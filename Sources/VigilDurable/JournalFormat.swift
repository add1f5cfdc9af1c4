// On-disk framing of the turn journal (docs/journal.md).
//
// Segment file "<first sequence, 20 digits>.seg":
//   header  "VIGILJNL" | version u16 | reserved u16 | first sequence u64 | crc32c u32   (24 bytes)
//   records, back to back:
//   sync u32 0x4C524A56 ("VJRL") | body length u32 | crc32c u32 | sequence u64 | type u8 | body
// The CRC covers length, sequence, type and body. The sync word lets replay
// find the next intact record after a damaged range.

enum JournalFormat {
    static let segmentMagic: [UInt8] = Array("VIGILJNL".utf8)
    static let version: UInt16 = 1
    static let segmentHeaderSize = 24
    static let sync: UInt32 = 0x4C52_4A56
    static let recordHeaderSize = 21
    /// Larger bodies are refused at append (a protocol line is at most 64 KiB).
    static let maxBody = 1 << 20

    static func segmentName(firstSequence: UInt64) -> String {
        let digits = String(firstSequence)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    static func firstSequence(ofSegment name: String) -> UInt64? {
        guard name.hasSuffix(".seg"), name.count == 24 else { return nil }
        return UInt64(name.prefix(20))
    }

    static func segmentHeader(firstSequence: UInt64) -> [UInt8] {
        var h = segmentMagic
        h.appendLE(version)
        h.appendLE(UInt16(0))
        h.appendLE(firstSequence)
        h.appendLE(CRC32C.checksum(h))
        return h
    }

    /// The first sequence from a valid header, else nil.
    static func parseSegmentHeader(_ b: UnsafeRawBufferPointer) -> UInt64? {
        guard b.count >= segmentHeaderSize, Array(b[0..<8]) == segmentMagic else { return nil }
        guard b.loadLE(UInt16.self, at: 8) == version else { return nil }
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<20]))
        guard crc == b.loadLE(UInt32.self, at: 20) else { return nil }
        return b.loadLE(UInt64.self, at: 12)
    }

    /// Appends one framed record.
    static func appendFrame(_ record: JournalRecord, sequence: UInt64, to out: inout [UInt8]) {
        let start = out.count
        out.appendLE(sync)
        out.appendLE(UInt32(0))  // length, patched below
        out.appendLE(UInt32(0))  // crc, patched below
        out.appendLE(sequence)
        out.append(record.typeCode)
        let bodyStart = out.count
        record.encodeBody(into: &out)
        let length = UInt32(out.count - bodyStart)
        out.patchLE(length, at: start + 4)
        let crc = out.withUnsafeBytes { b -> UInt32 in
            let c = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[(start + 4)..<(start + 8)]))
            return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[(start + 12)..<out.count]), seed: c)
        }
        out.patchLE(crc, at: start + 8)
    }

    enum FrameResult {
        case record(JournalRecord, sequence: UInt64, size: Int)
        /// Not enough bytes for a whole frame.
        case incomplete
        /// Bytes that are no valid frame.
        case invalid
    }

    /// Parses the frame at the start of `b`.
    static func parseFrame(_ b: UnsafeRawBufferPointer) -> FrameResult {
        guard b.count >= recordHeaderSize else { return .incomplete }
        guard b.loadLE(UInt32.self, at: 0) == sync else { return .invalid }
        let length = Int(b.loadLE(UInt32.self, at: 4))
        guard length <= maxBody else { return .invalid }
        guard b.count >= recordHeaderSize + length else { return .incomplete }
        let c = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[4..<8]))
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[12..<(recordHeaderSize + length)]), seed: c)
        guard crc == b.loadLE(UInt32.self, at: 8) else { return .invalid }
        let seq = b.loadLE(UInt64.self, at: 12)
        guard let rec = JournalRecord.decode(type: b[20], body: UnsafeRawBufferPointer(rebasing: b[21..<(21 + length)])) else {
            return .invalid
        }
        return .record(rec, sequence: seq, size: recordHeaderSize + length)
    }
}

extension UnsafeRawBufferPointer {
    func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v |= T(self[offset + i]) << (8 * i) }
        return v
    }
}

extension Array where Element == UInt8 {
    mutating func patchLE<T: FixedWidthInteger>(_ v: T, at offset: Int) {
        for i in 0..<MemoryLayout<T>.size { self[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }
}
