// A blocking client of a newline-delimited protocol over TCP (vigild's
// gateway) or a Unix stream socket (the control socket, `vigil run`'s
// ledger). One for every test target that talks lines.
import Foundation
import Glibc

open class LineSocket {
    public let fd: Int32
    private var buffered: [UInt8] = []

    /// Connects to 127.0.0.1:`port`; answers wait at most 10 s.
    public init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { let e = errno; close(fd); throw POSIXError(POSIXErrorCode(rawValue: e) ?? .ECONNREFUSED) }
        setTimeout(10)
    }

    /// Connects to the Unix stream socket at `unixPath`; answers wait at most 10 s.
    public init(unixPath: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { p in
            let b = Array(unixPath.utf8)
            p.copyBytes(from: b)
            p[b.count] = 0
        }
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard r == 0 else { let e = errno; close(fd); throw POSIXError(POSIXErrorCode(rawValue: e) ?? .ECONNREFUSED) }
        setTimeout(10)
    }

    deinit { close(fd) }

    /// SO_RCVTIMEO: how long a read waits before it counts as the end.
    public func setTimeout(_ seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends all of `bytes` (stops quietly when the peer is gone).
    public func sendBytes(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Sends `text` as it is (add the newline yourself).
    public func send(_ text: String) { sendBytes(Array(text.utf8)) }

    /// Sends `line` and a newline.
    public func sendLine(_ line: String) { send(line + "\n") }

    /// The next line, buffering whatever arrived after it (nil on EOF or timeout).
    public func nextLine() -> String? {
        var scanned = 0  // bytes of `buffered` known to hold no newline
        while true {
            if let nl = buffered[scanned...].firstIndex(of: 0x0A) {
                let line = String(decoding: buffered[..<nl], as: UTF8.self)
                buffered.removeSubrange(...nl)
                return line
            }
            scanned = buffered.count
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            buffered.append(contentsOf: buf[0..<n])
        }
    }

    /// The next `n` lines (fewer on EOF or timeout).
    public func lines(_ n: Int) -> [String] {
        var out: [String] = []
        while out.count < n, let l = nextLine() { out.append(l) }
        return out
    }

    /// Sends one line and returns the next answer as a JSON object
    /// (`["unparsed": line]` when it is not one, `"<EOF>"` when none came).
    public func request(_ line: String) -> [String: Any] {
        sendLine(line)
        return Self.object(nextLine())
    }

    /// The next line as a JSON object (as ``object(_:)``).
    public func nextObject() -> [String: Any] { Self.object(nextLine()) }

    /// `line` as a JSON object, or `["unparsed": line]`.
    public static func object(_ line: String?) -> [String: Any] {
        guard let line, let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return ["unparsed": line ?? "<EOF>"] }
        return o
    }
}
