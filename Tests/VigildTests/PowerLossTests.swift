import Foundation
import Glibc
import XCTest

/// Power loss on a real filesystem: an ext4 image on a loop device mounted
/// with commit=600, so only fsync commits anything. vigild is stopped with
/// SIGTERM and SIGKILLed once its stopping record is durable; the image is
/// copied at that moment (what the disk holds: page-cache contents that were
/// never written back are not in it), the copy is mounted (ext4 journal
/// replay, as after a reboot) and the next start's classification is read.
final class PowerLossTests: XCTestCase {
    func testStoppingRecordSurvivesPowerLoss() throws {
        XCTAssertEqual(try powerLossScenario(skipDirectorySync: false), "killed-during-drain")
    }

    /// The negative control: without the directory fsync the rename of the
    /// stopping record is still only in memory when the power goes, so the
    /// test above would fail. If this one ever sees killed-during-drain, the
    /// power-loss simulation has stopped simulating anything.
    func testNegativeControlWithoutDirectoryFsyncLosesTheRecord() throws {
        let found = try powerLossScenario(skipDirectorySync: true)
        XCTAssertNotEqual(found, "killed-during-drain", "skipping the directory fsync must lose the stopping record")
        XCTAssertEqual(found, "crash", "the running record (committed by the tmp file's fsync) is what remains")
    }

    private func sh(_ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self))
    }

    /// An ext4 image on a loop device (commit=600) mounted for `live`, then
    /// the power cut: the image is copied as it is, the copy mounted (ext4
    /// journal replay, as after a reboot) and handed to `after`.
    private func onLoopImage<T>(_ name: String, live: (String) throws -> Void, after: (String) throws -> T) throws -> T {
        guard getuid() == 0 else { throw XCTSkip("power-loss test needs root to mount a loop device") }
        let work = NSTemporaryDirectory() + "vigil-powerloss-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let image = work + "/disk.img", copy = work + "/after-power-loss.img"
        let liveDir = work + "/live", replayed = work + "/replayed"
        try FileManager.default.createDirectory(atPath: liveDir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: replayed, withIntermediateDirectories: true)
        guard try sh(["truncate", "-s", "64M", image]).0 == 0 else { throw XCTSkip("cannot create a disk image") }
        let mkfs = try sh(["mkfs.ext4", "-q", "-F", image])
        guard mkfs.0 == 0 else { throw XCTSkip("mkfs.ext4 unavailable: \(mkfs.1)") }
        let mount = try sh(["mount", "-o", "loop,commit=600", image, liveDir])
        guard mount.0 == 0 else { throw XCTSkip("loop devices are not permitted here: \(mount.1)") }
        var liveMounted = true
        defer { if liveMounted { _ = try? sh(["umount", liveDir]) } }
        try live(liveDir)
        // The power goes now: the disk is what the loop device wrote.
        XCTAssertEqual(try sh(["cp", "--sparse=always", image, copy]).0, 0)
        _ = try sh(["umount", liveDir])
        liveMounted = false
        let m2 = try sh(["mount", "-o", "loop", copy, replayed])
        XCTAssertEqual(m2.0, 0, m2.1)
        defer { _ = try? sh(["umount", replayed]) }
        return try after(replayed)
    }

    private func powerLossScenario(skipDirectorySync: Bool) throws -> String {
        try onLoopImage(skipDirectorySync ? "control" : "real", live: { live in
            var env = ["VIGIL_DEBUG_DRAIN_MS": "60000"]
            if skipDirectorySync { env["VIGIL_DEBUG_SKIP_DIR_FSYNC"] = "1" }
            let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", live + "/state"], environment: env)
            try d.waitUntilListening()
            d.signal(SIGTERM)
            XCTAssertTrue(waitForLog(d, "stopping record durable"), d.log)
            d.signal(SIGKILL)
            _ = try d.waitForExit()
        }, after: { replayed in
            try classification(replayed + "/state")
        })
    }

    /// Every turn the client saw `accepted` (and every session it saw
    /// `opened`) is on the disk after the power cut; turns it saw replied
    /// are complete, the others interrupted. The power goes while the daemon
    /// still runs, mid-stream, with no stop signal at all.
    func testAcknowledgedTurnsSurvivePowerLoss() throws {
        let (sessions, opened, accepted, replied) = try turnsAcrossPowerLoss(skipJournalSync: false)
        XCTAssertEqual(opened.count, 8)
        XCTAssertEqual(accepted.count, 40)
        XCTAssertEqual(replied.count, 20)
        XCTAssertEqual(Set(sessions.map { $0["session"] as? String ?? "?" }), Set(opened), "every opened session is on the disk")
        let interrupted = Set(sessions.flatMap { $0["interrupted"] as? [String] ?? [] })
        XCTAssertEqual(interrupted, Set(accepted.keys).subtracting(replied), "exactly the acknowledged turns without a reply are interrupted")
    }

    /// The negative control: acknowledging without the fdatasync must lose
    /// acknowledged turns in this test, or it proves nothing.
    func testNegativeControlWithoutJournalSyncLosesTurns() throws {
        let (sessions, _, accepted, _) = try turnsAcrossPowerLoss(skipJournalSync: true)
        XCTAssertEqual(accepted.count, 40)
        let known = Set(sessions.flatMap { ($0["interrupted"] as? [String] ?? []) })
        XCTAssertLessThan(known.count, 20, "without fdatasync the acknowledged turns must not all survive the power cut")
    }

    private func turnsAcrossPowerLoss(skipJournalSync: Bool) throws -> ([[String: Any]], [String], [String: String], Set<String>) {
        var accepted: [String: String] = [:], replied = Set<String>(), opened: [String] = []
        let sessions = try onLoopImage(skipJournalSync ? "turns-control" : "turns", live: { live in
            let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", live + "/state"],
                                      environment: skipJournalSync ? ["VIGIL_DEBUG_SKIP_JOURNAL_SYNC": "1"] : [:])
            try d.waitUntilListening()
            let c = try LineClient(port: d.port)
            for i in 0..<40 {
                let s = "p\(i % 8)"
                if i < 8 {
                    c.send(#"{"op":"open","session":"\#(s)"}"# + "\n")
                }
                c.send(#"{"op":"send","session":"\#(s)","id":"t\#(i)","text":"x","work_ms":\#(i % 2 == 0 ? 0 : 60000)}"# + "\n")
            }
            // Read until every request is answered (the even turns also reply).
            var answers = 0
            while answers < 48 + 20, let line = c.nextLine() {
                let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
                switch o["op"] as? String {
                case "opened": opened.append(o["session"] as? String ?? "?"); answers += 1
                case "accepted": accepted[o["id"] as? String ?? "?"] = "p\((Int((o["id"] as? String ?? "t0").dropFirst()) ?? 0) % 8)"; answers += 1
                case "reply": replied.insert(o["id"] as? String ?? "?"); answers += 1
                default: XCTFail("unexpected \(line)"); answers += 1
                }
            }
            kill(d.pid, SIGKILL)  // (the copy below is the power cut; this only frees the mount)
            _ = try d.waitForExit()
        }, after: { replayed in
            let (status, out) = try runTool(vigilctlPath, ["sessions", "--state-dir", replayed + "/state", "--json"])
            XCTAssertEqual(status, 0, out)
            let o = (try JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any] ?? [:]
            return o["sessions"] as? [[String: Any]] ?? []
        })
        return (sessions, opened, accepted, replied)
    }
}
