import Foundation
import Glibc
import VigilTestSupport
import XCTest

typealias VigilRunError = LoggedProcessError

/// A `vigil run` started for a test: stderr (vigil's log and the program's)
/// goes to a file that is polled; the program's stdout to another.
final class VigilRunProcess: LoggedProcess {
    let stateDir: String

    static func binary(_ name: String) -> String { builtBinary(name) }

    /// A scratch directory under /tmp, short enough for socket names;
    /// removed by ``removeScratch()`` (each test class's tearDown).
    static func scratch() throws -> String {
        let base = "/tmp/vr-\(getpid())-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        scratchDirectories.append(base)
        return base
    }

    nonisolated(unsafe) private static var scratchDirectories: [String] = []

    static func removeScratch() {
        for d in scratchDirectories { try? FileManager.default.removeItem(atPath: d) }
        scratchDirectories = []
    }

    init(_ options: [String], command: [String], stateDir: String? = nil, environment: [String: String] = [:]) throws {
        let base = try Self.scratch()
        let state = stateDir ?? base + "/state"
        self.stateDir = state
        try super.init(executable: Self.binary("vigil"), arguments: ["run", "--state-dir", state] + options + ["--"] + command,
                       environment: environment,
                       removing: ["NOTIFY_SOCKET", "INVOCATION_ID", "VIGIL_STATE_DIR", "VIGIL_STOP_TIMEOUT", "VIGIL_READY"],
                       base: base)
        exitTimeout = 15
    }

    var ledgerPath: String { stateDir + "/ledger.sock" }

    /// The program's pid, from vigil's "started … as pid N" line.
    var programPID: pid_t? {
        guard let r = log.range(of: #"as pid (\d+) \(its own"#, options: .regularExpression) else { return nil }
        return pid_t(log[r].split(separator: " ")[2])
    }

    func waitUntilStarted() throws { try waitFor("vigil ready") }

    func signal(_ s: Int32) { kill(pid, s) }

    /// `vigilctl ARGS --state-dir STATE` and its stdout.
    static func vigilctl(_ args: [String], stateDir: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary("vigilctl"))
        p.arguments = args + ["--state-dir", stateDir]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    static func lastShutdown(_ stateDir: String) throws -> [String: Any] {
        let text = try vigilctl(["last-shutdown", "--json"], stateDir: stateDir)
        return (try JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }
}

/// A blocking client of the ledger socket (newline JSON).
final class LedgerClient {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { for (i, b) in bytes.enumerated() { $0[i] = b } }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r != 0 { close(fd); throw VigilRunError.exited(errno, "connect \(path)") }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// The next answer line, nil at EOF, timeout or error.
    func readLine() -> String? {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeFirst(nl + 1)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    func request(_ line: String) -> [String: Any] {
        send(line)
        guard let answer = readLine() else { return [:] }
        return (try? JSONSerialization.jsonObject(with: Data(answer.utf8))) as? [String: Any] ?? ["unparsed": answer]
    }

    /// The interrupted work: session → ids.
    func interrupted() -> [String: [String]] {
        let a = request(#"{"op":"interrupted"}"#)
        var out: [String: [String]] = [:]
        for s in a["sessions"] as? [[String: Any]] ?? [] {
            out[s["session"] as! String] = s["ids"] as? [String] ?? []
        }
        return out
    }
}

/// Writes an executable shell script and returns its path.
func script(_ dir: String, _ name: String, _ body: String) throws -> String {
    let path = dir + "/" + name
    try ("#!/bin/sh\n" + body).write(toFile: path, atomically: true, encoding: .utf8)
    chmod(path, 0o755)
    return path
}
