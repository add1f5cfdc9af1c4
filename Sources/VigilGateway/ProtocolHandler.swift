// Wire protocol v1 (docs/protocol.md): newline-delimited JSON, one object
// per line. This handler answers `ping`; the gateway issue adds sessions and
// turns. Every bad line gets a `bad_request` error and the connection stays
// open; only an over-long line closes it.
import VigilReactor

public final class ProtocolHandler: LineHandler {
    /// Lines answered since start, by kind (for stats and tests).
    public private(set) var pings = 0
    public private(set) var badRequests = 0

    public init() {}

    public func handle(line: UnsafeRawBufferPointer, from connection: LineConnection, out: inout [UInt8]) {
        var scanner: JSONObjectScanner
        var op: JSONString?
        do {
            scanner = try JSONObjectScanner(line)
            while let (key, value) = try scanner.next() {
                if key.matches("op") {
                    guard case .string(let s) = value else {
                        return badRequest("field 'op' must be a string", &out)
                    }
                    op = s
                }
            }
        } catch {
            return badRequest("malformed JSON: \(error)", &out)
        }
        guard let op else { return badRequest("missing field 'op'", &out) }
        if op.matches("ping") {
            pings += 1
            JSONWriter.append("{\"op\":\"pong\"}\n", to: &out)
            return
        }
        badRequest("unknown op '\(op.decoded())'", &out)
    }

    public func lineTooLong(limit: Int, from connection: LineConnection, out: inout [UInt8]) {
        badRequests += 1
        JSONWriter.appendError(code: "bad_request", message: "line longer than \(limit) bytes; closing the connection", to: &out)
    }

    private func badRequest(_ message: String, _ out: inout [UInt8]) {
        badRequests += 1
        JSONWriter.appendError(code: "bad_request", message: message, to: &out)
    }
}
