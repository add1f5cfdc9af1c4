// A validating, allocation-free scanner for the one JSON shape the wire
// protocol uses: one object per line whose members are read one by one.
// Foundation's JSONDecoder costs an allocation-heavy pass per line; the hot
// path (ping, field lookup) needs neither a String nor a dictionary. Strings
// are decoded into Swift Strings only when a handler asks for them.

import Glibc

/// A JSON syntax error with its byte offset in the line.
public struct JSONSyntaxError: Error, Equatable, CustomStringConvertible {
    public let offset: Int
    public let reason: String
    public var description: String { "\(reason) at byte \(offset)" }
}

/// A string token: the bytes between the quotes, still escaped.
public struct JSONString {
    public let raw: UnsafeRawBufferPointer
    public let hasEscapes: Bool

    /// Byte comparison with an unescaped ASCII literal.
    @inline(__always)
    public func equals(_ literal: StaticString) -> Bool {
        guard !hasEscapes, raw.count == literal.utf8CodeUnitCount else { return false }
        return memcmp(raw.baseAddress!, literal.utf8Start, raw.count) == 0
    }

    /// Equality with `literal` after unescaping; the common unescaped case
    /// is a byte comparison.
    @inline(__always)
    public func matches(_ literal: StaticString) -> Bool {
        if !hasEscapes { return equals(literal) }
        return decoded() == String(decoding: UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount), as: UTF8.self)
    }

    /// The decoded value (escapes resolved, invalid UTF-8 repaired).
    public func decoded() -> String { decode(exact: false)! }

    /// The decoded value, or nil when decoding would change it: invalid
    /// UTF-8, or a `\u` escape of a lone surrogate (both would become
    /// U+FFFD, so two different names could become one).
    public func decodedExactly() -> String? { decode(exact: true) }

    private func decode(exact: Bool) -> String? {
        if !hasEscapes {
            if exact { return String(validating: raw, as: UTF8.self) }
            return String(decoding: raw, as: UTF8.self)
        }
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = 0
        while i < raw.count {
            let c = raw[i]
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            let e = raw[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                var scalar = JSONString.hex4(raw, i)
                i += 4
                if (0xD800..<0xDC00).contains(scalar), i + 6 <= raw.count, raw[i] == UInt8(ascii: "\\"), raw[i + 1] == UInt8(ascii: "u") {
                    let low = JSONString.hex4(raw, i + 2)
                    if (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                guard let s = Unicode.Scalar(scalar) else {
                    if exact { return nil }
                    out.append(contentsOf: [0xEF, 0xBF, 0xBD])  // U+FFFD
                    continue
                }
                out.append(contentsOf: Array(String(Character(s)).utf8))
            default: out.append(e)  // \" \\ \/
            }
        }
        if exact { return String(validating: out, as: UTF8.self) }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hex4(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        var v: UInt32 = 0
        for k in 0..<4 { v = v << 4 | UInt32(hexValue(b[at + k])) }
        return v
    }
}

@inline(__always)
func hexValue(_ c: UInt8) -> UInt8 {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
    default: 0xFF
    }
}

public enum JSONValue {
    case string(JSONString)
    /// A number's text, validated against the JSON grammar.
    case number(UnsafeRawBufferPointer)
    case bool(Bool)
    case null
    /// A nested object or array, validated and skipped.
    case composite(UnsafeRawBufferPointer)

    /// The value as a non-negative integer, if it is one that fits.
    public var nonNegativeInteger: Int? {
        guard case .number(let text) = self, !text.isEmpty else { return nil }
        var v = 0
        for c in text {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(c - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            v = a
        }
        return v
    }
}

/// Iterates the members of the single top-level object in `line`.
public struct JSONObjectScanner {
    private let b: UnsafeRawBufferPointer
    private var i = 0
    private var first = true
    private var done = false

    /// Checks the opening brace; the members follow through `next()`.
    public init(_ line: UnsafeRawBufferPointer) throws(JSONSyntaxError) {
        b = line
        skipSpace()
        guard i < b.count, b[i] == UInt8(ascii: "{") else { throw JSONSyntaxError(offset: i, reason: "expected a JSON object") }
        i += 1
    }

    /// The next member, or nil after the closing brace (trailing bytes other
    /// than whitespace are an error).
    public mutating func next() throws(JSONSyntaxError) -> (key: JSONString, value: JSONValue)? {
        if done { return nil }
        skipSpace()
        guard i < b.count else { throw JSONSyntaxError(offset: i, reason: "unterminated object") }
        if b[i] == UInt8(ascii: "}") {
            i += 1
            skipSpace()
            guard i == b.count else { throw JSONSyntaxError(offset: i, reason: "trailing data after the object") }
            done = true
            return nil
        }
        if !first {
            guard b[i] == UInt8(ascii: ",") else { throw JSONSyntaxError(offset: i, reason: "expected ',' or '}'") }
            i += 1
            skipSpace()
        }
        first = false
        guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw JSONSyntaxError(offset: i, reason: "expected a member name") }
        let key = try string()
        skipSpace()
        guard i < b.count, b[i] == UInt8(ascii: ":") else { throw JSONSyntaxError(offset: i, reason: "expected ':'") }
        i += 1
        skipSpace()
        return (key, try value())
    }

    @inline(__always)
    private mutating func skipSpace() {
        while i < b.count {
            let c = b[i]
            guard c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0A else { return }
            i += 1
        }
    }

    private mutating func value() throws(JSONSyntaxError) -> JSONValue {
        guard i < b.count else { throw JSONSyntaxError(offset: i, reason: "expected a value") }
        switch b[i] {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let start = i
            try skipComposite()
            return .composite(UnsafeRawBufferPointer(rebasing: b[start..<i]))
        default: return .number(try number())
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count, memcmp(b.baseAddress! + i, word.utf8Start, n) == 0 else {
            throw JSONSyntaxError(offset: i, reason: "invalid literal")
        }
        i += n
    }

    private mutating func string() throws(JSONSyntaxError) -> JSONString {
        i += 1  // opening quote
        let start = i
        var escapes = false
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                let s = JSONString(raw: UnsafeRawBufferPointer(rebasing: b[start..<i]), hasEscapes: escapes)
                i += 1
                return s
            }
            if c < 0x20 { throw JSONSyntaxError(offset: i, reason: "control character in string") }
            if c == UInt8(ascii: "\\") {
                escapes = true
                guard i + 1 < b.count else { break }
                switch b[i + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                     UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    i += 2
                case UInt8(ascii: "u"):
                    guard i + 6 <= b.count else { throw JSONSyntaxError(offset: i, reason: "short \\u escape") }
                    for k in 2..<6 where hexValue(b[i + k]) == 0xFF {
                        throw JSONSyntaxError(offset: i + k, reason: "bad \\u escape")
                    }
                    i += 6
                default: throw JSONSyntaxError(offset: i, reason: "bad escape")
                }
                continue
            }
            i += 1
        }
        throw JSONSyntaxError(offset: i, reason: "unterminated string")
    }

    private mutating func number() throws(JSONSyntaxError) -> UnsafeRawBufferPointer {
        let start = i
        func digit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
        if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
        guard i < b.count, digit(b[i]) else { throw JSONSyntaxError(offset: i, reason: "expected a value") }
        if b[i] == UInt8(ascii: "0") { i += 1 } else { while i < b.count, digit(b[i]) { i += 1 } }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            guard i < b.count, digit(b[i]) else { throw JSONSyntaxError(offset: i, reason: "bad number") }
            while i < b.count, digit(b[i]) { i += 1 }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            guard i < b.count, digit(b[i]) else { throw JSONSyntaxError(offset: i, reason: "bad number") }
            while i < b.count, digit(b[i]) { i += 1 }
        }
        return UnsafeRawBufferPointer(rebasing: b[start..<i])
    }

    /// Validates and skips a nested object/array (depth-limited).
    private mutating func skipComposite(depth: Int = 0) throws(JSONSyntaxError) {
        guard depth < 64 else { throw JSONSyntaxError(offset: i, reason: "nesting too deep") }
        let isObject = b[i] == UInt8(ascii: "{")
        let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
        i += 1
        skipSpace()
        if i < b.count, b[i] == close { i += 1; return }
        while true {
            skipSpace()
            if isObject {
                guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw JSONSyntaxError(offset: i, reason: "expected a member name") }
                _ = try string()
                skipSpace()
                guard i < b.count, b[i] == UInt8(ascii: ":") else { throw JSONSyntaxError(offset: i, reason: "expected ':'") }
                i += 1
                skipSpace()
            }
            guard i < b.count else { throw JSONSyntaxError(offset: i, reason: "unterminated value") }
            if b[i] == UInt8(ascii: "{") || b[i] == UInt8(ascii: "[") {
                try skipComposite(depth: depth + 1)
            } else {
                _ = try value()
            }
            skipSpace()
            guard i < b.count else { throw JSONSyntaxError(offset: i, reason: "unterminated value") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == close { i += 1; return }
            throw JSONSyntaxError(offset: i, reason: "expected ',' or a closing bracket")
        }
    }
}

