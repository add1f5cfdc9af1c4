import Glibc
import SystemPackage
import VigilReactor
import XCTest

final class DiskIOTests: XCTestCase {
    func testIOUringBackend() throws { try exercise(.automatic, expect: .ioUring) }
    func testSyscallFallbackBackend() throws { try exercise(.disabled, expect: .syscalls) }

    /// A stop signal's handler (the shutdown record, plain syscalls) runs
    /// before the disk work queued in the same iteration reaches the disk:
    /// the record never waits behind the journal's pwrite + fdatasync.
    func testAPendingSignalIsHandledBeforeQueuedDiskWork() throws {
        let r = try makeReactor(.disabled)
        let path = "/tmp/vigil-diskio-order-\(getpid())"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd); unlink(path) }
        var sizeSeenByHandler: Int?
        try r.onSignal(SIGUSR2) { _ in
            var st = stat()
            fstat(fd, &st)
            sizeSeenByHandler = Int(st.st_size)
        }
        var done = false
        r.disk.submit([.write(fd: fd, bytes: [UInt8](repeating: 7, count: 4096), offset: 0), .fsync(fd: fd, dataOnly: true)], linked: true) { _ in done = true }
        raiseOnThisThread(SIGUSR2)
        try runUntil(r) { done && sizeSeenByHandler != nil }
        XCTAssertEqual(sizeSeenByHandler, 0, "the handler ran before the queued write")
    }

    private func makeReactor(_ mode: IOUringMode) throws -> Reactor {
        var o = Reactor.Options()
        o.ioUring = mode
        return try Reactor(options: o)
    }

    private func exercise(_ mode: IOUringMode, expect kind: DiskIOBackendKind) throws {
        let r = try makeReactor(mode)
        if mode == .automatic && r.disk.kind != .ioUring {
            throw XCTSkip("io_uring is not available here: \(r.disk.fallbackReason ?? "?")")
        }
        XCTAssertEqual(r.disk.kind, kind)
        let path = "/tmp/vigil-diskio-\(getpid())-\(kind.rawValue)"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd); unlink(path) }

        // A linked write + fdatasync chain, then a read back.
        var results: [DiskCompletion]?
        let payload = Array("hello, durable world\n".utf8)
        r.disk.submit([.write(fd: fd, bytes: payload, offset: 0), .fsync(fd: fd, dataOnly: true)], linked: true) { results = $0 }
        XCTAssertEqual(r.disk.inFlight, 2)
        XCTAssertNil(results, "completion is never synchronous")
        try runUntil(r) { results != nil }
        XCTAssertEqual(try results?[0].get(), payload.count)
        XCTAssertEqual(try results?[1].get(), 0)
        XCTAssertEqual(r.disk.inFlight, 0)

        var read: [DiskCompletion]?
        r.spawn { read = await r.perform([.read(fd: fd, count: 64, offset: 7)]) }
        try runUntil(r) { read != nil }
        XCTAssertEqual(read?[0].bytes, Array("durable world\n".utf8))

        // A failing head breaks the chain: the rest is cancelled, errors typed.
        var failed: [DiskCompletion]?
        r.disk.submit([.write(fd: 9999, bytes: payload, offset: 0), .fsync(fd: fd, dataOnly: true)], linked: true) { failed = $0 }
        try runUntil(r) { failed != nil }
        XCTAssertThrowsError(try failed?[0].get()) { XCTAssertEqual(($0 as? SystemCallError)?.errno, .badFileDescriptor) }
        XCTAssertThrowsError(try failed?[1].get()) { XCTAssertEqual(($0 as? SystemCallError)?.errno, .canceled) }

        // Many operations submitted in one iteration go out together.
        var done = 0
        for i in 0..<100 {
            r.disk.submit([.write(fd: fd, bytes: [UInt8(i)], offset: UInt64(100 + i))], linked: false) { _ in done += 1 }
        }
        try runUntil(r) { done == 100 }
        r.close()
    }
}
