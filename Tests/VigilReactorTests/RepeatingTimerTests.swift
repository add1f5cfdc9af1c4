import Foundation
import Glibc
import Synchronization
import VigilReactor
import XCTest

final class RepeatingTimerTests: XCTestCase {
    func testRepeatingTimerFiresUntilCancelledFromItsOwnCallback() throws {
        let r = try Reactor()
        var ticks: [UInt64] = []
        var handle: TimerHandle?
        let start = monotonicNanoseconds()
        handle = r.scheduleRepeating(every: .milliseconds(5)) {
            ticks.append(monotonicNanoseconds())
            if ticks.count == 4 { r.cancelTimer(handle!) }
        }
        var settled = false
        r.schedule(after: .milliseconds(60)) { settled = true }
        try runUntil(r) { settled }
        XCTAssertEqual(ticks.count, 4, "cancelled from the fourth tick: no fifth")
        XCTAssertEqual(r.pendingTimers, 0)
        // Each tick at least one interval after the previous one's deadline.
        XCTAssertGreaterThanOrEqual(ticks[0] - start, 5_000_000)
        XCTAssertGreaterThanOrEqual(ticks[3] - start, 20_000_000)
    }

    func testFirstTickCanComeEarlierThanTheInterval() throws {
        let r = try Reactor()
        var ticks = 0
        let h = r.scheduleRepeating(every: .seconds(3600), firstAfter: .zero) { ticks += 1 }
        try runUntil(r) { ticks == 1 }
        XCTAssertEqual(ticks, 1)
        XCTAssertEqual(r.pendingTimers, 1, "still armed for the next hour")
        r.cancelTimer(h)
        XCTAssertEqual(r.pendingTimers, 0)
    }

    func testStalledLoopSkipsMissedTicksInsteadOfBursting() throws {
        let r = try Reactor()
        var ticks = 0
        let h = r.scheduleRepeating(every: .milliseconds(2)) { ticks += 1 }
        usleep(30_000)  // ~15 intervals with the loop not running
        try r.runOnce(timeoutMs: 100)
        XCTAssertEqual(ticks, 1, "one tick for the whole stall, not fifteen")
        r.cancelTimer(h)
    }

    func testLoopThreadIsReadSafelyFromOtherThreads() throws {
        // `execute` from other threads while the loop changes threads: the
        // loop-thread id is atomic (run this file under --sanitize=thread).
        final class Count: @unchecked Sendable { let value = Atomic<Int>(0) }
        let r = try Reactor()
        let done = Count()
        let senders = (0..<4).map { _ in
            Thread {
                for _ in 0..<500 { r.execute { done.value.add(1, ordering: .relaxed) } }
            }
        }
        senders.forEach { $0.start() }
        try runUntil(r, timeout: 10) { done.value.load(ordering: .relaxed) == 2000 }
        XCTAssertEqual(done.value.load(ordering: .relaxed), 2000)
        XCTAssertTrue(r.isOnLoopThread)
    }
}
