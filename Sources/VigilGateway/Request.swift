// One parsed protocol line (docs/protocol.md). Strings are decoded only for
// the operations that use them: a ping costs one scan and no allocation.

public enum Op: Equatable, Sendable {
    case ping, open, send, stats, status, sessions
    case unknown(String)
}

struct Request {
    /// An echo turn may take at most an hour (a typo must not pin a turn forever).
    static let maxWorkMs = 3_600_000

    var op: Op
    var session: String?
    var id: String?
    var text: String?
    var workMs: Int?

    /// The hot path: whether `line` is a valid object whose `op` is "ping",
    /// with no String, no optional and nothing to release (a full `parse`
    /// builds a `Request`, whose copies and releases cost more than the scan).
    /// Any other line gets the full `parse`.
    static func isPing(_ line: UnsafeRawBufferPointer) -> Bool {
        var ping = false
        do {
            var scanner = try JSONObjectScanner(line)
            while let (key, value) = try scanner.next() {
                if key.matches("op") {
                    guard case .string(let s) = value, s.matches("ping") else { return false }
                    ping = true
                }
            }
        } catch {
            return false  // invalid JSON: the full parse says why
        }
        return ping
    }

    /// nil plus a message when the line is not a valid request.
    static func parse(_ line: UnsafeRawBufferPointer) -> (Request?, String?) {
        var opSpan: JSONString?
        var session: JSONString?, id: JSONString?, text: JSONString?
        var workMs: Int?
        do {
            var scanner = try JSONObjectScanner(line)
            while let (key, value) = try scanner.next() {
                func str(_ name: String) throws(FieldError) -> JSONString {
                    guard case .string(let s) = value else { throw FieldError(message: "field '\(name)' must be a string") }
                    return s
                }
                do throws(FieldError) {
                    if key.matches("op") { opSpan = try str("op") }
                    else if key.matches("session") { session = try str("session") }
                    else if key.matches("id") { id = try str("id") }
                    else if key.matches("text") { text = try str("text") }
                    else if key.matches("work_ms") {
                        guard let n = value.nonNegativeInteger else { throw FieldError(message: "field 'work_ms' must be a non-negative integer") }
                        guard n <= maxWorkMs else { throw FieldError(message: "field 'work_ms' must be at most \(maxWorkMs)") }
                        workMs = n
                    }
                } catch {
                    return (nil, error.message)
                }
            }
        } catch {
            return (nil, "malformed JSON: \(error)")
        }
        guard let opSpan else { return (nil, "missing field 'op'") }
        let op: Op
        if opSpan.matches("ping") { op = .ping }
        else if opSpan.matches("send") { op = .send }
        else if opSpan.matches("open") { op = .open }
        else if opSpan.matches("stats") { op = .stats }
        else if opSpan.matches("status") { op = .status }
        else if opSpan.matches("sessions") { op = .sessions }
        else { op = .unknown(opSpan.decoded()) }
        switch op {
        case .ping, .stats, .status, .sessions, .unknown:
            return (Request(op: op), nil)
        case .open, .send:
            // Strings are kept and echoed back: they must be valid UTF-8.
            if String(validating: line, as: UTF8.self) == nil { return (nil, "request is not valid UTF-8") }
            return (Request(op: op, session: session?.decoded(), id: id?.decoded(), text: text?.decoded(), workMs: workMs), nil)
        }
    }
}

struct FieldError: Error {
    let message: String
}
