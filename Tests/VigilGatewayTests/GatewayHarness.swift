import Foundation
import Glibc
import Logging
import VigilDurable
import VigilGateway
import VigilReactor
import XCTest

/// A SessionGateway with a real journal in a temporary directory, served by
/// a LineServer on 127.0.0.1:0 and a Unix socket, on its own reactor thread.
final class GatewayHarness {
    let dir: String
    private(set) var port: UInt16 = 0
    let unixPath: String
    private(set) var reactor: Reactor!
    private(set) var gateway: SessionGateway!
    private(set) var server: LineServer!
    private let thread: Thread
    private let stopped = DispatchSemaphore(value: 0)

    init(options: SessionGateway.Options = .init(), agent makeAgent: ((Reactor) -> any Agent)? = nil, dir existing: String? = nil) throws {
        dir = existing ?? NSTemporaryDirectory() + "vigil-gw-\(getpid())-\(UUID().uuidString.prefix(6))"
        unixPath = dir + "/gw.sock"
        let ready = DispatchSemaphore(value: 0)
        var setupError: Error?
        var box: (UInt16, Reactor, SessionGateway, LineServer)?
        let dir = self.dir, unixPath = self.unixPath, stopped = self.stopped
        thread = Thread {
            do {
                let r = try Reactor()
                let fs = try PosixStateFileSystem(path: dir)
                let journal = try TurnJournal(io: DiskJournalIO(fs: fs, disk: r.disk), reactor: r, logger: r.logger)
                var started = false
                journal.append(.runStarted(pid: getpid(), bootID: "test")) { _ in started = true }
                while !started { try r.runOnce(timeoutMs: 50) }
                let agent = makeAgent?(r) ?? EchoAgent(reactor: r)
                let g = SessionGateway(reactor: r, journal: journal, agent: agent, logger: r.logger, options: options)
                let server = LineServer(reactor: r, handler: g, logger: r.logger)
                let bound = try server.listen(on: .ipv4(host: "127.0.0.1", port: 0))
                try server.listen(on: .unix(path: unixPath))
                guard case .ipv4(_, let p) = bound else { fatalError() }
                box = (p, r, g, server)
                ready.signal()
                try r.run()
                server.closeAll()
                r.close()
            } catch {
                setupError = error
                ready.signal()
            }
            stopped.signal()
        }
        thread.start()
        ready.wait()
        if let setupError { throw setupError }
        (port, reactor, gateway, server) = box!
    }

    /// Runs `body` on the loop thread and waits for it.
    func onLoop<T>(_ body: @escaping () -> T) -> T {
        var result: T?
        let done = DispatchSemaphore(value: 0)
        reactor.execute { result = body(); done.signal() }
        done.wait()
        return result!
    }

    func stop(removeDirectory: Bool = true) {
        reactor?.stop()
        stopped.wait()
        if removeDirectory { try? FileManager.default.removeItem(atPath: dir) }
    }
}

/// A blocking line client over TCP or a Unix socket.
final class Client {
    let fd: Int32
    private var buffered: [UInt8] = []

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
        setTimeout(10)
    }

    init(unixPath: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { p in
            let b = Array(unixPath.utf8)
            p.copyBytes(from: b)
            p[b.count] = 0
        }
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard r == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
        setTimeout(10)
    }

    deinit { close(fd) }

    func setTimeout(_ seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) { sendBytes(Array(text.utf8)) }

    func sendBytes(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// The next line (nil on EOF or timeout).
    func line() -> String? {
        while true {
            if let nl = buffered.firstIndex(of: 0x0A) {
                let l = String(decoding: buffered[..<nl], as: UTF8.self)
                buffered.removeSubrange(...nl)
                return l
            }
            var buf = [UInt8](repeating: 0, count: 65536)
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            buffered.append(contentsOf: buf[0..<n])
        }
    }

    func lines(_ n: Int) -> [String] { (0..<n).compactMap { _ in line() } }

    /// Sends one line and returns the next answer as a JSON object.
    func request(_ text: String) -> [String: Any] {
        send(text + "\n")
        return object(line())
    }

    func object(_ l: String?) -> [String: Any] {
        guard let l, let o = (try? JSONSerialization.jsonObject(with: Data(l.utf8))) as? [String: Any] else { return ["unparsed": l ?? "<EOF>"] }
        return o
    }
}
