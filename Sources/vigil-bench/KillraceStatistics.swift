// The figures of a kill-race sweep: survival per delay with its Wilson 95 %
// interval, the delays at which survival reaches 50 %, 99 % and 100 % for
// good, and the precision of the achieved delays.
import Glibc

/// Wilson score interval for `successes` of `trials` (z = 1.96: 95 %).
/// Unlike the normal approximation it stays inside [0, 1] and is honest at
/// 0 % and 100 %, where a kill race spends most of its delays.
func wilsonInterval(successes: Int, trials: Int, z: Double = 1.959964) -> (low: Double, high: Double) {
    guard trials > 0 else { return (0, 1) }
    let n = Double(trials)
    let p = Double(successes) / n
    let z2 = z * z
    let denominator = 1 + z2 / n
    let center = (p + z2 / (2 * n)) / denominator
    let half = z * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot() / denominator
    return (max(0, center - half), min(1, center + half))
}

/// Nearest-rank percentile of sorted values (q in 0…1).
func nearestRank<T>(_ sorted: [T], _ q: Double) -> T? {
    guard !sorted.isEmpty else { return nil }
    let rank = Int((q * Double(sorted.count)).rounded(.up))
    return sorted[min(sorted.count, max(1, rank)) - 1]
}

struct DelayPoint {
    let delayUs: UInt64
    var trials = 0  // counted trials (without error)
    var survived = 0
    var errors = 0
    /// Races whose SIGKILL came too late (--max-late-us): not counted.
    var late = 0
    var lies = 0
    var killed = 0
    /// achieved − requested, ns, of every trial that reached the race.
    var overshootNs: [Int64] = []

    var rate: Double? { trials > 0 ? Double(survived) / Double(trials) : nil }
    var interval: (low: Double, high: Double) { wilsonInterval(successes: survived, trials: trials) }
}

struct DaemonCurve {
    let spec: DaemonSpec
    var points: [DelayPoint]

    var name: String { spec.name }
    var trials: Int { points.reduce(0) { $0 + $1.trials } }
    var errors: Int { points.reduce(0) { $0 + $1.errors } }
    var late: Int { points.reduce(0) { $0 + $1.late } }
    var lies: Int { points.reduce(0) { $0 + $1.lies } }

    /// The smallest delay from which survival stays ≥ q at every larger
    /// measured delay; nil if the largest delay is below q. ("Stays" keeps
    /// one lucky trial at a short delay from setting it.)
    func sustained(_ q: Double) -> UInt64? {
        var answer: UInt64?
        for p in points.reversed() {
            guard let r = p.rate else { continue }
            if r + 1e-12 >= q { answer = p.delayUs } else { break }
        }
        return answer
    }

    var d50: UInt64? { sustained(0.5) }
    var d99: UInt64? { sustained(0.99) }
    var d100: UInt64? { sustained(1.0) }

    /// Delays above `from` where survival is below q again (noise, or a
    /// threshold that is really higher).
    func dips(below q: Double, above from: UInt64?) -> [DelayPoint] {
        let floor = from ?? UInt64.max
        return points.filter { $0.delayUs > floor && ($0.rate ?? 1) < q }
    }
}

struct KillraceSummary {
    var curves: [DaemonCurve]

    init(config: KillraceConfig, results: [TrialResult]) {
        curves = config.daemons.map { d in
            DaemonCurve(spec: d, points: config.delaysUs.map { DelayPoint(delayUs: $0) })
        }
        let index = Dictionary(uniqueKeysWithValues: config.delaysUs.enumerated().map { ($1, $0) })
        let byName = Dictionary(uniqueKeysWithValues: config.daemons.enumerated().map { ($1.name, $0) })
        for r in results {
            guard let c = byName[r.daemon], let i = index[r.delayUs] else { continue }
            if let a = r.achievedNs { curves[c].points[i].overshootNs.append(Int64(a) - Int64(r.delayUs * 1_000)) }
            if r.error != nil { curves[c].points[i].errors += 1; continue }
            if r.late { curves[c].points[i].late += 1; continue }
            curves[c].points[i].trials += 1
            if r.survived { curves[c].points[i].survived += 1 }
            if r.lie { curves[c].points[i].lies += 1 }
            if r.killed == true { curves[c].points[i].killed += 1 }
        }
    }

    /// achieved − requested over every trial that reached the race, sorted (ns).
    var overshootNs: [Int64] {
        curves.flatMap { $0.points.flatMap(\.overshootNs) }.sorted()
    }
}
