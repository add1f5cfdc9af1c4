// libFuzzer harness for the wire protocol's line parser (scripts/fuzz.sh).
// Not a SwiftPM target: fuzz.sh compiles it with the parser's sources and
// `-sanitize=fuzzer,address`. Properties checked on every input:
//  - parsing never crashes, traps or reads out of bounds (ASan);
//  - a request or an error message, never both, never neither;
//  - every string the parser decodes survives JSONWriter's escaping and a
//    second parse unchanged (what vigild echoes back is what it received);
//  - ids the parser accepts are within the documented limits.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let line = UnsafeRawBufferPointer(start: data, count: size)
    let (request, problem) = Request.parse(line)
    precondition((request == nil) != (problem == nil), "exactly one of request and problem")
    guard let request else { return 0 }
    for s in [request.session, request.id, request.text].compactMap({ $0 }) {
        var out: [UInt8] = []
        out.append(contentsOf: Array("{\"v\":".utf8))
        JSONWriter.appendString(s, to: &out)
        out.append(UInt8(ascii: "}"))
        out.withUnsafeBytes { b in
            guard var scanner = try? JSONObjectScanner(b), let member = try? scanner.next(),
                  case .string(let v) = member.value else { preconditionFailure("re-encoded string does not parse: \(s)") }
            precondition(v.decoded() == s, "round trip changed the string")
        }
    }
    if let w = request.workMs { precondition(w >= 0 && w <= Request.maxWorkMs) }
    if let s = request.session, Identifier.problem(s, field: "session") == nil {
        precondition(!s.isEmpty && s.utf8.count <= Identifier.maxLength)
    }
    return 0
}
