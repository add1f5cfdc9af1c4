// The single-threaded reactor. One thread; epoll_pwait is the only place it
// blocks. Every iteration (`runOnce`):
//   1. the disk backend's queued submissions go to the kernel (one
//      io_uring_enter; the syscall fallback runs them and queues completions)
//      — unless a callback sent them earlier with submitDiskWorkNow();
//   2. epoll_pwait (timeout 0 when jobs are already queued);
//   3. the signalfd first, if it is ready: signal handlers run to completion
//      before any other callback or task of the iteration — this is what
//      lets a SIGTERM handler make the shutdown record durable before any
//      drain work is even scheduled. A handled signal that arrives later in
//      the batch is read before the next callback (one rt_sigpending each);
//   4. the other ready sources (descriptors, timerfd, waker, pidfds, the
//      io_uring eventfd), stale events dropped by token generation;
//   5. a bounded batch of queued jobs (Swift tasks and closures);
//   6. iteration observers (e.g. the systemd watchdog ping).
import CVigil
import DequeModule
import Glibc
import Logging
import Synchronization
import SystemPackage

/// A single-threaded event loop on epoll, with signals from a signalfd,
/// timers from one timerfd, a cross-thread wake-up eventfd, child exits from
/// pidfds, and disk I/O on io_uring (or a syscall fallback).
///
/// Everything but ``execute(_:)``, ``wake()``, ``stop()`` and
/// ``isOnLoopThread`` must be called on the loop's thread: the thread that
/// created it, until ``run()`` or ``runOnce(timeoutMs:)`` is called from
/// another. Debug builds check that. The reactor is also a Swift
/// concurrency executor (`spawn`), so async code runs on the
/// loop too.
///
/// Stop signals are the reason it exists: handlers registered with
/// ``onSignal(_:handler:)`` run before any other callback of the iteration
/// in which the signal is read, so a SIGTERM handler can make a record
/// durable before any drain work is even scheduled.
public final class Reactor: @unchecked Sendable {
    /// How the reactor is built.
    public struct Options: Sendable {
        /// io_uring or the syscall fallback (default: io_uring when allowed).
        public var ioUring: IOUringMode = .automatic
        /// Placement and number of io_uring's worker threads (default: the
        /// kernel's; docs/benchmarks.md measured the alternatives as no better).
        public var ioWorkers: IOWorkerPolicy = .kernelDefault
        /// Events taken from epoll per iteration.
        public var eventBatch: Int = 256
        /// Jobs run per iteration before polling again.
        public var jobBatch: Int = 1024
        /// The defaults: io_uring when available, 256 events and 1024 jobs per iteration.
        public init() {}
    }

    /// Queued work. Closures reach the cross-thread queue only through
    /// `execute`, which requires them to be `@Sendable`; others stay on the loop.
    enum Work: @unchecked Sendable {
        case job(UnownedJob)
        case closure(() -> Void)
    }

    /// Where the reactor reports its own problems (timerfd errors, io_uring fallback).
    public let logger: Logger
    let epfd: Int32
    var registry = Registry()
    private var events: UnsafeMutablePointer<epoll_event>
    private let eventCapacity: Int
    private let jobBatch: Int

    // Signals
    private var signalFD: Int32 = -1
    private var signalToken: UInt64 = .max
    private var signalHandlers: [Int32: (SignalInfo) -> Void] = [:]
    /// Bit (n-1) set for each handled signal n < 64, as in sigset_t's first word.
    private var handledSignalMask: UInt64 = 0

    // Timers
    private var timers = TimerQueue()
    private let timerFD: Int32
    private var armedDeadline: UInt64 = 0

    // Cross-thread wake-up and job queues
    private let wakeFD: Int32
    private let wakePending = Atomic<Bool>(false)
    private let remote = RemoteQueue<Work>()
    var local = Deque<Work>()

    private var observers: [() -> Void] = []
    /// Children watched through pidfds, by pid (for the SIGCHLD reaper).
    var watchedChildren: [pid_t: ChildHandle] = [:]
    private var running = false
    private let stopRequested = Atomic<Bool>(false)
    /// The thread that drives the loop (its pthread_t): the creating thread
    /// until run() or runOnce() is called from another. Atomic because
    /// `execute` and `isOnLoopThread` read it from any thread.
    private let loopThread: Atomic<UInt>
    private var closed = false

    /// The disk backend: io_uring, or the syscall fallback.
    public private(set) var disk: any DiskIO

    /// Creates the epoll set, the timerfd, the wake-up eventfd and the disk
    /// backend. The calling thread becomes the loop's thread.
    /// - Throws: the failing syscall and its errno (epoll, timerfd, eventfd).
    public init(options: Options = Options(), logger: Logger = Logger(label: "vigil.reactor")) throws(SystemCallError) {
        self.logger = logger
        loopThread = Atomic(UInt(pthread_self()))
        epfd = try Syscall.epollCreate()
        eventCapacity = max(1, options.eventBatch)
        jobBatch = max(1, options.jobBatch)
        events = .allocate(capacity: eventCapacity)
        do {
            timerFD = try Syscall.timerfdCreate()
            wakeFD = try Syscall.eventfd()
        } catch {
            Syscall.close(epfd)
            events.deallocate()
            throw error
        }
        disk = SyscallDiskIO(reason: nil, deliver: { _ in })
        try setUpInternalSources(options: options)
    }

    private func setUpInternalSources(options: Options) throws(SystemCallError) {
        _ = try register(timerFD, interest: .readable) { [unowned self] _ in self.fireTimers() }
        _ = try register(wakeFD, interest: .readable) { [unowned self] _ in self.drainRemote() }
        let deliver: (@escaping () -> Void) -> Void = { [unowned self] in self.local.append(.closure($0)) }
        switch options.ioUring {
        case .disabled:
            disk = SyscallDiskIO(reason: "disabled by configuration", deliver: deliver)
            logger.info("io_uring disabled by configuration: disk I/O uses pwrite/fdatasync")
        case .automatic:
            switch URingDiskIO.make(workers: options.ioWorkers) {
            case .success(let ring):
                disk = ring
                if let note = ring.workerSetup { logger.info("io_uring: \(note)") }
                _ = try register(ring.eventFD, interest: .readable) { _ in ring.reap() }
            case .failure(let error):
                disk = SyscallDiskIO(reason: "\(error)", deliver: deliver)
                logger.warning("io_uring unavailable (\(error)): disk I/O falls back to pwrite/fdatasync")
            }
        }
    }

    deinit { close() }

    /// Releases every descriptor the reactor owns (not those registered by callers).
    public func close() {
        guard !closed else { return }
        closed = true
        disk.close()
        if signalFD >= 0 { Syscall.close(signalFD) }
        Syscall.close(timerFD)
        Syscall.close(wakeFD)
        Syscall.close(epfd)
        events.deallocate()
    }

    // MARK: Descriptors

    /// Watches `fd` (level-triggered). The caller keeps ownership of `fd` and
    /// must `deregister` before closing it.
    public func register(_ fd: Int32, interest: Interest, handler: @escaping (Readiness) -> Void) throws(SystemCallError) -> Token {
        assertOnLoopThread()
        let token = registry.insert(fd: fd, interest: interest, handler: handler)
        do {
            try Syscall.epollCtl(epfd, EPOLL_CTL_ADD, fd, events: interest.epollEvents, data: token.raw)
        } catch {
            registry.remove(token)
            throw error
        }
        return token
    }

    /// Changes what a registration listens for (no syscall when unchanged).
    public func reregister(_ token: Token, interest: Interest) throws(SystemCallError) {
        assertOnLoopThread()
        guard let fd = registry.fd(of: token), registry.interest(of: token) != interest else { return }
        try Syscall.epollCtl(epfd, EPOLL_CTL_MOD, fd, events: interest.epollEvents, data: token.raw)
        registry.setInterest(token, interest)
    }

    /// Stops watching; events of this token still in the current batch are dropped.
    public func deregister(_ token: Token) {
        assertOnLoopThread()
        guard let fd = registry.remove(token) else { return }
        _ = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
    }

    /// Descriptors registered now, the reactor's own included.
    public var registrationCount: Int { registry.count }

    // MARK: Signals

    /// Handles `signal` from the signalfd. Handlers run synchronously, before
    /// any other source or job of the iteration. The signal is blocked in the
    /// calling thread; a daemon must also call `SignalSource.blockDaemonSignals()`
    /// first thing in `main` so that no other thread can take it.
    public func onSignal(_ signal: Int32, handler: @escaping (SignalInfo) -> Void) throws(SystemCallError) {
        assertOnLoopThread()
        SignalSource.block([signal])
        signalHandlers[signal] = handler
        if signal < 64 { handledSignalMask |= 1 << UInt64(signal - 1) }
        let all = Array(signalHandlers.keys)
        let firstTime = signalFD < 0
        signalFD = try SignalSource.signalfd(existing: signalFD, signals: all)
        if firstTime {
            signalToken = try register(signalFD, interest: .readable) { [unowned self] _ in self.drainSignals() }.raw
        }
    }

    /// Whether `signal` has a handler (``onSignal(_:handler:)``).
    public func handlesSignal(_ signal: Int32) -> Bool {
        signalHandlers[signal] != nil
    }

    /// Whether a handled signal is pending (blocked, not yet read). One
    /// rt_sigpending(2) — cheap next to a callback that does I/O.
    @inline(__always)
    private func handledSignalPending() -> Bool {
        var pending = sigset_t()
        sigpending(&pending)
        let firstWord = withUnsafeBytes(of: &pending) { $0.load(as: UInt64.self) }
        return firstWord & handledSignalMask != 0
    }

    /// Whether ``submitDiskWorkNow()`` would send queued disk operations to
    /// the kernel now: the io_uring backend (the syscall fallback's flush
    /// performs them, blocking the loop), and no handled signal pending (its
    /// handler — a stop signal's record write — comes before queued disk
    /// work, at the next iteration's start).
    public var canSubmitDiskWorkNow: Bool {
        assertOnLoopThread()
        return disk.kind == .ioUring && !(signalFD >= 0 && handledSignalPending())
    }

    /// Sends the disk operations queued so far to the kernel now, rather
    /// than at the start of the next iteration, so the disk works while the
    /// loop goes on (the journal submits its next group commit before it
    /// delivers the completions of the one that just ended). Does nothing
    /// when ``canSubmitDiskWorkNow`` is false.
    public func submitDiskWorkNow() {
        guard canSubmitDiskWorkNow else { return }
        disk.flush()
    }

    private func drainSignals() {
        while let info = try? SignalSource.readOne(signalFD) {
            signalHandlers[info.signal]?(info)
        }
    }

    // MARK: Timers

    /// Runs `callback` on the loop at CLOCK_MONOTONIC `deadlineNs`.
    @discardableResult
    public func schedule(atNanoseconds deadlineNs: UInt64, _ callback: @escaping () -> Void) -> TimerHandle {
        assertOnLoopThread()
        let handle = timers.schedule(at: deadlineNs, callback)
        rearmTimer()
        return handle
    }

    /// Runs `callback` on the loop once, `delay` from now.
    @discardableResult
    public func schedule(after delay: Duration, _ callback: @escaping () -> Void) -> TimerHandle {
        schedule(atNanoseconds: monotonicNanoseconds() &+ delay.nanosecondsValue, callback)
    }

    /// Runs `callback` on the loop every `interval` (first after `firstAfter`,
    /// default one interval) until `cancelTimer` is called with the returned
    /// handle — from the callback itself too. Ticks missed while the loop was
    /// busy are skipped, so a stalled loop is not followed by a burst.
    /// - Precondition: `interval` is positive.
    @discardableResult
    public func scheduleRepeating(every interval: Duration, firstAfter: Duration? = nil, _ callback: @escaping () -> Void) -> TimerHandle {
        assertOnLoopThread()
        let period = interval.nanosecondsValue
        precondition(period > 0, "scheduleRepeating needs a positive interval")
        let first = monotonicNanoseconds() &+ (firstAfter ?? interval).nanosecondsValue
        let handle = timers.schedule(at: first, every: period, callback)
        rearmTimer()
        return handle
    }

    /// Cancels a one-shot or repeating timer; a no-op when it already fired
    /// (one-shot) or was cancelled.
    public func cancelTimer(_ handle: TimerHandle) {
        assertOnLoopThread()
        if timers.cancel(handle) { rearmTimer() }
    }

    /// Timers scheduled and not yet fired or cancelled (repeating ones count once).
    public var pendingTimers: Int { timers.count }

    private func rearmTimer() {
        let next = timers.earliestDeadline() ?? 0
        guard next != armedDeadline else { return }
        // timerfd treats 0 as "disarm"; a deadline of 0 would never fire.
        do { try Syscall.timerfdArm(timerFD, deadlineNs: next == 0 ? 0 : max(next, 1)) } catch {
            logger.error("timerfd_settime failed: \(error)")
        }
        armedDeadline = next
    }

    private func fireTimers() {
        Syscall.drainCounter(timerFD)
        armedDeadline = 0  // the kernel disarmed it by firing
        for callback in timers.popExpired(now: monotonicNanoseconds()) { callback() }
        rearmTimer()
    }

    // MARK: Jobs

    /// Whether the caller runs on the loop's thread. Any thread may ask.
    public var isOnLoopThread: Bool {
        // Only the loop thread stores its own id, so a thread that reads its
        // own id is the loop thread; relaxed ordering is enough for that.
        loopThread.load(ordering: .relaxed) == UInt(pthread_self())
    }

    /// Debug builds trap when a loop-confined API is called from another
    /// thread (use `execute` to get onto the loop); release builds pay nothing.
    @inline(__always)
    func assertOnLoopThread(_ api: StaticString = #function) {
        assert(isOnLoopThread, "Reactor.\(api) must be called on the reactor's thread (use execute from other threads)")
    }

    private func adoptCallingThread() {
        let me = UInt(pthread_self())
        if loopThread.load(ordering: .relaxed) != me { loopThread.store(me, ordering: .releasing) }
    }

    /// Runs `work` on the loop thread in a later iteration. Any thread may call it.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        enqueue(.closure(work))
    }

    /// Runs `work` on the loop in a later iteration; loop thread only (no
    /// `@Sendable` requirement, unlike `execute`).
    public func deliverOnLoop(_ work: @escaping () -> Void) {
        assertOnLoop()
        local.append(.closure(work))
    }

    func enqueue(_ work: Work) {
        if isOnLoopThread {
            local.append(work)
        } else {
            remote.append(work)
            wake()
        }
    }

    /// Wakes the loop from epoll_pwait. Any thread may call it.
    public func wake() {
        if wakePending.exchange(true, ordering: .acquiringAndReleasing) { return }
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(wakeFD, $0.baseAddress, 8) }
    }

    private func drainRemote() {
        Syscall.drainCounter(wakeFD)
        wakePending.store(false, ordering: .releasing)
        local.append(contentsOf: remote.takeAll())
    }

    private func runJobs() {
        var budget = min(local.count, jobBatch)
        while budget > 0, let work = local.popFirst() {
            budget -= 1
            switch work {
            case .job(let job): job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
            case .closure(let body): body()
            }
        }
    }

    // MARK: The loop

    /// Called at the end of every iteration, on the loop (watchdog pings, flushes).
    public func onIteration(_ observer: @escaping () -> Void) {
        observers.append(observer)
    }

    /// Runs the loop on the calling thread until `stop()`.
    public func run() throws(SystemCallError) {
        precondition(!running, "Reactor.run() re-entered")
        adoptCallingThread()
        running = true
        defer { running = false }
        // Anything that arrived from other threads before run() started.
        if !remote.isEmpty { drainRemote() }
        while !stopRequested.load(ordering: .acquiring) {
            try runOnce()
        }
        stopRequested.store(false, ordering: .releasing)
    }

    /// Asks `run()` to return after the current iteration. Any thread may call it.
    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        if !isOnLoopThread { wake() }
    }

    /// One iteration of the loop (public for embedding and tests).
    public func runOnce(timeoutMs: Int32 = -1) throws(SystemCallError) {
        adoptCallingThread()
        // A stop signal's handler writes the shutdown record with plain
        // syscalls: it must not wait behind the journal's queued disk work
        // (the syscall backend runs pwrite+fdatasync inside flush(); on
        // ext4 the record's fsync would also commit that data first).
        if signalFD >= 0 && disk.inFlight > 0 && handledSignalPending() { drainSignals() }
        disk.flush()
        // Queued jobs (including the syscall backend's completions, queued by
        // its flush) mean: poll without sleeping.
        let n = try Syscall.epollWait(epfd, events, Int32(eventCapacity), timeoutMs: local.isEmpty ? timeoutMs : 0)
        if n > 0 {
            if signalFD >= 0 {
                for i in 0..<n where events[i].data.u64 == signalToken {
                    drainSignals()
                    break
                }
            }
            let watchSignals = signalFD >= 0
            for i in 0..<n {
                let raw = events[i].data.u64
                if raw == signalToken { continue }
                // epoll's ready list is FIFO: under load a signal that arrives
                // mid-batch would wait behind every ready connection (measured:
                // ~1–3 ms at 256×16). Checking before each callback bounds the
                // delay to one callback.
                if watchSignals && handledSignalPending() { drainSignals() }
                // Looked up per event: an earlier handler of this batch may
                // have deregistered this token.
                guard let handler = registry.handler(forRaw: raw) else { continue }
                handler(Readiness(epollEvents: events[i].events))
            }
        }
        runJobs()
        for observer in observers { observer() }
    }
}

extension Duration {
    /// Whole nanoseconds, 0 for negative durations (for CLOCK_MONOTONIC arithmetic).
    public var nanosecondsValue: UInt64 {
        let (s, atto) = components
        if s < 0 { return 0 }
        return UInt64(s) &* 1_000_000_000 &+ UInt64(atto / 1_000_000_000)
    }

    /// Whole milliseconds, 0 for negative durations.
    public var milliseconds: UInt64 { nanosecondsValue / 1_000_000 }
}
