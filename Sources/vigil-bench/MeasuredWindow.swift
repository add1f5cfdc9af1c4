// A measured window of a load: its length, and the CPU time the server,
// this load generator and the whole machine (busy and stolen by the
// hypervisor) used in it — the figures that say whether a run is to be
// trusted on a shared machine (docs/benchmarks.md). Shared by the loads.
import Glibc
import VigilReactor

struct MeasuredWindow {
    private var startNs: UInt64 = 0, endNs: UInt64 = 0
    private var startServerCPU: UInt64?, endServerCPU: UInt64?
    private var startClientCPU: UInt64 = 0, endClientCPU: UInt64 = 0
    private var startSystem: SystemCPU?, endSystem: SystemCPU?

    /// Stamps the start; `serverPID`: the process under load, when known.
    mutating func start(serverPID: Int32?) {
        if let pid = serverPID { startServerCPU = processCPUNanoseconds(pid) }
        startClientCPU = ownCPUNanoseconds()
        startSystem = SystemCPU.read()
        startNs = monotonicNanoseconds()
    }

    /// Stamps the end (the clock first: the window is what was counted).
    mutating func stop(serverPID: Int32?) {
        endNs = monotonicNanoseconds()
        endClientCPU = ownCPUNanoseconds()
        endSystem = SystemCPU.read()
        if let pid = serverPID { endServerCPU = processCPUNanoseconds(pid) }
    }

    var elapsedNs: UInt64 { endNs &- startNs }
    /// The server's CPU time in the window (10 ms resolution), if readable.
    var serverCPUNs: UInt64? {
        guard let a = startServerCPU, let b = endServerCPU else { return nil }
        return b &- a
    }
    var clientCPUNs: UInt64 { endClientCPU &- startClientCPU }
    /// All CPUs: busy time, from /proc/stat.
    var systemBusyNs: UInt64? {
        guard let a = startSystem, let b = endSystem else { return nil }
        return b.busyNs &- a.busyNs
    }
    /// All CPUs: time the hypervisor took.
    var systemStealNs: UInt64? {
        guard let a = startSystem, let b = endSystem else { return nil }
        return b.stealNs &- a.stealNs
    }
}

/// This process's CPU time (user + system), nanoseconds.
func ownCPUNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// System-wide CPU time from the first line of /proc/stat.
struct SystemCPU {
    var busyNs: UInt64
    var stealNs: UInt64

    /// `cpu user nice system idle iowait irq softirq steal …` (clock ticks).
    static func read() -> SystemCPU? {
        guard let text = readSmallFile("/proc/stat") else { return nil }
        let firstLine = text.prefix { $0 != 0x0A }
        let fields = firstLine.split(separator: UInt8(ascii: " ")).dropFirst().map { UInt64(String(decoding: $0, as: UTF8.self)) ?? 0 }
        guard fields.count >= 8 else { return nil }
        let tick = 1_000_000_000 / UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
        return SystemCPU(busyNs: busy * tick, stealNs: fields[7] * tick)
    }
}

/// The first 4 KiB of a /proc file.
func readSmallFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 4096)
    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return nil }
    return Array(buf[0..<n])
}

/// Another process's CPU time (utime + stime from /proc/PID/stat, in clock
/// ticks, so 10 ms resolution), nanoseconds; nil when it cannot be read.
func processCPUNanoseconds(_ pid: Int32) -> UInt64? {
    guard let buf = readSmallFile("/proc/\(pid)/stat"), let paren = buf.lastIndex(of: UInt8(ascii: ")")) else { return nil }
    let n = buf.count
    // After "pid (comm)": field 3 (state) is index 0; utime (14) and stime (15) are 11 and 12.
    let fields = buf[(paren + 1)..<n].split(separator: UInt8(ascii: " "))
    guard fields.count > 12,
          let utime = UInt64(String(decoding: fields[11], as: UTF8.self)),
          let stime = UInt64(String(decoding: fields[12], as: UTF8.self)) else { return nil }
    let hz = UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
    return (utime + stime) * (1_000_000_000 / hz)
}
