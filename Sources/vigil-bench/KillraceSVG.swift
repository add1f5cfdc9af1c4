// `--svg`: the survival curves as a hand-written SVG. Delay on a log axis
// (a delay of 0 gets its own slot left of it), survival 0–100 %, one line
// per daemon over its Wilson 95 % band. Each daemon is one
// <g class="series" data-daemon="NAME"> holding a <path class="band">, a
// <polyline class="curve"> and a <circle> per delay, so the file is easy to
// check by machine as well as by eye.
import Glibc

enum KillraceSVG {
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    static func render(_ summary: KillraceSummary, title: String, subtitle: String) -> String {
        let width = 860.0, height = 500.0
        let left = 80.0, right = 190.0, top = 64.0, bottom = 64.0
        let plotW = width - left - right, plotH = height - top - bottom
        let delays = summary.curves.first?.points.map(\.delayUs) ?? []
        let positive = delays.filter { $0 > 0 }
        let hasZero = delays.contains(0)
        var lo = log10(Double(positive.min() ?? 1))
        var hi = log10(Double(positive.max() ?? 10))
        if hi - lo < 1 { let mid = (hi + lo) / 2; lo = mid - 0.5; hi = mid + 0.5 }
        lo -= 0.08; hi += 0.08
        // The zero slot takes the first 60 px of the plot.
        let zeroSlot = hasZero ? 60.0 : 0.0
        func x(_ us: UInt64) -> Double {
            if us == 0 { return left + zeroSlot / 2 }
            return left + zeroSlot + (log10(Double(us)) - lo) / (hi - lo) * (plotW - zeroSlot)
        }
        func y(_ fraction: Double) -> Double { top + (1 - fraction) * plotH }
        func f(_ v: Double) -> String { fixed(v, 1) }

        var s: [String] = []
        s.append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        s.append("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">")
        s.append("<rect x=\"0\" y=\"0\" width=\"\(Int(width))\" height=\"\(Int(height))\" fill=\"white\"/>")
        s.append("<text x=\"\(f(left))\" y=\"24\" font-size=\"16\" font-weight=\"bold\">\(escape(title))</text>")
        s.append("<text x=\"\(f(left))\" y=\"44\" fill=\"#555\">\(escape(subtitle))</text>")
        // Grid and axes.
        s.append("<g class=\"grid\" stroke=\"#ddd\" stroke-width=\"1\">")
        for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
            s.append("<line x1=\"\(f(left))\" y1=\"\(f(y(q)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y(q)))\"\(q == 0.5 ? " stroke-dasharray=\"4 3\" stroke=\"#bbb\"" : "")/>")
        }
        var decade = Int(lo.rounded(.down))
        var ticks: [(Double, String)] = []
        while Double(decade) <= hi {
            for m in [1.0, 2.0, 5.0] {
                let v = m * pow(10, Double(decade))
                let lv = log10(v)
                guard lv >= lo, lv <= hi, v >= 1 else { continue }
                let px = x(UInt64(v.rounded()))
                s.append("<line x1=\"\(f(px))\" y1=\"\(f(top))\" x2=\"\(f(px))\" y2=\"\(f(top + plotH))\"\(m == 1 ? "" : " stroke=\"#f0f0f0\"")/>")
                // Few decades: label the 2s and 5s too.
                if m == 1 || hi - lo <= 2.6 { ticks.append((px, durationLabel(v))) }
            }
            decade += 1
        }
        s.append("</g>")
        s.append("<g class=\"axes\" stroke=\"#333\" stroke-width=\"1\" fill=\"none\">")
        s.append("<line x1=\"\(f(left))\" y1=\"\(f(top + plotH))\" x2=\"\(f(left + plotW))\" y2=\"\(f(top + plotH))\"/>")
        s.append("<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotH))\"/>")
        if hasZero {
            // An axis break between the zero slot and the log axis.
            let bx = left + zeroSlot
            s.append("<line x1=\"\(f(bx - 4))\" y1=\"\(f(top + plotH + 5))\" x2=\"\(f(bx))\" y2=\"\(f(top + plotH - 5))\"/>")
            s.append("<line x1=\"\(f(bx))\" y1=\"\(f(top + plotH + 5))\" x2=\"\(f(bx + 4))\" y2=\"\(f(top + plotH - 5))\"/>")
        }
        s.append("</g>")
        s.append("<g class=\"labels\" fill=\"#333\">")
        for (px, label) in ticks {
            s.append("<text x=\"\(f(px))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\">\(escape(label))</text>")
        }
        if hasZero { s.append("<text x=\"\(f(x(0)))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\">0</text>") }
        for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
            s.append("<text x=\"\(f(left - 8))\" y=\"\(f(y(q) + 4))\" text-anchor=\"end\">\(Int(q * 100)) %</text>")
        }
        s.append("<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 18))\" text-anchor=\"middle\">delay from the stop signal to SIGKILL (log scale)</text>")
        s.append("<text transform=\"translate(20 \(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">survival (stop recorded)</text>")
        s.append("</g>")

        for (i, c) in summary.curves.enumerated() {
            let color = palette[i % palette.count]
            let measured = c.points.filter { $0.trials > 0 }
            s.append("<g class=\"series\" data-daemon=\"\(escape(c.name))\">")
            s.append("<title>\(escape(c.name)): d50 \(KillraceReport.delayText(c.d50)), d99 \(KillraceReport.delayText(c.d99)), d100 \(KillraceReport.delayText(c.d100))</title>")
            if !measured.isEmpty {
                let upper = measured.map { "\(f(x($0.delayUs))),\(f(y($0.interval.high)))" }
                let lower = measured.reversed().map { "\(f(x($0.delayUs))),\(f(y($0.interval.low)))" }
                s.append("<path class=\"band\" d=\"M \((upper + lower).joined(separator: " L ")) Z\" fill=\"\(color)\" fill-opacity=\"0.15\" stroke=\"none\"/>")
                s.append("<polyline class=\"curve\" points=\"\(measured.map { "\(f(x($0.delayUs))),\(f(y($0.rate ?? 0)))" }.joined(separator: " "))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>")
                for p in measured {
                    let iv = p.interval
                    s.append("<circle cx=\"\(f(x(p.delayUs)))\" cy=\"\(f(y(p.rate ?? 0)))\" r=\"3\" fill=\"\(color)\" data-delay-us=\"\(p.delayUs)\" data-survived=\"\(p.survived)\" data-trials=\"\(p.trials)\"><title>\(escape(c.name)) at \(p.delayUs) µs: \(p.survived)/\(p.trials) = \(KillraceReport.percent(p.rate ?? 0)) % (95 %: \(KillraceReport.percent(iv.low))–\(KillraceReport.percent(iv.high)) %)</title></circle>")
                }
            }
            // Legend entry: the name, and its d50 / d100 under it.
            let ly = top + 10 + Double(i) * 36
            let lx = left + plotW + 20
            s.append("<rect x=\"\(f(lx))\" y=\"\(f(ly - 7))\" width=\"22\" height=\"12\" fill=\"\(color)\" fill-opacity=\"0.15\"/>")
            s.append("<line x1=\"\(f(lx))\" y1=\"\(f(ly - 1))\" x2=\"\(f(lx + 22))\" y2=\"\(f(ly - 1))\" stroke=\"\(color)\" stroke-width=\"2\"/>")
            s.append("<text x=\"\(f(lx + 28))\" y=\"\(f(ly + 3))\">\(escape(c.name))</text>")
            s.append("<text x=\"\(f(lx + 28))\" y=\"\(f(ly + 17))\" fill=\"#555\" font-size=\"10\">d50 \(shortDelay(c.d50)), d100 \(shortDelay(c.d100))</text>")
            s.append("</g>")
        }
        let ly = top + 10 + Double(summary.curves.count) * 36
        s.append("<text x=\"\(f(left + plotW + 20))\" y=\"\(f(ly))\" fill=\"#555\" font-size=\"11\">band: Wilson 95 %</text>")
        s.append("</svg>")
        return s.joined(separator: "\n") + "\n"
    }

    static func shortDelay(_ us: UInt64?) -> String {
        guard let us else { return "–" }
        return us == 0 ? "0" : durationLabel(Double(us))
    }

    static func durationLabel(_ us: Double) -> String {
        if us >= 1_000_000 { return "\(trim(us / 1_000_000)) s" }
        if us >= 1_000 { return "\(trim(us / 1_000)) ms" }
        return "\(trim(us)) µs"
    }

    private static func trim(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : fixed(v, 1) }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(c)
            }
        }
        return out
    }
}
