// A child's stdout/stderr read on the reactor: every complete line goes to
// `onLine` (the `--ready log:` match), the last few lines are kept for error
// messages, and the whole text up to a cap for callers that parse it.
import Glibc
import VigilReactor

final class OutputTail {
    private let reactor: Reactor
    private var fd: Int32
    private var token: Token?
    private var partial: [UInt8] = []
    private(set) var lines: [String] = []
    private(set) var text: [UInt8] = []
    private let keepLines: Int
    private let textCap: Int
    var onLine: ((String) -> Void)?
    var onEnd: (() -> Void)?
    private(set) var ended = false

    /// Takes ownership of `fd` (non-blocking read end of a pipe).
    init(reactor: Reactor, fd: Int32, keepLines: Int = 12, textCap: Int = 1 << 16) throws(SystemCallError) {
        self.reactor = reactor
        self.fd = fd
        self.keepLines = keepLines
        self.textCap = textCap
        // A daemon that logs while it stops must not block on a full pipe
        // while the loop sits in the signal race: 1 MiB (F_SETPIPE_SZ) where allowed.
        _ = fcntl(fd, 1031, 1 << 20)
        token = try reactor.register(fd, interest: .readable) { [unowned self] _ in self.drain() }
    }

    deinit { close() }

    /// Reads what is there now; ends at EOF or on an error.
    func drain() {
        guard fd >= 0 else { return }
        var buf = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                take(buf[0..<n])
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            finish()
            return
        }
    }

    private func take(_ bytes: ArraySlice<UInt8>) {
        if text.count < textCap { text.append(contentsOf: bytes.prefix(textCap - text.count)) }
        for b in bytes {
            if b == UInt8(ascii: "\n") {
                line(partial)
                partial.removeAll(keepingCapacity: true)
            } else if partial.count < 4096 {
                partial.append(b)
            }
        }
    }

    private func line(_ bytes: [UInt8]) {
        let s = String(decoding: bytes, as: UTF8.self)
        lines.append(s)
        if lines.count > keepLines { lines.removeFirst(lines.count - keepLines) }
        onLine?(s)
    }

    private func finish() {
        if !partial.isEmpty { line(partial); partial.removeAll() }
        close()
        ended = true
        let end = onEnd
        onEnd = nil
        end?()
    }

    func close() {
        if let t = token { reactor.deregister(t); token = nil }
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    /// The kept lines for an error message: "…; last output: a | b".
    var summary: String {
        let shown = lines.suffix(6).map { $0.count > 200 ? String($0.prefix(200)) + "…" : $0 }
        return shown.isEmpty ? "no output" : "last output: " + shown.joined(separator: " | ")
    }
}
