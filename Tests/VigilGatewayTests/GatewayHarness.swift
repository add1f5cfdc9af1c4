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
