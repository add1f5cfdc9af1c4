// What `vigil-bench killrace` was asked to do, parsed from its command line:
// the daemons, how to tell one is ready, the load, the verdict, the delays.
import Glibc

/// When a freshly started daemon counts as ready for its stop request.
enum ReadyCondition: CustomStringConvertible {
    /// A TCP connect to the address (placeholders substituted) succeeds.
    case tcp(address: String)
    /// READY=1 arrives on the NOTIFY_SOCKET the tool gives the daemon.
    case notify
    /// A line of the daemon's stdout or stderr matches.
    case log(pattern: String)
    /// A fixed time after the start.
    case after(ms: Int)

    /// `tcp:{port}` (127.0.0.1), `tcp:HOST:PORT`, `notify`, `log:REGEX`, `after:MS`.
    init(parsing text: String) throws(KillraceUsageError) {
        if text == "notify" { self = .notify; return }
        if text.hasPrefix("log:") {
            let pattern = String(text.dropFirst(4))
            guard !pattern.isEmpty else { throw KillraceUsageError("--ready log: needs a regular expression") }
            do { _ = try Regex(pattern) } catch {
                throw KillraceUsageError("--ready log:\(pattern): not a valid regular expression (\(error))")
            }
            self = .log(pattern: pattern)
            return
        }
        if text.hasPrefix("after:") {
            guard let ms = Int(text.dropFirst(6)), ms >= 0 else {
                throw KillraceUsageError("--ready after:MS needs a whole number of milliseconds")
            }
            self = .after(ms: ms)
            return
        }
        if text.hasPrefix("tcp:") {
            let rest = String(text.dropFirst(4))
            guard !rest.isEmpty else { throw KillraceUsageError("--ready tcp: needs a port, e.g. tcp:{port}") }
            // A bare port (or {port}) means the loopback address.
            self = .tcp(address: rest.contains(":") ? rest : "127.0.0.1:" + rest)
            return
        }
        throw KillraceUsageError("--ready must be tcp:{port}, tcp:HOST:PORT, notify, log:REGEX or after:MS (got '\(text)')")
    }

    var description: String {
        switch self {
        case .tcp(let a): "tcp:\(a)"
        case .notify: "notify"
        case .log(let p): "log:\(p)"
        case .after(let ms): "after:\(ms)"
        }
    }
}

/// What runs against the daemon between ready and the stop request.
enum LoadKind: CustomStringConvertible {
    case none
    /// `vigil-bench ping` (64 connections × 16 in flight).
    case ping
    /// `vigil-bench turns` (64 sessions, each with a turn in flight).
    case turns
    /// Any load generator, `/bin/sh -c CMD`.
    case command(String)

    init(parsing text: String) {
        switch text {
        case "none", "": self = .none
        case "ping": self = .ping
        case "turns": self = .turns
        default: self = .command(text)
        }
    }

    var description: String {
        switch self {
        case .none: "none"
        case .ping: "ping (vigil-bench ping, 64 connections × 16 in flight)"
        case .turns: "turns (vigil-bench turns, 64 sessions)"
        case .command(let c): "'\(c)'"
        }
    }
}

/// How a trial's survival is decided once the daemon has been reaped.
enum Verdict: CustomStringConvertible {
    /// `/bin/sh -c CMD`: exit 0 survived, 1–125 did not, anything else is an error.
    case command(String)
    /// `vigilctl last-shutdown --json`: the record is there, and a `clean` or
    /// `cut-short` claim by a daemon that died of the SIGKILL is a lie.
    case vigil

    var description: String {
        switch self {
        case .command(let c): "'\(c)'"
        case .vigil: "vigil (vigilctl last-shutdown --json)"
        }
    }
}

struct DaemonSpec {
    let name: String
    let argv: [String]
    let verdict: Verdict
    let load: LoadKind
}

/// Which CPUs the daemon, the load and the tool's signal race run on.
struct CPUPlan: CustomStringConvertible {
    /// nil: not pinned.
    var daemon: [Int32]?
    var load: [Int32]?
    /// The CPU the tool itself (and so the SIGTERM→SIGKILL race) runs on.
    var tool: [Int32]?

    static let unpinned = CPUPlan(daemon: nil, load: nil, tool: nil)

    /// `auto` (the daemon on the last allowed CPU, load and tool on the
    /// others), `none`, or `DAEMON[,LOAD]`.
    init(parsing text: String, allowed: [Int32]) throws(KillraceUsageError) {
        if text == "none" { self = .unpinned; return }
        if text == "auto" {
            guard allowed.count >= 2, let last = allowed.last else { self = .unpinned; return }
            let rest = Array(allowed.dropLast())
            self.init(daemon: [last], load: rest, tool: [rest[0]])
            return
        }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2 else {
            throw KillraceUsageError("--cpu must be auto, none, DAEMON or DAEMON,LOAD (CPU numbers), got '\(text)'")
        }
        var cpus: [Int32] = []
        for p in parts {
            guard let c = Int32(p), allowed.contains(c) else {
                throw KillraceUsageError("--cpu \(text): '\(p)' is not one of the CPUs this process may use (\(allowed.map(String.init).joined(separator: ",")))")
            }
            cpus.append(c)
        }
        let daemon = cpus[0]
        if cpus.count == 2 {
            self.init(daemon: [daemon], load: [cpus[1]], tool: [cpus[1]])
        } else {
            let rest = allowed.filter { $0 != daemon }
            guard let first = rest.first else {
                throw KillraceUsageError("--cpu \(text): no CPU is left for the load and the signal race")
            }
            self.init(daemon: [daemon], load: rest, tool: [first])
        }
    }

    init(daemon: [Int32]?, load: [Int32]?, tool: [Int32]?) {
        self.daemon = daemon
        self.load = load
        self.tool = tool
    }

    var description: String {
        func list(_ c: [Int32]?) -> String { c.map { $0.map(String.init).joined(separator: ",") } ?? "any" }
        if daemon == nil && load == nil && tool == nil { return "not pinned" }
        return "daemon on CPU \(list(daemon)), load on \(list(load)), signal race on \(list(tool))"
    }
}

struct KillraceConfig {
    var daemons: [DaemonSpec]
    var ready: ReadyCondition
    var readyTimeoutNs: UInt64
    var loadConnect: String
    var settleNs: UInt64
    var delaysUs: [UInt64]
    var trials: Int
    var cpu: CPUPlan
    var stopSignal: Int32
    /// --daemon-fifo: the daemon's SCHED_FIFO priority (nil: normal scheduling).
    var daemonFIFO: Int32?
    var workDir: String
    var seed: UInt64
    var vigilctl: String
    /// This executable, for the ping/turns loads.
    var benchExecutable: String
    var jsonPath: String?
    var svgPath: String?
    /// A race whose SIGKILL is later than this past the delay is not counted.
    var maxLateNs: UInt64 = 200_000
    var verdictTimeoutNs: UInt64 = 60_000_000_000
    /// After the SIGKILL, how long the daemon and the load get to be reaped.
    var reapTimeoutNs: UInt64 = 10_000_000_000
}

struct KillraceUsageError: Error, CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
}

/// The default delay sweep: 50 µs … 1 s in 1-2-5 steps (a log sweep).
let defaultKillraceDelaysUs: [UInt64] = [
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
]

/// `50,100,1ms,2.5ms,1s` or space separated; a bare number is microseconds.
func parseDelays(_ text: String) throws(KillraceUsageError) -> [UInt64] {
    var out: [UInt64] = []
    for item in text.split(whereSeparator: { $0 == "," || $0 == " " }) {
        var s = Substring(item)
        var scale = 1.0
        if s.hasSuffix("us") { s = s.dropLast(2) } else if s.hasSuffix("µs") { s = s.dropLast(2) }
        else if s.hasSuffix("ms") { s = s.dropLast(2); scale = 1_000 }
        else if s.hasSuffix("s") { s = s.dropLast(1); scale = 1_000_000 }
        guard let v = Double(s), v >= 0, v * scale <= 60_000_000 else {
            throw KillraceUsageError("--delays: '\(item)' is not a delay (µs, or with us/ms/s; at most 60 s)")
        }
        out.append(UInt64((v * scale).rounded()))
    }
    guard !out.isEmpty else { throw KillraceUsageError("--delays is empty") }
    return Array(Set(out)).sorted()
}

/// `{state}`, `{port}` and (in load commands) `{pid}` of one trial.
struct Placeholders {
    let state: String
    let port: UInt16
    var pid: pid_t?

    func apply(_ text: String) -> String {
        var s = text.replacing("{state}", with: state).replacing("{port}", with: String(port))
        if let pid { s = s.replacing("{pid}", with: String(pid)) }
        return s
    }
}

/// Splits `--compare` commands into words the way a shell would (blanks
/// separate; '…' is literal; "…" and \ escape), but runs no shell: the
/// daemon's pid is the one that gets the signals.
func splitCommandWords(_ text: String) throws(KillraceUsageError) -> [String] {
    var words: [String] = []
    var current = ""
    var inWord = false
    var it = Array(text).makeIterator()
    while let c = it.next() {
        switch c {
        case " ", "\t", "\n":
            if inWord { words.append(current); current = ""; inWord = false }
        case "'":
            inWord = true
            var closed = false
            while let d = it.next() { if d == "'" { closed = true; break }; current.append(d) }
            if !closed { throw KillraceUsageError("unterminated ' in command: \(text)") }
        case "\"":
            inWord = true
            var closed = false
            while let d = it.next() {
                if d == "\"" { closed = true; break }
                if d == "\\", let e = it.next() {
                    if e != "\"" && e != "\\" && e != "$" && e != "`" { current.append("\\") }
                    current.append(e)
                    continue
                }
                current.append(d)
            }
            if !closed { throw KillraceUsageError("unterminated \" in command: \(text)") }
        case "\\":
            inWord = true
            if let d = it.next() { current.append(d) }
        default:
            inWord = true
            current.append(c)
        }
    }
    if inWord { words.append(current) }
    guard !words.isEmpty else { throw KillraceUsageError("empty command") }
    return words
}

/// argv as one line a shell would split back into the same words.
func shellQuoted(_ argv: [String]) -> String {
    argv.map { w -> String in
        let plain = !w.isEmpty && w.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:,+@%{}".contains($0) }
        return plain ? w : "'" + w.replacing("'", with: "'\\''") + "'"
    }.joined(separator: " ")
}
