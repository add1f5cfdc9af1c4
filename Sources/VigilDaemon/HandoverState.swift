// The state memfd stored beside the connections at a handover: which socket
// each state belongs to and the service's bytes for it. Versioned and
// CRC32C-checked: a state that does not decode exactly is refused whole,
// and its connections are closed, never trusted.
//
//   "VGHANDOV" | u32 version (1) | u16 name length | daemon name
//   | u32 count | count × (u64 socket inode | u8 kind: 0 connection, 1 listener
//                          | u32 length | state bytes)
//   | u32 CRC32C of everything before it          (integers little-endian)
//
// A socket is identified by its inode on sockfs, which is the same in
// every process that holds a descriptor for it (passing it through the
// store keeps the open file), so no FDNAME per connection is needed.
import VigilDurable

struct HandoverState: Equatable {
    static let magic = Array("VGHANDOV".utf8)
    static let version: UInt32 = 1

    var daemonName: String
    enum Kind: UInt8 { case connection = 0, listener = 1 }
    /// Socket inode → the service's state for that connection or listener.
    var entries: [(inode: UInt64, kind: Kind, state: [UInt8])]

    static func == (a: HandoverState, b: HandoverState) -> Bool {
        a.daemonName == b.daemonName && a.entries.count == b.entries.count
            && zip(a.entries, b.entries).allSatisfy { $0.inode == $1.inode && $0.kind == $1.kind && $0.state == $1.state }
    }

    func encoded() -> [UInt8] {
        var o = Self.magic
        put(&o, Self.version)
        let name = Array(daemonName.utf8)
        put16(&o, UInt16(name.count))
        o += name
        put(&o, UInt32(entries.count))
        for e in entries {
            put64(&o, e.inode)
            o.append(e.kind.rawValue)
            put(&o, UInt32(e.state.count))
            o += e.state
        }
        put(&o, CRC32C.checksum(o))
        return o
    }

    struct DecodeError: Error, CustomStringConvertible {
        let description: String
    }

    static func decode(_ b: [UInt8]) throws(DecodeError) -> HandoverState {
        guard b.count >= magic.count + 4 + 2 + 4 + 4 else { throw DecodeError(description: "\(b.count) bytes: too short") }
        guard Array(b[0..<magic.count]) == magic else { throw DecodeError(description: "not a handover state (bad magic)") }
        let stored = get32(b, b.count - 4)
        let actual = b.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<(b.count - 4)])) }
        guard stored == actual else { throw DecodeError(description: "checksum mismatch (stored \(stored), computed \(actual))") }
        var i = magic.count
        let end = b.count - 4
        let version = get32(b, i); i += 4
        guard version == Self.version else { throw DecodeError(description: "version \(version), this build reads \(Self.version)") }
        let nameLength = Int(UInt16(b[i]) | UInt16(b[i + 1]) << 8); i += 2
        guard i + nameLength + 4 <= end else { throw DecodeError(description: "truncated name") }
        let name = String(decoding: b[i..<(i + nameLength)], as: UTF8.self); i += nameLength
        let count = Int(get32(b, i)); i += 4
        var entries: [(UInt64, Kind, [UInt8])] = []
        for k in 0..<count {
            guard i + 13 <= end else { throw DecodeError(description: "truncated at entry \(k) of \(count)") }
            let inode = get64(b, i); i += 8
            guard let kind = Kind(rawValue: b[i]) else { throw DecodeError(description: "entry \(k): unknown kind \(b[i])") }
            i += 1
            let length = Int(get32(b, i)); i += 4
            guard length <= end - i else { throw DecodeError(description: "entry \(k): \(length) bytes past the end") }
            entries.append((inode, kind, Array(b[i..<(i + length)]))); i += length
        }
        guard i == end else { throw DecodeError(description: "\(end - i) trailing bytes") }
        return HandoverState(daemonName: name, entries: entries)
    }

    private func put16(_ o: inout [UInt8], _ v: UInt16) { o += [UInt8(v & 0xFF), UInt8(v >> 8)] }
    private func put(_ o: inout [UInt8], _ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { o.append(UInt8((v >> UInt32(s)) & 0xFF)) } }
    private func put64(_ o: inout [UInt8], _ v: UInt64) { for s in stride(from: 0, to: 64, by: 8) { o.append(UInt8((v >> UInt64(s)) & 0xFF)) } }
    private static func get32(_ b: [UInt8], _ i: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[i + $1]) << UInt32(8 * $1) } }
    private static func get64(_ b: [UInt8], _ i: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[i + $1]) << UInt64(8 * $1) } }
}
