import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// A NOTIFY_SOCKET of our own (AF_UNIX datagram, as systemd's): collects
/// every sd_notify message vigild sends.
final class NotifyListener {
    let path: String
    let fd: Int32

    init() throws {
        path = NSTemporaryDirectory() + "vigil-notify-\(getpid())-\(UUID().uuidString.prefix(6)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { p in
            let b = Array(path.utf8)
            p.copyBytes(from: b)
            p[b.count] = 0
        }
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard r == 0 else { throw POSIXError(.EADDRINUSE) }
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Messages received within `timeout` seconds after the last one (or until `until` is seen).
    func collect(timeout: Double, until: ((String) -> Bool)? = nil) -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 20) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { continue }
            let m = String(decoding: buf[0..<n], as: UTF8.self)
            out.append(m)
            if let until, until(m) { break }
        }
        return out
    }
}

/// The exact sd_notify sequence, against the real binary (docs/systemd.md).
final class NotifyTests: XCTestCase {
    private func start(_ n: NotifyListener, _ extra: [String] = [], env: [String: String] = [:]) throws -> VigildProcess {
        let sd = NSTemporaryDirectory() + "vigil-notify-state-\(getpid())-\(UUID().uuidString.prefix(6))"
        var e = env
        e["NOTIFY_SOCKET"] = n.path
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", sd] + extra, environment: e, stateDir: sd)
        try d.waitUntilListening()
        return d
    }

    func testStartAndCleanStop() throws {
        let n = try NotifyListener()
        let d = try start(n)
        let startup = n.collect(timeout: 5) { $0.hasPrefix("READY=1") }
        XCTAssertEqual(startup, ["STATUS=recovering: replaying the turn journal",
                                 "READY=1\nSTATUS=serving: 0 session(s), 0 interrupted at the last stop"])
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
        let stop = n.collect(timeout: 2) { $0.hasPrefix("STATUS=stopped") }
        XCTAssertEqual(stop.count, 2, "\(stop)")
        XCTAssertTrue(stop.first?.hasPrefix("STOPPING=1\nSTATUS=draining: 0 turn(s) in flight, ") ?? false, "\(stop)")
        XCTAssertEqual(stop.last, "STATUS=stopped: clean, 0 turn(s) abandoned")
    }

    func testCutShortStopReportsProgressAndWhatWasAbandoned() throws {
        let n = try NotifyListener()
        let d = try start(n, ["--stop-timeout", "2.5"])
        _ = n.collect(timeout: 5) { $0.hasPrefix("READY=1") }
        let c = try LineSocket(port: d.port)
        c.send(#"{"op":"send","session":"n","id":"1","text":"x","work_ms":60000}"# + "\n")
        XCTAssertEqual(c.nextLine(), #"{"op":"accepted","id":"1"}"#)
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
        let stop = n.collect(timeout: 3) { $0.hasPrefix("STATUS=stopped") }
        XCTAssertTrue(stop.first?.hasPrefix("STOPPING=1\nSTATUS=draining: 1 turn(s) in flight, ") ?? false, "\(stop)")
        let progress = stop.dropFirst().dropLast()
        XCTAssertFalse(progress.isEmpty, "a drain longer than a second reports progress: \(stop)")
        for p in progress { XCTAssertTrue(p.hasPrefix("STATUS=draining: 1 turn(s) left, "), p) }
        XCTAssertEqual(stop.last, "STATUS=stopped: cut-short, 1 turn(s) abandoned")
    }

    func testWatchdogPingsFromTheLoopAndStopWhenItIsBlocked() throws {
        let n = try NotifyListener()
        let d = try start(n, env: ["WATCHDOG_USEC": "200000", "VIGIL_DEBUG_BLOCK_ON_SIGUSR2": "1"])
        var seen = n.collect(timeout: 1.0)
        let pings = seen.filter { $0 == "WATCHDOG=1" }.count
        XCTAssertGreaterThanOrEqual(pings, 5, "half of WatchdogSec=200ms: ~10 pings a second: \(seen)")
        XCTAssertTrue(d.log.contains("watchdog: pinging every 100 ms"), d.log)
        kill(d.pid, SIGUSR2)
        usleep(100_000)
        _ = n.collect(timeout: 0.05)
        seen = n.collect(timeout: 0.6)
        XCTAssertEqual(seen, [], "a blocked loop sends no pings")
        kill(d.pid, SIGKILL)
        _ = try d.waitForExit()
    }

    func testWithoutNotifySocketNothingIsSent() throws {
        let sd = NSTemporaryDirectory() + "vigil-notify-none-\(getpid())-\(UUID().uuidString.prefix(6))"
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", sd], environment: ["WATCHDOG_USEC": "200000", "NOTIFY_SOCKET": ""], stateDir: sd)
        try d.waitUntilListening()
        XCTAssertFalse(d.log.contains("watchdog"), "no NOTIFY_SOCKET: no watchdog either")
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
    }
}
