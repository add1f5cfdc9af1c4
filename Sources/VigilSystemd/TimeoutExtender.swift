// EXTEND_TIMEOUT_USEC= during the drain (sd_notify(3)): each message moves
// systemd's stop deadline to at least now + X. Sent at once when the drain
// starts and renewed every `step`, each time with X = 2 × step (never past
// `untilNs`), so the deadline is always a step ahead of the next message and
// no renewal can arrive late; it stops at the configured maximum.
import VigilReactor

public final class TimeoutExtender {
    let reactor: Reactor
    let notifier: ServiceNotifier
    let untilNs: UInt64
    let step: Duration
    private var timer: TimerHandle?
    public private(set) var messages = 0

    /// - Parameter untilNs: CLOCK_MONOTONIC end of the extended stop window.
    public init(reactor: Reactor, notifier: ServiceNotifier, untilNs: UInt64, step: Duration = .seconds(1)) {
        self.reactor = reactor
        self.notifier = notifier
        self.untilNs = untilNs
        self.step = step
    }

    /// Sends the first extension now and renews it every `step`.
    public func start() {
        guard timer == nil, tick() else { return }
        timer = reactor.scheduleRepeating(every: step) { [weak self] in
            guard let self, !self.tick() else { return }
            self.stop()
        }
    }

    /// One EXTEND_TIMEOUT_USEC message; false once the window is spent.
    private func tick() -> Bool {
        let now = monotonicNanoseconds()
        guard now < untilNs else { return false }
        let ask = min((step * 2).nanosecondsValue, untilNs - now)
        notifier.extendTimeout(by: .nanoseconds(Int64(ask)))
        messages += 1
        return true
    }

    public func stop() {
        if let t = timer { reactor.cancelTimer(t) }
        timer = nil
    }
}
