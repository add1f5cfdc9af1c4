// The entry point's signal timing as a test reads it: a stop signal sent
// by sigqueue with CLOCK_MONOTONIC in its payload (as `vigil-bench signal`
// sends it), and the three stamps a daemon run with
// VIGIL_DEBUG_SIGNAL_LATENCY=1 prints from the onStoppingRecorded hook.
import Glibc

extension LoggedProcess {
    /// Sends `signal` to `pid` (default: this process) carrying the time of
    /// sending; returns sigqueue's result.
    public func sendStamped(_ signal: Int32, to pid: pid_t? = nil) -> Int32 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let now = UInt(ts.tv_sec) * 1_000_000_000 + UInt(ts.tv_nsec)
        return sigqueue(pid ?? self.pid, signal, sigval(sival_ptr: UnsafeMutableRawPointer(bitPattern: now)))
    }

    /// Nanoseconds from the send to the handler's read of the signal, to
    /// the stopping record's pwrite returning, and to its fdatasync
    /// returning, as printed on stderr (0 when a line is missing).
    public func stopSignalStamps(_ name: String = "SIGTERM") -> (handler: UInt64, visible: UInt64, durable: UInt64) {
        func ns(_ label: String) -> UInt64 {
            let line = log.split(separator: "\n").first { $0.hasPrefix("\(label) \(name) ") }
            return line.flatMap { UInt64($0.split(separator: " ").last!) } ?? 0
        }
        return (ns("signal-latency-ns"), ns("signal-visible-ns"), ns("signal-durable-ns"))
    }
}
