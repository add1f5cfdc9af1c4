import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// Out of descriptors (issue 9): accept fails with EMFILE while the
/// connection stays queued. vigild must back off (not spin and log at
/// megabytes a second), keep serving the clients it has, and accept the
/// queued ones once descriptors are free again.
final class AcceptBackoffTests: XCTestCase {
    func testEMFILEOnAcceptBacksOffLogsOnceAndRecovers() throws {
        let prlimit = "/usr/bin/prlimit"
        guard FileManager.default.isExecutableFile(atPath: prlimit) else { throw XCTSkip("prlimit (util-linux) not installed") }
        let dir = NSTemporaryDirectory() + "vigil-emfile-\(getpid())-\(UUID().uuidString.prefix(6))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let d = try VigildProcess(arguments: ["--nofile=64:64", "--", VigildProcess.binary, "--listen", "127.0.0.1:0", "--state-dir", dir],
                                  stateDir: dir, executable: prlimit)
        try d.waitUntilListening()
        var clients: [LineSocket] = []
        for _ in 0..<80 { clients.append(try LineSocket(port: d.port)) }  // more than the limit: the rest stay queued
        usleep(1_500_000)
        XCTAssertTrue(d.process.isRunning)
        let lines = d.log.components(separatedBy: "\n").filter { $0.contains("accept failed") }
        XCTAssertGreaterThanOrEqual(lines.count, 1, "the failure is reported: \(d.log.suffix(2000))")
        XCTAssertLessThanOrEqual(lines.count, 2, "once per interval, not once per readiness: \(lines.count) lines, \(d.log.utf8.count) bytes of log")
        // An established client is served meanwhile.
        clients[0].send("{\"op\":\"ping\"}\n")
        XCTAssertEqual(clients[0].nextLine(), "{\"op\":\"pong\"}")
        // Free descriptors: the queued clients are accepted and served.
        clients.removeFirst(40)
        let last = clients.last!
        last.send("{\"op\":\"ping\"}\n")
        XCTAssertEqual(last.nextLine(), "{\"op\":\"pong\"}", "a queued client is served once descriptors are free")
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0, d.log.suffix(2000).description)
    }
}
