// async faces of the reactor's sources. Each registers a one-shot callback
// and resumes a continuation from the loop; they must be awaited on the loop
// thread (enforced), so no task ever needs another thread.

import Glibc

/// Thrown by async waits that were cancelled.
public struct ReactorCancelled: Error {}

extension Reactor {
    /// Suspends until `fd` is ready for `interest` (or reports hangup/error).
    public func wait(for interest: Interest, on fd: Int32) async throws -> Readiness {
        assertOnLoop()
        return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Readiness, any Error>) in
            var token: Token?
            do {
                token = try register(fd, interest: interest) { [unowned self] readiness in
                    if let t = token { self.deregister(t) }
                    token = nil
                    cont.resume(returning: readiness)
                }
            } catch {
                cont.resume(throwing: error)
            }
        }
    }

    /// Sleeps on the reactor's timer. Throws `ReactorCancelled` if the task is cancelled.
    public func sleep(for delay: Duration) async throws {
        assertOnLoop()
        let box = SleepState()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled { cont.resume(throwing: ReactorCancelled()); return }
                box.continuation = cont
                box.timer = schedule(after: delay) {
                    box.continuation?.resume()
                    box.continuation = nil
                }
            }
        } onCancel: {
            // Cancellation may be requested from any thread: hop to the loop.
            self.execute {
                guard let cont = box.continuation else { return }
                box.continuation = nil
                if let t = box.timer { self.cancelTimer(t) }
                cont.resume(throwing: ReactorCancelled())
            }
        }
    }

    /// Waits for child `pid` to exit and reaps it.
    public func waitForExit(pid: pid_t) async throws -> ChildExit {
        assertOnLoop()
        return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<ChildExit, any Error>) in
            do {
                _ = try watchChild(pid: pid) { cont.resume(returning: $0) }
            } catch {
                cont.resume(throwing: error)
            }
        }
    }

    /// Submits disk operations and suspends until all have completed.
    public func perform(_ ops: [DiskOp], linked: Bool = false) async -> [DiskCompletion] {
        assertOnLoop()
        return await withCheckedContinuation { (cont: CheckedContinuation<[DiskCompletion], Never>) in
            disk.submit(ops, linked: linked) { cont.resume(returning: $0) }
        }
    }
}

/// Loop-confined state of one `sleep` (only touched on the loop thread).
private final class SleepState: @unchecked Sendable {
    var continuation: CheckedContinuation<Void, any Error>?
    var timer: TimerHandle?
}
