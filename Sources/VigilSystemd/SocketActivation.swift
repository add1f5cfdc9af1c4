// Socket activation: listening sockets passed by systemd (sd_listen_fds(3)),
// starting at fd 3, named by FileDescriptorName= (default: the socket unit's
// name). systemd keeps them open across our restarts, so a client connecting
// while vigild is down waits in the kernel's accept queue instead of being
// refused. Descriptors named with FileDescriptorStore.reservedNamePrefix
// come from the fd store (a handover) and are the entry point's.
import CVigil
import Glibc

public struct PassedSocket: Sendable, Equatable {
    public let fd: Int32
    public let name: String

    public init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }
}

public enum SocketActivation {
    /// The listening stream sockets systemd passed, with their names. The
    /// LISTEN_* variables are unset so children do not inherit them, and
    /// each descriptor is made close-on-exec and non-blocking. Handover
    /// descriptors (``FileDescriptorStore/reservedNamePrefix``) are skipped.
    public static func takeListeners() -> (sockets: [PassedSocket], ignored: [String]) {
        var sockets: [PassedSocket] = [], ignored: [String] = []
        for passed in passed(unsetEnvironment: true) where !passed.name.hasPrefix(FileDescriptorStore.reservedNamePrefix) {
            let fd = passed.fd
            // Only listening stream sockets can be served; anything else
            // (a FIFO, a datagram socket) is named in the log and left alone.
            guard sd_is_socket(fd, AF_UNSPEC, Int32(SOCK_STREAM.rawValue), 1) > 0 else {
                ignored.append("\(passed.name) (fd \(fd))")
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            sockets.append(passed)
        }
        return (sockets, ignored)
    }

    /// Every descriptor passed (LISTEN_FDS, when LISTEN_PID is us), with its
    /// LISTEN_FDNAMES name ("fdN" when unnamed).
    public static func passed(unsetEnvironment: Bool) -> [PassedSocket] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let n = sd_listen_fds_with_names(unsetEnvironment ? 1 : 0, &names)
        guard n > 0 else { return [] }
        defer {
            if let names {
                for i in 0..<Int(n) { free(names[i]) }
                free(names)
            }
        }
        return (0..<Int(n)).map { i in
            let fd = SD_LISTEN_FDS_START + Int32(i)
            return PassedSocket(fd: fd, name: names?[i].map { String(cString: $0) } ?? "fd\(fd)")
        }
    }
}
