// The floor a durable ledger is compared with: one small record appended
// and made durable by its own fdatasync, one after another — what a program
// that wrote its own log without group commit would get. Run in the ledger's
// state directory (same file system, same disk) and alternated with the
// ledger's load, so both see the same disk and the same neighbours.
import Glibc
import VigilReactor

struct FsyncFloor {
    var directory: String
    var records: Int
    var recordBytes: Int

    struct Result {
        var records: Int
        var elapsedNs: UInt64
        var latency: SampleBuffer.Latency
        var rate: Double { elapsedNs == 0 ? 0 : Double(records) * 1e9 / Double(elapsedNs) }
    }

    /// Appends `records` records of `recordBytes` to a new file in the
    /// directory, each followed by fdatasync; the file is removed afterwards.
    func run() throws(BenchError) -> Result {
        let path = (directory.hasSuffix("/") ? directory : directory + "/") + "fsync-floor.\(getpid())"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BenchError("open \(path): \(String(cString: strerror(errno)))") }
        defer {
            close(fd)
            unlink(path)
        }
        let record = [UInt8](repeating: UInt8(ascii: "r"), count: recordBytes)
        let samples = SampleBuffer(capacity: records)
        let start = monotonicNanoseconds()
        for k in 0..<records {
            let t0 = monotonicNanoseconds()
            let w = record.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard w == recordBytes else { throw BenchError("write \(path) (record \(k + 1)): \(w < 0 ? String(cString: strerror(errno)) : "short")") }
            guard fdatasync(fd) == 0 else { throw BenchError("fdatasync \(path): \(String(cString: strerror(errno)))") }
            samples.add(monotonicNanoseconds() &- t0)
        }
        let elapsed = monotonicNanoseconds() &- start
        return Result(records: records, elapsedNs: elapsed, latency: samples.percentiles())
    }
}

extension FsyncFloor.Result {
    /// `fsync-floor records=300 record_bytes=48 elapsed=0.10s rate=…/s p50_us=… p99_us=…`
    func summary(_ f: FsyncFloor) -> String {
        "fsync-floor dir=\(f.directory) records=\(records) record_bytes=\(f.recordBytes) elapsed=\(fixed(Double(elapsedNs) / 1e9, 3))s rate=\(fixed(rate, 0))/s p50_us=\(fixed(Double(latency.p50) / 1000, 1)) p99_us=\(fixed(Double(latency.p99) / 1000, 1)) max_us=\(fixed(Double(latency.max) / 1000, 1))"
    }

    func json(_ f: FsyncFloor) -> String {
        "{\"benchmark\":\"fsync-floor\",\"dir\":\(jsonString(f.directory)),\"records\":\(records),\"record_bytes\":\(f.recordBytes),\"elapsed_s\":\(fixed(Double(elapsedNs) / 1e9, 3)),\"records_per_s\":\(fixed(rate, 1)),\"p50_us\":\(fixed(Double(latency.p50) / 1000, 1)),\"p99_us\":\(fixed(Double(latency.p99) / 1000, 1)),\"max_us\":\(fixed(Double(latency.max) / 1000, 1))}"
    }
}
