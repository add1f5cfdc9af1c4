import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// Signals whose default action is to terminate (issue 9): vigild must not
/// die of them without a record. They are logged (rate-limited) and ignored;
/// SIGPWR is a stop request like SIGTERM.
final class StraySignalTests: XCTestCase {
    func testDefaultTerminateSignalsAreLoggedAndIgnored() throws {
        let d = try VigildProcess()
        defer { try? FileManager.default.removeItem(atPath: d.stateDir) }
        try d.waitUntilListening()
        let signals: [Int32] = [SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGXCPU, SIGXFSZ, SIGSYS, SIGUSR1, SIGUSR2, SIGSTKFLT,
                                __libc_current_sigrtmin(), __libc_current_sigrtmin() + 5, __libc_current_sigrtmax()]
        for s in signals {
            d.signal(s)
            usleep(20_000)
            XCTAssertTrue(d.process.isRunning, "vigild died of signal \(s): \(d.log)")
        }
        // A flood is one line a second, not one line per signal.
        for _ in 0..<200 { d.signal(SIGALRM) }
        usleep(200_000)
        let c = try LineSocket(port: d.port)
        c.send("{\"op\":\"ping\"}\n")
        XCTAssertEqual(c.nextLine(), "{\"op\":\"pong\"}")
        XCTAssertTrue(d.process.isRunning)
        let ignored = d.log.components(separatedBy: "\n").filter { $0.contains("ignored: vigild stops only on") }
        XCTAssertGreaterThanOrEqual(ignored.count, signals.count, d.log)
        XCTAssertLessThanOrEqual(ignored.count, signals.count + 2, "a flood of SIGALRM is rate-limited: \(ignored)")
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
        XCTAssertEqual(try classification(d.stateDir), "clean")
    }

    func testSIGPWRIsAStopRequestWithARecord() throws {
        let d = try VigildProcess()
        defer { try? FileManager.default.removeItem(atPath: d.stateDir) }
        try d.waitUntilListening()
        d.signal(SIGPWR)
        XCTAssertEqual(try d.waitForExit(), 0, d.log)
        let r = try lastShutdown(d.stateDir)
        XCTAssertEqual(r["classification"] as? String, "clean")
        XCTAssertEqual(r["signal"] as? Int, Int(SIGPWR))
    }
}
