// Session and message ids as the protocol allows them (docs/protocol.md):
// 1–128 bytes of ASCII letters, digits and `-_.:@`. Bounded and printable so
// they are safe in log lines, file names and the journal without escaping.

enum Identifier {
    static let maxLength = 128

    /// nil when `s` is a valid id, else why not.
    static func problem(_ s: String, field: StaticString) -> String? {
        let utf8 = s.utf8
        if utf8.isEmpty { return "field '\(field)' must not be empty" }
        if utf8.count > maxLength { return "field '\(field)' is longer than \(maxLength) bytes" }
        for c in utf8 {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "@"):
                continue
            default:
                return "field '\(field)' may contain only letters, digits and -_.:@"
            }
        }
        return nil
    }
}
