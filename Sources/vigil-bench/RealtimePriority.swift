// SCHED_FIFO for the calling thread, and back. The signal race runs under
// it so that nothing else on its CPU can preempt the busy-wait; with
// --daemon-fifo a daemon is forked under it (and inherits it, threads and
// all) so that other work on its CPU cannot delay its stop sequence.
import Glibc

struct RealtimePriority {
    private var saved = sched_param()
    private let savedPolicy: Int32
    /// Whether SCHED_FIFO was granted (root or CAP_SYS_NICE / RLIMIT_RTPRIO).
    let granted: Bool
    let error: Int32

    /// Switches the calling thread to SCHED_FIFO at `priority` (1–99).
    init(priority: Int32) {
        savedPolicy = sched_getscheduler(0)
        _ = sched_getparam(0, &saved)
        var p = sched_param(sched_priority: priority)
        granted = sched_setscheduler(0, SCHED_FIFO, &p) == 0
        error = granted ? 0 : errno
    }

    /// Back to the policy the thread had.
    mutating func restore() {
        if granted { _ = sched_setscheduler(0, savedPolicy, &saved) }
    }
}
