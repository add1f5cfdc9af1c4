// sqlite-turn-bench: the turn journal benchmark's workload on SQLite (WAL,
// synchronous=FULL), for docs/benchmarks.md ("Turn journal").
//
// Usage: sqlite-turn-bench [--dir DIR] [--sessions N] [--duration S] [--warmup S] [--text-bytes N] [--json]
// Prints one line (or one JSON object) on stdout; exits 1 on a SQLite or
// system error, 64 on a bad argument.
import Glibc

let usageLine = "usage: sqlite-turn-bench [--dir DIR] [--sessions N] [--duration S] [--warmup S] [--text-bytes N] [--json]"

func usage(_ message: String) -> Never {
    var text = "sqlite-turn-bench: \(message)\n\(usageLine)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(64)
}

/// The command line: the configuration and whether to print JSON.
func parse(_ argv: [String]) -> (SQLiteTurnLoad.Config, json: Bool) {
    var config = SQLiteTurnLoad.Config(parent: "/var/tmp", sessions: 256, warmupNs: 500_000_000, durationNs: 3_000_000_000, textBytes: 64)
    var json = false
    var args = argv[...]
    func value(_ flag: String) -> String {
        guard let v = args.popFirst() else { usage("\(flag) needs a value") }
        return v
    }
    func seconds(_ flag: String) -> UInt64 {
        guard let s = Double(value(flag)), s >= 0, s <= 3600 else { usage("\(flag) must be seconds in [0, 3600]") }
        return UInt64((s * 1e9).rounded())
    }
    while let arg = args.popFirst() {
        switch arg {
        case "--dir": config.parent = value(arg)
        case "--sessions":
            guard let n = Int(value(arg)), n >= 1, n <= 100_000 else { usage("--sessions must be from 1 to 100000") }
            config.sessions = n
        case "--duration":
            config.durationNs = seconds(arg)
            if config.durationNs == 0 { usage("--duration must be more than 0") }
        case "--warmup": config.warmupNs = seconds(arg)
        case "--text-bytes":
            guard let n = Int(value(arg)), n >= 0, n <= 60_000 else { usage("--text-bytes must be from 0 to 60000") }
            config.textBytes = n
        case "--json": json = true
        case "-h", "--help":
            print(usageLine)
            exit(0)
        default: usage("unknown argument '\(arg)'")
        }
    }
    return (config, json)
}

let (config, json) = parse(Array(CommandLine.arguments.dropFirst()))
let result: SQLiteTurnLoad.Result
do { result = try SQLiteTurnLoad(config).run() } catch {
    var text = "sqlite-turn-bench: \(error)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}

let elapsed = Double(result.elapsedNs) / 1e9
let share = { (ns: UInt64) in elapsed == 0 ? 0 : Double(ns) / 1e9 / elapsed }
let us = { (ns: UInt64) in fixed(Double(ns) / 1000, 1) }
let other = result.systemBusyNs.map { $0 > result.cpuNs ? $0 - result.cpuNs : 0 }
let commitRate = elapsed == 0 ? 0 : Double(result.commits) / elapsed
if json {
    var s = "{\"benchmark\":\"sqlite-turns\",\"sessions\":\(config.sessions),\"text_bytes\":\(config.textBytes)"
    s += ",\"warmup_s\":\(fixed(Double(config.warmupNs) / 1e9, 3)),\"duration_s\":\(fixed(elapsed, 3))"
    s += ",\"turns\":\(result.turns),\"rate_per_s\":\(fixed(result.rate, 0)),\"commits\":\(result.commits),\"commits_per_s\":\(fixed(commitRate, 0))"
    s += ",\"latency_us\":{\"samples\":\(result.latency.samples),\"p50\":\(us(result.latency.p50)),\"p99\":\(us(result.latency.p99)),\"max\":\(us(result.latency.maximum))}"
    s += ",\"cpu\":\(fixed(share(result.cpuNs), 3))"
    if let other { s += ",\"other_cpu\":\(fixed(share(other), 3))" }
    if let user = result.otherUserNs { s += ",\"other_user_cpu\":\(fixed(share(user), 3))" }
    s += ",\"filesystem\":\"\(result.filesystem)\",\"sqlite\":\"\(result.version)\",\"journal_mode\":\"\(result.journalMode)\",\"synchronous\":\(result.synchronous)}"
    print(s)
} else {
    var s = "sqlite-turns sessions=\(config.sessions) duration=\(fixed(elapsed, 2))s turns=\(result.turns) rate=\(fixed(result.rate, 0))/s"
    s += " commits=\(result.commits) commits_per_s=\(fixed(commitRate, 0))"
    s += " p50_us=\(us(result.latency.p50)) p99_us=\(us(result.latency.p99)) max_us=\(us(result.latency.maximum))"
    s += " cpu=\(fixed(share(result.cpuNs), 2))"
    if let other { s += " other_cpu=\(fixed(share(other), 2))" }
    if let user = result.otherUserNs { s += " other_user_cpu=\(fixed(share(user), 2))" }
    s += " fs=\(result.filesystem) dir=\(config.parent) sqlite=\(result.version) journal_mode=\(result.journalMode) synchronous=\(result.synchronous)"
    print(s)
}
