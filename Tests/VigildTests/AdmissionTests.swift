import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// Nothing is admitted after the `stopping` record: the stop signal's handler
/// stops admission synchronously (DaemonService.stopAdmitting), so turns that
/// are ready in the same epoll batch as the SIGTERM are refused with
/// `draining` instead of slipping in behind the record's `in_flight` count.
final class AdmissionTests: XCTestCase {
    func testNoTurnIsAdmittedAfterTheStoppingRecord() throws {
        let state = NSTemporaryDirectory() + "vigild-admit-\(getpid())-\(UUID().uuidString.prefix(6))"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", state, "--stop-timeout", "20"], stateDir: state)
        try d.waitUntilListening()
        let clients = 24
        let lock = NSLock()
        var stopped = false
        var transcripts: [[String]] = Array(repeating: [], count: clients)
        let group = DispatchGroup()
        for k in 0..<clients {
            let c = try LineSocket(port: d.port)
            DispatchQueue.global().async(group: group) {
                // Pipelined sends, a few per write, as fast as the socket
                // takes them: many connections are ready in every batch.
                var n = 0
                while true {
                    lock.lock(); let done = stopped; lock.unlock()
                    if done || n >= 4000 { break }
                    var chunk = ""
                    for _ in 0..<4 {
                        chunk += #"{"op":"send","session":"s\#(k)","id":"m\#(n)","text":"x","work_ms":1500}"# + "\n"
                        n += 1
                    }
                    c.send(chunk)
                    usleep(200)
                }
                var lines: [String] = []
                while let l = c.nextLine() { lines.append(l) }  // until goodbye and close
                lock.lock(); transcripts[k] = lines; lock.unlock()
            }
        }
        usleep(300_000)
        d.signal(SIGTERM)
        usleep(100_000)  // keep sending into the drain
        lock.lock(); stopped = true; lock.unlock()
        XCTAssertEqual(try d.waitForExit(timeout: 30), 0, d.log)
        XCTAssertEqual(group.wait(timeout: .now() + 30), .success)
        let all = transcripts.flatMap { $0 }
        let accepted = all.filter { $0.contains(#""op":"accepted""#) }.count
        let replies = all.filter { $0.contains(#""op":"reply""#) }.count
        let refused = all.filter { $0.contains(#""code":"draining""#) }.count
        let record = try lastShutdown(d.stateDir)
        XCTAssertEqual(record["classification"] as? String, "clean", "\(record)")
        let inFlight = record["in_flight"] as? Int ?? -1
        XCTAssertGreaterThan(accepted, 0)
        XCTAssertGreaterThan(refused, 0, "the test must send into the drain to mean anything")
        XCTAssertEqual(accepted, inFlight, "every accepted turn was counted in the stopping record; none admitted after it (refused: \(refused))")
        XCTAssertEqual(replies, inFlight, "the drain answered exactly the turns in flight at the record")
    }
}
