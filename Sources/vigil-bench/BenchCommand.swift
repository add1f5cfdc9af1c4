// Command line of vigil-bench: `ping` (pipelined round trips against a
// newline-delimited JSON server), `signal` (timestamped sigqueue) and
// `journal` (the turn journal in-process: durable turns/s, replay speed),
// the session loads, `killrace` (any daemon's stop sequence against SIGKILL)
// and `ledger`/`fsync-floor` (`vigil run`'s ledger against one fdatasync per record).
import ArgumentParser
import Glibc
import VigilReactor

/// Exit codes: 0 benchmark completed, 1 the run failed (connection refused
/// or lost, unexpected reply, sigqueue refused), 64 bad arguments.
enum BenchExit {
    static let failed: Int32 = 1
    static let usage: Int32 = 64
}

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil-bench",
        abstract: "Load generator for Vigil's benchmarks (docs/benchmarks.md).",
        subcommands: [PingCommand.self, SignalCommand.self, JournalCommand.self,
                      TurnsCommand.self, DrainCommand.self, OpenSessionsCommand.self,
                      KillraceCommand.self, LedgerCommand.self, FsyncFloorCommand.self])
}

struct PingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping",
        abstract: "Pipelined {\"op\":\"ping\"} round trips over many connections.",
        discussion: """
            Opens the connections, keeps --depth requests in flight on each (every reply \
            is answered by a new request, batched per readable event), counts the replies \
            after --warmup seconds for --duration seconds. With --depth 1 it also records \
            the latency of every request (send → reply, CLOCK_MONOTONIC) and prints \
            p50/p99/p999 in microseconds.
            """)

    @Option(name: .customLong("connect"), help: ArgumentHelp("Server address, HOST:PORT, [IPV6]:PORT or unix:PATH.", valueName: "address"))
    var connect: String

    @Option(help: "Connections to open.")
    var connections: Int = 256

    @Option(help: "Requests kept in flight per connection.")
    var depth: Int = 16

    @OptionGroup var window: LoadWindowOptions


    func validate() throws {
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
        guard depth >= 1, depth <= 4096 else { throw ValidationError("--depth must be from 1 to 4096") }
    }

    func run() throws {
        let address: SocketAddress
        do { address = try SocketAddress(parsing: connect) } catch {
            fail("\(error)", code: BenchExit.usage)
        }
        let config = PingLoad.Config(
            address: address, connections: connections, depth: depth,
            warmupNs: seconds(window.warmup), durationNs: seconds(window.duration), serverPID: window.serverPID)
        let result: PingLoad.Result
        do { result = try PingLoad(config).run() } catch {
            fail("\(error)", code: BenchExit.failed)
        }
        print(window.json ? result.json(config) : result.summary(config))
    }
}

struct SignalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signal",
        abstract: "Sends signals whose sigqueue payload is the send time.",
        discussion: """
            Each signal carries CLOCK_MONOTONIC (nanoseconds) at the moment of sending as \
            its 64-bit sigqueue value, so the receiver computes the delivery latency \
            itself (vigild does with VIGIL_DEBUG_SIGNAL_LATENCY=1). This command only sends.
            """)

    @Option(help: "Process to signal.")
    var pid: Int32

    @Option(help: "Signal name or number (USR1, SIGUSR1, 10).")
    var signal: String = "USR1"

    @Option(help: "Signals to send.")
    var count: Int = 1000

    @Option(name: .customLong("interval-ms"), help: "Milliseconds between two signals.")
    var intervalMs: Double = 2

    @Flag(help: "Print one JSON object instead of the summary line.")
    var json = false

    func validate() throws {
        guard pid > 0 else { throw ValidationError("--pid must be a process id") }
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard intervalMs >= 0, intervalMs <= 60_000 else { throw ValidationError("--interval-ms must be in [0, 60000]") }
        guard SignalSender.number(of: signal) != nil else { throw ValidationError("unknown signal '\(signal)'") }
    }

    func run() throws {
        let sender = SignalSender(
            pid: pid, signal: SignalSender.number(of: signal)!, count: count,
            intervalNs: UInt64(intervalMs * 1_000_000))
        let result: SignalSender.Result
        do { result = try sender.run() } catch {
            fail("\(error)", code: BenchExit.failed)
        }
        print(json ? result.json(sender) : result.summary(sender))
    }
}

func seconds(_ s: Double) -> UInt64 { UInt64((s * 1_000_000_000).rounded()) }

func fail(_ message: String, code: Int32) -> Never {
    var text = "vigil-bench: \(message)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(code)
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

/// `s` as a JSON string literal.
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case _ where u.value < 0x20: out += "\\u00" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16)
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}
