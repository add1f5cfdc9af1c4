// The measured part of a kill-race trial: the stop signal, then SIGKILL
// exactly d µs later, both through the child's pidfd (never a recycled pid).
//
// Precision: the loop is not running meanwhile (this is called from a
// reactor callback and returns when both signals are sent). The thread is
// SCHED_FIFO for the race where permitted, so a load generator on the same
// CPU cannot preempt it, and it busy-waits on CLOCK_MONOTONIC (vDSO, no
// syscall) for the last 2 ms; longer delays sleep until then, since a
// SCHED_FIFO wake-up costs tens of µs at most. Nothing allocates in between.
import Glibc
import VigilReactor

enum SignalRace {
    struct Timing {
        /// From the return of the stop signal's call (the signal is queued
        /// and the daemon woken) to the start of the SIGKILL call (not yet
        /// queued): a lower bound of the real gap, which is at most
        /// achieved + both calls' durations.
        var achievedNs: UInt64
        /// How long each pidfd_send_signal took (waking a sleeping daemon on
        /// another CPU costs an IPI: tens of µs in a VM).
        var stopCallNs: UInt64
        var killCallNs: UInt64
        var fifo: Bool
    }

    static let spinNs: UInt64 = 2_000_000

    static func run(_ child: ChildHandle, stopSignal: Int32, delayNs: UInt64) -> Timing {
        var rt = RealtimePriority(priority: 50)
        defer { rt.restore() }
        let fifo = rt.granted

        // Warm the clock and the code path.
        var t0 = monotonicNanoseconds()
        for _ in 0..<8 { t0 = monotonicNanoseconds() }

        t0 = monotonicNanoseconds()
        try? child.send(stopSignal)
        let t1 = monotonicNanoseconds()
        let target = t1 &+ delayNs
        if target > t1 &+ spinNs {
            var ts = timespec(tv_sec: Int(((target &- spinNs) / 1_000_000_000)), tv_nsec: Int((target &- spinNs) % 1_000_000_000))
            while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
        }
        var t2 = monotonicNanoseconds()
        while t2 < target { t2 = monotonicNanoseconds() }
        try? child.send(SIGKILL)
        let t3 = monotonicNanoseconds()
        return Timing(achievedNs: t2 &- t1, stopCallNs: t1 &- t0, killCallNs: t3 &- t2, fifo: fifo)
    }
}
