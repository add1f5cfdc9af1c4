import CVigil
import Foundation
import Glibc
import VigilReactor
import XCTest

/// Reactor.Options.ioWorkers reaches the kernel: with the loop pinned to
/// one CPU and `keepOffLoneLoopCPU`, the worker that runs an fdatasync is
/// allowed everywhere but there.
final class IOWorkerPolicyTests: XCTestCase {

    private func workerCPUs() -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.compactMap { tid -> String? in
            let comm = (try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)) ?? ""
            guard comm.hasPrefix("iou-wrk") else { return nil }
            let status = (try? String(contentsOfFile: "/proc/self/task/\(tid)/status", encoding: .utf8)) ?? ""
            return status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }?
                .split(separator: "\t").last.map(String.init)
        }
    }

    func testWorkersKeptOffTheLoopsLoneCPU() throws {
        let online = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        guard online >= 2 else { throw XCTSkip("needs two CPUs") }
        // A fresh thread: io-wq belongs to the submitting task, and this
        // test's thread may already have workers from other tests' rings.
        var outcome: Result<[String], Error> = .success([])
        let done = DispatchSemaphore(value: 0)
        let t = Thread {
            defer { done.signal() }
            outcome = Result { try self.runPinnedLoop() }
        }
        t.start()
        done.wait()
        let workers = try outcome.get()
        let others = online == 2 ? "0" : online == 3 ? "0,2" : "0,2-\(online - 1)"
        // (Other tests' rings may have idle workers of their own.)
        XCTAssertTrue(workers.contains(others), "iou-wrk may run everywhere but the loop's CPU 1: \(workers)")
    }

    /// On the calling (fresh) thread: pinned to CPU 1, a reactor with the
    /// policy runs a write + fdatasync; returns the workers' CPU lists.
    private func runPinnedLoop() throws -> [String] {
        guard cvigil_thread_set_cpus([1], 1) == 0 else { throw XCTSkip("cannot pin a thread here") }
        var o = Reactor.Options()
        o.ioUring = .automatic
        o.ioWorkers = IOWorkerPolicy(maxBoundedWorkers: 2, keepOffLoneLoopCPU: true)
        let r = try Reactor(options: o)
        defer { r.close() }
        guard r.disk.kind == .ioUring else { throw XCTSkip("io_uring is not available here: \(r.disk.fallbackReason ?? "?")") }
        let path = "/tmp/vigil-iowq-\(getpid())"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd); unlink(path) }
        var results: [DiskCompletion]?
        r.disk.submit([.write(fd: fd, bytes: [1, 2, 3], offset: 0), .fsync(fd: fd, dataOnly: true)], linked: true) { results = $0 }
        let deadline = Date().addingTimeInterval(10)
        while results == nil && Date() < deadline { try r.runOnce(timeoutMs: 10) }
        XCTAssertEqual(try results?[1].get(), 0, "the policy leaves I/O working")
        let workers = workerCPUs()
        guard !workers.isEmpty else { throw XCTSkip("the kernel ran the fdatasync without a worker thread") }
        return workers
    }
}
