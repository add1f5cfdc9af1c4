import ArgumentParser
import Glibc
import Logging
import VigilDaemon
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
            With no arguments vigild serves newline-delimited JSON (docs/protocol.md) on \(VigildDefaults.listen), \
            keeps its state in ./vigil-state (or $STATE_DIRECTORY when systemd provides one) and answers \
            control requests (vigilctl) on STATE_DIR/vigild.sock. Under systemd (docs/systemd.md) it \
            serves the sockets systemd passes (and binds --listen addresses only when given), asks the \
            service manager for the unit's TimeoutStopSec (which then wins over --stop-timeout), sends \
            READY=1/STATUS=/STOPPING=1/WATCHDOG=1, and logs to the journal when stderr is connected to it.
            Environment (used when the flag is absent): VIGIL_LISTEN (comma-separated), VIGIL_STATE_DIR, \
            VIGIL_STOP_TIMEOUT, VIGIL_STOP_EXTEND, VIGIL_AGENT, VIGIL_EXEC_COMMAND, VIGIL_EXEC_TIME_LIMIT, VIGIL_IDLE_TIMEOUT, \
            VIGIL_MAX_CONNECTIONS, VIGIL_CONTROL_SOCKET; also VIGIL_IO_URING=off (force the pwrite/fdatasync \
            fallback) and VIGIL_LOG_LEVEL (trace…critical).
            Exit codes: 0 stop completed (clean or cut short: the shutdown record tells which), 1 fatal \
            error or a shutdown record that could not be made durable, 64 bad configuration, 69 cannot \
            listen, 71 event loop unavailable, 73 state directory unusable (also: journal unreadable or \
            disk full at start), 75 state directory locked by another instance.
            """)

    @Option(name: .customLong("listen"), help: ArgumentHelp("Address to serve, HOST:PORT, [IPV6]:PORT or unix:PATH (repeatable).", valueName: "address"))
    var listen: [String] = []

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("Directory for vigild's durable state (shutdown record, turn journal).", valueName: "dir"))
    var stateDir: String?

    @Option(name: .customLong("stop-timeout"), help: ArgumentHelp("Seconds the supervisor allows for stopping before SIGKILL (default 10); the drain ends on its own before that.", valueName: "seconds"))
    var stopTimeout: String?

    @Option(name: .customLong("stop-extend"), help: ArgumentHelp("Under systemd, let the drain run up to this many seconds past the stop timeout, asking for the time with EXTEND_TIMEOUT_USEC (default 0: never).", valueName: "seconds"))
    var stopExtend: String?

    @Option(name: .customLong("agent"), help: ArgumentHelp("Who answers turns: echo (replies with the text after work_ms) or exec (runs --exec-command per turn).", valueName: "echo|exec"))
    var agent: String?

    @Option(name: .customLong("exec-command"), help: ArgumentHelp("Shell command run per turn by the exec agent: the message on stdin, the reply from stdout.", valueName: "command"))
    var execCommand: String?

    @Option(name: .customLong("exec-time-limit"), help: ArgumentHelp("Seconds an exec turn may run before its child is killed (default 60).", valueName: "seconds"))
    var execTimeLimit: String?

    @Option(name: .customLong("idle-timeout"), help: ArgumentHelp("Seconds after which a connection with no input and no turn in flight is closed (default 300).", valueName: "seconds"))
    var idleTimeout: String?

    @Option(name: .customLong("max-connections"), help: ArgumentHelp("Client connections served at once; more are refused with too_many_connections (default 16384).", valueName: "n"))
    var maxConnections: String?

    @Option(name: .customLong("control-socket"), help: ArgumentHelp("Unix socket for vigilctl's control requests (default STATE_DIR/vigild.sock; 'none' disables it).", valueName: "path"))
    var controlSocket: String?

    func run() throws {
        var logger = Logger(label: "vigild")
        logger.logLevel = VigildDefaults.logLevel()
        let config: VigildConfiguration
        do { config = try VigildConfiguration(self) } catch {
            logger.critical("\(error)")
            throw ExitCode(VigildExit.usage)
        }
        try VigildDaemon(config: config, logger: logger).run()
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

    /// `VIGIL_IO_URING=off|0|no|false|disabled` forces the pwrite/fdatasync fallback.
    static func ioUringMode() -> IOUringMode {
        guard let v = ProcessEnvironment.get("VIGIL_IO_URING")?.lowercased() else { return .automatic }
        return ["off", "0", "no", "false", "disabled"].contains(v) ? .disabled : .automatic
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

/// For a stop signal: `signal-latency-ns`, then `signal-visible-ns` (→ the
/// stopping record's pwrite returned: safe from SIGKILL) and
/// `signal-durable-ns` (→ its fdatasync returned).
func printStoppingRecordLatency(_ write: StoppingRecordWrite) {
    printSignalLatency(write.signal)
    printLatency("signal-visible-ns", write.signal, until: write.visibleNs)
    printLatency("signal-durable-ns", write.signal, until: write.durableNs)
}

func printLatency(_ label: String, _ info: SignalInfo, until end: UInt64) {
    let latency = info.value > 0 && info.value <= end ? end - info.value : 0
    let line = "\(label) \(info.name) \(latency)\n"
    _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
}
