import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// Missing or truncated journal files on the real binary (issue 9.3): the
/// start says so at error level, `vigilctl last-shutdown --json` has a
/// `journal` object, and every `opened` of that run says `journal_damaged`.
final class JournalDamageEndToEndTests: XCTestCase {
    private func json(_ line: String?) -> [String: Any] {
        (line.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) }) as? [String: Any] ?? [:]
    }

    /// A state directory whose journal has acknowledged sessions in its
    /// segment (a cut-short stop keeps the segments).
    private func stoppedWithSegments() throws -> String {
        let dir = NSTemporaryDirectory() + "vigil-jdmg-e2e-\(getpid())-\(UUID().uuidString.prefix(6))"
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir, "--stop-timeout", "1"], stateDir: dir)
        try d.waitUntilListening()
        let c = try LineSocket(port: d.port)
        for s in ["a", "b", "c"] {
            c.send(#"{"op":"open","session":"\#(s)"}"# + "\n")
            XCTAssertEqual(json(c.nextLine())["status"] as? String, "new")
        }
        c.send(#"{"op":"send","session":"c","id":"long","text":"x","work_ms":30000}"# + "\n")
        XCTAssertEqual(json(c.nextLine())["op"] as? String, "accepted")
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
        return dir
    }

    private func journalObject(_ dir: String) throws -> [String: Any] {
        try lastShutdown(dir)["journal"] as? [String: Any] ?? [:]
    }

    func testADeletedSegmentIsReportedAndEveryOpenedSaysJournalDamaged() throws {
        let dir = try stoppedWithSegments()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertEqual(try journalObject(dir)["damaged"] as? Bool, false, "intact before the deletion")
        let segs = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".seg") }
        XCTAssertEqual(segs.count, 1)
        try FileManager.default.removeItem(atPath: dir + "/" + segs[0])

        // Offline: what the next start will find.
        let offline = try journalObject(dir)
        XCTAssertEqual(offline["damaged"] as? Bool, true, "\(offline)")
        XCTAssertEqual(offline["missing"] as? [String], segs)
        XCTAssertGreaterThanOrEqual(offline["records_lost"] as? Int ?? 0, 5, "3 opens, 1 accept, 1 run start at least: \(offline)")
        let status = try runTool(vigilctlPath, ["status", "--state-dir", dir, "--json"])
        XCTAssertTrue(status.1.contains("\"journal_damaged\":true"), status.1)

        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir], stateDir: dir)
        try d.waitUntilListening()
        XCTAssertTrue(d.log.contains("error vigild") && d.log.contains("the turn journal lost acknowledged data"), d.log)
        XCTAssertTrue(d.log.contains("FILES MISSING: \(segs[0])"), d.log)
        let c = try LineSocket(port: d.port)
        c.send(#"{"op":"open","session":"a"}"# + "\n")
        let opened = json(c.nextLine())
        XCTAssertEqual(opened["status"] as? String, "new", "its record is gone")
        XCTAssertEqual(opened["journal_damaged"] as? Bool, true, "the client learns its session may have been lost: \(opened)")
        // While it runs: what it found at its start.
        let online = try runTool(vigilctlPath, ["status", "--state-dir", dir, "--json"])
        XCTAssertTrue(online.1.contains("\"journal_damaged\":true"), online.1)
        let running = try journalObject(dir)
        XCTAssertEqual(running["damaged"] as? Bool, true, "\(running)")
        XCTAssertEqual(running["missing"] as? [String], segs)
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)

        // Reported by the start that found it; the next one starts clean.
        let next = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir], stateDir: dir)
        try next.waitUntilListening()
        let c2 = try LineSocket(port: next.port)
        c2.send(#"{"op":"open","session":"a"}"# + "\n")
        XCTAssertNil(json(c2.nextLine())["journal_damaged"])
        next.signal(SIGTERM)
        XCTAssertEqual(try next.waitForExit(), 0)
        // The run history keeps it: the run before the damage was found,
        // with what its successor's start found missing.
        let history = try runTool(vigilctlPath, ["history", "--state-dir", dir, "--json"]).1
        let runs = (try JSONSerialization.jsonObject(with: Data(history.utf8)) as? [String: Any])?["runs"] as? [[String: Any]] ?? []
        let damaged = runs.filter { $0["journal_records_lost"] != nil }
        XCTAssertEqual(damaged.count, 1, history)
        XCTAssertEqual(damaged.first?["journal_missing"] as? String, segs[0])
        XCTAssertGreaterThanOrEqual(damaged.first?["journal_records_lost"] as? Int ?? 0, 5)
        let text = try runTool(vigilctlPath, ["history", "--state-dir", dir]).1
        XCTAssertTrue(text.contains("JOURNAL DAMAGED at the next start"), text)
    }

    func testATruncationIntoAnAcknowledgedRecordIsReported() throws {
        let dir = try stoppedWithSegments()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let seg = dir + "/" + (try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasSuffix(".seg") }!)
        let size = try FileManager.default.attributesOfItem(atPath: seg)[.size] as! Int
        XCTAssertEqual(truncate(seg, off_t(size - 3)), 0)
        let offline = try journalObject(dir)
        XCTAssertEqual(offline["damaged"] as? Bool, true, "\(offline)")
        XCTAssertEqual(offline["records_lost"] as? Int, 1)
        // The turn accepted last ("long" of c) is the record cut: c is no
        // longer reported interrupted, and the journal object says why.
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", dir], stateDir: dir)
        try d.waitUntilListening()
        XCTAssertTrue(d.log.contains("1 acknowledged record(s) cut off the end"), d.log)
        let c = try LineSocket(port: d.port)
        c.send(#"{"op":"open","session":"b"}"# + "\n")
        XCTAssertEqual(json(c.nextLine())["journal_damaged"] as? Bool, true)
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
    }
}
