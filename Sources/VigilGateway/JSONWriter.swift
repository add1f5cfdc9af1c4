// Building response lines without Foundation: fixed fragments appended as
// bytes, client-supplied strings escaped per RFC 8259.

public enum JSONWriter {
    /// Appends `s` as a JSON string literal (with quotes).
    public static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\\")); out.append(c)
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(c)
            case 0x0A: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(c >> 4)], hex[Int(c & 0xF)]])
            default: out.append(c)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    @inline(__always)
    public static func append(_ s: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// `{"op":"error","code":CODE,"message":MESSAGE}\n`
    public static func appendError(code: StaticString, message: String, to out: inout [UInt8]) {
        append("{\"op\":\"error\",\"code\":\"", to: &out)
        append(code, to: &out)
        append("\",\"message\":", to: &out)
        appendString(message, to: &out)
        append("}\n", to: &out)
    }
}
