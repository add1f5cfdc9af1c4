// The reactor as Swift concurrency's executor, so async code (connection
// handlers, drain tasks) runs on the loop thread and nothing needs the
// global concurrent executor's threads. Root tasks are started with
// `Task(executorPreference: reactor)` (see `Reactor.spawn`); a bare `Task {}`
// or `Task.detached` would not inherit the preference and would start
// Dispatch threads, which is why the async APIs assert they run on the loop.

extension Reactor: SerialExecutor, TaskExecutor {
    /// Runs `job` on the loop thread in a later iteration (any thread may call it).
    public func enqueue(_ job: consuming ExecutorJob) {
        enqueue(.job(UnownedJob(job)))
    }

    /// This reactor as a serial executor.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// This reactor as a task executor (the preference of tasks it spawns).
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Two reactors share a context only when they are the same loop.
    public func isSameExclusiveExecutionContext(other: Reactor) -> Bool { self === other }

    /// Traps unless called on the loop thread (Swift concurrency's isolation check).
    public func checkIsolated() {
        precondition(isOnLoopThread, "expected to run on the reactor's loop thread")
    }

    /// Starts a root task on the loop. Its child tasks (`async let`, task
    /// groups) inherit the reactor as their task executor.
    @discardableResult
    public func spawn<T: Sendable>(_ body: sending @escaping () async throws -> T) -> Task<T, any Error> {
        Task(executorPreference: self, operation: body)
    }

    /// Same, for bodies that do not throw.
    @discardableResult
    public func spawn<T: Sendable>(_ body: sending @escaping () async -> T) -> Task<T, Never> {
        Task(executorPreference: self, operation: body)
    }

    /// Traps when called off the loop thread: the async APIs' guard against a
    /// `Task {}` that escaped to the global executor.
    @inline(__always)
    func assertOnLoop(_ api: StaticString = #function) {
        precondition(isOnLoopThread, "\(api) must be awaited on the reactor's thread; start tasks with reactor.spawn or Task(executorPreference: reactor)")
    }
}
