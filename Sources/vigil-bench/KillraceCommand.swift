// `vigil-bench killrace`: where in a daemon's stop sequence can SIGKILL land
// and still find the stop recorded? Any daemon, any verdict (docs/killrace.md).
import ArgumentParser
import Glibc
import VigilReactor

struct KillraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "killrace",
        abstract: "Measures a daemon's stop sequence against SIGKILL (SIGTERM, then SIGKILL d µs later).",
        usage: "vigil-bench killrace [options] -- COMMAND [ARGS...]",
        discussion: """
            Each trial: a fresh state directory and a free port ({state} and {port} in COMMAND, \
            --compare, --verdict and --load are replaced by them), the daemon started in its own \
            process group and watched through a pidfd, --ready, the load, the stop signal, SIGKILL \
            exactly d µs later (both through the pidfd; the achieved delay is measured), reap, then \
            the verdict: exit 0 = survived. --trials rounds; each round runs every delay once in a \
            fresh random order, and every daemon (COMMAND is `main`, plus each --compare) at each \
            delay. Prints a markdown table per daemon (survival, Wilson 95 % interval, d50/d99/d100), \
            ratios and the timing precision. Exit codes: 0 done, 1 the run failed (a daemon never \
            got ready, a child could not be reaped), 2 done but some trials failed or --vigil \
            caught a lie, 64 usage. See docs/killrace.md.
            """)

    @Option(help: ArgumentHelp("When the daemon is ready: tcp:{port} (a connect succeeds; tcp:HOST:PORT too), notify (READY=1 on the NOTIFY_SOCKET the tool provides), log:REGEX (a line of its stdout/stderr), after:MS.", valueName: "condition"))
    var ready: String = "tcp:{port}"

    @Option(name: .customLong("ready-timeout"), help: ArgumentHelp("Seconds a daemon may take to get ready.", valueName: "seconds"))
    var readyTimeout: Double = 10

    @Option(help: ArgumentHelp("Load from ready until the kill: none, ping, turns (vigil protocol loads from this tool), or a shell command ({state}, {port}, {pid}).", valueName: "none|ping|turns|CMD"))
    var load: String = "none"

    @Option(name: .customLong("load-for"), help: ArgumentHelp("The load for one daemon (repeatable).", valueName: "NAME=LOAD"))
    var loadFor: [String] = []

    @Option(name: .customLong("load-connect"), help: ArgumentHelp("Address the ping/turns load connects to.", valueName: "HOST:PORT"))
    var loadConnect: String = "127.0.0.1:{port}"

    @Option(name: .customLong("settle-ms"), help: ArgumentHelp("Milliseconds from ready (and the load's start) to the stop signal.", valueName: "ms"))
    var settleMs: Double = 100

    @Option(help: ArgumentHelp("Shell command run after each trial; exit 0 = survived (the marker, record or data is there), 1–125 = lost, else an error.", valueName: "CMD"))
    var verdict: String?

    @Flag(help: "The verdict is `vigilctl last-shutdown --json` (killed-during-drain = survived); a clean or cut-short record after death by SIGKILL counts as a lie.")
    var vigil = false

    @Option(name: .customLong("verdict-for"), help: ArgumentHelp("The verdict for one daemon (repeatable; `main` is COMMAND).", valueName: "NAME=CMD"))
    var verdictFor: [String] = []

    @Option(name: .customLong("vigil-for"), help: ArgumentHelp("Use the --vigil verdict for one daemon (repeatable).", valueName: "NAME"))
    var vigilFor: [String] = []

    @Option(help: ArgumentHelp("vigilctl for --vigil (default: the one next to this executable, else PATH).", valueName: "path"))
    var vigilctl: String?

    @Option(help: ArgumentHelp("Delays, comma or space separated, µs (or with us/ms/s). Default: 50 µs … 1 s in 1-2-5 steps.", valueName: "list"))
    var delays: String?

    @Option(help: "Trials per delay and daemon (= rounds).")
    var trials: Int = 20

    @Option(help: ArgumentHelp("auto (daemon on the last CPU, load and the signal race on the others), none, or DAEMON[,LOAD] CPU numbers.", valueName: "auto|none|D[,L]"))
    var cpu: String = "auto"

    @Option(help: ArgumentHelp("Another daemon in the same sweep (repeatable); split into words like a shell would, but run without one.", valueName: "NAME=COMMAND"))
    var compare: [String] = []

    @Option(name: .customLong("daemon-fifo"), help: ArgumentHelp("Run the daemon SCHED_FIFO at this priority (1–49), so other work on its CPU cannot delay its stop sequence: its own cost, not the scheduler's.", valueName: "priority"))
    var daemonFIFO: Int32?

    @Option(name: .customLong("max-late-us"), help: ArgumentHelp("A race whose SIGKILL comes more than this after the delay (interrupted by the host or by interrupts) is reported but not counted.", valueName: "µs"))
    var maxLateUs: Double = 200

    @Option(name: .customLong("stop-signal"), help: ArgumentHelp("The signal that starts the stop sequence.", valueName: "signal"))
    var stopSignal: String = "TERM"

    @Option(name: .customLong("work-dir"), help: ArgumentHelp("Where the trial directories go (on the file system you mean to measure). Default: $TMPDIR or /tmp.", valueName: "dir"))
    var workDir: String?

    @Option(help: "Seed of the delay shuffle (default: random; printed).")
    var seed: UInt64?

    @Option(help: ArgumentHelp("Write JSON lines: one per trial, then one summary per daemon.", valueName: "file"))
    var json: String?

    @Option(help: ArgumentHelp("Write the survival curves as SVG.", valueName: "file"))
    var svg: String?

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The daemon (`main`), after --.", valueName: "COMMAND"))
    var command: [String] = []

    func validate() throws {
        guard trials >= 1 else { throw ValidationError("--trials must be at least 1") }
        guard readyTimeout > 0, readyTimeout <= 3600 else { throw ValidationError("--ready-timeout must be in (0, 3600] seconds") }
        guard maxLateUs >= 0 else { throw ValidationError("--max-late-us must be ≥ 0") }
        guard settleMs >= 0, settleMs <= 600_000 else { throw ValidationError("--settle-ms must be in [0, 600000]") }
        guard !command.isEmpty || !compare.isEmpty else {
            throw ValidationError("no daemon: give `-- COMMAND [ARGS...]` and/or --compare NAME='COMMAND'")
        }
        if let p = daemonFIFO, !(1...49).contains(p) { throw ValidationError("--daemon-fifo must be 1…49 (below the signal race's 50)") }
        guard SignalSender.number(of: stopSignal) != nil else { throw ValidationError("--stop-signal: unknown signal '\(stopSignal)'") }
    }

    func run() throws {
        let made: Result<KillraceConfig, KillraceUsageError> = Result { () throws(KillraceUsageError) in try makeConfig() }
        guard case .success(let config) = made else {
            if case .failure(let e) = made { fail("killrace: \(e)", code: BenchExit.usage) }
            return
        }
        // Children must not inherit our own service manager's socket.
        unsetenv("NOTIFY_SOCKET")
        let allowed = CPUAffinity.current()
        let home = config.cpu.tool ?? allowed
        if let tool = config.cpu.tool, let error = CPUAffinity.pin(tool) {
            fail("killrace: \(error)", code: BenchExit.failed)
        }
        if let p = config.daemonFIFO {
            var rt = RealtimePriority(priority: p)
            rt.restore()
            if !rt.granted {
                fail("killrace: --daemon-fifo: SCHED_FIFO is not permitted (\(String(cString: strerror(rt.error)))); run as root or with CAP_SYS_NICE", code: BenchExit.failed)
            }
        }
        let parent = config.workDir
        guard let runDir = ScratchDirectory.make(in: parent, prefix: "vigil-killrace.") else {
            fail("killrace: cannot create a directory in \(parent): \(String(cString: strerror(errno)))", code: BenchExit.failed)
        }
        guard (runDir + "/t000000/notify.sock").utf8.count < 108 else {
            ScratchDirectory.remove(runDir)
            fail("killrace: --work-dir path too long for the notify socket (\(runDir))", code: BenchExit.usage)
        }
        let reactor: Reactor
        do { reactor = try Reactor() } catch { fail("killrace: cannot create the event loop: \(error)", code: BenchExit.failed) }
        // Ctrl-C: the daemons die with us (PR_SET_PDEATHSIG); the trial directories go too.
        for s in [SIGINT, SIGTERM] {
            try? reactor.onSignal(s) { _ in
                ScratchDirectory.remove(runDir)
                fail("killrace: interrupted", code: 130)
            }
        }
        let loadBefore = KillraceSweep.loadAverage()
        let sweep = KillraceSweep(config: config, reactor: reactor, home: home, runDir: runDir)
        do { try sweep.run() } catch {
            ScratchDirectory.remove(runDir)
            fail("killrace: event loop failed: \(error)", code: BenchExit.failed)
        }
        ScratchDirectory.remove(runDir)
        reactor.close()

        let summary = KillraceSummary(config: config, results: sweep.results)
        sweep.finishJSON(summary)
        let fifo = sweep.results.filter { $0.achievedNs != nil }
        let fifoText = fifo.isEmpty ? "" : (fifo.allSatisfy(\.fifo) ? " (SCHED_FIFO)" : " (NOT SCHED_FIFO: permission denied; timing is less precise)")
        var uts = utsname()
        uname(&uts)
        let kernel = withUnsafePointer(to: &uts.release) { $0.withMemoryRebound(to: CChar.self, capacity: 65) { String(cString: $0) } }
        let header = [
            "\(config.trials) trials per delay and daemon; delays \(config.delaysUs.map(String.init).joined(separator: ", ")) µs, shuffled per round (seed \(config.seed))",
            "ready \(config.ready) (timeout \(fixed(Double(config.readyTimeoutNs) / 1e9, 1)) s); stop signal \(SignalSource.name(of: config.stopSignal)) \(fixed(Double(config.settleNs) / 1e6, 0)) ms after ready, then SIGKILL",
            "CPUs: \(config.cpu)\(fifoText)\(config.daemonFIFO.map { "; daemons SCHED_FIFO priority \($0)" } ?? "")",
            "trial directories under \(config.workDir); \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, kernel \(kernel), loadavg before \(loadBefore), after \(KillraceSweep.loadAverage())",
        ]
        print(KillraceReport.text(summary, config: config, header: header, elapsedNs: sweep.elapsedNs, aborted: sweep.aborted))
        if let path = config.svgPath {
            let title = "Kill race: " + summary.curves.map(\.name).joined(separator: " vs ")
            let subtitle = "\(config.trials) trials per delay; \(SignalSource.name(of: config.stopSignal)), then SIGKILL after the delay"
            if !writeFile(path, KillraceSVG.render(summary, title: title, subtitle: String(subtitle.prefix(110)))) {
                fail("killrace: cannot write --svg \(path): \(String(cString: strerror(errno)))", code: BenchExit.failed)
            }
        }
        if let aborted = sweep.aborted { fail("killrace: \(aborted)", code: BenchExit.failed) }
        let lies = summary.curves.reduce(0) { $0 + $1.lies }
        let errors = summary.curves.reduce(0) { $0 + $1.errors }
        if lies > 0 || errors > 0 {
            fail("killrace: done, but \(errors) trial(s) failed and \(lies) lie(s) were caught", code: 2)
        }
    }

    func makeConfig() throws(KillraceUsageError) -> KillraceConfig {
        var daemons: [(String, [String])] = []
        if !command.isEmpty { daemons.append(("main", command)) }
        for c in compare {
            guard let eq = c.firstIndex(of: "="), eq != c.startIndex else {
                throw KillraceUsageError("--compare needs NAME='COMMAND', got '\(c)'")
            }
            let name = String(c[..<eq])
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
                throw KillraceUsageError("--compare: name '\(name)' may only have letters, digits, '-', '_' and '.'")
            }
            guard !daemons.contains(where: { $0.0 == name }) else {
                throw KillraceUsageError("--compare: the name '\(name)' is used twice\(name == "main" ? " (main is COMMAND)" : "")")
            }
            daemons.append((name, try splitCommandWords(String(c[c.index(after: eq)...]))))
        }
        let names = Set(daemons.map(\.0))
        var perDaemon: [String: Verdict] = [:]
        for v in verdictFor {
            guard let eq = v.firstIndex(of: "=") else { throw KillraceUsageError("--verdict-for needs NAME=CMD, got '\(v)'") }
            let name = String(v[..<eq])
            guard names.contains(name) else { throw KillraceUsageError("--verdict-for: no daemon is named '\(name)'") }
            perDaemon[name] = .command(String(v[v.index(after: eq)...]))
        }
        for name in vigilFor {
            guard names.contains(name) else { throw KillraceUsageError("--vigil-for: no daemon is named '\(name)'") }
            guard perDaemon[name] == nil else { throw KillraceUsageError("'\(name)' has both --verdict-for and --vigil-for") }
            perDaemon[name] = .vigil
        }
        var loads: [String: LoadKind] = [:]
        for l in loadFor {
            guard let eq = l.firstIndex(of: "=") else { throw KillraceUsageError("--load-for needs NAME=LOAD, got '\(l)'") }
            let name = String(l[..<eq])
            guard names.contains(name) else { throw KillraceUsageError("--load-for: no daemon is named '\(name)'") }
            loads[name] = LoadKind(parsing: String(l[l.index(after: eq)...]))
        }
        let defaultLoad = LoadKind(parsing: load)
        if vigil && verdict != nil { throw KillraceUsageError("--vigil and --verdict exclude each other") }
        let fallback: Verdict? = vigil ? .vigil : verdict.map { .command($0) }
        let specs = try daemons.map { (name, argv) throws(KillraceUsageError) -> DaemonSpec in
            guard let v = perDaemon[name] ?? fallback else {
                throw KillraceUsageError("no verdict for daemon '\(name)': give --verdict 'CMD', --vigil, or --verdict-for \(name)=CMD")
            }
            return DaemonSpec(name: name, argv: argv, verdict: v, load: loads[name] ?? defaultLoad)
        }
        let readyCondition = try ReadyCondition(parsing: ready)
        if case .tcp(let template) = readyCondition {
            guard (try? SocketAddress(parsing: Placeholders(state: "/", port: 1).apply(template))) != nil else {
                throw KillraceUsageError("--ready tcp:\(template): not an address (HOST:PORT, [IPV6]:PORT)")
            }
        }
        let loadKinds = specs.map(\.load)
        if loadKinds.contains(where: { if case .ping = $0 { true } else if case .turns = $0 { true } else { false } }) {
            guard (try? SocketAddress(parsing: Placeholders(state: "/", port: 1).apply(loadConnect))) != nil else {
                throw KillraceUsageError("--load-connect '\(loadConnect)': not an address")
            }
        }
        let exe = selfExecutable()
        let dir = exe.map { String($0[..<($0.lastIndex(of: "/") ?? $0.startIndex)]) } ?? "."
        let siblingCtl = dir + "/vigilctl"
        var seedValue = seed ?? 0
        if seed == nil { var g = SystemRandomNumberGenerator(); seedValue = g.next() >> 1 }
        let tmp = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var config = KillraceConfig(
            daemons: specs, ready: readyCondition, readyTimeoutNs: seconds(readyTimeout),
            loadConnect: loadConnect, settleNs: UInt64(settleMs * 1_000_000), delaysUs: try delays.map(parseDelays) ?? defaultKillraceDelaysUs,
            trials: trials, cpu: try CPUPlan(parsing: cpu, allowed: CPUAffinity.current()),
            stopSignal: SignalSender.number(of: stopSignal)!, daemonFIFO: daemonFIFO, workDir: workDir ?? tmp, seed: seedValue,
            vigilctl: vigilctl ?? (access(siblingCtl, X_OK) == 0 ? siblingCtl : "vigilctl"),
            benchExecutable: exe ?? "vigil-bench", jsonPath: json, svgPath: svg)
        config.maxLateNs = UInt64(maxLateUs * 1_000)
        return config
    }
}

/// /proc/self/exe, resolved.
func selfExecutable() -> String? {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    guard n > 0 else { return nil }
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Writes (replaces) a whole file; false on failure (errno set).
func writeFile(_ path: String, _ text: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var t = text
    return t.withUTF8 { b in
        var off = 0
        while off < b.count {
            let n = write(fd, b.baseAddress! + off, b.count - off)
            if n <= 0 { if errno == EINTR { continue }; return false }
            off += n
        }
        return true
    }
}
