import CVigil
import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// A vigild started for a test: its stderr goes to a file that is polled.
final class VigildProcess: LoggedProcess {
    let stateDir: String
    private(set) var port: UInt16 = 0

    static var binary: String {
        ProcessInfo.processInfo.environment["VIGILD_BIN"] ?? builtBinary("vigild")
    }

    init(arguments: [String]? = nil, environment: [String: String] = [:], stateDir: String? = nil, executable: String? = nil) throws {
        let base = NSTemporaryDirectory() + "vigild-test-\(getpid())-\(UUID().uuidString.prefix(8))"
        let state = stateDir ?? base + "/state"
        self.stateDir = state
        try super.init(executable: executable ?? Self.binary, arguments: arguments ?? ["--listen", "127.0.0.1:0", "--state-dir", state],
                       environment: environment, base: base)
    }

    /// Waits for the "listening on HOST:PORT" line and remembers the port.
    func waitUntilListening(timeout: Double = 10) throws {
        try wait(timeout: timeout) {
            guard let range = log.range(of: #"listening on 127\.0\.0\.1:(\d+)"#, options: .regularExpression) else { return false }
            port = UInt16(log[range].split(separator: ":").last!)!
            return log.contains("vigild ready")
        }
    }

    func signal(_ s: Int32) { kill(daemonPID, s) }

    /// vigild's own pid from its "ready" line (differs from `pid` when it
    /// runs under a tracer).
    var daemonPID: pid_t {
        guard let r = log.range(of: #"vigild ready \(pid (\d+)"#, options: .regularExpression) else { return pid }
        return pid_t(log[r].split(separator: " ").last!) ?? pid
    }

    /// Thread names of the daemon, io_uring's kernel workers excluded.
    func threads() -> [String] {
        let dir = "/proc/\(pid)/task"
        let tids = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return tids.compactMap { tid in
            let comm = (try? String(contentsOfFile: "\(dir)/\(tid)/comm", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            return comm.hasPrefix("iou-") ? nil : comm
        }
    }

    func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count ?? -1
    }
}

typealias VigildError = LoggedProcessError

/// A blocking line client.
final class LineClient {
    let fd: Int32

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if r != 0 { close(fd); throw VigildError.exited(-1, "connect failed: errno \(errno)") }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    private var partial: [UInt8] = []

    /// The next line, buffering whatever arrived after it (nil on EOF or timeout).
    func nextLine() -> String? {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            if let nl = partial.firstIndex(of: 0x0A) {
                let line = String(decoding: partial[..<nl], as: UTF8.self)
                partial.removeSubrange(...nl)
                return line
            }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            partial.append(contentsOf: buf[0..<n])
        }
    }

    /// Reads until `lines` newlines have arrived (or EOF/timeout).
    func readLines(_ lines: Int) -> [String] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.reduce(0, { $0 + ($1 == 0x0A ? 1 : 0) }) < lines {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}
