// Command lines of the ledger load (LedgerLoad.swift) and of its floor
// (FsyncFloor.swift): `vigil run`'s ledger against one fdatasync per record.
import ArgumentParser
import Glibc
import VigilReactor

struct LedgerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Durable ledger records per second and begin → ok latency: N clients, one request outstanding each.",
        discussion: """
            Connects --clients connections to a `vigil run` ledger socket ($VIGIL_LEDGER, \
            STATE/ledger.sock). Each client loops begin → ok → end → ok with unique ids \
            (session PREFIX-cK, ids u1, u2, …), so every answer is one record made durable. \
            Counts the answers after --warmup seconds for --duration seconds and prints \
            records/s and the begin → ok and end → ok latency percentiles (CLOCK_MONOTONIC, \
            request written → answer read) in microseconds.
            """)

    @Option(name: .customLong("connect"), help: ArgumentHelp("The ledger socket: unix:PATH (or a path with a slash).", valueName: "address"))
    var connect: String

    @Option(help: "Concurrent clients (one connection each).")
    var clients: Int = 64

    @OptionGroup var window: LoadWindowOptions

    @Option(help: "Prefix of the session names (distinguishes runs on one state directory).")
    var prefix: String = "b\(getpid())"


    func validate() throws {
        guard clients >= 1, clients <= 20_000 else { throw ValidationError("--clients must be 1…20000") }
        guard !prefix.isEmpty, prefix.utf8.count <= 900, !prefix.utf8.contains(where: { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 }) else {
            throw ValidationError("--prefix must be 1…900 bytes without quotes, backslashes or control characters")
        }
    }

    func run() throws {
        let address: SocketAddress
        let isPath = !connect.hasPrefix("unix:") && connect.contains("/")
        do { address = try SocketAddress(parsing: isPath ? "unix:" + connect : connect) } catch {
            fail("\(error)", code: BenchExit.usage)
        }
        let config = LedgerLoad.Config(address: address, clients: clients, warmupNs: seconds(window.warmup),
                                       durationNs: seconds(window.duration), prefix: prefix, serverPID: window.serverPID)
        let result: LedgerLoad.Result
        do { result = try LedgerLoad(config).run() } catch { fail("\(error)", code: BenchExit.failed) }
        print(window.json ? result.json(config) : result.summary(config))
    }
}

struct FsyncFloorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsync-floor",
        abstract: "One fdatasync per record: the floor the ledger's throughput is compared with.",
        discussion: """
            Appends --records records of --record-bytes to a new file in --dir, each followed \
            by its own fdatasync, and prints records/s and the per-record latency. The file is \
            removed afterwards. Use the directory being measured (on tmpfs fdatasync does nothing).
            """)

    @Option(help: "Directory on the file system to measure (the ledger's state directory).")
    var dir: String

    @Option(help: "Records to append.")
    var records: Int = 300

    @Option(name: .customLong("record-bytes"), help: "Bytes per record (a ledger begin record is about 48).")
    var recordBytes: Int = 48

    @Flag(help: "Print one JSON object instead of the summary line.")
    var json = false

    func validate() throws {
        guard records >= 1, records <= 10_000_000 else { throw ValidationError("--records must be 1…10000000") }
        guard recordBytes >= 1, recordBytes <= 1 << 20 else { throw ValidationError("--record-bytes must be 1…1048576") }
    }

    func run() throws {
        let floor = FsyncFloor(directory: dir, records: records, recordBytes: recordBytes)
        let result: FsyncFloor.Result
        do { result = try floor.run() } catch { fail("\(error)", code: BenchExit.failed) }
        print(json ? result.json(floor) : result.summary(floor))
    }
}
