// Asynchronous disk work for the reactor: io_uring where the kernel lets us,
// plain pwrite/pread/fsync where it does not (Docker's default seccomp
// profile, kernel.io_uring_disabled, old kernels). Both backends have the
// same contract: operations submitted during one loop iteration go to the
// kernel together at the end of that iteration, and completions are
// delivered on the loop thread in a later iteration.
import CVigil
import Glibc
import SystemPackage

/// One disk operation. Buffers are copied at submission and owned by the backend.
public enum DiskOp: Sendable {
    case write(fd: Int32, bytes: [UInt8], offset: UInt64)
    case read(fd: Int32, count: Int, offset: UInt64)
    /// fsync(2), or fdatasync(2) when `dataOnly`.
    case fsync(fd: Int32, dataOnly: Bool)
}

/// Result of one `DiskOp`: bytes transferred (0 for fsync), or the error.
public struct DiskCompletion: Sendable {
    public let result: Result<Int, SystemCallError>
    /// The data read, for `.read`.
    public let bytes: [UInt8]

    public func get() throws(SystemCallError) -> Int { try result.get() }
}

public enum DiskIOBackendKind: String, Sendable {
    case ioUring = "io_uring"
    case syscalls = "syscalls"
}

/// Whether to try io_uring. The library reads no environment for it: an
/// executable maps its own flag or variable onto this.
public enum IOUringMode: Sendable, Equatable {
    /// io_uring when the kernel allows it, else the syscall fallback.
    case automatic
    /// Always the pwrite/fdatasync fallback.
    case disabled
}

/// The reactor's disk backend.
public protocol DiskIO: AnyObject {
    var kind: DiskIOBackendKind { get }
    /// Why io_uring is not in use (nil when it is).
    var fallbackReason: String? { get }
    /// Queues `ops`; with `linked`, each starts only after the previous one
    /// succeeded (IOSQE_IO_LINK), and the rest fail with ECANCELED otherwise.
    /// `completion` runs once, on the loop thread, with one entry per op.
    func submit(_ ops: [DiskOp], linked: Bool, completion: @escaping ([DiskCompletion]) -> Void)
    /// Sends queued operations to the kernel (called by the reactor before it blocks).
    func flush()
    /// Operations submitted and not yet completed.
    var inFlight: Int { get }
    func close()
}

/// Executes disk operations with ordinary blocking syscalls.
enum DiskSyscalls {
    static func perform(_ op: DiskOp) -> DiskCompletion {
        switch op {
        case .write(let fd, let bytes, let offset):
            do throws(SystemCallError) {
                try SystemCall.writeAll(fd, bytes, at: offset, name: "pwrite")
                return DiskCompletion(result: .success(bytes.count), bytes: [])
            } catch {
                return DiskCompletion(result: .failure(error), bytes: [])
            }
        case .read(let fd, let count, let offset):
            do throws(SystemCallError) {
                let buf = try SystemCall.readAll(fd, count: count, at: offset, name: "pread")
                return DiskCompletion(result: .success(buf.count), bytes: buf)
            } catch {
                return DiskCompletion(result: .failure(error), bytes: [])
            }
        case .fsync(let fd, let dataOnly):
            do throws(SystemCallError) {
                _ = try SystemCall.run(dataOnly ? "fdatasync" : "fsync", retryInterrupted: false) { dataOnly ? fdatasync(fd) : Glibc.fsync(fd) }
                return DiskCompletion(result: .success(0), bytes: [])
            } catch {
                return DiskCompletion(result: .failure(error), bytes: [])
            }
        }
    }
}

/// The fallback backend: the batch queued during an iteration is executed
/// with pwrite/pread/fsync at the iteration's end, completions delivered
/// through the reactor's run queue.
final class SyscallDiskIO: DiskIO {
    let kind = DiskIOBackendKind.syscalls
    let fallbackReason: String?
    private var queued: [(ops: [DiskOp], linked: Bool, completion: ([DiskCompletion]) -> Void)] = []
    private let deliver: (@escaping () -> Void) -> Void
    private(set) var inFlight = 0

    init(reason: String?, deliver: @escaping (@escaping () -> Void) -> Void) {
        self.fallbackReason = reason
        self.deliver = deliver
    }

    func submit(_ ops: [DiskOp], linked: Bool, completion: @escaping ([DiskCompletion]) -> Void) {
        queued.append((ops, linked, completion))
        inFlight += ops.count
    }

    func flush() {
        guard !queued.isEmpty else { return }
        let batch = queued
        queued.removeAll(keepingCapacity: true)
        for item in batch {
            var results: [DiskCompletion] = []
            results.reserveCapacity(item.ops.count)
            var broken = false
            for op in item.ops {
                if broken {
                    results.append(DiskCompletion(result: .failure(SystemCallError("linked", .canceled)), bytes: []))
                    continue
                }
                let c = DiskSyscalls.perform(op)
                if item.linked, case .failure = c.result { broken = true }
                results.append(c)
            }
            let completion = item.completion
            let n = item.ops.count
            deliver { [weak self] in
                self?.inFlight -= n
                completion(results)
            }
        }
    }

    func close() {}
}
