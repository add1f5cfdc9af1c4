import Foundation
import Glibc
import Logging
import VigilDurable
import VigilReactor
import XCTest

/// Missing or cut-short journal files (issue 9.3): the journal knows what
/// it must find (its manifest), so a deleted segment or snapshot, an emptied
/// segment or a truncation into acknowledged records is reported as lost
/// data — while a torn tail that was never acknowledged stays silent.
final class JournalDamageTests: XCTestCase {
    private var dir = ""
    private let logger = Logger(label: "journal-damage-test")

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "vigil-jdamage-\(getpid())-\(UUID().uuidString.prefix(6))"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func open(_ r: Reactor, segmentLimit: UInt64 = 64 << 20) throws -> TurnJournal {
        var o = TurnJournal.Options()
        o.segmentLimit = segmentLimit
        o.compactAfterSegments = 1000
        return try TurnJournal(io: DiskJournalIO(fs: try PosixStateFileSystem(path: dir), disk: r.disk), reactor: r, logger: logger, options: o)
    }

    private func append(_ j: TurnJournal, _ r: Reactor, _ records: [JournalRecord]) throws {
        var done = 0
        for rec in records { j.append(rec) { if case .failure(let e) = $0 { XCTFail("\(e)") }; done += 1 } }
        while done < records.count { try r.runOnce(timeoutMs: 50) }
    }

    private func close(_ j: TurnJournal, _ r: Reactor, compact: Bool) throws {
        var done = false
        r.spawn { await j.close(compact: compact); done = true }
        while !done { try r.runOnce(timeoutMs: 50) }
    }

    private func segments() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".seg") }.sorted()
    }

    /// Ten sessions, each with an accepted turn, in several segments; closed
    /// without compaction (as a cut-short stop leaves it).
    private func writeJournal(segmentLimit: UInt64 = 600) throws {
        let r = try Reactor()
        let j = try open(r, segmentLimit: segmentLimit)
        for i in 0..<10 {
            try append(j, r, [.sessionOpened(session: "s\(i)"), .turnAccepted(session: "s\(i)", id: "t\(i)", text: String(repeating: "x", count: 60))])
        }
        try close(j, r, compact: false)
    }

    private func reopen() throws -> JournalReplayReport {
        let r = try Reactor()
        let j = try open(r)
        let report = j.report
        try close(j, r, compact: false)
        return report
    }

    func testADeletedSegmentIsReportedMissingWithTheRecordsLost() throws {
        try writeJournal()
        let segs = try segments()
        XCTAssertGreaterThan(segs.count, 2, "the test needs several segments")
        for victim in [segs[0], segs[1]] {
            try FileManager.default.removeItem(atPath: dir + "/" + victim)
            let report = try reopen()
            XCTAssertEqual(report.missingFiles, [victim], report.summary)
            XCTAssertGreaterThan(report.recordsLost, 0, report.summary)
            XCTAssertTrue(report.check.isDamaged)
            XCTAssertTrue(report.summary.contains("FILES MISSING"), report.summary)
            // Reported once: the next start has a new baseline.
            XCTAssertFalse(try reopen().check.isDamaged)
        }
    }

    func testADeletedLastSegmentIsDetected() throws {
        try writeJournal()
        let last = try segments().last!
        try FileManager.default.removeItem(atPath: dir + "/" + last)
        let report = try reopen()
        XCTAssertEqual(report.missingFiles, [last], report.summary)
        XCTAssertGreaterThan(report.tailRecordsLost, 0, "the acknowledged records at the end are counted: \(report.summary)")
    }

    func testADeletedSnapshotIsReportedMissing() throws {
        try writeJournal()
        do {
            let r = try Reactor()
            let j = try open(r)
            try close(j, r, compact: true)  // everything into the snapshot
        }
        try FileManager.default.removeItem(atPath: dir + "/snapshot")
        let report = try reopen()
        XCTAssertEqual(report.missingFiles, ["snapshot"], report.summary)
        XCTAssertGreaterThanOrEqual(report.recordsLost, 20, report.summary)
    }

    func testAZeroLengthSegmentIsDamageNotACrashDuringCreation() throws {
        try writeJournal()
        let last = try segments().last!
        XCTAssertEqual(truncate(dir + "/" + last, 0), 0)
        let report = try reopen()
        XCTAssertEqual(report.emptiedSegments, [last], report.summary)
        XCTAssertGreaterThan(report.recordsLost, 0, report.summary)
        XCTAssertTrue(report.check.isDamaged)
    }

    func testATruncationInsideAnAcknowledgedFrameIsDamage() throws {
        try writeJournal(segmentLimit: 64 << 20)
        let seg = dir + "/" + (try segments().last!)
        let size = try FileManager.default.attributesOfItem(atPath: seg)[.size] as! Int
        XCTAssertEqual(truncate(seg, off_t(size - 7)), 0)
        let report = try reopen()
        XCTAssertEqual(report.tailRecordsLost, 1, report.summary)
        XCTAssertTrue(report.check.isDamaged)
    }

    func testATornTailThatWasNeverAcknowledgedStaysSilent() throws {
        try writeJournal(segmentLimit: 64 << 20)
        let seg = dir + "/" + (try segments().last!)
        // Half a frame after the last acknowledged record: a crash mid-write.
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: seg))
        h.seekToEndOfFile()
        h.write(Data([0x56, 0x4A, 0x52, 0x4C, 40, 0, 0, 0, 1, 2, 3] + [UInt8](repeating: 0xEE, count: 20)))
        try h.close()
        let report = try reopen()
        XCTAssertEqual(report.truncated.count, 1)
        XCTAssertFalse(report.check.isDamaged, report.summary)
        XCTAssertEqual(report.recordsLost, 0)
    }

    func testASegmentUnlinkedWhileRunningIsDetectedAfterACrash() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        do {
            let r = try Reactor()
            let j = try open(r)
            try append(j, r, [.sessionOpened(session: "a"), .turnAccepted(session: "a", id: "1", text: "x")])
            try FileManager.default.removeItem(atPath: dir + "/" + (try segments().last!))
            try append(j, r, [.turnAccepted(session: "a", id: "2", text: "y")])  // into the unlinked inode
            // SIGKILL: no close.
        }
        let report = try reopen()
        XCTAssertEqual(report.missingFiles.count, 1, report.summary)
        XCTAssertTrue(report.check.isDamaged)
    }

    func testAnUnreadableManifestIsReported() throws {
        try writeJournal()
        let path = dir + "/journal.manifest"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 2] ^= 0x04
        try bytes.write(to: URL(fileURLWithPath: path))
        let report = try reopen()
        XCTAssertNotNil(report.manifestProblem)
        XCTAssertTrue(report.check.isDamaged, report.summary)
    }
}
