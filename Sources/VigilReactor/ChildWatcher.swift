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
    var onExit: ((ChildExit) -> Void)?
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
        handle.onExit = onExit
        do throws(SystemCallError) {
            handle.token = try register(fd, interest: .readable) { [unowned self, handle] _ in
                var p: pid_t = 0, code: Int32 = 0, status: Int32 = 0
                let r = cvigil_waitid_pidfd(handle.pidfd, WEXITED | WNOHANG, &p, &code, &status)
                if r != 0 {
                    // ECHILD: the SIGCHLD reaper got it first and completed it.
                    if currentErrno() == .noChildProcess { self.completeChild(handle, nil) }
                    return
                }
                guard p != 0 else { return }  // not yet (spurious wake)
                self.completeChild(handle, code == CLD_EXITED ? .exited(status) : .signaled(status))
            }
        } catch {
            Syscall.close(fd)
            throw error
        }
        watchedChildren[pid] = handle
        return handle
    }

    /// Delivers a child's end once, whichever path reaped it.
    func completeChild(_ handle: ChildHandle, _ exit: ChildExit?) {
        if let exit, handle.exit == nil { handle.exit = exit }
        guard let t = handle.token else { return }
        handle.token = nil
        deregister(t)
        Syscall.close(handle.pidfd)
        watchedChildren[handle.pid] = nil
        let callback = handle.onExit
        handle.onExit = nil
        if let e = handle.exit { callback?(e) }
    }

    /// Reaps every exited child: watched ones are delivered to their
    /// handles, others (orphans adopted when running as PID 1 or as a
    /// subreaper) are just collected so no zombie stays. Returns how many
    /// unwatched ones were reaped.
    @discardableResult
    public func reapChildren() -> Int {
        var orphans = 0
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { break }
            // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (macros).
            let exit: ChildExit = (status & 0x7F) == 0 ? .exited((status >> 8) & 0xFF) : .signaled(status & 0x7F)
            if let handle = watchedChildren[pid] {
                completeChild(handle, exit)
            } else {
                orphans += 1
                logger.debug("reaped process \(pid) (\(exit))")
            }
        }
        return orphans
    }
}
