import ArgumentParser
import Glibc
import Logging
import VigilGateway
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
    /// The state directory cannot be created or used.
    static let stateDirUnusable: Int32 = 73
}

struct VigildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigild",
        abstract: "Vigil session gateway daemon.",
        discussion: """
            With no arguments vigild serves newline-delimited JSON on \(VigildDefaults.listen) and keeps \
            its state in ./vigil-state (or $STATE_DIRECTORY when systemd provides one).
            Environment: VIGIL_LISTEN (comma-separated), VIGIL_STATE_DIR, VIGIL_IO_URING=off (force the \
            pwrite/fdatasync fallback), VIGIL_LOG_LEVEL (trace…critical).
            Exit codes: 0 stop completed, 1 fatal error, 64 bad configuration, 69 cannot listen, \
            71 event loop unavailable, 73 state directory unusable.
            """)

    @Option(name: .customLong("listen"), help: ArgumentHelp("Address to serve, HOST:PORT, [IPV6]:PORT or unix:PATH (repeatable).", valueName: "address"))
    var listen: [String] = []

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("Directory for vigild's durable state.", valueName: "dir"))
    var stateDir: String?

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
        let stateDirectory = stateDir ?? VigildDefaults.stateDirectory()
        do { try StateDirectory.prepare(stateDirectory) } catch {
            logger.critical("state directory \(stateDirectory) is unusable: \(error)")
            throw ExitCode(VigildExit.stateDirUnusable)
        }

        // Benchmark hook (docs/benchmarks.md): a sender stamps CLOCK_MONOTONIC
        // into the sigqueue payload; the handler's first act prints the delay.
        let measureSignals = getenv("VIGIL_DEBUG_SIGNAL_LATENCY").map { String(cString: $0) == "1" } ?? false

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

        // The stop sequence proper (durable shutdown record, drain) arrives
        // with the shutdown-record issue; for now a stop signal ends the loop.
        let stop: (SignalInfo) -> Void = { info in
            if measureSignals { printSignalLatency(info) }
            logger.notice("\(info.name) from pid \(info.senderPID): stopping")
            server.closeAll()
            reactor.stop()
        }
        do {
            try reactor.onSignal(SIGTERM, handler: stop)
            try reactor.onSignal(SIGINT, handler: stop)
            try reactor.onSignal(SIGQUIT, handler: stop)
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
        reactor.close()
    }
}

enum VigildDefaults {
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

/// `signal-latency-ns SIGNAME N` on stderr: the time from the sender's
/// sigqueue to this handler (0 when the signal carried no timestamp).
func printSignalLatency(_ info: SignalInfo) {
    let now = monotonicNanoseconds()
    let latency = info.value > 0 && info.value <= now ? now - info.value : 0
    let line = "signal-latency-ns \(info.name) \(latency)\n"
    _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
}
