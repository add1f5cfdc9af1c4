// `vigilctl history`: the last runs of a state directory (vigild's or
// `vigil run`'s), newest first, as their shutdown records described them.
import ArgumentParser
import Glibc
import VigilDurable

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "The last runs (up to 100) and how each ended.",
        discussion: """
            One line per run, newest first: its class (clean, cut-short, killed-during-drain, crash, \
            corrupt), pid, start and end (UTC), the stop signal and its sender, budget, drain time, \
            work in flight and abandoned, a supervised program's exit status, and "previous boot" \
            when a reboot followed it. The running instance is not listed (it has not ended); with nothing running, the last run \
            comes from the shutdown record. \
            Damaged lines are reported and skipped. --json prints {"runs":[{…}],"damaged_lines":N}; \
            numbers are JSON numbers. Exit codes: 0 done, 64 usage, 66 state directory unreadable.
            """)

    @OptionGroup var options: StateOptions

    @Option(name: .customLong("limit"), help: ArgumentHelp("Show at most N runs (default 20).", valueName: "n"))
    var limit: Int = 20

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        let fs = try options.openStateDirectory()
        let history = RunHistory.read(fs)
        if let problem = history.problem { fputsStderr("vigilctl: \(problem)\n") }
        if history.damagedLines > 0 {
            fputsStderr("vigilctl: \(history.damagedLines) damaged line(s) in \(RunHistory.fileName) skipped\n")
        }
        var entries = history.entries
        // With nothing running, the last run is still only in its shutdown
        // record (the next start moves it into the history): shown too.
        if !options.daemon(fs).running, let last = RunHistory.Entry(PreviousRun.classify(ShutdownRecordStore(fs: fs).read(), currentBootID: currentBootID())),
           !(entries.last.map { $0["pid"] == last["pid"] && $0["started_at_ns"] == last["started_at_ns"] } ?? false) {
            entries.append(last)
        }
        let runs = Array(entries.reversed().prefix(limit))
        if options.json {
            let list: [[String: Any]] = runs.map { entry in
                var o: [String: Any] = [:]
                for (k, v) in entry.fields {
                    if k == "previous_boot" { o[k] = v == "true" } else if let n = Int64(v), k != "boot_id", k != "version", k != "sender_comm", k != "journal_missing" { o[k] = n } else { o[k] = v }
                }
                return o
            }
            print(jsonText(["runs": list, "damaged_lines": history.damagedLines] as [String: Any]))
            return
        }
        if runs.isEmpty { print("no run has ended in \(options.stateDir) yet"); return }
        for e in runs {
            var line = "\(e["class"] ?? "?")  pid \(e["pid"] ?? "?")  started \(utc(e["started_at_ns"]))"
            if let end = e["ended_at_ns"] { line += "  ended \(utc(end))" }
            if let s = e["signal"] { line += "  signal \(s) from pid \(e["sender_pid"] ?? "?")\(e["sender_comm"].map { " (\($0))" } ?? "") uid \(e["sender_uid"] ?? "?")" }
            if let b = e["budget_ms"] { line += "  budget \(b) ms" }
            if let d = e["drain_ms"] { line += "  drain \(d) ms" }
            if let n = e["in_flight"] { line += "  \(n) in flight" }
            if let a = e["abandoned"] { line += "  \(a) abandoned" }
            if let c = e["program_exit_status"] { line += "  program exited \(c)" }
            if let g = e["program_exit_signal"] { line += "  program killed by signal \(g)" }
            if e["previous_boot"] == "true" { line += "  (previous boot)" }
            if let lost = e["journal_records_lost"] {
                line += "  JOURNAL DAMAGED at the next start: \(lost) acknowledged record(s) lost\(e["journal_missing"].map { ", missing \($0)" } ?? "")"
            }
            print(line)
        }
    }

    private func utc(_ ns: String?) -> String {
        guard let ns, let v = UInt64(ns) else { return "?" }
        var t = time_t(v / 1_000_000_000)
        var tm = tm()
        gmtime_r(&t, &tm)
        var buf = [CChar](repeating: 0, count: 32)
        strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%SZ", &tm)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
