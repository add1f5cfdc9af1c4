// The one funnel every Vigil module uses for a system call that can fail,
// in the manner of NIOPosix's syscall wrappers: errno is read first, before
// anything else runs (building the error's text allocates, and malloc may
// change errno), EINTR is retried where retrying is right, and a write is
// finished here rather than in a loop of its own at every call site.
import Glibc
import SystemPackage

/// A failed system call: which one (with the path or name it was about),
/// and the errno it set.
public struct SystemCallError: Error, Equatable, CustomStringConvertible {
    public let call: String
    public let errno: Errno

    public init(_ call: String, _ errno: Errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(errno) (errno \(errno.rawValue))" }
}

public enum SystemCall {
    /// The calling thread's errno, now.
    @inline(__always)
    public static var errno: Errno { Errno(rawValue: Glibc.errno) }

    /// The error of the call that just failed: errno is read before `name`
    /// is evaluated.
    @inline(__always)
    public static func lastError(_ name: @autoclosure () -> String) -> SystemCallError {
        let e = errno
        return SystemCallError(name(), e)
    }

    /// Runs `body` until it does not fail with EINTR (unless
    /// `retryInterrupted` is false); -1 becomes a ``SystemCallError``.
    @inline(__always)
    public static func run<T: FixedWidthInteger>(_ name: @autoclosure () -> String, retryInterrupted: Bool = true,
                                                 _ body: () -> T) throws(SystemCallError) -> T {
        while true {
            let r = body()
            if r != -1 { return r }
            let e = errno
            if e == .interrupted && retryInterrupted { continue }
            throw SystemCallError(name(), e)
        }
    }

    /// Writes every byte of `bytes` (pwrite at `offset` when given, else
    /// write at the file position), retrying EINTR and short writes. For
    /// blocking descriptors; a non-blocking one reports EAGAIN as an error.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64? = nil,
                                name: @autoclosure () -> String) throws(SystemCallError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n: Int
            if let offset {
                n = pwrite(fd, base + done, bytes.count - done, off_t(offset) + off_t(done))
            } else {
                n = Glibc.write(fd, base + done, bytes.count - done)
            }
            if n >= 0 { done += n; continue }
            let e = errno
            if e == .interrupted { continue }
            throw SystemCallError(name(), e)
        }
    }

    /// ``writeAll(_:_:at:name:)`` for an array.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: UInt64? = nil,
                                name: @autoclosure () -> String) throws(SystemCallError) {
        var failure: SystemCallError?
        bytes.withUnsafeBytes { b in
            do throws(SystemCallError) { try writeAll(fd, b, at: offset, name: name()) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Reads from the file position to the end of the file, retrying EINTR.
    public static func readToEnd(_ fd: Int32, name: @autoclosure () -> String) throws(SystemCallError) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n == 0 { return out }
            if n > 0 { out.append(contentsOf: buf[0..<n]); continue }
            let e = errno
            if e == .interrupted { continue }
            throw SystemCallError(name(), e)
        }
    }

    /// Reads `count` bytes at `offset` or up to the end of the file, retrying
    /// EINTR and short reads.
    public static func readAll(_ fd: Int32, count: Int, at offset: UInt64, name: @autoclosure () -> String) throws(SystemCallError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if n == 0 { break }
            if n > 0 { done += n; continue }
            let e = errno
            if e == .interrupted { continue }
            throw SystemCallError(name(), e)
        }
        buf.removeSubrange(done...)
        return buf
    }
}
