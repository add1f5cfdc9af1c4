// Small throwing wrappers around the syscalls the reactor uses, in the manner
// of NIOPosix/Linux.swift: each one turns -1/errno into a typed error that
// names the call, and retries EINTR where retrying is always right.
import CVigil
import Glibc
import SystemPackage
import VigilSystem

/// errno now (the funnel's; kept short for the reactor's call sites).
@inline(__always)
func currentErrno() -> Errno { SystemCall.errno }

/// Runs `body` until it does not fail with EINTR; -1 becomes `SystemCallError`
/// (errno read before the name is built).
@inline(__always)
func syscallRetrying<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws(SystemCallError) -> T {
    try SystemCall.run(name(), body)
}

/// Outcome of a non-blocking read or write.
public enum IOResult: Equatable {
    case processed(Int)
    case wouldBlock
}

enum Syscall {
    static func epollCreate() throws(SystemCallError) -> Int32 {
        try syscallRetrying("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    static func epollCtl(_ epfd: Int32, _ op: Int32, _ fd: Int32, events: UInt32, data: UInt64) throws(SystemCallError) {
        var ev = epoll_event()
        ev.events = events
        ev.data.u64 = data
        _ = try syscallRetrying("epoll_ctl") { epoll_ctl(epfd, op, fd, &ev) }
    }

    /// Blocks in epoll_pwait; EINTR reports zero events (the caller loops).
    static func epollWait(_ epfd: Int32, _ events: UnsafeMutablePointer<epoll_event>, _ max: Int32, timeoutMs: Int32) throws(SystemCallError) -> Int {
        let n = epoll_pwait(epfd, events, max, timeoutMs, nil)
        if n >= 0 { return Int(n) }
        let e = currentErrno()
        if e == .interrupted { return 0 }
        throw SystemCallError("epoll_pwait", e)
    }

    static func close(_ fd: Int32) {
        // Never retry close on Linux: the descriptor is gone even on EINTR.
        _ = Glibc.close(fd)
    }

    /// read(2) on a non-blocking descriptor.
    @inline(__always)
    static func read(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int) throws(SystemCallError) -> IOResult {
        while true {
            let n = Glibc.read(fd, buf, count)
            if n >= 0 { return .processed(n) }
            let e = currentErrno()
            if e == .interrupted { continue }
            if e == .wouldBlock { return .wouldBlock }
            throw SystemCallError("read", e)
        }
    }

    /// write(2) on a non-blocking descriptor.
    @inline(__always)
    static func write(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int) throws(SystemCallError) -> IOResult {
        while true {
            let n = Glibc.write(fd, buf, count)
            if n >= 0 { return .processed(n) }
            let e = currentErrno()
            if e == .interrupted { continue }
            if e == .wouldBlock { return .wouldBlock }
            throw SystemCallError("write", e)
        }
    }

    static func eventfd(nonblocking: Bool = true) throws(SystemCallError) -> Int32 {
        var flags = Int32(EFD_CLOEXEC)
        if nonblocking { flags |= Int32(EFD_NONBLOCK) }
        return try syscallRetrying("eventfd") { CVigil.eventfd(0, flags) }
    }

    static func timerfdCreate() throws(SystemCallError) -> Int32 {
        try syscallRetrying("timerfd_create") {
            timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        }
    }

    /// Arms `fd` to fire at absolute CLOCK_MONOTONIC `deadlineNs`; 0 disarms.
    static func timerfdArm(_ fd: Int32, deadlineNs: UInt64) throws(SystemCallError) {
        var spec = itimerspec()
        spec.it_value.tv_sec = Int(deadlineNs / 1_000_000_000)
        spec.it_value.tv_nsec = Int(deadlineNs % 1_000_000_000)
        _ = try syscallRetrying("timerfd_settime") {
            timerfd_settime(fd, Int32(TFD_TIMER_ABSTIME), &spec, nil)
        }
    }

    /// Drains an eventfd/timerfd counter; returns false when nothing was pending.
    @discardableResult
    static func drainCounter(_ fd: Int32) -> Bool {
        var value: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &value) { Glibc.read(fd, $0.baseAddress, 8) }
        return n == 8
    }
}
