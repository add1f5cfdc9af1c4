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

    /// - Parameter separator: put `--` before the command (as users should).
    init(_ options: [String], command: [String], stateDir: String? = nil, environment: [String: String] = [:], separator: Bool = true) throws {
        let base = try Self.scratch()
        let state = stateDir ?? base + "/state"
        self.stateDir = state
        try super.init(executable: Self.binary("vigil"), arguments: ["run", "--state-dir", state] + options + (separator ? ["--"] : []) + command,
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
final class LedgerClient: LineSocket {
    init(path: String) throws { try super.init(unixPath: path) }

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
