import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// Read-only and full state directories, on small tmpfs mounts (root only).
final class BadStateDirectoryTests: XCTestCase {
    private var mountPoint = ""

    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to mount a tmpfs") }
        mountPoint = NSTemporaryDirectory() + "vigil-tmpfs-\(getpid())-\(name.filter(\.isLetter).suffix(20))"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
    }

    override func tearDown() {
        _ = try? mountCmd(["umount", mountPoint])
        try? FileManager.default.removeItem(atPath: mountPoint)
    }

    @discardableResult
    private func mountCmd(_ args: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    private func mountTmpfs(size: String) throws {
        guard try mountCmd(["mount", "-t", "tmpfs", "-o", "size=\(size),mode=0700", "tmpfs", mountPoint]) == 0 else {
            throw XCTSkip("mounting a tmpfs is not permitted here")
        }
    }

    /// Fills the file system until ENOSPC.
    private func fill() {
        let fd = open(mountPoint + "/filler", O_WRONLY | O_CREAT, 0o600)
        let chunk = [UInt8](repeating: 0xAB, count: 4096)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        close(fd)
    }

    func testReadOnlyStateDirectoryExits73WithAClearMessage() throws {
        try mountTmpfs(size: "1m")
        let state = mountPoint + "/state"
        let first = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", state])
        try first.waitUntilListening()
        first.signal(SIGTERM)
        XCTAssertEqual(try first.waitForExit(), 0)
        XCTAssertEqual(try mountCmd(["mount", "-o", "remount,ro", mountPoint]), 0)
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", state])
        XCTAssertEqual(try d.waitForExit(), 73)
        XCTAssertTrue(d.log.contains("state directory \(state) is unusable"), d.log)
        XCTAssertTrue(d.log.contains("Read-only file system"), d.log)
        // The clean record of the earlier run is untouched and still readable.
        XCTAssertEqual(try classification(state), "clean")
    }

    func testFullDiskAtStartExits73AndKeepsThePreviousRecord() throws {
        try mountTmpfs(size: "256k")
        let state = mountPoint + "/state"
        let first = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", state])
        try first.waitUntilListening()
        first.signal(SIGTERM)
        XCTAssertEqual(try first.waitForExit(), 0)
        fill()
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", state])
        XCTAssertEqual(try d.waitForExit(), 73)
        XCTAssertTrue(d.log.contains("cannot make the shutdown record durable"), d.log)
        XCTAssertTrue(d.log.contains("No space left on device"), d.log)
        XCTAssertEqual(try classification(state), "clean", "the previous record survives a failed start")
        unlink(mountPoint + "/filler")
        let again = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", state])
        try again.waitUntilListening()
        XCTAssertTrue(again.log.contains("previous run: clean"), again.log)
        again.signal(SIGTERM)
        XCTAssertEqual(try again.waitForExit(), 0, "space is back: recovered")
    }

    /// Disk full while serving: new turns get `unavailable`, the daemon keeps
    /// running, nothing acknowledged is lost, and it recovers when space returns.
    func testFullDiskWhileServingRefusesTurnsAndRecovers() throws {
        try mountTmpfs(size: "512k")
        let state = mountPoint + "/state"
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", state])
        try d.waitUntilListening()
        let c = try LineSocket(port: d.port)
        func ask(_ line: String) -> String { c.send(line + "\n"); return c.nextLine() ?? "<EOF>" }
        XCTAssertEqual(ask(#"{"op":"send","session":"a","id":"1","text":"x"}"#), #"{"op":"accepted","id":"1"}"#)
        XCTAssertTrue(c.nextLine()?.contains("\"reply\"") ?? false)
        XCTAssertEqual(ask(#"{"op":"send","session":"b","id":"2","text":"x","work_ms":600000}"#), #"{"op":"accepted","id":"2"}"#)
        fill()
        // 10 kB of text needs new blocks (a small record could still fit in
        // the segment's last, already allocated page).
        let big = String(repeating: "y", count: 10_000)
        let refused = ask(#"{"op":"send","session":"a","id":"3","text":"\#(big)"}"#)
        XCTAssertTrue(refused.hasPrefix(#"{"op":"error","code":"unavailable","id":"3""#), refused)
        XCTAssertTrue(refused.contains("disk is full"), refused)
        XCTAssertEqual(ask(#"{"op":"ping"}"#), #"{"op":"pong"}"#, "still serving")
        unlink(mountPoint + "/filler")
        XCTAssertEqual(ask(#"{"op":"send","session":"a","id":"4","text":"back"}"#), #"{"op":"accepted","id":"4"}"#, "space is back: recovered")
        XCTAssertTrue(c.nextLine()?.contains("\"back\"") ?? false)
        kill(d.pid, SIGKILL)
        _ = try d.waitForExit()
        let sessions = try runTool(vigilctlPath, ["sessions", "--state-dir", state, "--json"])
        let list = ((try JSONSerialization.jsonObject(with: Data(sessions.1.utf8))) as? [String: Any])?["sessions"] as? [[String: Any]] ?? []
        XCTAssertEqual(list.map { $0["session"] as? String }, ["a", "b"])
        XCTAssertEqual(list.first { $0["session"] as? String == "b" }?["interrupted"] as? [String], ["2"], "the acknowledged turn in flight is kept")
        XCTAssertEqual(list.first { $0["session"] as? String == "a" }?["interrupted"] as? [String], [], "the refused turn 3 was never accepted")
    }

    /// The shutdown record is rewritten in place into blocks it owns since
    /// its creation (docs/shutdown.md), so a disk that fills up while the
    /// daemon runs cannot refuse `stopping` or `stopped`: the stop completes
    /// and is recorded. (What does need space, the journal's compaction at
    /// close, fails and says so; its segments are kept.)
    func testFullDiskAtStopStillRecordsTheStop() throws {
        try mountTmpfs(size: "256k")
        let state = mountPoint + "/state"
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", state])
        try d.waitUntilListening()
        fill()
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0, "both records were made durable")
        XCTAssertFalse(d.log.contains("NOT durable"), d.log)
        XCTAssertTrue(d.log.contains("No space left on device"), "the disk really was full: \(d.log)")
        XCTAssertEqual(try classification(state), "clean")
    }

    func testStateDirectoryWithoutPermissionExits73() throws {
        // Root bypasses permission checks, so run vigild as nobody against a
        // root-owned 0700 directory.
        let setpriv = "/usr/bin/setpriv"
        guard FileManager.default.isExecutableFile(atPath: setpriv) else { throw XCTSkip("setpriv (util-linux) not installed") }
        let state = mountPoint + "/state"
        XCTAssertEqual(mkdir(state, 0o700), 0)
        chmod(mountPoint, 0o755)
        let d = try VigildProcess(arguments: ["--reuid=65534", "--regid=65534", "--clear-groups", VigildProcess.binary,
                                              "--listen", "127.0.0.1:0", "--state-dir", state], executable: setpriv)
        let status = try d.waitForExit()
        if d.log.contains("Permission denied") && d.log.contains("vigild") == false {
            throw XCTSkip("the test binary is not reachable for user nobody here: \(d.log)")
        }
        XCTAssertEqual(status, 73, d.log)
        XCTAssertTrue(d.log.contains("state directory \(state) is unusable"), d.log)
        XCTAssertTrue(d.log.contains("Permission denied"), d.log)
    }
}
