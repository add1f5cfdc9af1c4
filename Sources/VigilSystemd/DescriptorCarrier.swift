// Many descriptors in two places of the fd store: a datagram socketpair
// whose receive queue holds them (SCM_RIGHTS), both ends stored. Why: systemd
// 252 compares every descriptor it is given with every one it already
// stores (kcmp), so storing N connections one by one costs the manager —
// single-threaded, PID 1 on a real host — O(N²): ~0.5 s for 1,000, ~a
// minute for 10,000 (docs/benchmarks.md, "Handover"). Both ends are stored
// because systemd drops a stored socket whose peer hung up. Descriptors in
// flight count against the sender's RLIMIT_NOFILE (the kernel's
// too_many_unix_fds), which the connections already needed.
import CVigil
import Glibc

public enum DescriptorCarrier {
    /// A socketpair holding `fds` (the caller keeps its own copies): store
    /// both ends, then close them.
    public static func pack(_ fds: [Int32]) throws(FileDescriptorStoreError) -> (Int32, Int32) {
        var pair: [Int32] = [-1, -1]
        // Non-blocking: a carrier whose buffer is full fails the handover
        // (the clients get goodbye) instead of hanging the stop.
        guard socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0 else {
            throw FileDescriptorStoreError("socketpair: \(String(cString: strerror(errno)))")
        }
        // Room for every datagram: each is small, but the default buffer
        // counts per-message overhead (best effort; the send says if not).
        var size: Int32 = 64 << 20
        _ = setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(pair[1], SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var i = 0
        while i < fds.count {
            let n = min(253, fds.count - i)
            let r = fds.withUnsafeBufferPointer { cvigil_send_fds(pair[0], $0.baseAddress! + i, UInt32(n)) }
            guard r == 0 else {
                close(pair[0])
                close(pair[1])
                throw FileDescriptorStoreError("packing descriptors \(i)..<\(i + n) of \(fds.count): \(String(cString: strerror(-r)))")
            }
            i += n
        }
        return (pair[0], pair[1])
    }

    /// Every descriptor waiting in `fd`'s receive queue (none when it is
    /// not a datagram Unix socket). At most `limit`; the rest are closed.
    public static func unpack(_ fd: Int32, limit: Int = 1 << 20) -> Result<[Int32], FileDescriptorStoreError> {
        var domain: Int32 = 0, type: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0, domain == AF_UNIX else {
            return .failure(FileDescriptorStoreError("not a Unix socket"))
        }
        len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0, type == Int32(SOCK_DGRAM.rawValue) else {
            return .failure(FileDescriptorStoreError("not a datagram socket"))
        }
        var out: [Int32] = []
        var buffer = [Int32](repeating: -1, count: 253)
        while true {
            let r = buffer.withUnsafeMutableBufferPointer { cvigil_recv_fds(fd, $0.baseAddress, 253) }
            if r == -EAGAIN { break }
            guard r >= 0 else { return .failure(FileDescriptorStoreError("receiving: \(String(cString: strerror(-r)))")) }
            for k in 0..<Int(r) {
                if out.count < limit { out.append(buffer[k]) } else { close(buffer[k]) }
            }
        }
        return .success(out)
    }
}
