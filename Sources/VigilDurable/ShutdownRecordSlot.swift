// The record file of format 2: created once at its final size, two slots
// of one 4096-byte block each, rewritten in place and alternately (LMDB's
// two meta pages, PostgreSQL's pg_control CRC). A write goes to the slot
// that does not hold the newest durable record, so a torn write can destroy
// only the record being written, never the last good one. Slot layout
// (docs/shutdown.md):
//   0     8  magic "VIGILSR\0"
//   8     2  format version, LE (2)
//   10    2  reserved (0)
//   12    4  payload length N, LE
//   16    8  sequence number, LE (higher = newer)
//   24    N  payload: UTF-8 "key=value\n" lines
//   24+N     zeros up to 4092
//   4092  4  CRC32C of bytes 0 ..< 4092, LE
// Why 4096 and not 512 (measured and argued in docs/shutdown.md): a slot is
// one whole page and one whole ext4 block, so writing it never reads the
// block first (no read-modify-write on the signal path), a SIGKILL cannot
// tear it (the kernel copies one page at a time and checks for fatal
// signals only between pages), and the two slots never share a block that
// writeback would rewrite together.

public struct ShutdownRecordSlot: Equatable, Sendable {
    public static let size = 4096
    public static let count = 2
    /// The record file's fixed size.
    public static let fileSize = size * count
    public static let version: UInt16 = 2
    static let headerSize = 24
    static let crcOffset = size - 4
    /// The largest payload a slot holds.
    public static let maxPayload = crcOffset - headerSize

    public var sequence: UInt64
    public var record: ShutdownRecord

    public init(sequence: UInt64, record: ShutdownRecord) {
        self.sequence = sequence
        self.record = record
    }

    /// The slot's 4096 bytes, or nil when the payload does not fit.
    public func encoded() -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: Self.size)
        return encode(into: &out) ? out : nil
    }

    /// Encodes into `buffer` (4096 bytes) in place, without allocating;
    /// false when the payload does not fit.
    func encode(into buffer: inout [UInt8]) -> Bool {
        precondition(buffer.count == Self.size)
        return buffer.withUnsafeMutableBytes { b in
            guard let n = record.writePayload(into: UnsafeMutableRawBufferPointer(rebasing: b[Self.headerSize..<Self.crcOffset])) else { return false }
            for (i, m) in ShutdownRecord.magic.enumerated() { b[i] = m }
            b.storeBytes(of: Self.version.littleEndian, toByteOffset: 8, as: UInt16.self)
            b.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
            b.storeBytes(of: UInt32(n).littleEndian, toByteOffset: 12, as: UInt32.self)
            b.storeBytes(of: sequence.littleEndian, toByteOffset: 16, as: UInt64.self)
            let end = Self.headerSize + n
            UnsafeMutableRawBufferPointer(rebasing: b[end..<Self.crcOffset]).initializeMemory(as: UInt8.self, repeating: 0)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<Self.crcOffset]))
            b.storeBytes(of: crc.littleEndian, toByteOffset: Self.crcOffset, as: UInt32.self)
            return true
        }
    }

    /// Decodes one slot (exactly `size` bytes).
    public init(decoding slot: ArraySlice<UInt8>) throws(ShutdownRecord.DecodeError) {
        let bytes = Array(slot)
        guard bytes.count == Self.size else { throw .init(reason: "slot of \(bytes.count) bytes") }
        if bytes.allSatisfy({ $0 == 0 }) { throw .init(reason: "empty") }
        let stored = bytes.readLE(UInt32.self, at: Self.crcOffset)
        let computed = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<Self.crcOffset])) }
        // The CRC first: a torn slot is garbage throughout, whatever its header says.
        guard stored == computed else {
            throw .init(reason: "CRC32C mismatch (stored \(hex(stored)), computed \(hex(computed)))")
        }
        guard Array(bytes[0..<8]) == ShutdownRecord.magic else { throw .init(reason: "wrong magic") }
        let version = bytes.readLE(UInt16.self, at: 8)
        guard version == Self.version else { throw .init(reason: "unsupported format version \(version)") }
        let length = Int(bytes.readLE(UInt32.self, at: 12))
        guard length <= Self.maxPayload else { throw .init(reason: "payload length \(length) exceeds the slot") }
        sequence = bytes.readLE(UInt64.self, at: 16)
        record = try ShutdownRecord(payload: bytes[Self.headerSize..<(Self.headerSize + length)])
    }

    /// What a record file of format 2 holds.
    public struct FileContents: Equatable, Sendable {
        /// Each slot's record, or why it is invalid.
        public var slots: [Result<ShutdownRecordSlot, ShutdownRecord.DecodeError>]

        /// The valid slot with the highest sequence number, and its index.
        public var newest: (index: Int, slot: ShutdownRecordSlot)? {
            var best: (index: Int, slot: ShutdownRecordSlot)?
            for (i, r) in slots.enumerated() {
                guard case .success(let s) = r else { continue }
                if let b = best, b.slot.sequence >= s.sequence { continue }
                best = (i, s)
            }
            return best
        }

        /// Why no slot is valid ("slot 0: …; slot 1: …").
        public var reasons: String {
            slots.enumerated().map { i, r in
                switch r {
                case .success(let s): "slot \(i): sequence \(s.sequence)"
                case .failure(let e): "slot \(i): \(e.reason)"
                }
            }.joined(separator: "; ")
        }
    }

    /// Whether `bytes` is laid out as a format-2 record file (by its size:
    /// a format-1 file is always shorter than one slot).
    public static func isSlotFile(_ bytes: [UInt8]) -> Bool { bytes.count == fileSize }

    public static func decodeFile(_ bytes: [UInt8]) -> FileContents {
        precondition(isSlotFile(bytes))
        return FileContents(slots: (0..<count).map { i in
            Result { () throws(ShutdownRecord.DecodeError) in try ShutdownRecordSlot(decoding: bytes[(i * size)..<((i + 1) * size)]) }
        })
    }
}
