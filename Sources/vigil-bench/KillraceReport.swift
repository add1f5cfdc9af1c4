// What a kill-race sweep prints: markdown tables on stdout, and the JSON
// lines of `--json` (one per trial as it ends, one summary per daemon).
import Glibc
import VigilReactor

enum KillraceReport {
    // MARK: JSON lines

    static func trialLine(_ r: TrialResult) -> String {
        var s = "{\"daemon\":\(jsonString(r.daemon)),\"delay_us\":\(r.delayUs)"
        s += ",\"achieved_us\":\(r.achievedNs.map { fixed(Double($0) / 1e3, 3) } ?? "null")"
        s += ",\"survived\":\(r.survived && r.error == nil)"
        s += ",\"error\":\(r.error.map(jsonString) ?? "null")"
        s += ",\"round\":\(r.round + 1),\"port\":\(r.port)"
        s += ",\"killed\":\(r.killed.map { "\($0)" } ?? "null")"
        s += ",\"exit\":\(r.exit.map { jsonString($0.description) } ?? "null")"
        s += ",\"ready_ms\":\(r.readyNs.map { fixed(Double($0) / 1e6, 3) } ?? "null")"
        s += ",\"stop_call_us\":\(r.stopCallNs.map { fixed(Double($0) / 1e3, 3) } ?? "null")"
        s += ",\"kill_call_us\":\(r.killCallNs.map { fixed(Double($0) / 1e3, 3) } ?? "null")"
        s += ",\"sched_fifo\":\(r.fifo),\"late\":\(r.late)"
        if let c = r.classification { s += ",\"classification\":\(jsonString(c)),\"lie\":\(r.lie)" }
        return s + "}"
    }

    static func summaryLine(_ c: DaemonCurve) -> String {
        func us(_ v: UInt64?) -> String { v.map(String.init) ?? "null" }
        var s = "{\"daemon\":\(jsonString(c.name)),\"summary\":true,\"d50_us\":\(us(c.d50)),\"d99_us\":\(us(c.d99)),\"d100_us\":\(us(c.d100))"
        s += ",\"trials\":\(c.trials),\"errors\":\(c.errors),\"late\":\(c.late),\"lies\":\(c.lies)"
        s += ",\"command\":\(jsonString(shellQuoted(c.spec.argv))),\"verdict\":\(jsonString(c.spec.verdict.description)),\"load\":\(jsonString(c.spec.load.description))"
        let points = c.points.map { p -> String in
            let iv = p.interval
            let o = p.overshootNs.sorted()
            return "{\"delay_us\":\(p.delayUs),\"trials\":\(p.trials),\"survived\":\(p.survived),\"survival\":\(p.rate.map { fixed($0, 4) } ?? "null"),\"wilson_low\":\(fixed(iv.low, 4)),\"wilson_high\":\(fixed(iv.high, 4)),\"errors\":\(p.errors),\"late\":\(p.late),\"lies\":\(p.lies),\"killed\":\(p.killed),\"overshoot_p50_us\":\(nearestRank(o, 0.5).map { fixed(Double($0) / 1e3, 3) } ?? "null"),\"overshoot_max_us\":\(o.last.map { fixed(Double($0) / 1e3, 3) } ?? "null")}"
        }
        return s + ",\"curve\":[\(points.joined(separator: ","))]}"
    }

    // MARK: Text

    static func percent(_ x: Double) -> String {
        let v = (x * 1000).rounded() / 10  // one decimal, without 55.00000000000001
        return v == v.rounded() ? fixed(v, 0) : fixed(v, 1)
    }

    static func delayText(_ us: UInt64?) -> String {
        guard let us else { return "not reached" }
        return "\(us) µs"
    }

    static func text(_ summary: KillraceSummary, config: KillraceConfig, header: [String], elapsedNs: UInt64, aborted: String?) -> String {
        var out: [String] = []
        out.append("# kill race")
        out.append("")
        out.append(contentsOf: header.map { "- " + $0 })
        out.append("")
        for c in summary.curves {
            out.append("## \(c.name)")
            out.append("")
            out.append("`\(shellQuoted(c.spec.argv))`; verdict \(c.spec.verdict); load \(c.spec.load)")
            out.append("")
            var columns = "| delay µs | trials | survived | survival % | Wilson 95 % | killed by SIGKILL | errors | late | achieved − requested p50 / max µs |"
            var rule = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            let vigil: Bool
            if case .vigil = c.spec.verdict { vigil = true } else { vigil = false }
            if vigil { columns += " lies |"; rule += "---:|" }
            out.append(columns)
            out.append(rule)
            for p in c.points {
                let iv = p.interval
                let o = p.overshootNs.sorted()
                let over = o.isEmpty ? "–" : "\(fixed(Double(nearestRank(o, 0.5)!) / 1e3, 1)) / \(fixed(Double(o.last!) / 1e3, 1))"
                var row = "| \(p.delayUs) | \(p.trials) | \(p.survived) | \(p.rate.map(percent) ?? "–") | \(p.trials > 0 ? "\(percent(iv.low))–\(percent(iv.high))" : "–") | \(p.killed) | \(p.errors) | \(p.late) | \(over) |"
                if vigil { row += " \(p.lies) |" }
                out.append(row)
            }
            out.append("")
            out.append("d50 \(delayText(c.d50)), d99 \(delayText(c.d99)), d100 \(delayText(c.d100)) (the smallest delay from which survival stays at or above 50 / 99 / 100 %)")
            for (q, d, label) in [(0.5, c.d50, "50"), (1.0, c.d100, "100")] {
                let dips = c.dips(below: q, above: d)
                if d != nil && !dips.isEmpty {
                    out.append("note: below \(label) % again above its d\(label) at \(dips.map { "\($0.delayUs) µs" }.joined(separator: ", "))")
                }
            }
            if vigil {
                out.append("lies (a `clean` or `cut-short` record after death by SIGKILL): \(c.lies)")
            }
            if c.errors > 0 { out.append("errors (not counted): \(c.errors)") }
            if c.late > 0 {
                out.append("late races (SIGKILL more than \(fixed(Double(config.maxLateNs) / 1e3, config.maxLateNs % 1_000 == 0 ? 0 : 1)) µs after the delay; not counted): \(c.late) at \(c.points.filter { $0.late > 0 }.map { "\($0.delayUs) µs" }.joined(separator: ", "))")
            }
            out.append("")
        }
        if summary.curves.count > 1 {
            out.append("## ratios")
            out.append("")
            out.append("| | d50 | d99 | d100 |")
            out.append("|---|---:|---:|---:|")
            func ratio(_ a: UInt64?, _ b: UInt64?) -> String {
                guard let a, let b else { return "–" }
                if b == 0 { return a == 0 ? "1.00" : "∞" }
                return fixed(Double(a) / Double(b), 2)
            }
            let cs = summary.curves
            for i in 0..<cs.count {
                for j in (i + 1)..<cs.count {
                    out.append("| \(cs[i].name) / \(cs[j].name) | \(ratio(cs[i].d50, cs[j].d50)) | \(ratio(cs[i].d99, cs[j].d99)) | \(ratio(cs[i].d100, cs[j].d100)) |")
                }
            }
            out.append("")
        }
        let o = summary.overshootNs
        if !o.isEmpty {
            let p50 = fixed(Double(nearestRank(o, 0.5)!) / 1e3, 1)
            let p99 = fixed(Double(nearestRank(o, 0.99)!) / 1e3, 1)
            out.append("timing: achieved − requested delay over \(o.count) races: p50 \(p50) µs, p99 \(p99) µs, min \(fixed(Double(o.first!) / 1e3, 1)) µs, max \(fixed(Double(o.last!) / 1e3, 1)) µs")
        }
        out.append("run time \(fixed(Double(elapsedNs) / 6e10, 1)) min")
        if let aborted { out.append("ABORTED: \(aborted)") }
        return out.joined(separator: "\n")
    }
}
