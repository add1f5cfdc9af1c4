// Timestamped signals: each one is sent with sigqueue(3) and carries
// CLOCK_MONOTONIC at the moment of sending as its payload. The receiver
// (vigild with VIGIL_DEBUG_SIGNAL_LATENCY=1) subtracts it from its own clock
// at the start of the handler; both clocks are the same system-wide clock.
// Sends are paced by the reactor's timer, so the sender is idle in between.
import CVigil
import Glibc
import VigilReactor

final class SignalSender {
    let pid: Int32
    let signal: Int32
    let count: Int
    let intervalNs: UInt64

    private var sent = 0
    private var startNs: UInt64 = 0
    private var endNs: UInt64 = 0
    private var failure: BenchError?

    init(pid: Int32, signal: Int32, count: Int, intervalNs: UInt64) {
        self.pid = pid
        self.signal = signal
        self.count = count
        self.intervalNs = intervalNs
    }

    struct Result {
        var sent: Int
        var elapsedNs: UInt64
    }

    func run() throws(BenchError) -> Result {
        let reactor: Reactor
        do { reactor = try Reactor() } catch {
            throw BenchError("cannot create the event loop: \(error)")
        }
        defer { reactor.close() }
        startNs = monotonicNanoseconds()
        // Absolute deadlines: a late wake-up does not shift the later sends.
        func next(_ reactor: Reactor) {
            guard sent < count else {
                endNs = monotonicNanoseconds()
                reactor.stop()
                return
            }
            if cvigil_sigqueue_u64(pid, signal, monotonicNanoseconds()) != 0 {
                let e = Glibc.errno
                failure = BenchError("sigqueue(\(pid), \(SignalSource.name(of: signal))) after \(sent) sent: \(String(cString: strerror(e))) (errno \(e))")
                endNs = monotonicNanoseconds()
                reactor.stop()
                return
            }
            sent += 1
            if sent == count {
                endNs = monotonicNanoseconds()
                reactor.stop()
                return
            }
            reactor.schedule(atNanoseconds: startNs &+ UInt64(sent) &* intervalNs) { [unowned reactor] in next(reactor) }
        }
        reactor.schedule(atNanoseconds: startNs) { [unowned reactor] in next(reactor) }
        do { try reactor.run() } catch {
            throw BenchError("event loop failed: \(error)")
        }
        if let failure { throw failure }
        return Result(sent: sent, elapsedNs: endNs &- startNs)
    }

    /// `USR1`, `SIGUSR1`, `usr1` or a number.
    static func number(of name: String) -> Int32? {
        if let n = Int32(name) { return n > 0 && n < 65 ? n : nil }
        var upper = name.uppercased()
        if upper.hasPrefix("SIG") { upper.removeFirst(3) }
        switch upper {
        case "HUP": return SIGHUP
        case "INT": return SIGINT
        case "QUIT": return SIGQUIT
        case "KILL": return SIGKILL
        case "USR1": return SIGUSR1
        case "USR2": return SIGUSR2
        case "TERM": return SIGTERM
        case "CHLD": return SIGCHLD
        case "CONT": return SIGCONT
        case "STOP": return SIGSTOP
        default: return nil
        }
    }
}

extension SignalSender.Result {
    /// `signal pid=… signal=SIGUSR1 sent=1000 interval_ms=2.000 elapsed=2.00s`
    func summary(_ s: SignalSender) -> String {
        "signal pid=\(s.pid) signal=\(SignalSource.name(of: s.signal)) sent=\(sent) interval_ms=\(fixed(Double(s.intervalNs) / 1e6, 3)) elapsed=\(fixed(Double(elapsedNs) / 1e9, 2))s"
    }

    func json(_ s: SignalSender) -> String {
        "{\"benchmark\":\"signal\",\"pid\":\(s.pid),\"signal\":\"\(SignalSource.name(of: s.signal))\",\"sent\":\(sent),\"interval_ms\":\(fixed(Double(s.intervalNs) / 1e6, 3)),\"elapsed_s\":\(fixed(Double(elapsedNs) / 1e9, 3))}"
    }
}
