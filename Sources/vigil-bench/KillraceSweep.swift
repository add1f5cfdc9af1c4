// The sweep: `--trials` rounds; in each round every delay once, in a fresh
// random order (so slow drift — a neighbour's build, a warming disk — hits
// all delays alike), and at each delay every daemon once, the order rotated,
// so compared daemons see the same disturbances. Trials run one at a time
// on one reactor.
import Glibc
import VigilReactor

/// SplitMix64: a small seeded generator, so `--seed` replays a schedule.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class KillraceSweep {
    private struct Slot {
        let round: Int
        let delayUs: UInt64
        let daemon: Int
    }

    private let config: KillraceConfig
    private let reactor: Reactor
    private let home: [Int32]
    private let runDir: String
    private var schedule: [Slot] = []
    private var position = 0
    private var current: KillraceTrial?
    private var jsonFD: Int32 = -1
    private var counted: [Bool]
    private var consecutiveErrors: [Int]
    private let startNs = monotonicNanoseconds()
    private(set) var results: [TrialResult] = []
    private(set) var aborted: String?

    /// Errors in a row after which a daemon that did work before is given up on.
    static let maxConsecutiveErrors = 5

    init(config: KillraceConfig, reactor: Reactor, home: [Int32], runDir: String) {
        self.config = config
        self.reactor = reactor
        self.home = home
        self.runDir = runDir
        counted = Array(repeating: false, count: config.daemons.count)
        consecutiveErrors = Array(repeating: 0, count: config.daemons.count)
        var rng = SplitMix64(state: config.seed)
        let n = config.daemons.count
        for round in 0..<config.trials {
            for (i, d) in config.delaysUs.shuffled(using: &rng).enumerated() {
                for k in 0..<n { schedule.append(Slot(round: round, delayUs: d, daemon: (k + round + i) % n)) }
            }
        }
    }

    var elapsedNs: UInt64 { monotonicNanoseconds() &- startNs }

    func run() throws(SystemCallError) {
        if let path = config.jsonPath {
            jsonFD = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if jsonFD < 0 { fail("killrace: cannot write --json \(path): \(String(cString: strerror(errno)))", code: BenchExit.failed) }
        }
        reactor.deliverOnLoop { [unowned self] in self.step() }
        try reactor.run()
    }

    /// Appends the summary lines and closes the --json file.
    func finishJSON(_ summary: KillraceSummary) {
        guard jsonFD >= 0 else { return }
        for c in summary.curves { writeJSON(KillraceReport.summaryLine(c)) }
        close(jsonFD)
        jsonFD = -1
    }

    private func writeJSON(_ line: String) {
        guard jsonFD >= 0 else { return }
        var text = line + "\n"
        text.withUTF8 { b in
            var off = 0
            while off < b.count {
                let n = write(jsonFD, b.baseAddress! + off, b.count - off)
                if n <= 0 { if errno == EINTR { continue }; return }
                off += n
            }
        }
    }

    private func step() {
        current = nil
        guard aborted == nil, position < schedule.count else {
            reactor.stop()
            return
        }
        let slot = schedule[position]
        position += 1
        let trial = KillraceTrial(
            config: config, daemon: config.daemons[slot.daemon], round: slot.round, delayUs: slot.delayUs,
            reactor: reactor, dir: runDir + "/t\(position)", home: home
        ) { [unowned self] result in self.record(result, daemon: slot.daemon) }
        current = trial
        trial.start()
    }

    private func record(_ result: TrialResult, daemon: Int) {
        results.append(result)
        writeJSON(KillraceReport.trialLine(result))
        if let error = result.error {
            consecutiveErrors[daemon] += 1
            progress("\(result.daemon) at \(result.delayUs) µs (round \(result.round + 1)): \(error)")
            if !counted[daemon] {
                // Its first trials fail: a misconfiguration, not a measurement.
                aborted = "daemon '\(result.daemon)': \(error)"
            } else if consecutiveErrors[daemon] >= Self.maxConsecutiveErrors {
                aborted = "daemon '\(result.daemon)': \(Self.maxConsecutiveErrors) trials in a row failed; the last: \(error)"
            }
        } else {
            counted[daemon] = true
            consecutiveErrors[daemon] = 0
        }
        let perRound = config.delaysUs.count * config.daemons.count
        if position % perRound == 0 && aborted == nil {
            progress("round \(position / perRound)/\(config.trials): \(results.count) trials, \(fixed(Double(elapsedNs) / 1e9, 0)) s, loadavg \(KillraceSweep.loadAverage())")
        }
        reactor.deliverOnLoop { [unowned self] in self.step() }
    }

    private func progress(_ text: String) {
        var line = "killrace: \(text)\n"
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }

    /// The 1-minute load average from /proc/loadavg.
    static func loadAverage() -> String {
        let fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "?" }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 128)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return "?" }
        return String(decoding: buf[0..<n], as: UTF8.self).split(separator: " ").prefix(3).joined(separator: " ")
    }
}
