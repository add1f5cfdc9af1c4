import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// vigild as PID 1 of its own PID namespace, as in a container: SIGTERM has
/// no default action there (the kernel drops signals PID 1 has no handler
/// for), orphans are re-parented to it, and its exit code is what the
/// runtime reports. `unshare --pid --fork` gives the same situation.
final class ContainerTests: XCTestCase {
    private var unshare: String? {
        ["/usr/bin/unshare", "/bin/unshare"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The host pid of unshare's child (vigild, PID 1 inside).
    private func childOf(_ pid: pid_t) -> pid_t? {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return text.split(separator: " ").compactMap { pid_t($0) }.first
    }

    private func zombies(childrenOf parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && fields[0] == "Z" && pid_t(fields[1]) == parent
        }
    }

    func testAsPID1ItReapsOrphansAndStopsOnSIGTERM() throws {
        guard getuid() == 0, let unshare else { throw XCTSkip("needs root and unshare(1) to create a PID namespace") }
        let sd = NSTemporaryDirectory() + "vigil-pid1-\(getpid())-\(UUID().uuidString.prefix(6))"
        defer { try? FileManager.default.removeItem(atPath: sd) }
        // Each turn leaves an orphan behind: the subshell exits at once, its
        // `sleep` is re-parented to PID 1 and exits 100 ms later.
        let d = try VigildProcess(arguments: ["--pid", "--fork", "--kill-child", VigildProcess.binary,
                                              "--listen", "127.0.0.1:0", "--state-dir", sd,
                                              "--agent", "exec", "--exec-command", "(sleep 0.1 &); cat"],
                                  stateDir: sd, executable: unshare)
        do { try d.waitUntilListening() } catch VigildError.exited(_, let log) {
            throw XCTSkip("cannot create a PID namespace here: \(log)")
        }
        XCTAssertTrue(d.log.contains("vigild ready (pid 1,"), "vigild is PID 1 in its namespace: \(d.log)")
        guard let host = childOf(d.pid) else { return XCTFail("no vigild under unshare") }
        let c = try LineSocket(port: d.port)
        for i in 0..<10 {
            c.send(#"{"op":"send","session":"z","id":"\#(i)","text":"t\#(i)"}"# + "\n")
        }
        var replies = 0
        while replies < 10, let line = c.nextLine() { if line.contains("\"reply\"") { replies += 1 } }
        XCTAssertEqual(replies, 10)
        usleep(400_000)  // the orphans have exited by now
        XCTAssertEqual(zombies(childrenOf: host), [], "PID 1 reaps the orphans it adopted")
        XCTAssertTrue(d.log.contains("vigild ready"))
        kill(host, SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0, "a completed stop exits 0, which unshare passes on: \(d.log)")
        XCTAssertEqual(try classification(sd), "clean")
    }
}
