// sd_notify(3) for Type=notify services: READY=1, STATUS=, STOPPING=1,
// WATCHDOG=1, EXTEND_TIMEOUT_USEC=. Without $NOTIFY_SOCKET (not started by
// systemd, or NotifyAccess=none) every call is a branch on a stored Bool:
// no syscall, no allocation.
import CVigil
import Glibc
import VigilReactor

public final class ServiceNotifier: @unchecked Sendable {
    /// Whether a service manager listens ($NOTIFY_SOCKET was set at start).
    public let isEnabled: Bool
    /// Every message sent, in order (tests and `status`).
    public private(set) var sent: [String] = []
    private let keepHistory: Bool

    /// Reads $NOTIFY_SOCKET once; the variable stays set for children that
    /// are not ours to decide about (sd_notify's unset_environment = 0).
    public init(environment: Bool = true, keepHistory: Bool = false) {
        let socket = getenv("NOTIFY_SOCKET").map { String(cString: $0) } ?? ""
        isEnabled = environment && !socket.isEmpty
        self.keepHistory = keepHistory
    }

    /// Sends one newline-separated set of assignments; returns whether the
    /// manager got it (false when disabled or on error — never fatal).
    @discardableResult
    public func notify(_ state: String) -> Bool {
        guard isEnabled else { return false }
        if keepHistory { sent.append(state) }
        return sd_notify(0, state) > 0
    }

    public func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    public func status(_ text: String) { notify("STATUS=\(text)") }
    /// Only after the `stopping` record is durable (docs/systemd.md).
    public func stopping(status: String) { notify("STOPPING=1\nSTATUS=\(status)") }
    public func watchdog() { notify("WATCHDOG=1") }
    public func extendTimeout(by d: Duration) { notify("EXTEND_TIMEOUT_USEC=\(d.nanosecondsValue / 1000)") }
}
