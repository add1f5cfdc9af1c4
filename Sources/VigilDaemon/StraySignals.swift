// Signals whose default action would end the daemon without a shutdown record
// (SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGXCPU, SIGXFSZ, SIGSYS, SIGUSR1/2
// when no test hook uses them, SIGSTKFLT, the real-time signals): blocked in main
// before any thread exists, then read from the signalfd and logged — at most
// once a second per signal, with a count, so a flood cannot flood the log.
// SIGPWR (the UPS says power is failing; init sends it) is a stop request.
import Glibc
import Logging
import VigilReactor

/// Signals a daemon on ``Daemon`` does not stop for, but which would kill it
/// by default. ``Daemon/blockSignals()`` blocks them with the stop signals;
/// the entry point logs and ignores them, and treats SIGPWR as a stop.
enum StraySignals {
    /// Every signal that terminates by default and that the daemon does not
    /// otherwise handle. SIGKILL/SIGSTOP cannot be caught; the rest of the
    /// classic ones (TERM, INT, QUIT, HUP, CHLD, PIPE) have their own treatment.
    static var all: [Int32] {
        var s: [Int32] = [SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGXCPU, SIGXFSZ, SIGSYS, SIGUSR1, SIGUSR2, SIGPWR, SIGSTKFLT]
        s += Array(__libc_current_sigrtmin()...__libc_current_sigrtmax())
        return s
    }

    /// First statement of main, with `SignalSource.blockDaemonSignals()`.
    static func block() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in all { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Reads every stray signal not already handled from the signalfd:
    /// logged (rate-limited) and otherwise ignored; SIGPWR goes to `stop`.
    static func install(on reactor: Reactor, logger: Logger, name: String, stop: @escaping (SignalInfo) -> Void) throws(SystemCallError) {
        let limiter = RateLimitedLog(logger: logger, name: name)
        // Signals the service registered itself (e.g. SIGUSR1) stay its own.
        for s in all where !reactor.handlesSignal(s) {
            if s == SIGPWR {
                // The stop sequence's record comes first; the log line after.
                try reactor.onSignal(s) { info in
                    stop(info)
                    logger.warning("SIGPWR from pid \(info.senderPID): power failure announced; treated as a stop request")
                }
            } else {
                try reactor.onSignal(s) { limiter.note($0) }
            }
        }
    }
}

/// One log line per signal per second at most; the lines in between are counted.
final class RateLimitedLog {
    let logger: Logger
    private var lastNs: [Int32: UInt64] = [:]
    private var suppressed: [Int32: Int] = [:]

    let name: String

    init(logger: Logger, name: String) {
        self.logger = logger
        self.name = name
    }

    func note(_ info: SignalInfo) {
        let now = monotonicNanoseconds()
        if let last = lastNs[info.signal], now - last < 1_000_000_000 {
            suppressed[info.signal, default: 0] += 1
            return
        }
        lastNs[info.signal] = now
        let more = suppressed.removeValue(forKey: info.signal).map { " (and \($0) more in the last second)" } ?? ""
        logger.warning("\(SignalSource.name(of: info.signal)) from pid \(info.senderPID) (uid \(info.senderUID)) ignored: \(name) stops only on SIGTERM, SIGINT, SIGQUIT or SIGPWR\(more)")
    }
}
