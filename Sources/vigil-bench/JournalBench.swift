// `vigil-bench journal turns|replay`: the turn journal measured in-process on
// one reactor (docs/benchmarks.md, "Turn journal"). The journal runs on the
// disk given by --dir: a fresh directory is made in it for every run and
// removed afterwards. /tmp may be tmpfs, where fdatasync costs nothing and
// the figures mean nothing, so the filesystem is always printed.
import ArgumentParser
import Glibc
import VigilDurable
import VigilReactor

struct JournalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "Turn journal: durable turns per second, and replay speed.",
        subcommands: [JournalTurnsCommand.self, JournalReplayCommand.self])
}

/// Which disk backend the reactor uses.
enum BackendChoice: String, ExpressibleByArgument {
    case iouring = "io_uring"
    case syscalls

    var mode: IOUringMode { self == .iouring ? .automatic : .disabled }
}

struct JournalTurnsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "turns",
        abstract: "Durable acknowledged turns per second over N concurrent sessions.",
        discussion: """
            Each session loops: append turnAccepted, wait until durable, append turnCompleted, \
            wait until durable. A turn counts when its completion record is durable. Sessions \
            are callbacks on one reactor: no threads, no tasks in the hot path. \
            --max-batch 1 makes every record its own write + fdatasync (the baseline that \
            group commit is measured against).
            """)

    @Option(help: "Directory on the disk to measure (a fresh subdirectory is used).")
    var dir: String = "/var/tmp"

    @Option(help: "Concurrent sessions.")
    var sessions: Int = 256

    @Option(help: "Seconds measured (after the warm-up).")
    var duration: Double = 3

    @Option(help: "Seconds of load before measuring.")
    var warmup: Double = 0.5

    @Option(name: .customLong("max-batch"), help: "Records per group commit (TurnJournal.Options.maxBatchRecords); 0 = unlimited.")
    var maxBatch: Int = 0

    @Option(help: "Disk backend: io_uring (falls back by itself if the kernel refuses) or syscalls.")
    var backend: BackendChoice = .iouring

    @Option(name: .customLong("text-bytes"), help: "Bytes of turn text and of reply per record.")
    var textBytes: Int = 64

    @Flag(help: "Print one JSON object instead of the summary line.")
    var json = false

    func validate() throws {
        guard sessions >= 1, sessions <= 100_000 else { throw ValidationError("--sessions must be from 1 to 100000") }
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be in (0, 3600] seconds") }
        guard warmup >= 0, warmup <= 3600 else { throw ValidationError("--warmup must be in [0, 3600] seconds") }
        guard maxBatch >= 0 else { throw ValidationError("--max-batch must be 0 (unlimited) or more") }
        guard textBytes >= 0, textBytes <= 60_000 else { throw ValidationError("--text-bytes must be from 0 to 60000") }
    }

    func run() throws {
        let config = JournalTurnLoad.Config(
            parent: dir, sessions: sessions, warmupNs: seconds(warmup), durationNs: seconds(duration),
            maxBatchRecords: maxBatch == 0 ? Int.max : maxBatch, ioUring: backend.mode, textBytes: textBytes)
        let result: JournalTurnLoad.Result
        do { result = try JournalTurnLoad(config).run() } catch {
            fail("\(error)", code: BenchExit.failed)
        }
        print(json ? result.json(config) : result.summary(config))
    }
}

struct JournalReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Writes N records in large batches, closes without compaction, then times reopening (replay).",
        discussion: """
            The reopen is timed twice: first after the segments' pages were dropped from the \
            page cache (posix_fadvise DONTNEED; "cold"), then again with them cached ("warm"). \
            ready_ms runs from before the reactor is created to the end of TurnJournal.init, \
            i.e. until appends would be accepted.
            """)

    @Option(help: "Directory on the disk to measure (a fresh subdirectory is used).")
    var dir: String = "/var/tmp"

    @Option(help: "Records to write before the replay.")
    var records: Int = 1_000_000

    @Option(help: "Records appended per group commit while writing.")
    var batch: Int = 10_000

    @Option(help: "Sessions the records are spread over.")
    var sessions: Int = 1000

    @Option(help: "Disk backend for the writing phase: io_uring or syscalls.")
    var backend: BackendChoice = .iouring

    @Option(name: .customLong("text-bytes"), help: "Bytes of turn text and of reply per record.")
    var textBytes: Int = 64

    @Flag(help: "Print one JSON object instead of the summary line.")
    var json = false

    func validate() throws {
        guard records >= 1, records <= 100_000_000 else { throw ValidationError("--records must be from 1 to 100000000") }
        guard batch >= 1, batch <= 1_000_000 else { throw ValidationError("--batch must be from 1 to 1000000") }
        guard sessions >= 1, sessions <= records else { throw ValidationError("--sessions must be from 1 to --records") }
        guard textBytes >= 0, textBytes <= 60_000 else { throw ValidationError("--text-bytes must be from 0 to 60000") }
    }

    func run() throws {
        let config = JournalReplayBench.Config(
            parent: dir, records: records, batch: batch, sessions: sessions, ioUring: backend.mode, textBytes: textBytes)
        let result: JournalReplayBench.Result
        do { result = try JournalReplayBench(config).run() } catch {
            fail("\(error)", code: BenchExit.failed)
        }
        print(json ? result.json(config) : result.summary(config))
    }
}

// MARK: Scratch directories

/// A new, empty directory (mode 0700) inside `parent`.
func makeScratchDirectory(in parent: String) throws(BenchError) -> String {
    var template = Array("\(parent)/vigil-journal-bench.XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) != nil }
    guard made else {
        throw BenchError("cannot create a directory in \(parent): \(String(cString: strerror(Glibc.errno)))")
    }
    return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// Removes a scratch directory and the files in it (it has no subdirectories).
func removeScratchDirectory(_ path: String) {
    if let fs = try? PosixStateFileSystem(path: path, create: false), let names = try? fs.list() {
        for name in names { try? fs.remove(name) }
    }
    rmdir(path)
}

/// The type of the filesystem holding `path` (the longest mount point in
/// /proc/self/mounts that contains it): the figures of a tmpfs, where
/// fdatasync is a no-op, must not pass for a disk's.
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

func warnIfNotADisk(_ fs: String, _ path: String) {
    if fs == "tmpfs" || fs == "ramfs" || fs == "overlay" {
        var text = "vigil-bench: warning: \(path) is on \(fs): fdatasync does not reach a disk there, so these figures are not a disk's\n"
        text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}

/// Noise for disk benchmarks: user time (user + nice, /proc/stat) of the
/// whole machine minus this process's own. `other_cpu` is not usable here:
/// the kernel's block-layer work for the benchmark's own fdatasyncs
/// (softirq, kblockd) is busy time of no process, 0.1–0.2 of a core on this
/// VM, while other programs (builds, tests) show up as user time.
struct UserCPU {
    var machineNs: UInt64
    var ownNs: UInt64

    static func read() -> UserCPU? {
        guard let text = readSmallFile("/proc/stat") else { return nil }
        let fields = text.prefix { $0 != 0x0A }.split(separator: UInt8(ascii: " ")).dropFirst()
            .map { UInt64(String(decoding: $0, as: UTF8.self)) ?? 0 }
        guard fields.count >= 2 else { return nil }
        let tick = 1_000_000_000 / UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let own = UInt64(usage.ru_utime.tv_sec) &* 1_000_000_000 &+ UInt64(usage.ru_utime.tv_usec) &* 1000
        return UserCPU(machineNs: (fields[0] + fields[1]) * tick, ownNs: own)
    }

    /// Other processes' user time between `start` and `end`, nanoseconds.
    static func others(_ start: UserCPU?, _ end: UserCPU?) -> UInt64? {
        guard let a = start, let b = end else { return nil }
        let machine = b.machineNs &- a.machineNs, own = b.ownNs &- a.ownNs
        return machine > own ? machine - own : 0
    }
}

/// Nearest-rank percentiles of latency samples (nanoseconds), sorted in place.
struct LatencySummary {
    var samples = 0
    var p50: UInt32 = 0
    var p99: UInt32 = 0
    var maximum: UInt32 = 0

    init() {}

    init(_ buf: UnsafeMutableBufferPointer<UInt32>) {
        var buf = buf
        let n = buf.count
        guard n > 0 else { return }
        buf.sort()
        func rank(_ q: Double) -> UInt32 { buf[min(max(Int((q * Double(n)).rounded(.up)), 1), n) - 1] }
        samples = n
        p50 = rank(0.5)
        p99 = rank(0.99)
        maximum = buf[n - 1]
    }
}

func microseconds(_ ns: UInt32) -> String { fixed(Double(ns) / 1000, 1) }

/// A reactor (io_uring or the syscall backend) and a journal in `dir`: what
/// both journal benchmarks run on.
func openBenchJournal(_ dir: String, ioUring: IOUringMode, options: TurnJournal.Options) throws(BenchError) -> (Reactor, TurnJournal) {
    var ro = Reactor.Options()
    ro.ioUring = ioUring
    let reactor: Reactor
    do { reactor = try Reactor(options: ro) } catch {
        throw BenchError("cannot create the event loop: \(error)")
    }
    do {
        let fs = try PosixStateFileSystem(path: dir, create: false)
        let journal = try TurnJournal(io: DiskJournalIO(fs: fs, disk: reactor.disk), reactor: reactor, logger: reactor.logger, options: options)
        return (reactor, journal)
    } catch {
        reactor.close()
        throw BenchError("cannot open a journal in \(dir): \(error)")
    }
}
