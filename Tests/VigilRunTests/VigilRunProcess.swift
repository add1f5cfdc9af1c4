import Foundation
import Glibc
import XCTest

enum VigilRunError: Error { case timeout(String), exited(Int32, String) }

/// A `vigil run` started for a test: stderr (vigil's log and the program's)
/// goes to a file that is polled; the program's stdout to another.
final class VigilRunProcess {
    let process = Process()
    let stateDir: String
    let base: String
    let logPath: String
    let outPath: String

    static func binary(_ name: String) -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent(name).path
    }

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
        base = try Self.scratch()
        self.stateDir = stateDir ?? base + "/state"
        logPath = base + "/stderr.log"
        outPath = base + "/stdout.log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        FileManager.default.createFile(atPath: outPath, contents: nil)
        let bin = Self.binary("vigil")
        guard FileManager.default.isExecutableFile(atPath: bin) else { throw XCTSkip("vigil is not built at \(bin): run `swift build` first") }
        process.executableURL = URL(fileURLWithPath: bin)
        process.arguments = ["run", "--state-dir", self.stateDir] + options + ["--"] + command
        var env = ProcessInfo.processInfo.environment
        for k in ["NOTIFY_SOCKET", "INVOCATION_ID", "VIGIL_STATE_DIR", "VIGIL_STOP_TIMEOUT", "VIGIL_READY"] { env[k] = nil }
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        try process.run()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    var output: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var pid: pid_t { process.processIdentifier }
    var ledgerPath: String { stateDir + "/ledger.sock" }

    /// The program's pid, from vigil's "started … as pid N" line.
    var programPID: pid_t? {
        guard let r = log.range(of: #"as pid (\d+) \(its own"#, options: .regularExpression) else { return nil }
        return pid_t(log[r].split(separator: " ")[2])
    }

    func waitFor(_ text: String, inOutput: Bool = false, timeout: Double = 10) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (inOutput ? output : log).contains(text) { return }
            if !process.isRunning { throw VigilRunError.exited(process.terminationStatus, log + output) }
            usleep(10_000)
        }
        throw VigilRunError.timeout("waiting for \(text)\n" + log + output)
    }

    func waitUntilStarted() throws { try waitFor("vigil ready") }

    func waitForExit(timeout: Double = 15) throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                kill(pid, SIGKILL)
                throw VigilRunError.timeout(log)
            }
            usleep(5_000)
        }
        return process.terminationStatus
    }

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
