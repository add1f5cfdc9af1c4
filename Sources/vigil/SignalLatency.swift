// Benchmark hook (docs/shutdown.md, "Test hooks"), as vigild's: with
// VIGIL_DEBUG_SIGNAL_LATENCY=1, a stop signal sent with a CLOCK_MONOTONIC
// stamp in its sigqueue payload (`vigil-bench signal`) is answered on stderr
// with its delay to the handler and to the stopping record's own stamps, so
// `vigil run` and vigild are measured by the same clock readings
// (scripts/bench-record.sh --vigil-run).
import Glibc
import VigilDaemon

enum SignalLatency {
    /// `signal-latency-ns SIGNAME N` (→ the handler's signalfd read),
    /// `signal-visible-ns SIGNAME N` (→ the record's pwrite returned: safe
    /// from SIGKILL), `signal-durable-ns SIGNAME N` (→ its fdatasync
    /// returned); N is 0 when the signal carried no stamp.
    static func print(_ write: StoppingRecordWrite) {
        let sent = write.signal.value, name = write.signal.name
        line("signal-latency-ns", name, from: sent, until: write.signal.receivedAtNs)
        line("signal-visible-ns", name, from: sent, until: write.visibleNs)
        line("signal-durable-ns", name, from: sent, until: write.durableNs)
    }

    private static func line(_ label: String, _ name: String, from sent: UInt64, until end: UInt64) {
        let latency = sent > 0 && sent <= end ? end - sent : 0
        let text = "\(label) \(name) \(latency)\n"
        _ = text.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
    }
}
