// Child processes as pidfds (Linux 5.3+): the pidfd becomes readable when the
// child exits, waitid(P_PIDFD) reaps exactly that child, and
// pidfd_send_signal cannot hit a recycled pid.
import CVigil
import Glibc
import SystemPackage

/// How a child ended.
public enum ChildExit: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let sig): "killed by \(SignalSource.name(of: sig))"
        }
    }
}

/// A watched child: signal it safely; the watch ends when it has been reaped.
public final class ChildHandle {
    public let pid: pid_t
    let pidfd: Int32
    var token: Token?
    public internal(set) var exit: ChildExit?

    init(pid: pid_t, pidfd: Int32) {
        self.pid = pid
        self.pidfd = pidfd
    }

    /// Sends `signal` through the pidfd (a no-op once the child is reaped).
    public func send(_ signal: Int32) throws(SystemCallError) {
        guard exit == nil else { return }
        if cvigil_pidfd_send_signal(pidfd, signal, 0) != 0 {
            let e = currentErrno()
            if e == .noSuchProcess { return }
            throw SystemCallError("pidfd_send_signal", e)
        }
    }
}

extension Reactor {
    /// Watches child `pid` (which must be our child); `onExit` runs on the
    /// loop once it has exited and been reaped.
    public func watchChild(pid: pid_t, onExit: @escaping (ChildExit) -> Void) throws(SystemCallError) -> ChildHandle {
        let fd = try syscallRetrying("pidfd_open") { cvigil_pidfd_open(pid, 0) }
        let handle = ChildHandle(pid: pid, pidfd: fd)
        do throws(SystemCallError) {
            handle.token = try register(fd, interest: .readable) { [unowned self, handle] _ in
                var p: pid_t = 0, code: Int32 = 0, status: Int32 = 0
                let r = cvigil_waitid_pidfd(handle.pidfd, WEXITED | WNOHANG, &p, &code, &status)
                guard r == 0, p != 0 else { return }  // not yet (spurious wake)
                let exit: ChildExit = code == CLD_EXITED ? .exited(status) : .signaled(status)
                handle.exit = exit
                if let t = handle.token { self.deregister(t) }
                handle.token = nil
                Syscall.close(handle.pidfd)
                onExit(exit)
            }
        } catch {
            Syscall.close(fd)
            throw error
        }
        return handle
    }
}
