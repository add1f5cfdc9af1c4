// A run that ends without a stop request: a supervisor's program exited by
// itself (`vigil run`). The record says how, durably, before the loop ends,
// and the process exits with the program's code (so `Restart=on-failure`
// sees the failure). Kept apart from the stop sequence it bypasses.
import Logging
import VigilDurable
import VigilReactor
import VigilSystemd

extension DaemonContext {
    /// READY=1 with `status`, for a service whose ``DaemonService/sendsReadyItself``
    /// is true (nothing without a service manager).
    public func ready(status: String) { notifier.ready(status: status) }

    /// Forwards a supervised program's notification to the service manager:
    /// `READY=1`, `STATUS=`, `WATCHDOG=1`, `WATCHDOG=trigger`,
    /// `EXTEND_TIMEOUT_USEC=`, `ERRNO=`, `BUSERROR=` lines pass; `STOPPING=1`
    /// and `MAINPID=` (and anything else) are dropped — STOPPING=1 follows
    /// the entry point's own durable record, and the main pid is this
    /// process. Returns the lines forwarded.
    @discardableResult
    public func relayNotification(_ message: String) -> [String] {
        let allowed = ["READY=1", "STATUS=", "WATCHDOG=1", "WATCHDOG=trigger", "EXTEND_TIMEOUT_USEC=", "ERRNO=", "BUSERROR="]
        let lines = message.split(separator: "\n").map(String.init).filter { line in allowed.contains { line.hasPrefix($0) } }
        if !lines.isEmpty { _ = notifier.notify(lines.joined(separator: "\n")) }
        return lines
    }

    /// A supervised program ended (on its own or during a stop): its exit
    /// status or signal goes into the `stopped` record, if a stop writes one.
    public func programExited(_ exit: ChildExit) {
        switch exit {
        case .exited(let code): store?.programExit = (code, nil)
        case .signaled(let s): store?.programExit = (nil, s)
        }
    }

    /// Ends the run because the supervised program ended on its own: the
    /// record says so durably (`stopped/clean` for exit 0 with `openWork`
    /// 0 and `exitCode` 0, else a crash with the status —
    /// ShutdownRecordStore.markProgramExited),
    /// the loop stops, and ``Daemon/run(_:makeService:)`` returns `exitCode`
    /// (1 if the record could not be made durable). Returns false when a
    /// stop has already begun: the stop sequence then decides.
    @discardableResult
    public func endRun(programExit: ChildExit, openWork: Int, exitCode: Int32) -> Bool {
        runEnder?(programExit, openWork, exitCode) ?? false
    }
}

extension Daemon {
    static func endRunWithoutStop(_ store: ShutdownRecordStore, _ exit: ChildExit, _ openWork: Int, _ exitCode: Int32,
                                  _ logger: Logger, _ notifier: ServiceNotifier, _ reactor: Reactor) -> Int32 {
        var code = exitCode
        let status: Int32?, signal: Int32?
        switch exit {
        case .exited(let code): (status, signal) = (code, nil)
        case .signaled(let s): (status, signal) = (nil, s)
        }
        // A run this process fails (a non-zero exit of its own) is not
        // clean, whatever the program's status.
        let runFailed = exitCode != 0 && exit == .exited(0)
        do { try store.markProgramExited(status: status, signal: signal, openWork: openWork, runFailed: runFailed) } catch {
            logger.error("the record of the program's end is NOT durable (\(error)); the next start will report crash")
            code = DaemonExit.fatal
        }
        let verdict = exit == .exited(0) && openWork == 0 && !runFailed ? "clean" : "crash"
        logger.notice("program \(exit) without a stop request, \(openWork) unit(s) of work open: recorded (next start: \(verdict)); exiting \(code)")
        notifier.status("program \(exit); exiting \(code)")
        reactor.stop()
        return code
    }
}
