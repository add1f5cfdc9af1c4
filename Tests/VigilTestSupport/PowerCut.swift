// Power loss on a real file system: an ext4 image on a loop device mounted
// with commit=600, so only fsync/fdatasync commits anything. The power cut
// is a copy of the image taken while the processes under test still run
// (page-cache contents never written back are not in it); the copy is then
// mounted (ext4 journal replay, as after a reboot). Needs root and loop
// devices; skips otherwise.
import Foundation
import Glibc
import XCTest

public enum PowerCut {
    /// Mounts a fresh image and hands its directory to `live`; cuts the
    /// power when `live` returns; mounts what the disk held and hands that
    /// directory to `after`.
    public static func onLoopImage<T>(_ name: String, live: (String) throws -> Void, after: (String) throws -> T) throws -> T {
        guard getuid() == 0 else { throw XCTSkip("power-loss test needs root to mount a loop device") }
        let work = NSTemporaryDirectory() + "vigil-powerloss-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let image = work + "/disk.img", copy = work + "/after-power-loss.img"
        let liveDir = work + "/live", replayed = work + "/replayed"
        try FileManager.default.createDirectory(atPath: liveDir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: replayed, withIntermediateDirectories: true)
        guard try Shell.run(["truncate", "-s", "64M", image]).status == 0 else { throw XCTSkip("cannot create a disk image") }
        let mkfs = try Shell.run(["mkfs.ext4", "-q", "-F", image])
        guard mkfs.status == 0 else { throw XCTSkip("mkfs.ext4 unavailable: \(mkfs.output)") }
        let mount = try Shell.run(["mount", "-o", "loop,commit=600", image, liveDir])
        guard mount.status == 0 else { throw XCTSkip("loop devices are not permitted here: \(mount.output)") }
        var liveMounted = true
        defer { if liveMounted { _ = try? Shell.run(["umount", liveDir]) } }
        try live(liveDir)
        // The power goes now: the disk is what the loop device wrote.
        XCTAssertEqual(try Shell.run(["cp", "--sparse=always", image, copy]).status, 0)
        _ = try Shell.run(["umount", liveDir])
        liveMounted = false
        let m2 = try Shell.run(["mount", "-o", "loop", copy, replayed])
        XCTAssertEqual(m2.status, 0, m2.output)
        defer { _ = try? Shell.run(["umount", replayed]) }
        return try after(replayed)
    }
}
