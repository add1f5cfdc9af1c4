// WatchdogSec=: WATCHDOG=1 at half the interval, from a timer on the
// reactor. The ping is made by the loop itself, so a loop that is stuck (a
// callback that never returns, a busy spin) stops pinging and systemd
// restarts the service: the watchdog watches the thing that matters.
import CVigil
import Logging
import VigilReactor

public final class WatchdogPinger {
    public let interval: Duration
    let reactor: Reactor
    let notifier: ServiceNotifier
    private var timer: TimerHandle?
    public private(set) var pings = 0

    /// nil unless systemd asked for a watchdog for this process
    /// (sd_watchdog_enabled: $WATCHDOG_USEC, and $WATCHDOG_PID if set).
    public init?(reactor: Reactor, notifier: ServiceNotifier) {
        var usec: UInt64 = 0
        guard notifier.isEnabled, sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        interval = .microseconds(Int64(usec))
        self.reactor = reactor
        self.notifier = notifier
    }

    /// Pings now, then every half interval from the loop's timer.
    public func start() {
        guard timer == nil else { return }
        ping()
        timer = reactor.scheduleRepeating(every: interval / 2) { [weak self] in self?.ping() }
    }

    private func ping() {
        notifier.watchdog()
        pings += 1
    }

    public func stop() {
        if let t = timer { reactor.cancelTimer(t) }
        timer = nil
    }
}
