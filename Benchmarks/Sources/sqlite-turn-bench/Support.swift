// Clocks, CPU counters, scratch directories and number formatting: the same
// definitions as vigil-bench's (Sources/vigil-bench), so the two benchmarks'
// figures mean the same thing.
import Glibc

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// This process's CPU time (user + system, all threads), nanoseconds.
func ownCPUNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Busy CPU time of the whole machine (user+nice+system+irq+softirq from the
/// first line of /proc/stat), nanoseconds.
func systemBusyNanoseconds() -> UInt64? {
    let fd = open("/proc/stat", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 4096)
    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return nil }
    let line = buf[0..<n].prefix { $0 != 0x0A }
    let fields = line.split(separator: UInt8(ascii: " ")).dropFirst().map { UInt64(String(decoding: $0, as: UTF8.self)) ?? 0 }
    guard fields.count >= 8 else { return nil }
    let tick = 1_000_000_000 / UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) * tick
}

/// User time (user + nice) of the whole machine, from /proc/stat, and of
/// this process (getrusage), nanoseconds. Their difference is the noise
/// figure: the kernel's block-layer work for our own fsyncs is busy time of
/// no process, while other programs show up as user time.
func userNanoseconds() -> (machine: UInt64, own: UInt64)? {
    let fd = open("/proc/stat", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 4096)
    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return nil }
    let fields = buf[0..<n].prefix { $0 != 0x0A }.split(separator: UInt8(ascii: " ")).dropFirst()
        .map { UInt64(String(decoding: $0, as: UTF8.self)) ?? 0 }
    guard fields.count >= 2 else { return nil }
    let tick = 1_000_000_000 / UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let own = UInt64(usage.ru_utime.tv_sec) &* 1_000_000_000 &+ UInt64(usage.ru_utime.tv_usec) &* 1000
    return ((fields[0] + fields[1]) * tick, own)
}

/// A new, empty directory (mode 0700) inside `parent`.
func makeScratchDirectory(in parent: String) throws(SQLiteError) -> String {
    var template = Array("\(parent)/vigil-sqlite-bench.XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) != nil }
    guard made else {
        throw SQLiteError(description: "cannot create a directory in \(parent): \(String(cString: strerror(errno)))")
    }
    return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// Removes the scratch directory: the database, its WAL and shared-memory file.
func removeScratchDirectory(_ path: String) {
    for name in ["turns.db", "turns.db-wal", "turns.db-shm", "turns.db-journal"] { unlink("\(path)/\(name)") }
    rmdir(path)
}

/// The type of the filesystem holding `path` (the longest mount point in
/// /proc/self/mounts that contains it), as vigil-bench reports it.
func filesystemName(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return "unknown" }
    let full = String(cString: resolved)
    free(resolved)
    let fd = open("/proc/self/mounts", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "unknown" }
    defer { close(fd) }
    var text: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        text.append(contentsOf: buf[0..<n])
    }
    // "source mountpoint fstype options dump pass"
    var best = (length: -1, type: "unknown")
    for line in text.split(separator: 0x0A) {
        let fields = line.split(separator: 0x20)
        guard fields.count >= 3 else { continue }
        let mountPoint = String(decoding: fields[1], as: UTF8.self)
        let contains = mountPoint == "/" || full == mountPoint || full.hasPrefix(mountPoint + "/")
        if contains && mountPoint.utf8.count > best.length {
            best = (mountPoint.utf8.count, String(decoding: fields[2], as: UTF8.self))
        }
    }
    return best.type
}

func warn(_ message: String) {
    var text = "sqlite-turn-bench: warning: \(message)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// `x` with exactly `digits` decimals (no Foundation, no locale).
func fixed(_ x: Double, _ digits: Int) -> String {
    guard x.isFinite else { return "0" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let negative = x < 0
    let units = UInt64((abs(x) * scale).rounded())
    let whole = units / UInt64(scale)
    var text = (negative && units > 0 ? "-" : "") + String(whole)
    if digits > 0 {
        let frac = String(units % UInt64(scale))
        text += "." + String(repeating: "0", count: digits - frac.count) + frac
    }
    return text
}
