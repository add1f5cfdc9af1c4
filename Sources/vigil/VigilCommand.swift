// `vigil`: Vigil's stop guarantees for a program in any language. One
// subcommand so far, `run` (docs/run.md).
import ArgumentParser
import Glibc
import Logging
import VigilDaemon
import VigilLifecycle
import VigilSupervisor

struct VigilCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil",
        abstract: "Vigil's stop guarantees for any program.",
        subcommands: [RunCommand.self])
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run COMMAND with a durable shutdown record, a stop budget and the work ledger.",
        discussion: """
            vigil locks the state directory, classifies the previous run, makes `running` durable and \
            starts COMMAND as the leader of its own process group, with VIGIL_PREVIOUS_RUN, \
            VIGIL_PREVIOUS_RUN_FILE, VIGIL_STOP_BUDGET_MS and VIGIL_LEDGER in its environment. \
            At SIGTERM/SIGINT: the `stopping` record durable, STOPPING=1, after --stop-delay the stop \
            signal to the group; SIGKILL to the group at the budget's end (cut-short). A second \
            SIGTERM cuts short at once; SIGQUIT skips the grace period. SIGHUP, SIGUSR1, SIGUSR2 and \
            SIGWINCH are forwarded to the program. docs/run.md has the details.
            Environment (used when the flag is absent): VIGIL_STATE_DIR (then systemd's STATE_DIRECTORY), \
            VIGIL_STOP_TIMEOUT (under systemd the unit's TimeoutStopSec wins), VIGIL_STOP_SIGNAL, \
            VIGIL_STOP_DELAY, VIGIL_READY, VIGIL_READY_TIMEOUT; VIGIL_LOG_LEVEL (trace…critical); \
            VIGIL_DEBUG_SIGNAL_LATENCY=1 (benchmarks: a stop signal's sigqueue stamp against the stopping record's).
            Exit codes: the program's own when it exits without a stop request (128+N after signal N), \
            0 a requested stop completed, 1 fatal error or a record not durable, 64 bad configuration, \
            69 not ready within --ready-timeout, 71 event loop unavailable, 73 state directory unusable, \
            75 locked by another instance, 126 COMMAND cannot be executed, 127 COMMAND not found.
            """)

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("Directory for the shutdown record and the ledger (default $VIGIL_STATE_DIR, $STATE_DIRECTORY, ./vigil-state).", valueName: "dir"))
    var stateDir: String?

    @Option(name: .customLong("stop-timeout"), help: ArgumentHelp("Seconds the supervisor allows for stopping before its SIGKILL (default 10; under systemd the unit's TimeoutStopSec).", valueName: "seconds"))
    var stopTimeout: String?

    @Option(name: .customLong("stop-signal"), help: ArgumentHelp("Signal asking the program's process group to stop (default TERM).", valueName: "signal"))
    var stopSignal: String?

    @Option(name: .customLong("stop-delay"), help: ArgumentHelp("Seconds between the stop request and the stop signal, counted in the budget (default 0).", valueName: "seconds"))
    var stopDelay: String?

    @Option(name: .customLong("ready"), help: ArgumentHelp("When READY=1 is sent: immediate (at spawn), notify (the program sends READY=1 to its NOTIFY_SOCKET), tcp:HOST:PORT (a connection succeeds).", valueName: "mode"))
    var ready: String?

    @Option(name: .customLong("ready-timeout"), help: ArgumentHelp("Seconds to wait for readiness before stopping the program and exiting 69 (default: no limit).", valueName: "seconds"))
    var readyTimeout: String?

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The program and its arguments, after --.", valueName: "command"))
    var command: [String] = []

    func run() throws {
        // The passthrough argument takes everything after the options,
        // --help too: asked for before any program, it is vigil's.
        if let first = command.first, first == "--help" || first == "-h" { throw CleanExit.helpRequest(self) }
        var logger = Logger(label: "vigil")
        logger.logLevel = ProcessEnvironment.logLevel()
        let supervisor: SupervisorConfiguration
        let budget: StopBudget
        do {
            (supervisor, budget) = try resolve()
        } catch {
            logger.critical("\(error)")
            throw ExitCode(DaemonExit.usage)
        }
        var daemon = DaemonConfiguration(name: "vigil", stateDirectory: ProcessEnvironment.stateDirectory(stateDir), stopBudget: budget, logger: logger)
        daemon.version = "0.1.0"
        daemon.workUnitName = "unit(s) of work"
        if ProcessEnvironment.get("VIGIL_DEBUG_SIGNAL_LATENCY") == "1" {
            daemon.onStoppingRecorded = { SignalLatency.print($0) }
        }
        let code = Daemon.run(daemon) { context in try SupervisorService(context, configuration: supervisor) }
        if code != 0 { throw ExitCode(code) }
    }

    struct Invalid: Error, CustomStringConvertible { let description: String }

    /// Every flag, else its VIGIL_* variable, else the default; checked
    /// before anything is opened.
    func resolve() throws -> (SupervisorConfiguration, StopBudget) {
        var argv = command
        if argv.first == "--" {
            argv.removeFirst()
        } else if let first = argv.first, first.hasPrefix("-") {
            // Not after `--`: a mistyped option, not a program to run.
            throw Invalid(description: "unknown option '\(first)' (a COMMAND that starts with '-' goes after --)")
        }
        guard !argv.isEmpty else { throw Invalid(description: "no command: vigil run [OPTIONS] -- COMMAND [ARGS...]") }
        let directory = ProcessEnvironment.stateDirectory(stateDir)
        guard directory.utf8.count <= SupervisorConfiguration.maxStateDirectoryBytes else {
            throw Invalid(description: "the state directory's path is \(directory.utf8.count) bytes; its sockets need it to be at most \(SupervisorConfiguration.maxStateDirectoryBytes) (Unix socket paths hold 107 bytes)")
        }
        var c = SupervisorConfiguration(command: argv)
        let budget = try StopBudget.resolve([(stopTimeout, "--stop-timeout"), (ProcessEnvironment.get("VIGIL_STOP_TIMEOUT"), "VIGIL_STOP_TIMEOUT")])
        if let s = stopSignal ?? ProcessEnvironment.get("VIGIL_STOP_SIGNAL") { c.stopSignal = try SupervisorConfiguration.parseSignal(s) }
        if let d = try seconds(stopDelay, "--stop-delay", "VIGIL_STOP_DELAY", allowZero: true) {
            guard d < budget.drainBudget else {
                throw Invalid(description: "--stop-delay (\(d.milliseconds) ms) must be shorter than the drain budget (\(budget.drainBudget.milliseconds) ms of the \(budget.stopTimeout.milliseconds) ms stop timeout): it is counted in the budget, and the program needs time to stop")
            }
            c.stopDelay = d
        }
        if let r = ready ?? ProcessEnvironment.get("VIGIL_READY") { c.readiness = try SupervisorConfiguration.Readiness(parsing: r) }
        c.readyTimeout = try seconds(readyTimeout, "--ready-timeout", "VIGIL_READY_TIMEOUT", allowZero: false)
        return (c, budget)
    }

    private func seconds(_ flag: String?, _ flagName: String, _ env: String, allowZero: Bool) throws -> Duration? {
        let origin = flag != nil ? flagName : env
        guard let text = flag ?? ProcessEnvironment.get(env) else { return nil }
        guard let s = Double(text), s.isFinite, allowZero ? s >= 0 : s > 0, s <= 86_400 else {
            throw Invalid(description: "invalid \(origin) '\(text)': expected seconds\(allowZero ? " ≥ 0" : " > 0"), e.g. 5 or 0.5")
        }
        return .nanoseconds(Int64(s * 1e9))
    }
}
