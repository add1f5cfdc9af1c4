// The ledger's socket: newline-delimited JSON over a Unix stream socket in
// the state directory (mode 0600, and a peer of another uid is refused).
// Answers go out in request order on each connection: an `ok` waits for its
// record to be durable, and answers after it wait for it in turn.
import Glibc
import Logging
import VigilGateway
import VigilReactor

/// Loop-confined.
public final class LedgerServer: LineHandler {
    /// Longest request line; longer ones are refused and skipped.
    public static let maxLineBytes = 16 * 1024

    let ledger: Ledger
    let logger: Logger
    private var server: LineServer?
    public private(set) var path: String?

    public init(ledger: Ledger, reactor: Reactor, logger: Logger) {
        self.ledger = ledger
        self.logger = logger
        let server = LineServer(reactor: reactor, handler: self, maxLineBytes: Self.maxLineBytes, logger: logger)
        server.keepsConnectionAfterLongLine = true
        self.server = server
    }

    /// Listens on `path` (created 0600; a stale socket file is replaced).
    public func listen(at path: String) throws(SystemCallError) {
        try server?.listen(on: .unix(path: path))
        self.path = path
    }

    public func closeAll() { server?.closeAll() }

    /// The answers of one connection, in request order.
    final class Replies {
        enum Slot { case waiting, ready([UInt8]), interrupted }
        /// Answers from `base` on; `head` (absolute) is the next to send.
        var slots: [Slot] = []
        var base = 0
        var head = 0
        var end: Int { base + slots.count }
    }

    public func connectionOpened(_ connection: LineConnection) {
        // SO_PEERCRED: only the uid vigil runs as (root too) may record work.
        let me = getuid()
        guard let uid = StreamSocket.unixPeerUID(connection.fd), uid == me || uid == 0 else {
            logger.warning("ledger: refused a connection from another uid")
            var out: [UInt8] = []
            JSONWriter.appendError(code: "forbidden", message: "the ledger serves uid \(me) only", to: &out)
            connection.send(out)
            connection.closeAfterWriting()
            return
        }
        connection.userData = Replies()
    }

    public func connectionClosed(_ connection: LineConnection) { connection.userData = nil }

    /// Keeps a half-closed connection until its answers are sent.
    public func inputEnded(_ connection: LineConnection) -> Bool {
        guard let r = connection.userData as? Replies else { return false }
        return r.head < r.end
    }

    public func lineTooLong(limit: Int, from connection: LineConnection, out: inout [UInt8]) {
        answerNow(connection, out: &out) { JSONWriter.appendError(code: "line_too_long", message: "request longer than \(limit) bytes", to: &$0) }
    }

    public func handle(line: UnsafeRawBufferPointer, from connection: LineConnection, out: inout [UInt8]) {
        guard connection.userData is Replies else { return }
        inHandle = true
        defer { inHandle = false }
        let request: LedgerRequest
        do { request = try LedgerRequest(parsing: line) } catch {
            return answerNow(connection, out: &out) { JSONWriter.appendError(code: error.code, message: error.message, to: &$0) }
        }
        switch request {
        case .interrupted:
            let replies = connection.userData as! Replies
            replies.slots.append(.interrupted)
            flush(connection, into: &out)
        case .begin(let s, let id):
            let slot = reserve(connection)
            ledger.begin(session: s, id: id) { [unowned self] in complete(connection, slot, id: id, $0) }
            flush(connection, into: &out)
        case .end(let s, let id):
            let slot = reserve(connection)
            ledger.end(session: s, id: id) { [unowned self] in complete(connection, slot, id: id, $0) }
            flush(connection, into: &out)
        case .resolve(let s):
            let slot = reserve(connection)
            ledger.resolve(session: s) { [unowned self] in
                if case .success = $0 { interruptedAnswer = nil }  // the set changed
                complete(connection, slot, id: nil, $0)
            }
            flush(connection, into: &out)
        }
    }

    // MARK: Ordered answers

    private func reserve(_ connection: LineConnection) -> Int {
        let replies = connection.userData as! Replies
        replies.slots.append(.waiting)
        return replies.end - 1
    }

    private func answerNow(_ connection: LineConnection, out: inout [UInt8], _ build: (inout [UInt8]) -> Void) {
        guard let replies = connection.userData as? Replies else { return }
        var bytes: [UInt8] = []
        build(&bytes)
        replies.slots.append(.ready(bytes))
        flush(connection, into: &out)
    }

    /// A request's outcome. Refused checks (already open, not open) complete
    /// inside `handle`: the slot is filled and `handle`'s own flush sends it
    /// in order; journal completions come later, on the loop.
    private func complete(_ connection: LineConnection, _ slot: Int, id: String?, _ result: Result<Void, LedgerRefusal>) {
        guard !connection.isClosed, let replies = connection.userData as? Replies, slot >= replies.base, slot < replies.end else { return }
        if inHandle {
            var bytes: [UInt8] = []
            Self.appendAnswer(result, id: id, to: &bytes)
            replies.slots[slot - replies.base] = .ready(bytes)
            return
        }
        // A journal completion, on the loop. Usually the answer due next
        // (one request outstanding): it goes out from a reused buffer,
        // with whatever was ready behind it, in one write.
        answer.removeAll(keepingCapacity: true)
        if slot == replies.head {
            Self.appendAnswer(result, id: id, to: &answer)
            replies.slots[slot - replies.base] = .ready([])
            replies.head += 1
        } else {
            var bytes: [UInt8] = []
            Self.appendAnswer(result, id: id, to: &bytes)
            replies.slots[slot - replies.base] = .ready(bytes)
        }
        flush(connection, into: &answer)
        if !answer.isEmpty { connection.send(answer) }
        if connection.inputEnded && replies.head == replies.end { connection.closeAfterWriting() }
    }

    /// The output of journal completions (reused: no allocation per answer).
    private var answer: [UInt8] = []

    private static func appendAnswer(_ result: Result<Void, LedgerRefusal>, id: String?, to bytes: inout [UInt8]) {
        switch result {
        case .success:
            JSONWriter.append("{\"op\":\"ok\"", to: &bytes)
            if let id {
                JSONWriter.append(",\"id\":", to: &bytes)
                JSONWriter.appendString(id, to: &bytes)
            }
            JSONWriter.append("}\n", to: &bytes)
        case .failure(let refusal):
            JSONWriter.appendError(code: refusal.code, message: refusal.message, to: &bytes)
        }
    }

    /// True while `flush(_:into:)` may append to the read callback's output.
    private var inHandle = false

    /// Moves every answer that is due (all before it answered) to `out`.
    private func flush(_ connection: LineConnection, into out: inout [UInt8]) {
        guard let replies = connection.userData as? Replies else { return }
        while replies.head < replies.end {
            switch replies.slots[replies.head - replies.base] {
            case .waiting: return trim(replies)
            case .ready(let bytes): out.append(contentsOf: bytes)
            case .interrupted: appendInterrupted(to: &out)
            }
            replies.slots[replies.head - replies.base] = .ready([])
            replies.head += 1
        }
        trim(replies)
    }

    /// Drops answers already sent, once they are the larger part.
    private func trim(_ replies: Replies) {
        let sent = replies.head - replies.base
        if sent > 64 && sent * 2 > replies.slots.count {
            replies.slots.removeFirst(sent)
            replies.base = replies.head
        }
    }

    /// The `interrupted` answer as last rendered: the set changes only with
    /// a `resolve` (earlier runs' work; this run's units are not in it), so
    /// a program that asks often, or pipelines the question, does not have
    /// every answer rebuilt.
    private var interruptedAnswer: [UInt8]?

    /// Computed when its turn comes, so a `resolve` before it on the same
    /// connection is already reflected.
    private func appendInterrupted(to out: inout [UInt8]) {
        if interruptedAnswer == nil {
            var rendered: [UInt8] = []
            renderInterrupted(to: &rendered)
            interruptedAnswer = rendered
        }
        out.append(contentsOf: interruptedAnswer!)
    }

    private func renderInterrupted(to out: inout [UInt8]) {
        JSONWriter.append("{\"op\":\"interrupted\",\"sessions\":[", to: &out)
        for (n, entry) in ledger.interrupted.enumerated() {
            if n > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.append("{\"session\":", to: &out)
            JSONWriter.appendString(entry.session, to: &out)
            JSONWriter.append(",\"ids\":[", to: &out)
            for (k, id) in entry.ids.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(id, to: &out)
            }
            JSONWriter.append("]}", to: &out)
        }
        JSONWriter.append("]}\n", to: &out)
    }
}
