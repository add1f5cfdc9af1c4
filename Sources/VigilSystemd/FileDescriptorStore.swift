// systemd's file descriptor store (sd_pid_notify_with_fds(3), FDSTORE=1):
// descriptors the service manager keeps for a service while it restarts and
// hands back to the next instance in LISTEN_FDS/LISTEN_FDNAMES. The store
// survives `systemctl restart` and Restart= restarts, not stop + start
// (docs/systemd.md); systemd drops a stored socket whose peer hung up.
import CVigil
import Glibc

public enum FileDescriptorStore {
    /// Names the entry point reserves in LISTEN_FDNAMES for a handover;
    /// ``SocketActivation/takeListeners()`` leaves them alone.
    public static let reservedNamePrefix = "handover."

    /// The kernel passes at most SCM_MAX_FD (253) descriptors per message.
    static let maxPerMessage = 253

    /// Stores `fds` under `name` (FDSTORE=1 + FDNAME=), in messages of at
    /// most 253 descriptors. Throws the first failure (errno text); what was
    /// already sent stays stored (``remove(name:)`` takes it back).
    public static func store(_ fds: [Int32], name: String) throws(FileDescriptorStoreError) {
        guard isValidName(name) else { throw FileDescriptorStoreError("invalid FDNAME '\(name)'") }
        var i = 0
        while i < fds.count {
            let batch = Array(fds[i..<min(fds.count, i + maxPerMessage)])
            let r = batch.withUnsafeBufferPointer { b in
                sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=\(name)", b.baseAddress, UInt32(b.count))
            }
            if r < 0 { throw FileDescriptorStoreError("FDSTORE=1 of \(batch.count) descriptor(s) named \(name): \(String(cString: strerror(-r)))") }
            if r == 0 { throw FileDescriptorStoreError("FDSTORE=1: no service manager listens (NOTIFY_SOCKET unset)") }
            i += batch.count
        }
    }

    /// FDSTOREREMOVE=1: the manager closes every descriptor it stores under `name`.
    @discardableResult
    public static func remove(name: String) -> Bool {
        sd_pid_notify(0, 0, "FDSTOREREMOVE=1\nFDNAME=\(name)") > 0
    }

    /// The descriptors passed at start (LISTEN_FDS) whose names start with
    /// ``reservedNamePrefix``, without unsetting the environment: socket
    /// activation's listeners are left for ``SocketActivation/takeListeners()``.
    /// Each is made close-on-exec.
    public static func passedHandoverDescriptors() -> [PassedSocket] {
        SocketActivation.passed(unsetEnvironment: false).filter { $0.name.hasPrefix(reservedNamePrefix) }.map {
            _ = fcntl($0.fd, F_SETFD, FD_CLOEXEC)
            return $0
        }
    }

    /// systemd's fdname_is_valid: 1–255 printable ASCII characters, no ':'.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && name.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }
    }
}

public struct FileDescriptorStoreError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
