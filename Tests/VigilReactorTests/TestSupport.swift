import CVigil
import Glibc
import VigilReactor
import XCTest

/// Open descriptors of this process (for leak checks).
/// The descriptor numbers open in this process.
func openDescriptors() -> Set<Int> {
    guard let dir = opendir("/proc/self/fd") else { return [] }
    defer { closedir(dir) }
    var fds = Set<Int>()
    let own = dirfd(dir)
    while let e = readdir(dir) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if let n = Int(name), n != Int(own) { fds.insert(n) }
    }
    return fds
}

func openDescriptorCount() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while let e = readdir(dir) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if name != "." && name != ".." { n += 1 }
    }
    return n - 1  // the opendir descriptor itself
}

func makePipe() -> (read: Int32, write: Int32) {
    var fds: [Int32] = [0, 0]
    precondition(pipe(&fds) == 0)
    for fd in fds { _ = fcntl(fd, F_SETFL, O_NONBLOCK); _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return (fds[0], fds[1])
}

func writeByte(_ fd: Int32) {
    var b: UInt8 = 1
    _ = Glibc.write(fd, &b, 1)
}

/// Sends `signal` to the calling thread only: the test harness has other
/// threads that do not block it, so a process-directed kill() could be
/// delivered there; a thread-directed one stays pending here for the signalfd.
func raiseOnThisThread(_ signal: Int32) {
    _ = cvigil_tgkill(getpid(), cvigil_gettid(), signal)
}

/// Runs iterations until `condition` holds or the deadline passes.
func runUntil(_ reactor: Reactor, timeout: Double = 5, _ condition: () -> Bool) throws {
    let deadline = monotonicNanoseconds() + UInt64(timeout * 1e9)
    while !condition() {
        if monotonicNanoseconds() > deadline { XCTFail("timed out"); return }
        try reactor.runOnce(timeoutMs: 50)
    }
}
