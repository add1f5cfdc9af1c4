// Stream sockets for the reactor: address parsing, non-blocking listeners,
// accept4 and connect. TCP (IPv4/IPv6) and Unix stream sockets.
import CVigil
import Glibc
import SystemPackage

/// `HOST:PORT`, `[V6]:PORT` or `unix:PATH`.
public enum SocketAddress: Sendable, Equatable, CustomStringConvertible {
    case ipv4(host: String, port: UInt16)
    case ipv6(host: String, port: UInt16)
    case unix(path: String)

    public struct ParseError: Error, CustomStringConvertible {
        public let input: String
        public let reason: String
        public var description: String { "invalid address '\(input)': \(reason) (expected HOST:PORT, [IPV6]:PORT or unix:PATH)" }
    }

    public init(parsing text: String) throws(ParseError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { throw ParseError(input: text, reason: "empty socket path") }
            guard path.utf8.count <= Self.maxUnixPathBytes else { throw ParseError(input: text, reason: "socket path longer than \(Self.maxUnixPathBytes) bytes") }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":") else { throw ParseError(input: text, reason: "missing :PORT") }
        var host = String(text[..<colon])
        guard let port = UInt16(text[text.index(after: colon)...]) else {
            throw ParseError(input: text, reason: "port must be a number from 0 to 65535")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            var a = in6_addr()
            guard inet_pton(AF_INET6, host, &a) == 1 else { throw ParseError(input: text, reason: "not an IPv6 address") }
            self = .ipv6(host: host, port: port)
            return
        }
        if host == "localhost" || host.isEmpty { host = "127.0.0.1" }
        var a = in_addr()
        guard inet_pton(AF_INET, host, &a) == 1 else {
            throw ParseError(input: text, reason: "host must be an IPv4 address, [IPv6] or localhost")
        }
        self = .ipv4(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .ipv4(let h, let p): "\(h):\(p)"
        case .ipv6(let h, let p): "[\(h)]:\(p)"
        case .unix(let path): "unix:\(path)"
        }
    }

    /// The longest Unix socket path: `sun_path` is 108 bytes, NUL included.
    public static let maxUnixPathBytes = 107

    /// ENAMETOOLONG for a Unix path that does not fit `sun_path` (a
    /// truncated name would bind or reach another socket).
    func checkFits(_ call: String) throws(SystemCallError) {
        if case .unix(let path) = self, path.utf8.count > Self.maxUnixPathBytes {
            throw SystemCallError("\(call)(\(self)): the path is \(path.utf8.count) bytes, a Unix socket path holds at most \(Self.maxUnixPathBytes)", .fileNameTooLong)
        }
    }

    /// Calls `body` with the sockaddr for this address (a Unix path must
    /// fit: ``checkFits(_:)`` first).
    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        switch self {
        case .ipv4(let host, let port):
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &sa.sin_addr)
            return withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        case .ipv6(let host, let port):
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &sa.sin6_addr)
            return withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        case .unix(let path):
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &sa.sun_path) { buf in
                let bytes = Array(path.utf8.prefix(Self.maxUnixPathBytes))
                buf.copyBytes(from: bytes)
                buf[bytes.count] = 0
            }
            return withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        }
    }

    var family: Int32 {
        switch self {
        case .ipv4: AF_INET
        case .ipv6: AF_INET6
        case .unix: AF_UNIX
        }
    }
}

public enum StreamSocket {
    /// A non-blocking, close-on-exec listening socket bound to `address`.
    /// Unix sockets: a stale socket file is replaced; the mode is 0600.
    public static func listen(on address: SocketAddress, backlog: Int32 = 4096) throws(SystemCallError) -> Int32 {
        try address.checkFits("bind")
        let fd = try syscallRetrying("socket") { socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do throws(SystemCallError) {
            if case .unix(let path) = address {
                unlink(path)
            } else {
                try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            }
            let r = address.withSockAddr { bind(fd, $0, $1) }
            if r != 0 { throw SystemCall.lastError("bind(\(address))") }
            if case .unix(let path) = address { chmod(path, 0o600) }
            _ = try syscallRetrying("listen") { Glibc.listen(fd, backlog) }
            return fd
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    /// The port a TCP listener is bound to (for `:0`).
    public static func localPort(_ fd: Int32) throws(SystemCallError) -> UInt16 {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        if r != 0 { throw SystemCall.lastError("getsockname") }
        return withUnsafePointer(to: &ss) { p in
            if Int32(p.pointee.ss_family) == AF_INET6 {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    /// Accepts one connection (non-blocking, close-on-exec); nil when none is waiting.
    /// Per-connection errors (ECONNABORTED, EPERM from a firewall) are
    /// reported as nil too: the listener itself is fine.
    public static func accept(_ listener: Int32) throws(SystemCallError) -> Int32? {
        while true {
            let fd = cvigil_accept4(listener, nil, nil, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
            if fd >= 0 { return fd }
            let e = currentErrno()
            switch e {
            case .interrupted: continue
            case .wouldBlock, .connectionAbort, .notPermitted, .protocolError: return nil
            default: throw SystemCallError("accept4", e)
            }
        }
    }

    /// A connected, non-blocking socket (the connect itself blocks; for clients and tests).
    public static func connect(to address: SocketAddress) throws(SystemCallError) -> Int32 {
        try address.checkFits("connect")
        let fd = try syscallRetrying("socket") { socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        let r = address.withSockAddr { Glibc.connect(fd, $0, $1) }
        if r != 0 {
            let e = currentErrno()
            Syscall.close(fd)
            throw SystemCallError("connect(\(address))", e)
        }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        if address.family != AF_UNIX { try? setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1) }
        return fd
    }

    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(SystemCallError) {
        var v = value
        if setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            throw SystemCall.lastError("setsockopt")
        }
    }

    public static func setNoDelay(_ fd: Int32) {
        try? setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }

    public static func close(_ fd: Int32) { Syscall.close(fd) }

    /// The uid of the process at the other end of a Unix stream socket
    /// (SO_PEERCRED, taken at connect); nil for other sockets or on error.
    public static func unixPeerUID(_ fd: Int32) -> uid_t? {
        var addr = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard r == 0, addr.ss_family == sa_family_t(AF_UNIX) else { return nil }
        var uid: uid_t = 0
        return cvigil_peer_uid(fd, &uid) == 0 ? uid : nil
    }


    /// Non-blocking read/write for stream sockets.
    @inline(__always)
    public static func read(_ fd: Int32, into buf: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> IOResult {
        try Syscall.read(fd, buf.baseAddress!, buf.count)
    }

    @inline(__always)
    public static func write(_ fd: Int32, from buf: UnsafeRawBufferPointer) throws(SystemCallError) -> IOResult {
        try Syscall.write(fd, buf.baseAddress!, buf.count)
    }
}
