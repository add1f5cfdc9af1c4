// io_uring backend (liburing). The ring's completions are signalled on an
// eventfd that sits in the reactor's epoll set, so the loop never blocks
// inside io_uring: epoll_pwait stays the only place the thread sleeps.
import CVigil
import Glibc
import SystemPackage

/// Where io_uring's worker threads (`iou-wrk`, which run what cannot
/// complete inline: the journal's fdatasyncs, writes that would block) may
/// run, and how many. By default they inherit the loop's CPU affinity and
/// the kernel allows min(SQ entries, 4 × CPUs) bounded workers; when the
/// daemon is pinned to one core they share it with the loop thread. Under
/// the turn journal's load vigild runs one such worker (group commit
/// serializes the flushes), which mostly sleeps in fdatasync; moving it off
/// the loop's core or capping the pool at one worker measured no better for
/// the kill race (docs/benchmarks.md), so the default is the kernel's.
public struct IOWorkerPolicy: Sendable, Equatable {
    /// At most this many bounded workers (regular-file I/O); nil: the kernel's default.
    public var maxBoundedWorkers: UInt32?
    /// When the loop thread may run on exactly one CPU, let the workers run
    /// on the other online CPUs instead (where the cpuset allows).
    public var keepOffLoneLoopCPU: Bool

    public init(maxBoundedWorkers: UInt32? = nil, keepOffLoneLoopCPU: Bool = false) {
        self.maxBoundedWorkers = maxBoundedWorkers
        self.keepOffLoneLoopCPU = keepOffLoneLoopCPU
    }

    /// The kernel's defaults, untouched.
    public static let kernelDefault = IOWorkerPolicy()
}

final class URingDiskIO: DiskIO {
    let kind = DiskIOBackendKind.ioUring
    let fallbackReason: String? = nil
    /// Readable when completions are waiting; the reactor registers it.
    let eventFD: Int32

    private final class Chain {
        var results: [DiskCompletion?]
        var buffers: [UnsafeMutableRawBufferPointer?]
        var remaining: Int
        let names: [String]
        let completion: ([DiskCompletion]) -> Void

        init(count: Int, names: [String], completion: @escaping ([DiskCompletion]) -> Void) {
            results = Array(repeating: nil, count: count)
            buffers = Array(repeating: nil, count: count)
            remaining = count
            self.names = names
            self.completion = completion
        }
    }

    private let ring: OpaquePointer
    private let entries: UInt32
    private var chains: [UInt64: Chain] = [:]
    private var nextChain: UInt64 = 1
    private var unsubmitted: UInt32 = 0
    private(set) var inFlight = 0
    private var closed = false

    /// What was done about the worker threads, for the log (nil: nothing asked).
    private(set) var workerSetup: String?

    /// Sets up a ring, or says why the kernel refused (EPERM under seccomp
    /// or io_uring_disabled, ENOSYS on old kernels, ENOMEM under memlock).
    /// Call on the loop thread: io-wq settings belong to the registering task.
    static func make(entries: UInt32 = 256, workers: IOWorkerPolicy = .kernelDefault) -> Result<URingDiskIO, SystemCallError> {
        let efd: Int32
        do { efd = try Syscall.eventfd() } catch { return .failure(error) }
        var ring: OpaquePointer?
        let r = cvigil_ring_create(entries, efd, &ring)
        guard r >= 0, let ring else {
            Syscall.close(efd)
            return .failure(SystemCallError("io_uring_setup", Errno(rawValue: -r)))
        }
        let io = URingDiskIO(ring: ring, entries: entries, eventFD: efd)
        io.apply(workers)
        return .success(io)
    }

    /// Best effort: a kernel that refuses (before 5.15, or a cpuset that
    /// forbids the other CPUs) keeps its defaults, which work.
    private func apply(_ policy: IOWorkerPolicy) {
        var notes: [String] = []
        if let cap = policy.maxBoundedWorkers {
            var bounded = cap, unbounded: UInt32 = 0
            let r = cvigil_ring_set_iowq_max_workers(ring, &bounded, &unbounded)
            notes.append(r == 0 ? "at most \(cap) bounded io-wq workers (was \(bounded))" : "io-wq worker cap refused: \(Errno(rawValue: -r))")
        }
        if policy.keepOffLoneLoopCPU {
            var mine = [Int32](repeating: 0, count: 1024)
            let n = cvigil_thread_cpus(&mine, Int32(mine.count))
            let online = Int32(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
            if n == 1 && online > 1 {
                let others = (0..<online).filter { $0 != mine[0] }
                let r = cvigil_ring_set_iowq_affinity(ring, others, Int32(others.count))
                notes.append(r == 0 ? "io-wq workers kept off the loop's CPU \(mine[0])" : "io-wq affinity refused: \(Errno(rawValue: -r))")
            }
        }
        workerSetup = notes.isEmpty ? nil : notes.joined(separator: "; ")
    }

    private init(ring: OpaquePointer, entries: UInt32, eventFD: Int32) {
        self.ring = ring
        self.entries = entries
        self.eventFD = eventFD
    }

    func submit(_ ops: [DiskOp], linked: Bool, completion: @escaping ([DiskCompletion]) -> Void) {
        precondition(!closed, "disk I/O after close")
        precondition(ops.count <= Int(entries), "a chain must fit the submission queue")
        // A linked chain must not straddle two submissions: make room first.
        if cvigil_ring_sq_space_left(ring) < UInt32(ops.count) { flush() }
        let id = nextChain
        nextChain += 1
        let chain = Chain(count: ops.count, names: ops.map(\.callName), completion: completion)
        for (i, op) in ops.enumerated() {
            let userData = id << 16 | UInt64(i)
            let link: Int32 = linked && i < ops.count - 1 ? 1 : 0
            let r: Int32
            switch op {
            case .write(let fd, let bytes, let offset):
                let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
                bytes.withUnsafeBytes { buf.copyMemory(from: $0) }
                chain.buffers[i] = buf
                r = cvigil_ring_prep_write(ring, fd, buf.baseAddress, UInt32(bytes.count), offset, userData, link)
            case .read(let fd, let count, let offset):
                let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
                chain.buffers[i] = buf
                r = cvigil_ring_prep_read(ring, fd, buf.baseAddress, UInt32(count), offset, userData, link)
            case .fsync(let fd, let dataOnly):
                r = cvigil_ring_prep_fsync(ring, fd, dataOnly ? 1 : 0, userData, link)
            }
            precondition(r == 0, "io_uring SQ full after flush")
        }
        chains[id] = chain
        unsubmitted += UInt32(ops.count)
        inFlight += ops.count
    }

    func flush() {
        guard unsubmitted > 0 else { return }
        let r = cvigil_ring_submit(ring)
        // EAGAIN/EBUSY: the kernel is short of resources or the CQ is full;
        // completions will be reaped and the next iteration submits again.
        if r >= 0 { unsubmitted -= min(unsubmitted, UInt32(r)) }
    }

    /// Delivers every completion waiting in the CQ.
    func reap() {
        Syscall.drainCounter(eventFD)
        var userData: UInt64 = 0
        var res: Int32 = 0
        while cvigil_ring_peek(ring, &userData, &res) == 1 {
            complete(userData: userData, res: res)
        }
    }

    private func complete(userData: UInt64, res: Int32) {
        let id = userData >> 16
        let i = Int(userData & 0xFFFF)
        guard let chain = chains[id] else { return }
        var bytes: [UInt8] = []
        if res > 0, chain.names[i] == "read", let buf = chain.buffers[i] {
            bytes = Array(UnsafeRawBufferPointer(rebasing: buf[0..<Int(res)]))
        }
        chain.results[i] = DiskCompletion(
            result: res >= 0 ? .success(Int(res)) : .failure(SystemCallError(chain.names[i], Errno(rawValue: -res))),
            bytes: bytes)
        chain.buffers[i]?.deallocate()
        chain.buffers[i] = nil
        chain.remaining -= 1
        inFlight -= 1
        if chain.remaining == 0 {
            chains[id] = nil
            chain.completion(chain.results.map { $0! })
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        // Wait for what the kernel still owns: its buffers must outlive it.
        flush()
        while inFlight > 0 {
            let r = cvigil_ring_wait(ring)
            if r < 0 && r != -EINTR { break }
            reap()
        }
        cvigil_ring_destroy(ring)
        Syscall.close(eventFD)
    }
}

extension DiskOp {
    var callName: String {
        switch self {
        case .write: "write"
        case .read: "read"
        case .fsync(_, let dataOnly): dataOnly ? "fdatasync" : "fsync"
        }
    }
}
