import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// docs/embedding.md's example daemon: the docs quote Examples/line-worker
/// verbatim, and the built example keeps Vigil's promises.
final class EmbeddingExampleTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testDocsQuoteTheExampleVerbatim() throws {
        let doc = try String(contentsOf: Self.root.appendingPathComponent("docs/embedding.md"), encoding: .utf8)
        let source = try String(contentsOf: Self.root.appendingPathComponent("Examples/line-worker/main.swift"), encoding: .utf8)
        guard let open = doc.range(of: "```swift\n"), let close = doc.range(of: "\n```", range: open.upperBound..<doc.endIndex) else {
            return XCTFail("docs/embedding.md has no ```swift block")
        }
        XCTAssertEqual(String(doc[open.upperBound..<close.lowerBound]) + "\n", source,
                       "the first swift block of docs/embedding.md must be Examples/line-worker/main.swift, verbatim")
    }

    func testCleanStopAnswersTheWorkInFlight() throws {
        let w = try ExampleDaemon(stopTimeout: "10")
        let c = try LineSocket(port: w.port)
        c.send("work 300\nwork 400\n")
        usleep(100_000)
        w.signal(SIGTERM)
        XCTAssertEqual(c.nextLine(), "done 300")
        XCTAssertEqual(c.nextLine(), "done 400")
        XCTAssertEqual(try w.waitForExit(), 0, w.log)
        XCTAssertEqual(try lastShutdown(w.state)["classification"] as? String, "clean")
        XCTAssertEqual(try lastShutdown(w.state)["in_flight"] as? Int, 2)
    }

    func testWorkLongerThanTheBudgetIsCutShort() throws {
        let w = try ExampleDaemon(stopTimeout: "1")
        let c = try LineSocket(port: w.port)
        c.send("work 100\nwork 60000\n")
        usleep(200_000)
        XCTAssertEqual(c.nextLine(), "done 100")
        let start = Date()
        w.signal(SIGTERM)
        XCTAssertEqual(c.nextLine(), "abandoned")
        XCTAssertEqual(try w.waitForExit(), 0, w.log)
        // Seen from here, the exit includes this test's own polling; the
        // record's own stamps say when the daemon was done.
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.0)
        let record = try lastShutdown(w.state)
        XCTAssertEqual(record["classification"] as? String, "cut-short")
        XCTAssertEqual(record["abandoned"] as? Int, 1)
        let requested = record["stop_requested_at_ns"] as? Int ?? 0, stopped = record["stopped_at_ns"] as? Int ?? .max
        XCTAssertLessThan(stopped - requested, 1_000_000_000, "`stopped` durable before the supervisor's SIGKILL at 1 s: \(record)")
    }

    func testSIGKILLDuringTheDrainIsKilledDuringDrain() throws {
        let w = try ExampleDaemon(stopTimeout: "10")
        let c = try LineSocket(port: w.port)
        c.send("work 60000\n")
        usleep(100_000)
        w.signal(SIGTERM)
        usleep(200_000)
        w.signal(SIGKILL)
        _ = try w.waitForExit()
        XCTAssertEqual(try lastShutdown(w.state)["classification"] as? String, "killed-during-drain")
        // The next start tells the application.
        let again = try ExampleDaemon(stopTimeout: "10", state: w.state)
        XCTAssertTrue(again.log.contains("previous run: killed-during-drain"), again.log)
        again.signal(SIGTERM)
        XCTAssertEqual(try again.waitForExit(), 0)
    }
}

/// The example executable, started for a test.
final class ExampleDaemon: LoggedProcess {
    let state: String
    private(set) var port: UInt16 = 0

    init(stopTimeout: String, state existing: String? = nil) throws {
        let base = NSTemporaryDirectory() + "line-worker-\(getpid())-\(UUID().uuidString.prefix(8))"
        let state = existing ?? base + "/state"
        self.state = state
        try super.init(executable: Self.builtBinary("line-worker"), arguments: ["0", state, stopTimeout], base: base)
        try wait {
            guard log.contains("line-worker ready"), let r = log.range(of: #"listening on 127\.0\.0\.1:(\d+)"#, options: .regularExpression) else { return false }
            port = UInt16(log[r].split(separator: ":").last!)!
            return true
        }
    }

    func signal(_ s: Int32) { kill(pid, s) }
}
