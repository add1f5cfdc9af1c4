import CVigil
import Foundation
import Glibc
import VigilTestSupport
import XCTest

final class VigildTests: XCTestCase {
    func testAnswersPingAndStopsWithZeroOnSIGTERM() throws {
        let d = try VigildProcess()
        try d.waitUntilListening()
        let c = try LineSocket(port: d.port)
        c.send("{\"op\":\"ping\"}\n{\"op\":\"ping\"}\n")
        XCTAssertEqual(c.lines(2), [#"{"op":"pong"}"#, #"{"op":"pong"}"#])
        var st = stat()
        XCTAssertEqual(stat(d.stateDir, &st), 0, "state directory created")
        XCTAssertEqual(st.st_mode & 0o777, 0o700)
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
        XCTAssertTrue(d.log.contains("SIGTERM from pid \(getpid())"), d.log)
    }

    func testExactlyOneThreadUnderLoad() throws {
        let d = try VigildProcess()
        try d.waitUntilListening()
        // Load from several client threads while we sample the daemon's threads.
        let stop = ManagedAtomicFlag()
        let answered = LockedCounter()
        let group = DispatchGroup()
        for t in 0..<4 {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let c = try? LineSocket(port: d.port) else { return }
                let batch = String(repeating: "{\"op\":\"ping\"}\n", count: 64)
                var k = 0
                while !stop.isSet {
                    if t % 2 == 0 {
                        c.send(batch)
                        answered.add(c.lines(64).count)
                    } else {
                        // Turns: journal appends on io_uring, group commits, echo timers.
                        k += 1
                        c.send(#"{"op":"send","session":"load-\#(t)","id":"\#(k)","text":"x"}"# + "\n")
                        if c.nextLine()?.contains("accepted") == true, c.nextLine()?.contains("reply") == true { answered.add(1) }
                    }
                }
            }.start()
        }
        var samples: [[String]] = []
        for _ in 0..<20 {
            usleep(20_000)
            samples.append(d.threads())
        }
        stop.set()
        group.wait()
        XCTAssertGreaterThan(answered.value, 1000, "the load really ran")
        for s in samples { XCTAssertEqual(s.count, 1, "threads besides io_uring workers: \(s)") }
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
    }

    func testForcedSyscallFallbackServesAndSaysSo() throws {
        let d = try VigildProcess(environment: ["VIGIL_IO_URING": "off"])
        try d.waitUntilListening()
        XCTAssertTrue(d.log.contains("io_uring disabled by configuration"), d.log)
        XCTAssertTrue(d.log.contains("disk I/O syscalls"), d.log)
        let c = try LineSocket(port: d.port)
        c.send("{\"op\":\"ping\"}\n")
        XCTAssertEqual(c.lines(1), [#"{"op":"pong"}"#])
        d.signal(SIGINT)
        XCTAssertEqual(try d.waitForExit(), 0)
    }

    func testSignalPayloadReachesTheHandler() throws {
        let d = try VigildProcess(environment: ["VIGIL_DEBUG_SIGNAL_LATENCY": "1"])
        try d.waitUntilListening()
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let now = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        XCTAssertEqual(cvigil_sigqueue_u64(d.pid, SIGUSR1, now), 0)
        let deadline = Date().addingTimeInterval(5)
        while !d.log.contains("signal-latency-ns SIGUSR1"), Date() < deadline { usleep(5_000) }
        let line = d.log.split(separator: "\n").first { $0.hasPrefix("signal-latency-ns SIGUSR1") }
        let ns = line.flatMap { UInt64($0.split(separator: " ").last!) } ?? 0
        XCTAssertGreaterThan(ns, 0)
        XCTAssertLessThan(ns, 1_000_000_000)
        XCTAssertTrue(d.process.isRunning, "SIGUSR1 does not stop the daemon")
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
    }

    /// The stop signal's stamps come from the entry point's
    /// onStoppingRecorded hook: handler ≤ pwrite returned ≤ fdatasync returned.
    func testStopSignalLatencyReachesTheRecordStamps() throws {
        let d = try VigildProcess(environment: ["VIGIL_DEBUG_SIGNAL_LATENCY": "1"])
        try d.waitUntilListening()
        XCTAssertEqual(d.sendStamped(SIGTERM), 0)
        XCTAssertEqual(try d.waitForExit(), 0)
        let (handler, visible, durable) = d.stopSignalStamps()
        XCTAssertGreaterThan(handler, 0, d.log)
        XCTAssertLessThanOrEqual(handler, visible, d.log)
        XCTAssertLessThanOrEqual(visible, durable, d.log)
        XCTAssertLessThan(durable, 10_000_000_000, d.log)
    }

    func testNoDescriptorGrowthAcrossConnections() throws {
        let d = try VigildProcess()
        try d.waitUntilListening()
        let before = d.openDescriptors()
        for _ in 0..<200 {
            let c = try LineSocket(port: d.port)
            c.send("{\"op\":\"ping\"}\n")
            _ = c.lines(1)
        }
        // Closed connections are noticed on the next loop iteration.
        let deadline = Date().addingTimeInterval(5)
        while d.openDescriptors() != before, Date() < deadline { usleep(10_000) }
        XCTAssertEqual(d.openDescriptors(), before)
        d.signal(SIGTERM)
        XCTAssertEqual(try d.waitForExit(), 0)
    }

    func testBadListenAddressExits64() throws {
        let d = try VigildProcess(arguments: ["--listen", "nowhere", "--state-dir", NSTemporaryDirectory() + "vigild-bad-\(getpid())"])
        XCTAssertEqual(try d.waitForExit(), 64)
        XCTAssertTrue(d.log.contains("invalid address 'nowhere'"), d.log)
    }

    func testPortInUseExits69() throws {
        let first = try VigildProcess()
        try first.waitUntilListening()
        let second = try VigildProcess(arguments: ["--listen", "127.0.0.1:\(first.port)", "--state-dir", first.stateDir + "-2"])
        XCTAssertEqual(try second.waitForExit(), 69)
        XCTAssertTrue(second.log.contains("cannot listen on 127.0.0.1:\(first.port)"), second.log)
        first.signal(SIGTERM)
        XCTAssertEqual(try first.waitForExit(), 0)
    }

    func testUnusableStateDirectoryExits73() throws {
        let file = NSTemporaryDirectory() + "vigild-file-\(getpid())"
        FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        defer { unlink(file) }
        let d = try VigildProcess(arguments: ["--listen", "127.0.0.1:0", "--state-dir", file])
        XCTAssertEqual(try d.waitForExit(), 73)
        XCTAssertTrue(d.log.contains("state directory \(file) is unusable"), d.log)
    }
}

final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    var value: Int { lock.lock(); defer { lock.unlock() }; return total }
    func add(_ n: Int) { lock.lock(); total += n; lock.unlock() }
}
