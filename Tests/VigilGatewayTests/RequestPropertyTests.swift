@testable import VigilGateway
import VigilTestSupport
import XCTest

/// A property-based pass over the line parser in every test run (the long
/// libFuzzer campaign is scripts/fuzz.sh): seeded mutations of valid and
/// broken lines; parsing must always give a request or a reason (never
/// both), and every decoded string must survive JSONWriter and a re-parse.
final class RequestPropertyTests: XCTestCase {
    static let seeds: [[UInt8]] = [
        #"{"op":"ping"}"#, #"{"op":"open","session":"s-1"}"#,
        #"{"op":"send","session":"s","id":"m:1","text":"h\u00e9llo \"x\" \\ \n \ud83d\ude00","work_ms":25}"#,
        #"{"\u006fp":"sessions","x":[1,2.5e-3,true,false,null,{"a":{}}]}"#,
        #"{"op":"send","session":"a","id":"b","text":"","work_ms":3600000}"#, #"{"op":"#, "[1]",
    ].map { Array($0.utf8) }

    func testParserPropertiesOverSeededMutations() {
        var rng = SeededGenerator(seed: 0x5EED_0001)
        let tokens: [[UInt8]] = ["\"", "\\", "{", "}", "[", "]", ":", ",", "\\u", "d800", "null", "1e999", "-0", "\u{00e9}"].map { Array($0.utf8) }
        var accepted = 0
        let iterations = 200_000
        for _ in 0..<iterations {
            var line = Self.seeds.randomElement(using: &rng)!
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = line.isEmpty ? 0 : Int.random(in: 0..<line.count, using: &rng)
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: if !line.isEmpty { line[at] = UInt8.random(in: 0...255, using: &rng) }
                case 1: if !line.isEmpty { line.remove(at: at) }
                case 2: line.insert(contentsOf: tokens.randomElement(using: &rng)!, at: at)
                case 3: line.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                default: line = Array(line.prefix(at))
                }
            }
            let (request, problem) = line.withUnsafeBytes { Request.parse($0) }
            XCTAssertTrue((request == nil) != (problem == nil), "line \(line)")
            guard let request else { continue }
            accepted += 1
            for s in [request.session, request.id, request.text].compactMap({ $0 }) {
                var out = Array(#"{"v":"#.utf8)
                JSONWriter.appendString(s, to: &out)
                out.append(UInt8(ascii: "}"))
                let back: String? = out.withUnsafeBytes { b in
                    guard var sc = try? JSONObjectScanner(b), let m = try? sc.next(), case .string(let v) = m.value else { return nil }
                    return v.decoded()
                }
                XCTAssertEqual(back, s, "round trip of a decoded string")
            }
        }
        // The mutations must not all be rejected, or the run proves little.
        XCTAssertGreaterThan(accepted, iterations / 20, "\(accepted) of \(iterations) mutated lines parsed as requests")
    }
}
