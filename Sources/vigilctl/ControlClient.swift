// One request on vigild's control socket: connect, send a line, read the
// answer line. Blocking with a timeout: vigilctl is a short-lived CLI.
import Glibc
import VigilReactor

struct ControlError: Error, CustomStringConvertible {
    let description: String
    var permissionDenied = false
}

enum ControlClient {
    static func request(_ line: String, socketPath path: String, timeoutSeconds: Int = 5) throws(ControlError) -> String {
        let fd: Int32
        do { fd = try StreamSocket.connect(to: .unix(path: path)) } catch {
            throw ControlError(description: "cannot connect to \(path): \(error)", permissionDenied: error.errno == .permissionDenied)
        }
        defer { Glibc.close(fd) }
        // StreamSocket's descriptors are non-blocking; this client blocks.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array((line + "\n").utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ControlError(description: "cannot send to \(path): \(String(cString: strerror(errno)))") }
            sent += n
        }
        var answer: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while !answer.contains(0x0A) {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw ControlError(description: "no answer from \(path) within \(timeoutSeconds) s") }
            guard n > 0 else { throw ControlError(description: "\(path) closed the connection without answering") }
            answer.append(contentsOf: buf[0..<n])
            if answer.count > 64 << 20 { throw ControlError(description: "answer from \(path) too long") }
        }
        let end = answer.firstIndex(of: 0x0A)!
        return String(decoding: answer[..<end], as: UTF8.self)
    }
}
