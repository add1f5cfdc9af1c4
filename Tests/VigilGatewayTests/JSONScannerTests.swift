import VigilGateway
import XCTest

final class JSONScannerTests: XCTestCase {
    /// Scans `text` into [key: description-of-value].
    private func scan(_ text: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        try Array(text.utf8).withUnsafeBytes { buf in
            var s = try JSONObjectScanner(buf)
            while let (k, v) = try s.next() {
                switch v {
                case .string(let str): fields[k.decoded()] = "s:" + str.decoded()
                case .number(let n): fields[k.decoded()] = "n:" + String(decoding: n, as: UTF8.self)
                case .bool(let b): fields[k.decoded()] = "b:\(b)"
                case .null: fields[k.decoded()] = "null"
                case .composite(let c): fields[k.decoded()] = "c:" + String(decoding: c, as: UTF8.self)
                }
            }
        }
        return fields
    }

    func testValidObjects() throws {
        XCTAssertEqual(try scan(#"{"op":"ping"}"#), ["op": "s:ping"])
        XCTAssertEqual(try scan(#"  { "op" : "ping" , "n" : -1.5e3 }  "#), ["op": "s:ping", "n": "n:-1.5e3"])
        XCTAssertEqual(try scan(#"{}"#), [:])
        XCTAssertEqual(try scan(#"{"a":true,"b":false,"c":null}"#), ["a": "b:true", "b": "b:false", "c": "null"])
        XCTAssertEqual(try scan(#"{"x":{"y":[1,{"z":[]},"]"]},"op":"ping"}"#), ["x": #"c:{"y":[1,{"z":[]},"]"]}"#, "op": "s:ping"])
        XCTAssertEqual(try scan(#"{"t":"a\"b\\c\nd\u00e9\ud83d\ude00"}"#), ["t": "s:a\"b\\c\nd\u{e9}\u{1F600}"])
    }

    func testEscapedKeyIsNotMistakenForALiteral() throws {
        try Array(#"{"\u006fp":"ping"}"#.utf8).withUnsafeBytes { buf in
            var s = try JSONObjectScanner(buf)
            let (k, _) = try s.next()!
            XCTAssertFalse(k.equals("op"), "escaped bytes never compare equal raw")
            XCTAssertTrue(k.matches("op"), "but they match after unescaping")
            XCTAssertEqual(k.decoded(), "op")
        }
    }

    func testInvalidObjects() {
        let bad = [
            "", "ping", "[]", #"{"op""#, #"{"op":}"#, #"{"op":"ping""#, #"{"op":"ping",}"#,
            #"{"op":"ping"} x"#, #"{op:"ping"}"#, #"{"a":01}"#, #"{"a":1.}"#, #"{"a":tru}"#,
            #"{"a":"\x"}"#, #"{"a":"\u12"}"#, "{\"a\":\"\u{01}\"}", #"{"a":[1,]}"#, #"{"a":{"b"}}"#,
            #"{"a" "b"}"#, String(repeating: "[", count: 100),
        ]
        for text in bad {
            XCTAssertThrowsError(try scan(text), "accepted: \(text)")
        }
        let deep = "{\"a\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}"
        XCTAssertThrowsError(try scan(deep), "nesting is bounded")
    }

    func testNonNegativeInteger() throws {
        try Array(#"{"a":1500,"b":-1,"c":1.5,"d":99999999999999999999999}"#.utf8).withUnsafeBytes { buf in
            var s = try JSONObjectScanner(buf)
            var values: [Int?] = []
            while let (_, v) = try s.next() { values.append(v.nonNegativeInteger) }
            XCTAssertEqual(values, [1500, nil, nil, nil])
        }
    }

    func testWriterEscapes() {
        var out: [UInt8] = []
        JSONWriter.appendString("a\"b\\c\n\u{01}é", to: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), #""a\"b\\c\n\u0001é""#)
    }
}
