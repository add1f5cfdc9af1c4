import Glibc
import VigilReactor
import XCTest

final class DescriptorLeakTests: XCTestCase {
    func testReactorReleasesEverythingItOpened() throws {
        // By number, not by count: other tests' descriptors may close
        // meanwhile (their clients are released late); none may be new.
        let before = openDescriptors()
        for mode in [IOUringMode.automatic, .disabled] {
            var o = Reactor.Options()
            o.ioUring = mode
            let r = try Reactor(options: o)
            try r.onSignal(SIGUSR1) { _ in }
            r.schedule(after: .seconds(60)) {}
            let listener = try StreamSocket.listen(on: .ipv4(host: "127.0.0.1", port: 0))
            let lt = try r.register(listener, interest: .readable) { _ in }
            var exited = false
            let pid = try ChildSpawner.spawn(["/bin/true"])
            _ = try r.watchChild(pid: pid) { _ in exited = true }
            try runUntil(r) { exited }
            var wrote = false
            let path = "/tmp/vigil-leak-\(getpid())"
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            r.disk.submit([.write(fd: fd, bytes: [1, 2, 3], offset: 0)], linked: false) { _ in wrote = true }
            try runUntil(r) { wrote }
            close(fd); unlink(path)
            r.deregister(lt)
            StreamSocket.close(listener)
            r.close()
        }
        XCTAssertEqual(openDescriptors().subtracting(before), [], "descriptors leaked")
    }
}
