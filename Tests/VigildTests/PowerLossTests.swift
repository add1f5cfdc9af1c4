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

    private func powerLossScenario(skipDirectorySync: Bool) throws -> String {
        guard getuid() == 0 else { throw XCTSkip("power-loss test needs root to mount a loop device") }
        let work = NSTemporaryDirectory() + "vigil-powerloss-\(getpid())-\(skipDirectorySync ? "control" : "real")"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let image = work + "/disk.img", copy = work + "/after-power-loss.img"
        let live = work + "/live", replayed = work + "/replayed"
        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: replayed, withIntermediateDirectories: true)
        guard try sh(["truncate", "-s", "64M", image]).0 == 0 else { throw XCTSkip("cannot create a disk image") }
        let mkfs = try sh(["mkfs.ext4", "-q", "-F", image])
        guard mkfs.0 == 0 else { throw XCTSkip("mkfs.ext4 unavailable: \(mkfs.1)") }
        let mount = try sh(["mount", "-o", "loop,commit=600", image, live])
        guard mount.0 == 0 else { throw XCTSkip("loop devices are not permitted here: \(mount.1)") }
        var liveMounted = true
        defer { if liveMounted { _ = try? sh(["umount", live]) } }

        var env = ["VIGIL_DEBUG_DRAIN_MS": "60000"]
        if skipDirectorySync { env["VIGIL_DEBUG_SKIP_DIR_FSYNC"] = "1" }
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", live + "/state"], environment: env)
        try d.waitUntilListening()
        d.signal(SIGTERM)
        XCTAssertTrue(waitForLog(d, "stopping record durable"), d.log)
        d.signal(SIGKILL)
        _ = try d.waitForExit()

        // The power goes now: the disk is what the loop device wrote.
        XCTAssertEqual(try sh(["cp", "--sparse=always", image, copy]).0, 0)
        _ = try sh(["umount", live])
        liveMounted = false
        let m2 = try sh(["mount", "-o", "loop", copy, replayed])
        XCTAssertEqual(m2.0, 0, m2.1)
        defer { _ = try? sh(["umount", replayed]) }
        return try classification(replayed + "/state")
    }
}
