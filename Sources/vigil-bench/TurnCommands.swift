// Command lines of the session-level loads (TurnLoad.swift).
import ArgumentParser
import Glibc
import VigilReactor

struct TurnLoadOptions: ParsableArguments {
    @Option(name: .customLong("connect"), help: ArgumentHelp("vigild's address, HOST:PORT, [IPV6]:PORT or unix:PATH.", valueName: "address"))
    var connect: String

    @Option(help: "Prefix of the session and turn ids (distinguishes runs on one state directory).")
    var prefix: String = "b\(getpid())"

    @Flag(help: "Print one JSON object instead of the summary line.")
    var json = false

    func address() -> SocketAddress {
        do { return try SocketAddress(parsing: connect) } catch { fail("\(error)", code: BenchExit.usage) }
    }
}

struct TurnsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "turns",
        abstract: "Durable turns per second: N sessions, each with one turn in flight.",
        discussion: """
            Each session has its own connection and loops send → accepted → reply → send. \
            A turn counts when its reply arrives, i.e. after both its acceptance and its \
            completion were group-committed to the journal.
            """)

    @OptionGroup var common: TurnLoadOptions

    @Option(help: "Concurrent sessions (one connection each).")
    var sessions: Int = 16

    @Option(name: .customLong("work-ms"), help: "work_ms of every turn (echo agent).")
    var workMs: Int = 0

    @Option(help: "Seconds measured (after the warm-up).")
    var duration: Double = 5

    @Option(help: "Seconds of load before measuring.")
    var warmup: Double = 1

    func validate() throws {
        guard sessions >= 1, sessions <= 20_000 else { throw ValidationError("--sessions must be 1…20000") }
        guard duration > 0, warmup >= 0 else { throw ValidationError("--duration must be > 0 and --warmup ≥ 0") }
    }

    func run() throws {
        let config = TurnLoad.Config(address: common.address(), connections: sessions, mode: .turns(workMs: workMs),
                                     warmupNs: seconds(warmup), durationNs: seconds(duration), prefix: common.prefix)
        let r: TurnLoad.Result
        do { r = try TurnLoad(config).run() } catch { fail("\(error)", code: BenchExit.failed) }
        if common.json {
            print("{\"sessions\":\(sessions),\"work_ms\":\(workMs),\"turns\":\(r.turns),\"elapsed_s\":\(fixed(Double(r.elapsedNs) / 1e9, 3)),\"turns_per_s\":\(fixed(r.rate, 1))}")
        } else {
            print("turns sessions=\(sessions) work_ms=\(workMs) duration=\(fixed(Double(r.elapsedNs) / 1e9, 2))s turns=\(r.turns) rate=\(fixed(r.rate, 0))/s")
        }
    }
}

struct DrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Puts T turns in flight, then SIGTERMs the server and times its drain.",
        discussion: """
            Sends --turns turns (work_ms uniform in 0…--max-work-ms) spread over the connections; \
            once every one is accepted (durable), sends SIGTERM to --server-pid and measures until \
            the server has closed every connection (after its goodbye). Reports the drain time and \
            how many replies arrived.
            """)

    @OptionGroup var common: TurnLoadOptions

    @Option(help: "Turns put in flight.")
    var turns: Int = 10_000

    @Option(help: "Connections (sessions) they are spread over.")
    var connections: Int = 100

    @Option(name: .customLong("max-work-ms"), help: "Largest work_ms (uniform from 0).")
    var maxWorkMs: Int = 100

    @Option(name: .customLong("server-pid"), help: "The server to stop.")
    var serverPID: Int32

    func run() throws {
        let config = TurnLoad.Config(address: common.address(), connections: connections,
                                     mode: .drain(turns: turns, maxWorkMs: maxWorkMs, serverPID: serverPID),
                                     warmupNs: 0, durationNs: 0, prefix: common.prefix)
        let r: TurnLoad.Result
        do { r = try TurnLoad(config).run() } catch { fail("\(error)", code: BenchExit.failed) }
        let ms = fixed(Double(r.drainNs) / 1e6, 1)
        if common.json {
            print("{\"turns\":\(turns),\"accepted\":\(r.accepted),\"replies\":\(r.replies),\"goodbyes\":\(r.goodbyes),\"drain_ms\":\(ms)}")
        } else {
            print("drain turns=\(turns) accepted=\(r.accepted) replies=\(r.replies) goodbyes=\(r.goodbyes)/\(connections) drain_ms=\(ms)")
        }
    }
}

struct OpenSessionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "open-sessions",
        abstract: "Opens C new sessions (pipelined) to fill a state directory's journal.")

    @OptionGroup var common: TurnLoadOptions

    @Option(help: "Sessions to open.")
    var count: Int = 100_000

    @Option(help: "Connections they are spread over.")
    var connections: Int = 16

    func run() throws {
        let t0 = monotonicNanoseconds()
        let config = TurnLoad.Config(address: common.address(), connections: connections, mode: .open(sessions: count),
                                     warmupNs: 0, durationNs: 0, prefix: common.prefix)
        let r: TurnLoad.Result
        do { r = try TurnLoad(config).run() } catch { fail("\(error)", code: BenchExit.failed) }
        let s = Double(monotonicNanoseconds() - t0) / 1e9
        print("open-sessions count=\(count) opened=\(r.accepted) seconds=\(fixed(s, 2)) rate=\(fixed(Double(r.accepted) / s, 0))/s")
    }
}
