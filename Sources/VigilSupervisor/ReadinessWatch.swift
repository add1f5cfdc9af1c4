// When the supervised program is ready (--ready): READY=1 to the service
// manager once it is. `notify`: a datagram socket the program gets as its
// NOTIFY_SOCKET, whose messages are relayed with STOPPING=1 and MAINPID=
// dropped (DaemonContext.relayNotification). `tcp:HOST:PORT`: a
// non-blocking connect every 100 ms until one succeeds.
import Glibc
import SystemPackage
import Logging
import VigilDaemon
import VigilReactor

/// Loop-confined.
final class ReadinessWatch {
    let context: DaemonContext
    let readiness: SupervisorConfiguration.Readiness
    var onReady: () -> Void = {}
    private(set) var isReady = false
    private var notifyFD: Int32 = -1
    private var notifyToken: Token?
    private var notifyPath: String?
    private var probe: TimerHandle?
    private var probeFD: Int32 = -1
    private var address: [UInt8] = []

    init(_ context: DaemonContext, readiness: SupervisorConfiguration.Readiness) {
        self.context = context
        self.readiness = readiness
    }

    /// `notify`: binds the proxy socket at `path` (before the spawn, so the
    /// program's first message finds it). Returns the path to give it.
    func bindNotifySocket(at path: String) throws(SystemCallError) -> String {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError("socket(AF_UNIX, SOCK_DGRAM)", Errno(rawValue: errno)) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            Glibc.close(fd)
            throw SystemCallError("notify socket path \(path) is too long", .fileNameTooLong)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { for (i, b) in bytes.enumerated() { $0[i] = b } }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard r == 0 else {
            let e = Errno(rawValue: errno)
            Glibc.close(fd)
            throw SystemCallError("bind(\(path))", e)
        }
        chmod(path, 0o600)
        notifyFD = fd
        notifyPath = path
        notifyToken = try context.reactor.register(fd, interest: .readable) { [unowned self] _ in self.readNotifications() }
        return path
    }

    private func readNotifications() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(notifyFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { return }
            let message = String(decoding: buffer[0..<n], as: UTF8.self)
            let relayed = context.relayNotification(message)
            if relayed.contains("READY=1") { becomeReady(announce: false) }
        }
    }

    /// `tcp`: resolves the address, then probes every 100 ms.
    func startProbing() throws(SystemCallError) {
        guard case .tcp(let host, let port) = readiness else { return }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            throw SystemCallError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))", .invalidArgument)
        }
        defer { freeaddrinfo(result) }
        address = Array(UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        probe = context.reactor.scheduleRepeating(every: .milliseconds(100)) { [unowned self] in self.probeOnce() }
        probeOnce()
    }

    private func probeOnce() {
        guard !isReady else { return }
        if probeFD >= 0 {
            // The connect started last time: connected, refused or still on its way.
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(probeFD, SOL_SOCKET, SO_ERROR, &err, &len)
            var peer = sockaddr_storage()
            var plen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let connected = err == 0 && withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(probeFD, $0, &plen) }
            } == 0
            if connected { Glibc.close(probeFD); probeFD = -1; return becomeReady(announce: true) }
            if err == 0 { return }  // still connecting
            Glibc.close(probeFD)
            probeFD = -1
        }
        let family = address.withUnsafeBytes { $0.load(as: sa_family_t.self) }
        let fd = socket(Int32(family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        let r = address.withUnsafeBytes { connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
        if r == 0 { Glibc.close(fd); return becomeReady(announce: true) }
        if errno == EINPROGRESS { probeFD = fd } else { Glibc.close(fd) }
    }

    private func becomeReady(announce: Bool) {
        guard !isReady else { return }
        isReady = true
        if let p = probe { context.reactor.cancelTimer(p); probe = nil }
        if announce { context.ready(status: "program ready (\(readiness))") }
        context.logger.notice("program ready (\(readiness))")
        onReady()
    }

    /// Stops probing and relaying (the stop, or a failed start).
    func close() {
        if let p = probe { context.reactor.cancelTimer(p); probe = nil }
        if probeFD >= 0 { Glibc.close(probeFD); probeFD = -1 }
        if let t = notifyToken { context.reactor.deregister(t); notifyToken = nil }
        if notifyFD >= 0 { Glibc.close(notifyFD); notifyFD = -1 }
        if let p = notifyPath { unlink(p); notifyPath = nil }
    }
}
