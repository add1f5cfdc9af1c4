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
