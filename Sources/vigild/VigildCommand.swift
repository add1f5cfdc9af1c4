import ArgumentParser
import Glibc
import Logging
import VigilDurable
import VigilGateway
import VigilLifecycle
import VigilReactor

/// Exit codes (docs/architecture.md#exit-codes).
enum VigildExit {
    /// A requested stop completed.
    static let ok: Int32 = 0
    /// Fatal error while running.
    static let fatal: Int32 = 1
    /// Bad command line or configuration (ArgumentParser's own validation
    /// errors use the same code).
    static let usage: Int32 = 64
    /// Listening sockets could not be set up (address in use, permission).
    static let listenFailed: Int32 = 69
    /// The event loop could not be created (epoll/eventfd/timerfd refused).
    static let osError: Int32 = 71
    /// The state directory cannot be created or used (or the record written).
    static let stateDirUnusable: Int32 = 73
    /// Another instance holds the state directory lock.
    static let locked: Int32 = 75
}

struct VigildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigild",
        abstract: "Vigil session gateway daemon.",
        discussion: """
            With no arguments vigild serves newline-delimited JSON on \(VigildDefaults.listen) and keeps \
            its state in ./vigil-state (or $STATE_DIRECTORY when systemd provides one).
            Environment: VIGIL_LISTEN (comma-separated), VIGIL_STATE_DIR, VIGIL_STOP_TIMEOUT (seconds), \
            VIGIL_IO_URING=off (force the pwrite/fdatasync fallback), VIGIL_LOG_LEVEL (trace…critical).
            Exit codes: 0 stop completed (clean or cut short: the shutdown record tells which), 1 fatal \
            error or a shutdown record that could not be made durable, 64 bad configuration, 69 cannot \
            listen, 71 event loop unavailable, 73 state directory unusable, 75 state directory locked by \
            another instance.
            """)

    @Option(name: .customLong("listen"), help: ArgumentHelp("Address to serve, HOST:PORT, [IPV6]:PORT or unix:PATH (repeatable).", valueName: "address"))
    var listen: [String] = []

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("Directory for vigild's durable state.", valueName: "dir"))
    var stateDir: String?

    @Option(name: .customLong("stop-timeout"), help: ArgumentHelp("Seconds the supervisor allows for stopping before SIGKILL (default 10); the drain ends on its own before that.", valueName: "seconds"))
    var stopTimeout: String?

    func run() throws {
        var logger = Logger(label: "vigild")
        logger.logLevel = VigildDefaults.logLevel()

        let addressTexts = listen.isEmpty ? VigildDefaults.listenFromEnvironment() : listen
        var addresses: [SocketAddress] = []
        for text in addressTexts {
            do { addresses.append(try SocketAddress(parsing: text)) } catch {
                logger.critical("\(error)")
                throw ExitCode(VigildExit.usage)
            }
        }
        let budget: StopBudget
        do { budget = try StopBudget.resolve(commandLine: stopTimeout) } catch {
            logger.critical("\(error)")
            throw ExitCode(VigildExit.usage)
        }

        // The state directory, its lock, then the previous run's record: the
        // old record is read and replaced only while we hold the lock.
        let stateDirectory = stateDir ?? VigildDefaults.stateDirectory()
        let stateFS: PosixStateFileSystem
        do {
            stateFS = try PosixStateFileSystem(path: stateDirectory)
            try stateFS.checkWritable()
        } catch {
            logger.critical("state directory \(stateDirectory) is unusable: \(error)")
            throw ExitCode(VigildExit.stateDirUnusable)
        }
        let lock: StateDirectoryLock
        do { lock = try StateDirectoryLock.acquire(in: stateFS) } catch {
            logger.critical("\(error) (\(stateDirectory)); refusing to start")
            if case .held = error { throw ExitCode(VigildExit.locked) }
            throw ExitCode(VigildExit.stateDirUnusable)
        }
        defer { withExtendedLifetime(lock) {} }
        let store = ShutdownRecordStore(fs: stateFS)
        let previous: PreviousRun
        do {
            let running = ShutdownRecord(running: getpid(), bootID: currentBootID(), startedAtNs: wallClockNanoseconds(), version: VigildDefaults.version)
            previous = try store.takeOver(running: running, currentBootID: running.bootID)
        } catch {
            logger.critical("cannot make the shutdown record durable in \(stateDirectory): \(error)")
            throw ExitCode(VigildExit.stateDirUnusable)
        }
        if previous.isUnclean {
            logger.warning("\(previous.summary)")
        } else {
            logger.notice("\(previous.summary)")
        }
        logger.notice("stop timeout \(budget.stopTimeout.milliseconds) ms from \(budget.source.rawValue); drain budget \(budget.drainBudget.milliseconds) ms")

        // Benchmark hook (docs/benchmarks.md): a sender stamps CLOCK_MONOTONIC
        // into the sigqueue payload; vigild prints the delay to the handler
        // (and, for stop signals, to the durable stopping record).
        let measureSignals = ProcessEnvironment.get("VIGIL_DEBUG_SIGNAL_LATENCY") == "1"

        let reactor: Reactor
        do { reactor = try Reactor(logger: logger) } catch {
            logger.critical("cannot create the event loop: \(error)")
            throw ExitCode(VigildExit.osError)
        }
        let server = LineServer(reactor: reactor, handler: ProtocolHandler(), logger: logger)
        for address in addresses {
            do {
                let bound = try server.listen(on: address)
                logger.notice("listening on \(bound)")
            } catch {
                logger.critical("cannot listen on \(address): \(error)")
                throw ExitCode(VigildExit.listenFailed)
            }
        }

        // Test hook (docs/shutdown.md): VIGIL_DEBUG_DRAIN_MS=N makes the drain
        // hold one unit of work for N ms, so budget and cut-short paths can be
        // exercised before the gateway has real turns.
        let debugDrainMs = ProcessEnvironment.get("VIGIL_DEBUG_DRAIN_MS").flatMap { Int($0) }
        var debugWork = debugDrainMs == nil ? 0 : 1

        let stop = StopSequence(reactor: reactor, store: store, budget: budget, logger: logger)
        stop.inFlight = { debugWork }
        if measureSignals {
            stop.onStopping.append { info in
                printSignalLatency(info)
                printLatency("signal-durable-ns", info, until: monotonicNanoseconds())
            }
        }
        stop.drain = { _ in
            server.closeListeners()
            if let ms = debugDrainMs {
                do { try await reactor.sleep(for: .milliseconds(ms)) } catch { return }
                debugWork = 0
            }
            server.closeAll()
        }
        do {
            try stop.install()
            try reactor.onSignal(SIGHUP) { _ in logger.info("SIGHUP ignored (no configuration to reload)") }
            if measureSignals {
                try reactor.onSignal(SIGUSR1) { printSignalLatency($0) }
            }
        } catch {
            logger.critical("cannot set up the signalfd: \(error)")
            throw ExitCode(VigildExit.osError)
        }
        logger.notice("vigild ready (pid \(getpid()), state \(stateDirectory), disk I/O \(reactor.disk.kind.rawValue))")

        do { try reactor.run() } catch {
            logger.critical("event loop failed: \(error)")
            throw ExitCode(VigildExit.fatal)
        }
        server.closeAll()
        reactor.close()
        if stop.exitCode != 0 { throw ExitCode(stop.exitCode) }
    }
}

enum VigildDefaults {
    static let version = "0.1.0"

    /// The documented default port: 7411 on loopback.
    static let listen = "127.0.0.1:7411"

    static func listenFromEnvironment() -> [String] {
        guard let v = getenv("VIGIL_LISTEN"), v.pointee != 0 else { return [listen] }
        return String(cString: v).split(separator: ",").map { String($0).trimmingSpaces() }
    }

    /// --state-dir, else VIGIL_STATE_DIR, else systemd's STATE_DIRECTORY
    /// (first entry of its colon-separated list), else ./vigil-state.
    static func stateDirectory() -> String {
        if let v = getenv("VIGIL_STATE_DIR"), v.pointee != 0 { return String(cString: v) }
        if let v = getenv("STATE_DIRECTORY"), v.pointee != 0 {
            return String(String(cString: v).split(separator: ":").first ?? "vigil-state")
        }
        return "vigil-state"
    }

    static func logLevel() -> Logger.Level {
        guard let v = getenv("VIGIL_LOG_LEVEL") else { return .info }
        return Logger.Level(rawValue: String(cString: v).lowercased()) ?? .info
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// `signal-latency-ns SIGNAME N` on stderr: from the sender's sigqueue to
/// the reactor reading the signalfd, just before the handler's first
/// instruction (0 when the signal carried no timestamp).
func printSignalLatency(_ info: SignalInfo) {
    printLatency("signal-latency-ns", info, until: info.receivedAtNs)
}

func printLatency(_ label: String, _ info: SignalInfo, until end: UInt64) {
    let latency = info.value > 0 && info.value <= end ? end - info.value : 0
    let line = "\(label) \(info.name) \(latency)\n"
    _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
}
