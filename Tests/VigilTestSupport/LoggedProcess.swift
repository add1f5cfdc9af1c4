// A built executable of this package started by a test: its stderr (the
// log) and optionally its stdout go to files that are polled. One wait loop
// for every daemon the tests drive (vigild, `vigil run`, the example).
import Foundation
import Glibc
import XCTest

public enum LoggedProcessError: Error {
    /// The process exited while it was waited for: status and what it printed.
    case exited(Int32, String)
    /// The wait ran out: what it printed.
    case timeout(String)
}

open class LoggedProcess {
    public let process = Process()
    /// This process's scratch directory (its log files).
    public let base: String
    public let logPath: String
    public let outPath: String

    /// An executable built next to the test bundle (`.build/<config>/NAME`).
    public static func builtBinary(_ name: String) -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Starts `executable` with our environment minus `removing`, plus `environment`.
    /// - Parameter base: the scratch directory for its log files (created).
    public init(executable: String, arguments: [String], environment: [String: String] = [:],
                removing: [String] = [], base: String) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw XCTSkip("\(executable) is not built: run `swift build` first")
        }
        self.base = base
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        logPath = base + "/stderr.log"
        outPath = base + "/stdout.log"
        guard FileManager.default.createFile(atPath: logPath, contents: nil),
              FileManager.default.createFile(atPath: outPath, contents: nil) else {
            throw LoggedProcessError.exited(-1, "cannot create the log files in \(base)")
        }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for k in removing { env[k] = nil }
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        try process.run()
    }

    /// What it wrote to stderr so far.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    /// What it wrote to stdout so far.
    public var output: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    public var pid: pid_t { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// Polls until `ready` returns true; throws when the process exits first
    /// or `timeout` passes.
    public func wait(timeout: Double = 10, until ready: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if ready() { return }
            if !process.isRunning { throw LoggedProcessError.exited(process.terminationStatus, log + output) }
            usleep(10_000)
        }
        throw LoggedProcessError.timeout(log + output)
    }

    /// Waits until `text` appears in the log (or, `inOutput`, on stdout).
    public func waitFor(_ text: String, inOutput: Bool = false, timeout: Double = 10) throws {
        do { try wait(timeout: timeout) { (inOutput ? output : log).contains(text) } } catch LoggedProcessError.timeout(let printed) {
            throw LoggedProcessError.timeout("waiting for \(text)\n" + printed)
        }
    }

    /// How long ``waitForExit(timeout:)`` waits by default, in seconds.
    public var exitTimeout: Double = 10

    /// Waits for exit and returns the status; SIGKILL after `timeout`
    /// (default ``exitTimeout``).
    public func waitForExit(timeout: Double? = nil) throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout ?? exitTimeout)
        while process.isRunning {
            if Date() > deadline {
                kill(pid, SIGKILL)
                throw LoggedProcessError.timeout(log)
            }
            usleep(5_000)
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() }
    }
}
