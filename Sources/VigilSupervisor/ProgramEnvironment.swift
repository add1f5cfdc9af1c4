// What the supervised program finds in its environment (docs/run.md):
// VIGIL_PREVIOUS_RUN, VIGIL_PREVIOUS_RUN_FILE, VIGIL_STOP_BUDGET_MS,
// VIGIL_LEDGER, and NOTIFY_SOCKET only for `--ready notify` (the proxy's).
// systemd's NOTIFY_SOCKET and WATCHDOG_* are vigil's own: a program that
// sent STOPPING=1 or MAINPID= straight to systemd would break the stop.
import Glibc
import VigilDurable

enum ProgramEnvironment {
    static let previousRunFile = "previous-run.json"
    static let ledgerSocket = "ledger.sock"
    static let notifySocket = "notify.sock"

    /// Our environment minus systemd's per-process variables, plus `added`.
    static func build(adding added: [(String, String)]) -> [String] {
        let dropped = Set(["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] + added.map(\.0))
        var out: [String] = []
        var p = environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            let name = text.split(separator: "=", maxSplits: 1).first.map(String.init) ?? text
            if !dropped.contains(name) { out.append(text) }
            p += 1
        }
        return out + added.map { "\($0.0)=\($0.1)" }
    }

    /// Exactly what `vigilctl last-shutdown --json` prints while this run
    /// holds the state directory: the verdict on the previous run, this
    /// process as the running daemon, the interrupted work, the journal check.
    static func previousRunJSON(_ previous: PreviousRun, interrupted: [(session: String, ids: [String])], check: JournalCheck) -> String {
        var s = String(previous.json().dropLast())
        s += ",\"daemon_running\":true,\"daemon_pid\":\(getpid()),\"interrupted\":["
        s += interrupted.map { "{\"session\":\(JSONText.string($0.session)),\"turns\":[\($0.ids.map(JSONText.string).joined(separator: ","))]}" }.joined(separator: ",")
        // Keys sorted, as vigilctl's JSONSerialization(.sortedKeys) writes them.
        s += "],\"journal\":{\"damaged\":\(check.isDamaged),\"missing\":[\(check.missing.map(JSONText.string).joined(separator: ","))]"
        s += ",\"problems\":[\(check.problems.map(JSONText.string).joined(separator: ","))],\"records_lost\":\(check.recordsLost)}}"
        return s
    }
}
