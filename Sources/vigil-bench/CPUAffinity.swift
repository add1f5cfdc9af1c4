// CPU affinity of the calling thread (sched_setaffinity needs _GNU_SOURCE,
// so it goes through the C shim). A child forked while the thread is pinned
// starts pinned, before its first instruction — unlike pinning it by pid
// afterwards, which misses the threads it started meanwhile.
import CVigil
import Glibc

enum CPUAffinity {
    /// The CPUs the calling thread may run on.
    static func current() -> [Int32] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let n = cvigil_get_affinity(0, &cpus, Int32(cpus.count))
        if n <= 0 {
            let online = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
            return (0..<Int32(online)).map { $0 }
        }
        return Array(cpus[0..<Int(n)])
    }

    /// Pins the calling thread; the error text on failure.
    @discardableResult
    static func pin(_ cpus: [Int32]) -> String? {
        let r = cpus.withUnsafeBufferPointer { cvigil_set_affinity(0, $0.baseAddress, Int32($0.count)) }
        return r == 0 ? nil : "sched_setaffinity(\(cpus.map(String.init).joined(separator: ","))): \(String(cString: strerror(-r)))"
    }

    /// Runs `body` with the calling thread pinned to `cpus` (nil: as is).
    static func with<T, E: Error>(_ cpus: [Int32]?, restoringTo home: [Int32], _ body: () throws(E) -> T) throws(E) -> T {
        guard let cpus else { return try body() }
        pin(cpus)
        defer { pin(home) }
        return try body()
    }
}
