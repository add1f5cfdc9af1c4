import Glibc
import VigilReactor
import XCTest

/// The syscall funnel (VigilSystem): errno is read before anything else can
/// change it, EINTR is retried, writes are finished.
final class SystemCallTests: XCTestCase {
    func testErrnoIsReadBeforeTheErrorTextIsBuilt() {
        // Building the name runs code that sets errno (as malloc may): the
        // old pattern, SystemCallError("call(\(name))", errno), reported
        // that errno instead of the failed call's.
        func clobbering() -> String {
            _ = open("/nonexistent-vigil-test/x", O_RDONLY)  // ENOENT
            return "fd -1"
        }
        do {
            _ = try SystemCall.run("close(\(clobbering()))", retryInterrupted: false) { close(-1) }
            XCTFail("close(-1) must fail")
        } catch {
            XCTAssertEqual(error.errno, .badFileDescriptor, "the failed call's errno, not the one the text building left")
            XCTAssertEqual(error.call, "close(fd -1)")
        }
        XCTAssertEqual(close(-1), -1)
        let e = SystemCall.lastError("after \(clobbering())")
        XCTAssertEqual(e.errno, .badFileDescriptor)
    }

    func testWriteAllFinishesAndReportsTheCall() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        let bytes = [UInt8](repeating: 7, count: 32 * 1024)
        try SystemCall.writeAll(fds[1], bytes, name: "write(pipe)")
        close(fds[1])
        XCTAssertEqual(try SystemCall.readToEnd(fds[0], name: "read(pipe)"), bytes)
        do {
            try SystemCall.writeAll(fds[1], bytes, name: "write(closed)")
            XCTFail("a closed descriptor must fail")
        } catch {
            XCTAssertEqual(error.call, "write(closed)")
            XCTAssertEqual(error.errno, .badFileDescriptor)
        }
    }
}
