// Parsing one ledger request line: {"op":…, "session":…, "id":…}. Extra
// members are ignored; the ones an op needs must be non-empty strings.
import VigilGateway

public enum LedgerRequest: Equatable {
    case begin(session: String, id: String)
    case end(session: String, id: String)
    case interrupted
    case resolve(session: String)

    /// Longest session name or id, in bytes.
    public static let maxNameBytes = 1024

    public struct Invalid: Error, Equatable {
        public let code: StaticString
        public let message: String
        public static func == (a: Invalid, b: Invalid) -> Bool { "\(a.code)" == "\(b.code)" && a.message == b.message }
    }

    public init(parsing line: UnsafeRawBufferPointer) throws(Invalid) {
        var op: String?, session: String?, id: String?
        var wrongType: String?, notText: String?
        do {
            var scanner = try JSONObjectScanner(line)
            while let (key, value) = try scanner.next() {
                let name = key.decoded()
                guard name == "op" || name == "session" || name == "id" else { continue }
                guard case .string(let text) = value else { wrongType = name; continue }
                // Names are compared as given: one that decoding would
                // change (U+FFFD) could collide with another.
                guard let exact = text.decodedExactly() else { notText = name; continue }
                switch name {
                case "op": op = exact
                case "session": session = exact
                default: id = exact
                }
            }
        } catch {
            throw Invalid(code: "bad_json", message: "\(error)")
        }
        if let wrongType { throw Invalid(code: "bad_field", message: "\"\(wrongType)\" must be a string") }
        if let notText { throw Invalid(code: "bad_field", message: "\"\(notText)\" must be valid Unicode (no invalid UTF-8, no lone surrogate escape)") }
        guard let op else { throw Invalid(code: "missing_field", message: "missing \"op\"") }
        func need(_ value: String?, _ name: String) throws(Invalid) -> String {
            guard let value else { throw Invalid(code: "missing_field", message: "\"\(op)\" needs \"\(name)\"") }
            guard !value.isEmpty, value.utf8.count <= Self.maxNameBytes else {
                throw Invalid(code: "bad_field", message: "\"\(name)\" must be 1 to \(Self.maxNameBytes) bytes")
            }
            return value
        }
        switch op {
        case "begin": self = .begin(session: try need(session, "session"), id: try need(id, "id"))
        case "end": self = .end(session: try need(session, "session"), id: try need(id, "id"))
        case "interrupted": self = .interrupted
        case "resolve": self = .resolve(session: try need(session, "session"))
        default: throw Invalid(code: "unknown_op", message: "unknown op \"\(op)\": expected begin, end, interrupted or resolve")
        }
    }
}
