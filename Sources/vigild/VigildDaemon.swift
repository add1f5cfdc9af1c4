// vigild's life is the Daemon entry point's (docs/embedding.md): the state
// directory and its lock, the previous run's verdict, `running` durable, the
// budget, the loop, READY, the stop. vigild adds only its configuration and
// its application, the session gateway (GatewayService).
import ArgumentParser
import Logging
import VigilDaemon

struct VigildDaemon {
    let config: VigildConfiguration
    let logger: Logger

    func run() throws {
        var daemon = DaemonConfiguration(name: "vigild", stateDirectory: config.stateDirectory,
                                         stopBudget: config.budget, logger: logger)
        daemon.stopExtend = config.stopExtend
        daemon.version = VigildDefaults.version
        daemon.workUnitName = "turn(s)"
        daemon.reactorOptions.ioUring = VigildDefaults.ioUringMode()
        // Benchmark hook (docs/shutdown.md, "Test hooks"): the stop signal's
        // sigqueue stamp against the stopping record's own stamps.
        if ProcessEnvironment.get("VIGIL_DEBUG_SIGNAL_LATENCY") == "1" {
            daemon.onStoppingRecorded = { printStoppingRecordLatency($0) }
        }
        let code = Daemon.run(daemon) { context in try GatewayService(config: config, context: context) }
        if code != DaemonExit.ok { throw ExitCode(code) }
    }
}
