import Glibc
import Logging
import VigilDurable
import VigilLifecycle
import VigilReactor
import VigilTesting
import XCTest

final class StopSequenceTests: XCTestCase {
    private var fs: SimulatedStateFileSystem!
    private var store: ShutdownRecordStore!
    private var reactor: Reactor!
    private var events: [String] = []

    override func setUpWithError() throws {
        fs = SimulatedStateFileSystem()
        store = ShutdownRecordStore(fs: fs)
        _ = try store.takeOver(running: sampleRecord(.running), currentBootID: "boot-a")
        reactor = try Reactor()
        events = []
    }

    private func sequence(timeout: Duration, inFlight: @escaping () -> Int = { 0 }) -> StopSequence {
        let s = StopSequence(reactor: reactor, store: store, budget: StopBudget(stopTimeout: timeout, source: .configured("--stop-timeout")), logger: Logger(label: "test"))
        s.inFlight = inFlight
        s.onStopping.append { [unowned self] _ in
            // The hook sees the stopping record already durable.
            self.events.append("hook:" + (self.store.read() == .valid(self.store.current!) ? self.store.current!.state.rawValue : "?"))
        }
        return s
    }

    private func signal(_ s: Int32) -> SignalInfo {
        SignalInfo(signal: s, senderPID: 77, senderUID: 0, code: 0, value: 0, receivedAtNs: monotonicNanoseconds())
    }

    private func runToStop(_ s: StopSequence) throws {
        try runUntilStopped(s)
    }

    private func runUntilStopped(_ s: StopSequence, timeout: Double = 10) throws {
        let deadline = monotonicNanoseconds() + UInt64(timeout * 1e9)
        while s.phase != .stopped {
            XCTAssertLessThan(monotonicNanoseconds(), deadline, "stop sequence did not finish")
            if monotonicNanoseconds() > deadline { return }
            try reactor.runOnce(timeoutMs: 20)
        }
    }

    func testCleanDrainRecordsStoppingBeforeAnythingElseThenStopped() throws {
        let s = sequence(timeout: .seconds(5))
        let writesBefore = fs.journal.count
        s.drain = { [unowned self] _ in
            self.events.append("drain:" + self.store.current!.state.rawValue)
            try? await self.reactor.sleep(for: .milliseconds(5))
        }
        s.handle(signal(SIGTERM))
        // Synchronously inside handle(): the full durable write sequence, the hook; no drain yet.
        XCTAssertEqual(Array(fs.journal[writesBefore...]), ["pwrite", "fdatasync"], "one slot written in place, one flush")
        XCTAssertEqual(events, ["hook:stopping"])
        try runToStop(s)
        XCTAssertEqual(events, ["hook:stopping", "drain:stopping"])
        guard case .valid(let r) = store.read() else { return XCTFail() }
        XCTAssertEqual(r.state, .stopped)
        XCTAssertEqual(r.outcome, .clean)
        XCTAssertEqual(r.abandoned, 0)
        XCTAssertEqual(r.signal, SIGTERM)
        XCTAssertEqual(r.senderPID, 77)
        XCTAssertEqual(s.exitCode, 0)
    }

    /// A drain that returns with work still in flight did not finish it:
    /// the stop is cut short with that work abandoned, never `clean`.
    func testDrainReturningWithWorkLeftIsCutShort() throws {
        let s = sequence(timeout: .seconds(5), inFlight: { 2 })
        s.drain = { _ in }
        s.handle(signal(SIGTERM))
        try runToStop(s)
        guard case .valid(let r) = store.read() else { return XCTFail() }
        XCTAssertEqual(r.outcome, .cutShort)
        XCTAssertEqual(r.abandoned, 2)
        XCTAssertEqual(s.exitCode, 0)
    }

    /// A run ended without a stop request (a supervised program exited):
    /// a later stop signal must not overwrite the record that says so.
    func testEndWithoutStopRefusesALaterStop() throws {
        let s = sequence(timeout: .seconds(5))
        XCTAssertTrue(s.endWithoutStop())
        try store.markProgramExited(status: 3, signal: nil, openWork: 1)
        s.handle(signal(SIGTERM))
        XCTAssertEqual(events, [], "no stop sequence began")
        guard case .valid(let r) = store.read() else { return XCTFail() }
        XCTAssertEqual(r.state, .running)
        XCTAssertEqual(r.programExitStatus, 3)
        XCTAssertFalse(s.endWithoutStop(), "once only")
    }

    func testBudgetCutsTheDrainShortAndRecordsWhatWasAbandoned() throws {
        var pending = 4
        let s = sequence(timeout: .milliseconds(400), inFlight: { pending })
        var cancelled = false
        s.drain = { [unowned self] ctx in
            pending -= 1  // one finishes quickly, three hang
            do { try await self.reactor.sleep(for: .seconds(30)) } catch { cancelled = true }
        }
        let start = monotonicNanoseconds()
        s.handle(signal(SIGTERM))
        try runToStop(s)
        let elapsedMs = (monotonicNanoseconds() - start) / 1_000_000
        XCTAssertGreaterThanOrEqual(elapsedMs, 190, "drain budget is the timeout minus the margin (400 - 200: the margin is at most half)")
        XCTAssertLessThan(elapsedMs, 400, "ended before the supervisor's timeout")
        for _ in 0..<5 { try reactor.runOnce(timeoutMs: 10) }  // let the cancelled task observe it
        XCTAssertTrue(cancelled)
        guard case .valid(let r) = store.read() else { return XCTFail() }
        XCTAssertEqual(r.outcome, .cutShort)
        XCTAssertEqual(r.inFlight, 4)
        XCTAssertEqual(r.abandoned, 3)
        XCTAssertEqual(r.budgetMs, 200)
        XCTAssertEqual(s.exitCode, 0, "a stop within budget is not a failure")
    }

    func testSecondSignalCutsShortAtOnce() throws {
        let s = sequence(timeout: .seconds(30), inFlight: { 1 })
        s.drain = { [unowned self] _ in try? await self.reactor.sleep(for: .seconds(30)) }
        s.handle(signal(SIGTERM))
        try reactor.runOnce(timeoutMs: 10)
        XCTAssertEqual(s.phase, .draining)
        s.handle(signal(SIGINT))
        XCTAssertEqual(s.phase, .stopped)
        guard case .valid(let r) = store.read() else { return XCTFail() }
        XCTAssertEqual(r.outcome, .cutShort)
        XCTAssertEqual(r.abandoned, 1)
        XCTAssertEqual(r.signal, SIGTERM, "the record keeps the signal that started the stop")
    }

    func testSIGQUITSkipsTheDrain() throws {
        let s = sequence(timeout: .seconds(30), inFlight: { 2 })
        var drained = false
        s.drain = { _ in drained = true }
        s.handle(signal(SIGQUIT))
        XCTAssertEqual(s.phase, .stopped)
        try reactor.runOnce(timeoutMs: 10)
        XCTAssertFalse(drained)
        guard case .valid(let r) = store.read() else { return XCTFail() }
        XCTAssertEqual(r.signal, SIGQUIT)
        XCTAssertEqual(r.outcome, .cutShort)
        XCTAssertEqual(r.abandoned, 2)
    }

    func testUnwritableRecordStillStopsButExitsNonZero() throws {
        let s = sequence(timeout: .seconds(5))
        // EIO (a full disk cannot refuse an in-place write: ShutdownRecordTests).
        fs.failWith = .ioError
        s.handle(signal(SIGTERM))
        try runToStop(s)
        XCTAssertEqual(s.exitCode, 1)
        guard case .valid(let r) = store.read() else { return XCTFail() }
        XCTAssertEqual(r.state, .running, "the durable record is the last one that could be written")
    }

    func testACutShortSettlesTheWorkInFlightBeforeCountingWhatWasAbandoned() throws {
        var pending = 3
        let s = sequence(timeout: .milliseconds(400), inFlight: { pending })
        s.drain = { [unowned self] _ in try? await self.reactor.sleep(for: .seconds(30)) }
        var settleDeadline: UInt64 = 0
        s.settle = { [unowned self] deadline in
            settleDeadline = deadline
            // Work being decided when the budget ran out: two of the three
            // turns complete (their replies are delivered) while it settles.
            XCTAssertEqual(self.store.current?.state, .stopping, "nothing recorded before settling")
            try? await self.reactor.sleep(for: .milliseconds(20))
            pending = 1
            return true
        }
        let start = monotonicNanoseconds()
        s.handle(signal(SIGTERM))
        s.handle(signal(SIGTERM))  // the second signal cuts short; a third is ignored while settling
        s.handle(signal(SIGTERM))
        try runToStop(s)
        guard case .valid(let r) = store.read() else { return XCTFail() }
        XCTAssertEqual(r.outcome, .cutShort)
        XCTAssertEqual(r.abandoned, 1, "counted after settling")
        XCTAssertEqual(s.exitCode, 0)
        XCTAssertLessThanOrEqual(settleDeadline, start + 400_000_000, "settling ends within the stop timeout")
    }

    func testAnUnsettledCutShortLeavesTheStoppingRecordAndExitsNonZero() throws {
        let s = sequence(timeout: .milliseconds(400), inFlight: { 2 })
        s.drain = { [unowned self] _ in try? await self.reactor.sleep(for: .seconds(30)) }
        s.settle = { _ in false }
        s.handle(signal(SIGTERM))
        try runToStop(s)
        guard case .valid(let r) = store.read() else { return XCTFail() }
        XCTAssertEqual(r.state, .stopping, "no stopped record claims work whose outcome is unknown")
        XCTAssertEqual(s.exitCode, 1)
    }

    func testBudgetRules() throws {
        XCTAssertEqual(StopBudget(stopTimeout: .seconds(10), source: .configured("--stop-timeout")).drainBudget, .seconds(9))
        XCTAssertEqual(StopBudget(stopTimeout: .seconds(90), source: .configured("--stop-timeout")).safetyMargin, .seconds(2))
        XCTAssertEqual(StopBudget(stopTimeout: .seconds(1), source: .configured("--stop-timeout")).safetyMargin, .milliseconds(250))
        XCTAssertEqual(StopBudget(stopTimeout: .milliseconds(200), source: .configured("--stop-timeout")).drainBudget, .milliseconds(100))
        XCTAssertEqual(try StopBudget.resolve([("2.5", "--stop-timeout"), ("7", "SOME_TIMEOUT")]).stopTimeout, .milliseconds(2500))
        XCTAssertEqual(try StopBudget.resolve([(nil, "--stop-timeout"), ("7", "SOME_TIMEOUT")]).source, .configured("SOME_TIMEOUT"))
        XCTAssertEqual(try StopBudget.resolve([(nil, "--stop-timeout"), ("", "SOME_TIMEOUT")]).stopTimeout, StopBudget.defaultStopTimeout)
        XCTAssertEqual(try StopBudget.resolve([]).source, .builtInDefault)
        for bad in ["0", "-1", "abc", "inf", "nan"] {
            XCTAssertThrowsError(try StopBudget.resolve([(bad, "--stop-timeout")]), bad)
        }
    }
}
