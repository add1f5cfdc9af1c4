import CVigil
import Glibc
import VigilReactor
import XCTest

/// An actor whose jobs run on the reactor.
actor LoopBoundCounter {
    nonisolated let unownedExecutor: UnownedSerialExecutor
    var value = 0
    init(reactor: Reactor) { unownedExecutor = reactor.asUnownedSerialExecutor() }
    func increment() -> pid_t { value += 1; return cvigil_gettid() }
}

final class ExecutorTests: XCTestCase {
    func testTasksChildTasksActorsAndContinuationsAllRunOnTheLoopThread() throws {
        let r = try Reactor()
        let loopTID = cvigil_gettid()
        var seen: Set<pid_t> = []
        var finished = false
        let counter = LoopBoundCounter(reactor: r)
        r.spawn {
            seen.insert(cvigil_gettid())
            try await r.sleep(for: .milliseconds(5))
            seen.insert(cvigil_gettid())
            async let a: pid_t = { try? await r.sleep(for: .milliseconds(1)); return cvigil_gettid() }()
            async let b: pid_t = cvigil_gettid()
            seen.insert(await a)
            seen.insert(await b)
            await withTaskGroup(of: pid_t.self) { group in
                for _ in 0..<8 { group.addTask { cvigil_gettid() } }
                for await tid in group { seen.insert(tid) }
            }
            seen.insert(await counter.increment())
            let p = makePipe()
            writeByte(p.write)
            let readiness = try await r.wait(for: .readable, on: p.read)
            XCTAssertTrue(readiness.contains(.readable))
            close(p.read); close(p.write)
            seen.insert(cvigil_gettid())
            finished = true
        }
        try runUntil(r) { finished }
        XCTAssertEqual(seen, [loopTID], "every job ran on the loop thread")
        let value = try waitForValue(r) { await counter.value }
        XCTAssertEqual(value, 1)
    }

    func testCancelledSleepThrowsPromptly() throws {
        let r = try Reactor()
        var outcome: String?
        let task = r.spawn {
            do {
                try await r.sleep(for: .seconds(30))
                outcome = "slept"
            } catch is ReactorCancelled {
                outcome = "cancelled"
            }
        }
        r.schedule(after: .milliseconds(5)) { task.cancel() }
        let start = monotonicNanoseconds()
        try runUntil(r) { outcome != nil }
        XCTAssertEqual(outcome, "cancelled")
        XCTAssertLessThan(monotonicNanoseconds() - start, 1_000_000_000)
        try runUntil(r) { r.pendingTimers == 0 }
    }

    func testChildExitThroughPidfd() throws {
        let r = try Reactor()
        var exits: [ChildExit] = []
        let quick = try ChildSpawner.spawn(["/bin/sh", "-c", "exit 3"])
        _ = try r.watchChild(pid: quick) { exits.append($0) }
        let slow = try ChildSpawner.spawn(["sleep", "30"])
        let handle = try r.watchChild(pid: slow) { exits.append($0) }
        try runUntil(r) { exits.count == 1 }
        XCTAssertEqual(exits, [.exited(3)])
        try handle.send(SIGTERM)  // the child must not have inherited a blocked SIGTERM
        try runUntil(r) { exits.count == 2 }
        XCTAssertEqual(exits.last, .signaled(SIGTERM))
        XCTAssertEqual(handle.exit, .signaled(SIGTERM))
        XCTAssertNoThrow(try handle.send(SIGKILL), "signalling a reaped child is a no-op")
        // Reaped: no zombie left.
        var status: Int32 = 0
        XCTAssertEqual(waitpid(slow, &status, WNOHANG), -1)
    }

    func testWaitForExitAsync() throws {
        let r = try Reactor()
        var result: ChildExit?
        r.spawn {
            let pid = try ChildSpawner.spawn(["/bin/sh", "-c", "exit 7"])
            result = try await r.waitForExit(pid: pid)
        }
        try runUntil(r) { result != nil }
        XCTAssertEqual(result, .exited(7))
    }

    private func waitForValue<T>(_ r: Reactor, _ body: @escaping () async -> T) throws -> T {
        var value: T?
        r.spawn { value = await body() }
        try runUntil(r) { value != nil }
        return value!
    }
}
