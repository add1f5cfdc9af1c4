import Foundation
import Glibc
import Logging
import VigilDurable
import VigilReactor
import VigilTesting
import XCTest

final class TurnJournalTests: XCTestCase {
    private var dir = ""
    private let logger = Logger(label: "journal-test")

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "vigil-journal-\(getpid())-\(UUID().uuidString.prefix(6))"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func reactor(_ mode: IOUringMode = .automatic) throws -> Reactor {
        var o = Reactor.Options()
        o.ioUring = mode
        return try Reactor(options: o)
    }

    private func openJournal(_ r: Reactor, options: TurnJournal.Options = .init()) throws -> TurnJournal {
        let fs = try PosixStateFileSystem(path: dir)
        return try TurnJournal(io: DiskJournalIO(fs: fs, disk: r.disk), reactor: r, logger: logger, options: options)
    }

    /// Appends all records (in one iteration) and runs the loop until every completion arrived.
    @discardableResult
    private func appendAll(_ j: TurnJournal, _ r: Reactor, _ records: [JournalRecord]) throws -> [Result<UInt64, JournalError>] {
        var results: [Result<UInt64, JournalError>?] = Array(repeating: nil, count: records.count)
        for (i, rec) in records.enumerated() { j.append(rec) { results[i] = $0 } }
        try r.runOnce(timeoutMs: 0)  // the iteration's end submits the batch
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while results.contains(where: { $0 == nil }) && monotonicNanoseconds() < deadline { try r.runOnce(timeoutMs: 50) }
        return results.map { $0! }
    }

    private func closeJournal(_ j: TurnJournal, _ r: Reactor, compact: Bool) throws {
        var done = false
        r.spawn { await j.close(compact: compact); done = true }
        while !done { try r.runOnce(timeoutMs: 50) }
    }

    func testDurableRoundTripOnBothBackends() throws {
        for mode in [IOUringMode.automatic, .disabled] {
            try? FileManager.default.removeItem(atPath: dir)
            let r = try reactor(mode)
            let j = try openJournal(r)
            let results = try appendAll(j, r, [
                .sessionOpened(session: "a"), .sessionOpened(session: "b"),
                .turnAccepted(session: "a", id: "1", text: "hello \u{1F600}"),
                .turnAccepted(session: "b", id: "2", text: "x"),
                .turnCompleted(session: "b", id: "2", reply: "y"),
            ])
            XCTAssertEqual(results.map { try? $0.get() }, [1, 2, 3, 4, 5], "sequence numbers in order")
            XCTAssertEqual(j.batchesWritten, 1, "one iteration's appends are one group commit")
            XCTAssertEqual(j.state.status(of: "a"), .active, "open turn, same run")
            XCTAssertEqual(j.state.openTurnCount, 1)
            try closeJournal(j, r, compact: false)
            r.close()

            // Reopen: the open turn of the dead run is interrupted, exactly.
            let r2 = try reactor(mode)
            let j2 = try openJournal(r2)
            XCTAssertEqual(j2.report.recordsReplayed, 5)
            XCTAssertEqual(j2.state.status(of: "a"), .interrupted)
            XCTAssertEqual(j2.state.sessions["a"]?.interruptedTurns, ["1"])
            XCTAssertEqual(j2.state.interruptedSessionCount, j2.state.interruptedSessions.count)
            XCTAssertEqual(j2.state.status(of: "b"), .active)
            XCTAssertEqual(j2.state.status(of: "zzz"), .new)
            XCTAssertEqual(j2.durableSequence, 5)
            try appendAll(j2, r2, [.runStarted(pid: 1, bootID: "b"), .interruptionCleared(session: "a")])
            XCTAssertEqual(j2.state.status(of: "a"), .active)
            XCTAssertEqual(j2.state.interruptedSessionCount, 0)
            try closeJournal(j2, r2, compact: false)
        }
    }

    /// `forgetsSettledSessions` (the ledger's): a session with nothing
    /// open or interrupted is dropped — live, after replay, and from the
    /// snapshot — and one with open or interrupted work is kept.
    func testSettledSessionsAreForgottenWhenAsked() throws {
        var options = TurnJournal.Options()
        options.forgetsSettledSessions = true
        // Each run its own loop; every journal outlives its loop's work.
        let r1 = try reactor(), r2 = try reactor(), r3 = try reactor()
        let first = try openJournal(r1, options: options)
        var records: [JournalRecord] = [.runStarted(pid: 1, bootID: "b")]
        for i in 0..<100 {
            records.append(.turnAccepted(session: "done-\(i)", id: "1", text: ""))
            records.append(.turnCompleted(session: "done-\(i)", id: "1", reply: ""))
        }
        records.append(.turnAccepted(session: "open", id: "x", text: ""))
        try appendAll(first, r1, records)
        XCTAssertEqual(Set(first.state.sessions.keys), ["open"], "settled sessions are gone at once")
        try closeJournal(first, r1, compact: true)

        // The next run: the open unit is interrupted, the rest stays forgotten.
        let second = try openJournal(r2, options: options)
        XCTAssertEqual(Set(second.state.sessions.keys), ["open"])
        XCTAssertEqual(second.state.interruptedSessions, ["open"])
        try appendAll(second, r2, [.runStarted(pid: 2, bootID: "b"), .interruptionCleared(session: "open")])
        XCTAssertTrue(second.state.sessions.isEmpty, "resolved: nothing left")
        try closeJournal(second, r2, compact: false)

        // Without the option (vigild's journal) every session is known.
        let plain = try openJournal(r3)
        XCTAssertFalse(plain.state.sessions.keys.contains { $0.hasPrefix("done-") }, "the snapshot holds only what was kept")
        try appendAll(plain, r3, [.runStarted(pid: 3, bootID: "b"), .turnAccepted(session: "k", id: "1", text: ""), .turnCompleted(session: "k", id: "1", reply: "")])
        XCTAssertEqual(plain.state.status(of: "k"), .active)
        try closeJournal(plain, r3, compact: false)
        withExtendedLifetime((first, second)) {}
    }

    func testAnAppendOutsideAnIterationDoesNotWaitForAnotherEvent() throws {
        let r = try reactor()
        let j = try openJournal(r)
        var done: Result<UInt64, JournalError>?
        var gaveUp = false
        r.schedule(after: .seconds(5)) { gaveUp = true }  // only so a regression cannot hang the suite
        j.append(.sessionOpened(session: "idle-loop")) { done = $0 }
        // Nothing else will ever happen on this loop: blocking polls only.
        while done == nil && !gaveUp { try r.runOnce(timeoutMs: -1) }
        XCTAssertFalse(gaveUp, "the append waited for an unrelated event")
        XCTAssertEqual(try done?.get(), 1)
        try closeJournal(j, r, compact: false)
    }

    /// With io_uring, what queued while a batch was in flight is on its way
    /// to the disk before that batch's completions run (docs/journal.md,
    /// step 5); completions still come in sequence order, and an append
    /// made by a completion goes into a later batch. With the syscall
    /// fallback the next batch waits for the iteration's end, as before.
    func testTheNextBatchIsSubmittedBeforeTheCompletionsRun() throws {
        for mode in [IOUringMode.automatic, .disabled] {
            try? FileManager.default.removeItem(atPath: dir)
            let r = try reactor(mode)
            let j = try openJournal(r)
            var order: [String] = []
            var inFlightAtFirstCompletion = -1
            var done = 0
            j.append(.sessionOpened(session: "a")) { _ in
                order.append("a")
                inFlightAtFirstCompletion = r.disk.inFlight
                j.append(.sessionOpened(session: "c")) { _ in order.append("c"); done += 1 }
                done += 1
            }
            try r.runOnce(timeoutMs: 0)  // "a" submitted at the iteration's end
            j.append(.sessionOpened(session: "b")) { _ in order.append("b"); done += 1 }
            let deadline = monotonicNanoseconds() + 10_000_000_000
            while done < 3 && monotonicNanoseconds() < deadline { try r.runOnce(timeoutMs: 50) }
            XCTAssertEqual(order, ["a", "b", "c"], "\(mode)")
            XCTAssertEqual(j.durableSequence, 3)
            if r.disk.kind == .ioUring {
                XCTAssertEqual(inFlightAtFirstCompletion, 2, "b's write and fdatasync were in the kernel before a's completion ran")
                XCTAssertEqual(j.batchesWritten, 3, "c came after b was submitted")
            } else {
                XCTAssertEqual(inFlightAtFirstCompletion, 0, "the syscall fallback submits at the iteration's end only")
                XCTAssertEqual(j.batchesWritten, 2, "b and c in one batch, at the iteration's end")
            }
            try closeJournal(j, r, compact: false)
            r.close()
        }
    }

    /// A batch that needs a new segment is not submitted early: a failed
    /// rollover must not refuse it before the batch that just ended reported.
    func testABatchThatRollsOverWaitsForTheIterationsEnd() throws {
        let r = try reactor()
        var options = TurnJournal.Options()
        options.segmentLimit = 160
        let j = try openJournal(r, options: options)
        var inFlightAtFirstCompletion = -1
        var results: [Result<UInt64, JournalError>] = []
        j.append(.sessionOpened(session: String(repeating: "a", count: 100))) {
            results.append($0)
            inFlightAtFirstCompletion = r.disk.inFlight
        }
        try r.runOnce(timeoutMs: 0)
        j.append(.sessionOpened(session: String(repeating: "b", count: 100))) { results.append($0) }
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while results.count < 2 && monotonicNanoseconds() < deadline { try r.runOnce(timeoutMs: 50) }
        XCTAssertEqual(results.map { try? $0.get() }, [1, 2])
        XCTAssertEqual(inFlightAtFirstCompletion, 0, "the rollover waited for the iteration's end")
        let segments = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".seg") }
        XCTAssertEqual(segments.count, 2, "\(segments)")
        try closeJournal(j, r, compact: false)
        r.close()
    }

    func testRolloverCompactionAndCleanClose() throws {
        let r = try reactor()
        var options = TurnJournal.Options()
        options.segmentLimit = 2048
        options.compactAfterSegments = 3
        let j = try openJournal(r, options: options)
        for i in 0..<60 {
            try appendAll(j, r, [.turnAccepted(session: "s\(i % 7)", id: "t\(i)", text: String(repeating: "x", count: 100))])
            if i % 2 == 0 { try appendAll(j, r, [.turnCompleted(session: "s\(i % 7)", id: "t\(i)", reply: "ok")]) }
        }
        let expected = j.state
        let files = try FileManager.default.contentsOfDirectory(atPath: dir)
        XCTAssertTrue(files.contains("snapshot"), "compacted once segments piled up: \(files)")
        XCTAssertLessThanOrEqual(files.filter { $0.hasSuffix(".seg") }.count, 4)
        try closeJournal(j, r, compact: false)

        let r2 = try reactor()
        let j2 = try openJournal(r2, options: options)
        XCTAssertNotNil(j2.report.snapshotSequence)
        var afterRun = expected
        afterRun.apply(.runStarted(pid: 0, bootID: ""))
        XCTAssertEqual(j2.state, afterRun, "snapshot + remaining segments rebuild the same state")
        XCTAssertEqual(j2.state.interruptedSessions.count, 7)
        try closeJournal(j2, r2, compact: true)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["journal.manifest", "snapshot"], "a clean close leaves only the snapshot (and the manifest)")

        let r3 = try reactor()
        let j3 = try openJournal(r3, options: options)
        XCTAssertEqual(j3.report.recordsReplayed, 0)
        XCTAssertEqual(j3.state, afterRun)
        let res = try appendAll(j3, r3, [.sessionOpened(session: "new")])
        XCTAssertEqual(try res[0].get(), j2.durableSequence + 1, "sequence continues after the snapshot")
    }

    private func lastSegment() throws -> String {
        dir + "/" + (try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".seg") }.sorted().last!)
    }

    func testTornTailIsCutAndReported() throws {
        let r = try reactor()
        let j = try openJournal(r)
        try appendAll(j, r, [.sessionOpened(session: "a"), .turnAccepted(session: "a", id: "1", text: "t")])
        try closeJournal(j, r, compact: false)
        let seg = try lastSegment()
        let before = try Data(contentsOf: URL(fileURLWithPath: seg))
        // Half a frame, as a crash mid-write leaves it.
        var frame = Data([0x56, 0x4A, 0x52, 0x4C, 40, 0, 0, 0, 1, 2, 3])
        frame.append(Data(repeating: 0xEE, count: 20))
        try (before + frame).write(to: URL(fileURLWithPath: seg))

        let r2 = try reactor()
        let j2 = try openJournal(r2)
        XCTAssertEqual(j2.report.truncated, [.init(segment: URL(fileURLWithPath: seg).lastPathComponent, offset: UInt64(before.count), bytes: UInt64(frame.count))])
        XCTAssertTrue(j2.report.summary.contains("torn tail dropped"))
        XCTAssertEqual(j2.report.recordsReplayed, 2)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: seg)).count, before.count, "the tail is cut off on disk")
        // Appends continue right after the last intact record.
        try appendAll(j2, r2, [.turnCompleted(session: "a", id: "1", reply: "r")])
        try closeJournal(j2, r2, compact: false)
        let j3 = try openJournal(try reactor())
        XCTAssertEqual(j3.report.truncated, [])
        XCTAssertEqual(j3.state.status(of: "a"), .active)
    }

    func testARecordReplayWouldRejectIsNeverAcknowledged() throws {
        let r = try reactor()
        let j = try openJournal(r)
        let huge = String(repeating: "x", count: (1 << 20) + 1)
        let results = try appendAll(j, r, [.turnCompleted(session: "s", id: "big", reply: huge), .sessionOpened(session: "after")])
        guard case .failure(.tooLarge(let n)) = results[0] else { return XCTFail("\(results[0])") }
        XCTAssertGreaterThan(n, 1 << 20)
        XCTAssertEqual(try results[1].get(), 1, "the journal goes on")
        try closeJournal(j, r, compact: false)
        let j2 = try openJournal(try reactor())
        XCTAssertTrue(j2.report.damaged.isEmpty && j2.report.truncated.isEmpty, j2.report.summary)
        XCTAssertNotNil(j2.state.sessions["after"])
    }

    func testABacklogIsCommittedInBoundedBatches() throws {
        let r = try reactor()
        var o = TurnJournal.Options()
        o.maxBatchBytes = 64 << 10
        let j = try openJournal(r, options: o)
        let text = String(repeating: "y", count: 1000)
        let results = try appendAll(j, r, (0..<300).map { .turnAccepted(session: "s", id: "\($0)", text: text) })
        XCTAssertEqual(results.compactMap { try? $0.get() }, Array(1...300))
        XCTAssertGreaterThanOrEqual(j.batchesWritten, 5, "about 300 kB in batches of at most 64 kB")
        try closeJournal(j, r, compact: false)
    }

    func testAnUnreadableSnapshotIsReportedAndKeptAside() throws {
        let r = try reactor()
        let j = try openJournal(r)
        try appendAll(j, r, [.sessionOpened(session: "kept")])
        try closeJournal(j, r, compact: true)
        let snap = dir + "/snapshot"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: snap))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: snap))
        let j2 = try openJournal(try reactor())
        XCTAssertNotNil(j2.report.snapshotProblem)
        XCTAssertTrue(j2.report.summary.contains("SNAPSHOT UNREADABLE"), j2.report.summary)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
        XCTAssertTrue(names.contains { $0.hasPrefix("snapshot.corrupt-") }, "\(names)")
    }

    func testDamageInTheMiddleIsReportedAndTheRestRecovered() throws {
        let r = try reactor()
        let j = try openJournal(r)
        for i in 0..<10 { try appendAll(j, r, [.turnAccepted(session: "s\(i)", id: "t\(i)", text: "payload \(i)")]) }
        try closeJournal(j, r, compact: false)
        let seg = try lastSegment()
        var bytes = try Data(contentsOf: URL(fileURLWithPath: seg))
        // Flip one bit inside the 5th record's body.
        let recordSize = (bytes.count - 24) / 10
        bytes[24 + 4 * recordSize + 25] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: seg))

        let j2 = try openJournal(try reactor())
        XCTAssertEqual(j2.report.damaged.count, 1, j2.report.summary)
        XCTAssertEqual(j2.report.damaged.first?.offset, UInt64(24 + 4 * recordSize))
        XCTAssertEqual(j2.report.damaged.first?.bytes, UInt64(recordSize))
        XCTAssertEqual(j2.report.missingSequences, 1)
        XCTAssertEqual(j2.report.recordsReplayed, 9)
        XCTAssertNil(j2.state.sessions["s4"], "the damaged record is lost, and said so")
        XCTAssertEqual(j2.state.sessions["s9"]?.interruptedTurns, ["t9"], "records after the damage are recovered")
        XCTAssertTrue(j2.report.summary.contains("DAMAGED"))
    }

    func testDiskFullRefusesThenRecovers() throws {
        let fs = SimulatedStateFileSystem()
        let r = try reactor()
        let j = try TurnJournal(io: SimulatedJournalIO(fs: fs, reactor: r), reactor: r, logger: logger)
        XCTAssertNoThrow(try appendAll(j, r, [.sessionOpened(session: "a")])[0].get())
        fs.failWith = .noSpace
        let refused = try appendAll(j, r, [.turnAccepted(session: "a", id: "1", text: "t"), .turnAccepted(session: "a", id: "2", text: "t")])
        for res in refused {
            guard case .failure(.noSpace) = res else { return XCTFail("expected noSpace, got \(res)") }
        }
        XCTAssertEqual(j.state.openTurnCount, 0, "nothing refused is in the state")
        fs.failWith = nil
        let ok = try appendAll(j, r, [.turnAccepted(session: "a", id: "3", text: "t")])
        XCTAssertEqual(try ok[0].get(), 2, "the refused records' sequence numbers are reused")
        fs.powerLoss()
        let j2 = try TurnJournal(io: SimulatedJournalIO(fs: fs, reactor: r), reactor: r, logger: logger)
        XCTAssertEqual(j2.state.sessions["a"]?.interruptedTurns, ["3"])
    }

    func testCloseSaysWhetherItCompacted() throws {
        let fs = SimulatedStateFileSystem()
        let r = try reactor()
        let j = try TurnJournal(io: SimulatedJournalIO(fs: fs, reactor: r), reactor: r, logger: logger)
        try appendAll(j, r, [.sessionOpened(session: "a")])
        fs.failWith = .noSpace  // the snapshot cannot be created
        var outcome: TurnJournal.CloseOutcome?
        r.spawn { outcome = await j.close(compact: true) }
        while outcome == nil { try r.runOnce(timeoutMs: 50) }
        guard case .compactionFailed = outcome! else { return XCTFail("a failed compaction must not be reported as done: \(outcome!)") }
        XCTAssertTrue(fs.fileNames.contains { $0.hasSuffix(".seg") }, "the segments are kept")
        fs.failWith = nil
        let j2 = try TurnJournal(io: SimulatedJournalIO(fs: fs, reactor: r), reactor: r, logger: logger)
        XCTAssertNotNil(j2.state.sessions["a"], "nothing lost")
        var second: TurnJournal.CloseOutcome?
        r.spawn { second = await j2.close(compact: true) }
        while second == nil { try r.runOnce(timeoutMs: 50) }
        XCTAssertEqual(second, .compacted)
    }

    func testIOErrorDisablesAppends() throws {
        let fs = SimulatedStateFileSystem()
        let r = try reactor()
        let j = try TurnJournal(io: SimulatedJournalIO(fs: fs, reactor: r), reactor: r, logger: logger)
        fs.failWith = .ioError
        guard case .failure(.failed) = try appendAll(j, r, [.sessionOpened(session: "a")])[0] else { return XCTFail() }
        fs.failWith = nil
        guard case .failure(.failed) = try appendAll(j, r, [.sessionOpened(session: "b")])[0] else {
            return XCTFail("after an fsync failure the journal must not pretend to be fine")
        }
    }

    /// Crash at every step of a sequence of group commits (kill and power
    /// loss): every acknowledged record is replayed, whatever the point.
    func testNoAcknowledgedRecordIsEverLost() throws { try crashSweep(TurnJournal.Options()) }

    /// The same with a rollover every batch or two and compaction: the
    /// manifest's rewrites (at open, rollover, compaction) are crash-swept
    /// too, and no crash ever makes the next start report lost data.
    func testNoCrashDuringRolloverOrCompactionIsReportedAsLoss() throws {
        var o = TurnJournal.Options()
        o.segmentLimit = 160
        o.compactAfterSegments = 2
        try crashSweep(o)
    }

    private func crashSweep(_ options: TurnJournal.Options) throws {
        func workload() -> [[JournalRecord]] {
            (0..<6).map { b in
                (0..<3).flatMap { i -> [JournalRecord] in
                    let s = "s\(b)-\(i)"
                    return [.sessionOpened(session: s), .turnAccepted(session: s, id: "t", text: "x"), .turnCompleted(session: s, id: "t", reply: "y")]
                }
            }
        }
        // Dry run for the step count.
        let dry = SimulatedStateFileSystem()
        do {
            let r = try reactor()
            let j = try TurnJournal(io: SimulatedJournalIO(fs: dry, reactor: r), reactor: r, logger: logger, options: options)
            for batch in workload() { try appendAll(j, r, batch) }
        }
        XCTAssertGreaterThan(dry.steps, 12, "segment creation plus one write and one fdatasync per batch")
        var partialRuns = 0
        for k in 0...dry.steps {
            for powerLoss in [false, true] {
                let fs = SimulatedStateFileSystem()
                fs.crashAtStep = k
                var acked: [JournalRecord] = []
                let r = try reactor()
                if let j = try? TurnJournal(io: SimulatedJournalIO(fs: fs, reactor: r), reactor: r, logger: logger, options: options) {
                    batches: for batch in workload() {
                        let results = try appendAll(j, r, batch)
                        for (rec, res) in zip(batch, results) {
                            if case .success = res { acked.append(rec) } else { break batches }
                        }
                    }
                }
                if powerLoss { fs.powerLoss() } else { fs.processKilled() }
                if !acked.isEmpty && acked.count < 54 { partialRuns += 1 }
                fs.crashAtStep = nil
                let j2 = try TurnJournal(io: SimulatedJournalIO(fs: fs, reactor: r), reactor: r, logger: logger)
                for rec in acked {
                    switch rec {
                    case .sessionOpened(let s):
                        XCTAssertNotNil(j2.state.sessions[s], "step \(k) \(powerLoss): lost \(rec)")
                    case .turnCompleted(let s, let id, _):
                        XCTAssertFalse(j2.state.sessions[s]?.interruptedTurns.contains(id) ?? true, "step \(k) \(powerLoss): lost \(rec)")
                    default: break
                    }
                }
                XCTAssertEqual(j2.report.damaged, [], "a crash only ever tears the tail")
                XCTAssertFalse(j2.report.check.isDamaged, "step \(k) \(powerLoss): a crash is not data loss: \(j2.report.summary)")
            }
        }
        XCTAssertGreaterThan(partialRuns, 8, "crashes landed between acknowledged batches")
    }
}
