// One kill-race trial, driven by the reactor: fresh directory → start the
// daemon (own process group, watched through its pidfd) → ready → load →
// stop signal → SIGKILL d µs later (SignalRace) → reap → verdict.
// Everything but the race itself is event-driven; the race blocks the loop
// on purpose, for its few µs to 1 s.
import Glibc
import VigilReactor

struct TrialResult {
    let daemon: String
    let round: Int
    let delayUs: UInt64
    var port: UInt16 = 0
    var achievedNs: UInt64?
    var survived = false
    /// Set when the trial did not measure what was asked (never ready,
    /// exited early, verdict could not run): such a trial is not counted.
    var error: String?
    /// The error came before the daemon was ever ready.
    var notReady = false
    var exit: ChildExit?
    var readyNs: UInt64?
    var stopCallNs: UInt64?
    var killCallNs: UInt64?
    var fifo = false
    /// The SIGKILL came more than --max-late-us after the requested delay
    /// (the race was interrupted): the trial did not measure d, so it is
    /// reported but not counted.
    var late = false
    /// `--vigil`: what `vigilctl last-shutdown` concluded, and whether it
    /// claimed a completed stop for a daemon that died of the SIGKILL.
    var classification: String?
    var lie = false

    /// The daemon died of our SIGKILL (rather than finishing its stop first).
    var killed: Bool? {
        guard let exit else { return nil }
        return exit == .signaled(SIGKILL)
    }
}

final class KillraceTrial {
    private enum Phase { case starting, settling, reaping, judging, done }

    private let config: KillraceConfig
    private let daemon: DaemonSpec
    private let reactor: Reactor
    private let dir: String
    private let home: [Int32]
    private let completion: (TrialResult) -> Void
    private var result: TrialResult
    private var phase = Phase.starting
    private var placeholders: Placeholders

    private var child: ChildHandle?
    private var output: OutputTail?
    private var load: ChildHandle?
    private var loadOutput: OutputTail?
    private var loadExit: ChildExit?
    private var loadFailure: String?
    private var verdictOutput: OutputTail?
    private var notifyFD: Int32 = -1
    private var notifyToken: Token?
    private var timers: [TimerHandle] = []
    private var startNs: UInt64 = 0
    private var readyRegex: Regex<AnyRegexOutput>?

    init(config: KillraceConfig, daemon: DaemonSpec, round: Int, delayUs: UInt64, reactor: Reactor,
         dir: String, home: [Int32], completion: @escaping (TrialResult) -> Void) {
        self.config = config
        self.daemon = daemon
        self.reactor = reactor
        self.dir = dir
        self.home = home
        self.completion = completion
        result = TrialResult(daemon: daemon.name, round: round, delayUs: delayUs)
        placeholders = Placeholders(state: dir + "/state", port: 0)
    }

    // MARK: Start and ready

    func start() {
        guard let port = ScratchDirectory.freeTCPPort() else { return abandon("no free TCP port on 127.0.0.1") }
        result.port = port
        placeholders = Placeholders(state: dir + "/state", port: port)
        guard ScratchDirectory.create(dir), ScratchDirectory.create(placeholders.state) else {
            return abandon("cannot create the trial directory \(dir): \(String(cString: strerror(errno)))")
        }
        let argv = daemon.argv.map(placeholders.apply)
        let pipe: (read: Int32, write: Int32)
        do {
            pipe = try ChildSpawner.pipe(nonblocking: .read)
            output = try OutputTail(reactor: reactor, fd: pipe.read)
        } catch { return abandon("cannot create the output pipe: \(error)") }
        defer { close(pipe.write) }
        if case .notify = config.ready {
            let path = dir + "/notify.sock"
            guard openNotifySocket(path) else {
                return abandon("cannot create the notify socket \(path): \(String(cString: strerror(errno)))")
            }
            setenv("NOTIFY_SOCKET", path, 1)
        }
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        startNs = monotonicNanoseconds()
        let pid: pid_t
        do {
            pid = try CPUAffinity.with(config.cpu.daemon, restoringTo: home) { () throws(SystemCallError) -> pid_t in
                // --daemon-fifo: forked under SCHED_FIFO, so it starts (and stays) with it.
                var rt = config.daemonFIFO.map { RealtimePriority(priority: $0) }
                defer { rt?.restore() }
                return try ChildSpawner.spawn(argv, io: .init(stdin: devNull, stdout: pipe.write, stderr: pipe.write))
            }
        } catch {
            unsetenv("NOTIFY_SOCKET")
            return abandon("cannot start \(argv[0]): \(String(cString: strerror(error.errno.rawValue)))")
        }
        unsetenv("NOTIFY_SOCKET")
        do {
            child = try reactor.watchChild(pid: pid) { [unowned self] exit in self.daemonExited(exit) }
        } catch {
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            return abandon("cannot watch the daemon (pidfd_open): \(error)")
        }
        armReadyCondition()
        timers.append(reactor.schedule(atNanoseconds: startNs &+ config.readyTimeoutNs) { [unowned self] in
            guard self.phase == .starting else { return }
            self.result.notReady = true
            self.terminate("not ready after \(fixed(Double(self.config.readyTimeoutNs) / 1e9, 1)) s (--ready \(self.readyText)); \(self.output?.summary ?? "no output")")
        })
    }

    private var readyText: String { placeholders.apply(config.ready.description) }

    private func armReadyCondition() {
        switch config.ready {
        case .after(let ms):
            timers.append(reactor.schedule(atNanoseconds: startNs &+ UInt64(ms) * 1_000_000) { [unowned self] in self.ready() })
        case .log(let pattern):
            readyRegex = try? Regex(pattern)
            output?.onLine = { [unowned self] line in
                if self.phase == .starting, let re = self.readyRegex, line.contains(re) { self.ready() }
            }
        case .notify:
            break  // the socket's handler
        case .tcp(let template):
            guard let address = try? SocketAddress(parsing: placeholders.apply(template)) else {
                return terminate("--ready tcp: '\(placeholders.apply(template))' is not an address")
            }
            probe(address)
        }
    }

    /// A connect every millisecond until one succeeds (a loopback connect
    /// is refused or accepted at once, so the blocking connect is short).
    private func probe(_ address: SocketAddress) {
        guard phase == .starting, child?.exit == nil else { return }
        if let fd = try? StreamSocket.connect(to: address) {
            StreamSocket.close(fd)
            return ready()
        }
        timers.append(reactor.schedule(after: .milliseconds(1)) { [unowned self] in self.probe(address) })
    }

    private func openNotifySocket(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(fd); return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            return false
        }
        notifyFD = fd
        notifyToken = try? reactor.register(fd, interest: .readable) { [unowned self] _ in self.readNotify() }
        return notifyToken != nil
    }

    private func readNotify() {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(notifyFD, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return }
            let text = String(decoding: buf[0..<n], as: UTF8.self)
            if phase == .starting, text.split(separator: "\n").contains("READY=1") { ready() }
        }
    }

    private func ready() {
        guard phase == .starting, child?.exit == nil else { return }
        phase = .settling
        result.readyNs = monotonicNanoseconds() &- startNs
        startLoad()
        timers.append(reactor.schedule(after: .nanoseconds(Int64(config.settleNs))) { [unowned self] in self.race() })
    }

    private func startLoad() {
        guard let pid = child?.pid else { return }
        let argv: [String]
        let connect = placeholders.apply(config.loadConnect)
        switch daemon.load {
        case .none: return
        case .ping:
            argv = [config.benchExecutable, "ping", "--connect", connect, "--connections", "64", "--depth", "16",
                    "--duration", "3600", "--warmup", "0"]
        case .turns:
            argv = [config.benchExecutable, "turns", "--connect", connect, "--sessions", "64",
                    "--duration", "86400", "--warmup", "0"]
        case .command(let c):
            var p = placeholders
            p.pid = pid
            argv = ["/bin/sh", "-c", p.apply(c)]
        }
        do {
            let pipe = try ChildSpawner.pipe(nonblocking: .read)
            defer { close(pipe.write) }
            loadOutput = try OutputTail(reactor: reactor, fd: pipe.read)
            let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
            defer { if devNull >= 0 { close(devNull) } }
            let loadPID = try CPUAffinity.with(config.cpu.load, restoringTo: home) { () throws(SystemCallError) -> pid_t in
                try ChildSpawner.spawn(argv, io: .init(stdin: devNull, stdout: pipe.write, stderr: pipe.write))
            }
            load = try reactor.watchChild(pid: loadPID) { [unowned self] exit in
                self.loadExit = exit
                if self.phase == .settling {
                    self.loadFailure = "the load exited before the stop signal (\(exit)); \(self.loadOutput?.summary ?? "")"
                }
                self.checkReaped()
            }
        } catch {
            loadFailure = "cannot start the load \(argv[0]): \(error)"
        }
    }

    // MARK: The race

    private func race() {
        guard phase == .settling, let child else { return }
        if let loadFailure { return terminate(loadFailure) }
        // A daemon that exited on its own but whose pidfd event the loop has
        // not seen yet would otherwise pass for one that stopped in time.
        if Self.isZombie(child.pid) {
            return terminate("exited before the stop signal; \(output?.summary ?? "no output")")
        }
        let timing = SignalRace.run(child, stopSignal: config.stopSignal, delayNs: result.delayUs * 1_000)
        // Like systemd's KillMode=control-group: the rest of its group goes too.
        kill(-child.pid, SIGKILL)
        result.achievedNs = timing.achievedNs
        result.stopCallNs = timing.stopCallNs
        result.killCallNs = timing.killCallNs
        result.fifo = timing.fifo
        result.late = timing.achievedNs > result.delayUs * 1_000 + config.maxLateNs
        phase = .reaping
        stopLoad()
        armReapTimeout()
        checkReaped()
    }

    private func stopLoad() {
        if let load, loadExit == nil { kill(-load.pid, SIGKILL) }
    }

    private func armReapTimeout() {
        timers.append(reactor.schedule(after: .nanoseconds(Int64(config.reapTimeoutNs))) { [unowned self] in
            guard self.phase == .reaping else { return }
            let who = self.child?.exit == nil ? "the daemon" : "the load"
            fatalAbort("\(who) did not exit \(fixed(Double(self.config.reapTimeoutNs) / 1e9, 0)) s after SIGKILL (stuck in the kernel?); giving up")
        })
    }

    private func daemonExited(_ exit: ChildExit) {
        result.exit = exit
        switch phase {
        case .starting:
            result.notReady = true
            terminate("exited before it was ready (\(exit)); \(output?.summary ?? "no output")")
        case .settling:
            terminate("exited before the stop signal (\(exit)); \(output?.summary ?? "no output")")
        case .reaping:
            checkReaped()
        case .judging, .done:
            break
        }
    }

    /// Ends a trial that cannot be counted: everything it started is killed
    /// and reaped before the next trial begins.
    private func terminate(_ error: String) {
        guard phase == .starting || phase == .settling else { return }
        result.error = error
        phase = .reaping
        if let child { kill(-child.pid, SIGKILL) }
        stopLoad()
        armReapTimeout()
        checkReaped()
    }

    private func checkReaped() {
        guard phase == .reaping, child?.exit != nil, load == nil || loadExit != nil else { return }
        phase = .judging
        for t in timers { reactor.cancelTimer(t) }
        timers.removeAll()
        if result.error != nil { return finish() }
        judge()
    }

    // MARK: Verdict

    private func judge() {
        let argv: [String]
        switch daemon.verdict {
        case .command(let c): argv = ["/bin/sh", "-c", placeholders.apply(c)]
        case .vigil: argv = [config.vigilctl, "last-shutdown", "--state-dir", placeholders.state, "--json"]
        }
        do {
            let pipe = try ChildSpawner.pipe(nonblocking: .read)
            defer { close(pipe.write) }
            verdictOutput = try OutputTail(reactor: reactor, fd: pipe.read)
            let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
            defer { if devNull >= 0 { close(devNull) } }
            let pid = try ChildSpawner.spawn(argv, io: .init(stdin: devNull, stdout: pipe.write, stderr: pipe.write))
            _ = try reactor.watchChild(pid: pid) { [unowned self] exit in self.verdictExited(exit) }
            timers.append(reactor.schedule(after: .nanoseconds(Int64(config.verdictTimeoutNs))) { [unowned self] in
                guard self.phase == .judging else { return }
                kill(-pid, SIGKILL)
                self.result.error = "the verdict did not finish within \(fixed(Double(self.config.verdictTimeoutNs) / 1e9, 0)) s"
            })
        } catch {
            result.error = "cannot run the verdict \(argv[0]): \(error)"
            finish()
        }
    }

    private func verdictExited(_ exit: ChildExit) {
        guard phase == .judging else { return }
        verdictOutput?.drain()
        defer { finish() }
        if result.error != nil { return }
        let tail = verdictOutput?.summary ?? "no output"
        switch daemon.verdict {
        case .command:
            switch exit {
            case .exited(0): result.survived = true
            case .exited(let c) where c >= 1 && c <= 125: result.survived = false
            default: result.error = "the verdict could not run (\(exit)); \(tail)"
            }
        case .vigil:
            guard exit == .exited(0) else {
                result.error = "vigilctl last-shutdown failed (\(exit)); \(tail)"
                return
            }
            let text = String(decoding: verdictOutput?.text ?? [], as: UTF8.self)
            guard let cls = Self.jsonStringField("classification", in: text) else {
                result.error = "vigilctl last-shutdown --json printed no classification; \(tail)"
                return
            }
            result.classification = cls
            let completedStop = cls == "clean" || cls == "cut-short"
            if result.killed == true {
                // The stopping record landed; a completed stop cannot have been
                // recorded by a process that had not finished it.
                result.survived = cls == "killed-during-drain"
                result.lie = completedStop
            } else {
                result.survived = completedStop
            }
        }
    }

    /// Whether `pid` has exited and waits to be reaped (state Z in /proc/PID/stat).
    static func isZombie(_ pid: pid_t) -> Bool {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0, let paren = buf[0..<n].lastIndex(of: UInt8(ascii: ")")), paren + 2 < n else { return false }
        let state = buf[paren + 2]
        return state == UInt8(ascii: "Z") || state == UInt8(ascii: "X")
    }

    /// The string value of `"name":"…"` in one JSON object (vigilctl's output).
    static func jsonStringField(_ name: String, in text: String) -> String? {
        guard let r = text.firstRange(of: "\"\(name)\":\"") else { return nil }
        let rest = text[r.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    // MARK: End

    /// A trial that could not even start its daemon.
    private func abandon(_ error: String) {
        result.error = error
        result.notReady = true
        finish()
    }

    private func finish() {
        guard phase != .done else { return }
        phase = .done
        for t in timers { reactor.cancelTimer(t) }
        timers.removeAll()
        output?.close()
        loadOutput?.close()
        verdictOutput?.close()
        if let t = notifyToken { reactor.deregister(t); notifyToken = nil }
        if notifyFD >= 0 { close(notifyFD); notifyFD = -1 }
        ScratchDirectory.remove(dir)
        let r = result
        let done = completion
        reactor.deliverOnLoop { done(r) }
    }
}

/// Ends the whole run: used when continuing could corrupt later trials.
func fatalAbort(_ message: String) -> Never {
    fail("killrace: \(message)", code: BenchExit.failed)
}
