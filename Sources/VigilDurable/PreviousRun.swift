// What the previous run's record says happened to it, decided from the
// record alone — no timestamps compared, no heuristics (docs/shutdown.md).

/// How the previous run of a daemon ended, decided from its shutdown record
/// alone. The raw values are what `vigilctl last-shutdown` prints and what
/// `VIGIL_PREVIOUS_RUN` carries.
public enum RunClassification: String, Sendable, CaseIterable {
    /// No record: this state directory has never been used.
    case firstStart = "first-start"
    /// `stopped`, outcome clean: the drain finished.
    case clean
    /// `stopped`, outcome cut-short: the daemon ended its own drain at the
    /// budget (or on a second signal) and abandoned work.
    case cutShort = "cut-short"
    /// `stopping`: a stop signal arrived, then the process died before
    /// `stopped` (SIGKILL after the timeout, OOM kill, power loss).
    case killedDuringDrain = "killed-during-drain"
    /// `running`: the process died without a stop signal.
    case crash
    /// The record cannot be read; treated as a crash.
    case corrupt
}

/// The verdict on the previous run, given to a daemon at its start
/// (`DaemonContext.previousRun`): log it, branch on it, hand it to users.
public struct PreviousRun: Sendable, Equatable {
    /// What happened, from the record alone.
    public var classification: RunClassification
    /// The record comes from another boot (reboot or power loss in between).
    public var previousBoot: Bool
    /// The previous run's record as read (nil for `first-start`, `corrupt`).
    public var record: ShutdownRecord?
    /// Why the record was rejected, for `corrupt`.
    public var corruption: String?
    /// Where the unreadable record was kept for inspection.
    public var keptAs: String?

    /// Classifies `record` as found at start-up on the boot `currentBootID`.
    public static func classify(_ read: ShutdownRecordStore.ReadResult, currentBootID: String) -> PreviousRun {
        switch read {
        case .absent:
            return PreviousRun(classification: .firstStart, previousBoot: false)
        case .corrupt(let reason):
            return PreviousRun(classification: .corrupt, previousBoot: false, corruption: reason)
        case .valid(let r):
            let c: RunClassification
            switch r.state {
            case .running: c = .crash
            case .stopping: c = .killedDuringDrain
            case .stopped: c = r.outcome == .clean ? .clean : .cutShort
            }
            return PreviousRun(classification: c, previousBoot: r.bootID != currentBootID, record: r)
        }
    }

    /// Whether the previous run may have lost work: everything but a clean stop.
    public var isUnclean: Bool { classification != .clean && classification != .firstStart }

    /// One line for the log.
    public var summary: String {
        var s = "previous run: \(classification.rawValue)"
        if previousBoot { s += " (previous boot)" }
        if let r = record {
            s += ", pid \(r.pid)"
            if let sig = r.signal { s += ", stop signal \(sig) from pid \(r.senderPID ?? 0)" }
            if let b = r.budgetMs { s += ", budget \(b) ms" }
            if let n = r.inFlight { s += ", \(n) in flight at the signal" }
            if let a = r.abandoned { s += ", \(a) abandoned" }
            if let d = r.drainMs { s += ", drain \(d) ms" }
            if let c = r.programExitStatus { s += ", program exited with status \(c) without a stop request" }
            if let g = r.programExitSignal { s += ", program killed by signal \(g) without a stop request" }
            if let n = r.handedOver { s += ", \(n) connection(s) handed over" }
        }
        if let why = corruption { s += ": \(why)" }
        if let kept = keptAs { s += "; unreadable record kept as \(kept)" }
        return s
    }

    /// The JSON object `vigilctl last-shutdown --json` prints.
    public func json() -> String {
        var f: [(String, String)] = [
            ("classification", JSONText.string(classification.rawValue)),
            ("previous_boot", previousBoot ? "true" : "false"),
        ]
        if let why = corruption { f.append(("corruption", JSONText.string(why))) }
        if let kept = keptAs { f.append(("kept_as", JSONText.string(kept))) }
        if let r = record {
            f.append(("state", JSONText.string(r.state.rawValue)))
            f.append(("pid", "\(r.pid)"))
            f.append(("boot_id", JSONText.string(r.bootID)))
            f.append(("started_at_ns", "\(r.startedAtNs)"))
            f.append(("version", JSONText.string(r.version)))
            if let v = r.signal { f.append(("signal", "\(v)")) }
            if let v = r.senderPID { f.append(("sender_pid", "\(v)")) }
            if let v = r.senderUID { f.append(("sender_uid", "\(v)")) }
            if let v = r.senderCommand { f.append(("sender_comm", JSONText.string(v))) }
            if let v = r.stopRequestedAtNs { f.append(("stop_requested_at_ns", "\(v)")) }
            if let v = r.budgetMs { f.append(("budget_ms", "\(v)")) }
            if let v = r.inFlight { f.append(("in_flight", "\(v)")) }
            if let v = r.outcome { f.append(("outcome", JSONText.string(v.rawValue))) }
            if let v = r.abandoned { f.append(("abandoned", "\(v)")) }
            if let v = r.drainMs { f.append(("drain_ms", "\(v)")) }
            if let v = r.handedOver { f.append(("handed_over", "\(v)")) }
            if let v = r.stoppedAtNs { f.append(("stopped_at_ns", "\(v)")) }
            if let v = r.programExitStatus { f.append(("program_exit_status", "\(v)")) }
            if let v = r.programExitSignal { f.append(("program_exit_signal", "\(v)")) }
        }
        return "{" + f.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }
}
