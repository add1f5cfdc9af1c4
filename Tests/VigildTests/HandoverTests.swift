import Foundation
import Glibc
import VigilTestSupport
import XCTest

/// Restarts nobody notices (docs/systemd.md, "Handover"): vigild under a
/// real systemd manager hands its client connections to the fd store at a
/// restart. The load is scaled for the suite; VIGIL_HANDOVER_CLIENTS and
/// VIGIL_HANDOVER_RESTARTS set the issue's full size (500 × 3) for
/// docs/benchmarks.md, and the figures are printed either way.
final class HandoverTests: ServiceManagerTestCase {
    override class var workPrefix: String { "vigil-handover" }
    private let clients = ProcessInfo.processInfo.environment["VIGIL_HANDOVER_CLIENTS"].flatMap { Int($0) } ?? 40
    private let restarts = ProcessInfo.processInfo.environment["VIGIL_HANDOVER_RESTARTS"].flatMap { Int($0) } ?? 3

    /// A socket unit (the listener survives restarts) and vigild with a fd store.
    private func install(_ name: String, port: UInt16, storeMax: Int, extra: String = "") throws -> String {
        let sock = try unitFile("\(name).socket", """
            [Socket]
            ListenStream=127.0.0.1:\(port)
            FileDescriptorName=gateway
            Backlog=4096
            """)
        let svc = try unitFile("\(name).service", """
            [Service]
            Type=notify
            NotifyAccess=main
            ExecStart=\(VigildProcess.binary) --state-dir \(work)/state-\(name)
            KillMode=mixed
            TimeoutStopSec=5
            LimitNOFILE=16384
            FileDescriptorStoreMax=\(storeMax)
            \(extra)
            """)
        XCTAssertEqual(manager.runUnits([sock, svc]).0, 0)
        XCTAssertEqual(manager.run(["ctl", "start", "\(name).service"]).0, 0)
        return "\(name).service"
    }

    private func storedCount(_ unit: String) -> Int { Int(manager.property(unit, "NFileDescriptorStore")) ?? -1 }

    private func mainPID(_ unit: String) -> pid_t { pid_t(manager.property(unit, "MainPID")) ?? 0 }

    /// The issue's first scenario: every client stays connected through
    /// `systemctl restart` × N; every request is answered; a line split
    /// across a restart is answered once it is complete.
    func testRestartsKeepEveryClientConnected() throws {
        let port = freePort()
        let unit = try install("vigild-ho-\(port)", port: port, storeMax: 4 * clients + 16)
        let load = HandoverLoad(port: port, clients: clients, reconnect: false)
        try load.start()
        let split = try LineSocket(port: port)
        split.send(#"{"op":"open","session":"split"}"# + "\n")
        XCTAssertTrue(split.nextLine()?.contains(#""op":"opened""#) ?? false)
        usleep(500_000)
        var pids: Set<pid_t> = [mainPID(unit)]
        for r in 0..<restarts {
            if r == 0 { split.send(#"{"op":"send","session":"split","id":"half","te"#) }
            let t0 = Date()
            XCTAssertEqual(manager.run(["ctl", "restart", unit]).0, 0)
            print("restart \(r + 1): systemctl restart took \(String(format: "%.0f", Date().timeIntervalSince(t0) * 1000)) ms")
            if r == 0 { split.send(#"xt":"rest"}"# + "\n") }
            pids.insert(mainPID(unit))
            usleep(400_000)
        }
        let f = load.finish()
        print("handover, \(clients) clients, \(restarts) restarts: \(f.summary)")
        XCTAssertEqual(pids.count, restarts + 1, "each restart started a new process")
        XCTAssertEqual(split.nextLine(), #"{"op":"accepted","id":"half"}"#, "the half line sent before the restart was completed after it")
        XCTAssertTrue(split.nextLine()?.contains(#""op":"reply","session":"split","id":"half""#) ?? false)
        XCTAssertEqual(f.disconnects, 0, "no EOF, no reset: \(f.errors.prefix(5))")
        XCTAssertEqual(f.goodbyes, 0)
        XCTAssertEqual(f.failed, 0, "\(f.errors.prefix(5))")
        XCTAssertTrue(f.errors.isEmpty, "\(f.errors.prefix(5))")
        XCTAssertGreaterThan(f.answered, clients * 3)
        let journal = manager.journal(unit)
        XCTAssertEqual(journal.components(separatedBy: "handover: \(clients + 1) connection(s) stored").count - 1, restarts, journal)
        // Each new instance learned it from the stopped record (issue 13's detail).
        XCTAssertEqual(journal.components(separatedBy: "\(clients + 1) connection(s) handed over").count - 1, restarts, journal)
        XCTAssertEqual(storedCount(unit), 0, "the new instance removed what it adopted (FDSTOREREMOVE=1)")
    }

    /// Restart=always and a SIGTERM systemd did not send: the same handover.
    func testRestartAlwaysAfterKillTermHandsOver() throws {
        let port = freePort()
        let unit = try install("vigild-hk-\(port)", port: port, storeMax: 64, extra: "Restart=always\nRestartSec=100ms")
        let load = HandoverLoad(port: port, clients: clients, reconnect: false)
        try load.start()
        let c = try LineSocket(port: port)
        c.send(#"{"op":"open","session":"k"}"# + "\n")
        XCTAssertTrue(c.nextLine()?.contains(#""op":"opened""#) ?? false)
        for _ in 0..<restarts {
            usleep(300_000)
            let old = mainPID(unit)
            XCTAssertGreaterThan(old, 0)
            kill(old, SIGTERM)
            XCTAssertTrue(waitFor(10) { let p = self.mainPID(unit); return p > 0 && p != old && self.manager.property(unit, "ActiveState") == "active" }, manager.journal(unit))
        }
        usleep(300_000)
        let f = load.finish()
        print("handover, Restart=always + kill -TERM, \(clients) clients, \(restarts) restarts: \(f.summary)")
        XCTAssertEqual(f.disconnects + f.goodbyes + f.failed, 0, "\(f.errors.prefix(5))")
        XCTAssertTrue(f.errors.isEmpty, "\(f.errors.prefix(5))")
        c.send(#"{"op":"send","session":"k","id":"after","text":"still here"}"# + "\n")
        XCTAssertEqual(c.nextLine(), #"{"op":"accepted","id":"after"}"#)
        XCTAssertEqual(c.nextLine(), #"{"op":"reply","session":"k","id":"after","text":"still here"}"#, "the session's replies still come to this connection")
        XCTAssertTrue(manager.journal(unit).contains("no job, Restart=always"), manager.journal(unit))
    }

    /// A plain stop is not a restart: goodbye, and nothing left in the store.
    func testStopThenStartSaysGoodbyeAndLeavesNothingStored() throws {
        let port = freePort()
        let unit = try install("vigild-hs-\(port)", port: port, storeMax: 64)
        let c = try LineSocket(port: port)
        c.send(#"{"op":"ping"}"# + "\n")
        XCTAssertEqual(c.nextLine(), #"{"op":"pong"}"#)
        XCTAssertEqual(manager.run(["ctl", "stop", unit]).0, 0)
        XCTAssertEqual(c.nextLine(), #"{"op":"goodbye","reason":"shutdown"}"#)
        XCTAssertNil(c.nextLine(), "closed after goodbye")
        XCTAssertEqual(manager.run(["ctl", "start", unit]).0, 0)
        XCTAssertEqual(storedCount(unit), 0)
        XCTAssertFalse(manager.journal(unit).contains("connection(s) taken from the fd store"), manager.journal(unit))
        XCTAssertTrue(manager.journal(unit).contains("a stop job"), manager.journal(unit))
    }

    /// A store too small for the carrier and the state: a plain restart.
    func testStoreTooSmallMeansAPlainRestart() throws {
        let port = freePort()
        let unit = try install("vigild-h2-\(port)", port: port, storeMax: 2)
        let c = try LineSocket(port: port)
        c.send(#"{"op":"ping"}"# + "\n")
        XCTAssertEqual(c.nextLine(), #"{"op":"pong"}"#)
        XCTAssertEqual(manager.run(["ctl", "restart", unit]).0, 0)
        XCTAssertEqual(c.nextLine(), #"{"op":"goodbye","reason":"shutdown"}"#)
        XCTAssertNil(c.nextLine())
        XCTAssertTrue(manager.journal(unit).contains("FileDescriptorStoreMax=2 of \(unit) is below the 3 entries"), manager.journal(unit))
        XCTAssertEqual(storedCount(unit), 0)
    }

    /// A turn the restart's drain cut short is reported to its sender, on the
    /// same connection, after the restart (docs/protocol.md, `interrupted`).
    func testTurnCutShortByTheRestartIsReportedAfterIt() throws {
        let port = freePort()
        let unit = try install("vigild-hc-\(port)", port: port, storeMax: 64)
        let c = try LineSocket(port: port)
        c.send(#"{"op":"send","session":"cut","id":"long","text":"x","work_ms":60000}"# + "\n")
        XCTAssertEqual(c.nextLine(), #"{"op":"accepted","id":"long"}"#)
        XCTAssertEqual(manager.run(["ctl", "restart", unit]).0, 0)
        XCTAssertEqual(c.nextLine(), #"{"op":"interrupted","session":"cut","id":"long","reason":"restart","message":"the restart's drain ran out of time before this turn finished; no reply will come"}"#)
        c.send(#"{"op":"open","session":"cut"}"# + "\n")
        XCTAssertTrue(c.nextLine()?.contains(#""status":"interrupted","interrupted":["long"]"#) ?? false)
    }

    /// A corrupt state memfd and a foreign descriptor in the store: refused,
    /// logged, closed; the real connections are adopted all the same.
    func testCorruptStateAndForeignDescriptorsAreRefused() throws {
        let python = "/usr/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else { throw XCTSkip("needs \(python) to inject descriptors into the store") }
        let inject = work + "/inject.py"
        // Runs inside the unit (NotifyAccess=all): stores both ends of a
        // pipe and of a socketpair as connections (both ends, or systemd
        // drops each once the other closes with the script), and a sealed
        // memfd with a valid magic but a wrong checksum as a state.
        try """
            import os, socket, fcntl, sys
            if os.path.exists(sys.argv[1]): sys.exit(0)  # only into the first instance
            open(sys.argv[1], 'w').close()
            addr = os.environ['NOTIFY_SOCKET']
            if addr.startswith('@'): addr = '\\0' + addr[1:]
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.connect(addr)
            r, w = os.pipe()
            a, b = socket.socketpair()
            m = os.memfd_create('corrupt', os.MFD_ALLOW_SEALING)
            os.write(m, b'VGHANDOV' + b'\\x01\\x00\\x00\\x00' + b'\\x00' * 16)
            fcntl.fcntl(m, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
            socket.send_fds(s, [b'FDSTORE=1\\nFDNAME=handover.connection'], [r, w, a.fileno(), b.fileno()])
            socket.send_fds(s, [b'FDSTORE=1\\nFDNAME=handover.state'], [m])
            """.write(toFile: inject, atomically: true, encoding: .utf8)
        let port = freePort()
        let unit = try install("vigild-hf-\(port)", port: port, storeMax: 64,
                               extra: "NotifyAccess=all\nExecStartPost=\(python) \(inject) \(work)/injected")
        let c = try LineSocket(port: port)
        c.send(#"{"op":"open","session":"real"}"# + "\n")
        XCTAssertTrue(c.nextLine()?.contains(#""op":"opened""#) ?? false)
        XCTAssertTrue(waitFor(5) { self.storedCount(unit) == 5 }, "the injected descriptors are in the store: \(storedCount(unit))")
        XCTAssertEqual(manager.run(["ctl", "restart", unit]).0, 0)
        c.send(#"{"op":"ping"}"# + "\n")
        XCTAssertEqual(c.nextLine(), #"{"op":"pong"}"#, "the real connection was adopted")
        let journal = manager.journal(unit)
        XCTAssertTrue(journal.contains("state memfd (fd"), journal)
        XCTAssertTrue(journal.contains("checksum mismatch"), journal)
        XCTAssertTrue(journal.contains("not a socket"), journal)
        XCTAssertTrue(journal.contains("no state was stored for it"), journal)
        XCTAssertTrue(journal.contains("1 connection(s) taken from the fd store, 5 refused"), journal)
        XCTAssertEqual(storedCount(unit), 0, "refused descriptors are removed from the store too")
    }

    /// Without a socket unit: vigild's own `--listen` socket is kept open
    /// through the restart too, so a client connecting in a loop is never
    /// refused, and an established one stays.
    func testOwnListenerIsKeptThroughTheRestart() throws {
        let port = freePort()
        let name = "vigild-hl-\(port)"
        let svc = try unitFile("\(name).service", """
            [Service]
            Type=notify
            NotifyAccess=main
            ExecStart=\(VigildProcess.binary) --listen 127.0.0.1:\(port) --state-dir \(work)/state-\(name)
            KillMode=mixed
            TimeoutStopSec=5
            FileDescriptorStoreMax=3
            """)
        XCTAssertEqual(manager.runUnits([svc]).0, 0)
        let unit = "\(name).service"
        let kept = try LineSocket(port: port)
        var refused = 0, answered = 0, attempts = 0
        let stop = DispatchSemaphore(value: 0)
        let lock = NSLock()
        var done = false
        Thread {
            while !lock.withLock({ done }) {
                attempts += 1
                guard let c = try? LineSocket(port: port) else { refused += 1; usleep(5_000); continue }
                c.send(#"{"op":"ping"}"# + "\n")
                if c.nextLine() == #"{"op":"pong"}"# { answered += 1 }
            }
            stop.signal()
        }.start()
        usleep(300_000)
        for _ in 0..<2 {
            XCTAssertEqual(manager.run(["ctl", "restart", unit]).0, 0)
            usleep(300_000)
        }
        lock.withLock { done = true }
        stop.wait()
        XCTAssertEqual(refused, 0, "no connection refused across two restarts (\(attempts) attempts)")
        XCTAssertGreaterThan(answered, 10)
        kept.send(#"{"op":"ping"}"# + "\n")
        XCTAssertEqual(kept.nextLine(), #"{"op":"pong"}"#)
        let journal = manager.journal(unit)
        XCTAssertTrue(journal.contains("listening on 127.0.0.1:\(port) (kept open through the restart)"), journal)
        XCTAssertEqual(storedCount(unit), 0)
    }

    // MARK: benchmarks (docs/benchmarks.md, "Handover"); skipped unless asked for

    /// The pause clients see across restarts, with the fd store and with
    /// socket activation only (FileDescriptorStoreMax=0: goodbye, reconnect,
    /// re-open). VIGIL_HANDOVER_BENCH=1; size from VIGIL_HANDOVER_CLIENTS.
    func testBenchmarkPauseWithAndWithoutTheStore() throws {
        guard ProcessInfo.processInfo.environment["VIGIL_HANDOVER_BENCH"] == "1" else { throw XCTSkip("VIGIL_HANDOVER_BENCH=1 runs it") }
        for storeMax in [4 * clients + 16, 0] {
            let port = freePort()
            let unit = try install("vigild-hb\(storeMax == 0 ? "0" : "s")-\(port)", port: port, storeMax: storeMax)
            let load = HandoverLoad(port: port, clients: clients, reconnect: storeMax == 0)
            try load.start()
            usleep(1_000_000)
            for _ in 0..<restarts {
                XCTAssertEqual(manager.run(["ctl", "restart", unit]).0, 0)
                usleep(1_000_000)
            }
            let f = load.finish()
            print("BENCH \(storeMax == 0 ? "socket activation only" : "fd store"), \(clients) clients, \(restarts) restarts: \(f.summary)")
            if storeMax > 0 {
                XCTAssertEqual(f.failed + f.disconnects, 0, "\(f.errors.prefix(5))")
            }
            manager.remove(["\(unit)", unit.replacingOccurrences(of: ".service", with: ".socket")])
        }
    }

    /// Start-to-serving of the new instance with many adopted (idle)
    /// connections: from the process's first log line to READY=1, read from
    /// the journal. VIGIL_HANDOVER_IDLE_CONNECTIONS=N runs it.
    func testBenchmarkStartToServingWithManyAdoptedConnections() throws {
        guard let n = ProcessInfo.processInfo.environment["VIGIL_HANDOVER_IDLE_CONNECTIONS"].flatMap({ Int($0) }) else {
            throw XCTSkip("VIGIL_HANDOVER_IDLE_CONNECTIONS=N runs it")
        }
        let port = freePort()
        let unit = try install("vigild-hi-\(port)", port: port, storeMax: n + 16)
        var conns: [LineSocket] = []
        for _ in 0..<n { conns.append(try LineSocket(port: port)) }
        conns[n - 1].send(#"{"op":"ping"}"# + "\n")
        XCTAssertEqual(conns[n - 1].nextLine(), #"{"op":"pong"}"#)
        let t0 = Date()
        XCTAssertEqual(manager.run(["ctl", "restart", unit]).0, 0)
        let restartMs = Date().timeIntervalSince(t0) * 1000
        let verbose = manager.run(["journal", unit, "--no-pager", "-o", "short-monotonic"]).1
        let lines = verbose.split(separator: "\n").map(String.init)
        func stamp(_ needle: String, last: Bool = true) -> Double? {
            let l = last ? lines.last(where: { $0.contains(needle) }) : lines.first(where: { $0.contains(needle) })
            guard let l, let open = l.firstIndex(of: "["), let close = l.firstIndex(of: "]") else { return nil }
            return Double(l[l.index(after: open)..<close].trimmingCharacters(in: .whitespaces))
        }
        let stored = stamp("connection(s) stored in the fd store"), forked = stamp("Starting "), started = stamp("previous run: clean"), taken = stamp("taken from the fd store"), ready = stamp("ready (pid")
        XCTAssertTrue(verbose.contains("handover: \(n) connection(s) taken from the fd store, 0 refused"), verbose)
        var answered = 0
        for c in conns { c.send(#"{"op":"ping"}"# + "\n") }
        for c in conns where c.nextLine() == #"{"op":"pong"}"# { answered += 1 }
        XCTAssertEqual(answered, n, "every adopted connection answers")
        if let stored, let forked, let started, let taken, let ready {
            print(String(format: "BENCH start-to-serving, %d adopted connections: systemctl restart %.0f ms; stored→new process %.1f ms; new process→taken %.1f ms; taken→READY %.1f ms; first log line→READY %.1f ms; systemd's Starting→READY %.1f ms",
                         n, restartMs, (started - stored) * 1000, (taken - started) * 1000, (ready - taken) * 1000, (ready - started) * 1000, (ready - forked) * 1000))
        }
    }
}
