// `vigilctl last-shutdown`: how the previous run ended, and which sessions
// and turns it cut off.
import ArgumentParser
import Glibc
import VigilDurable
import VigilLifecycle

struct LastShutdown: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "last-shutdown",
        abstract: "How the previous run of vigild (or of `vigil run`) ended.",
        discussion: """
            With the daemon stopped, this reads the shutdown record and prints what the next start \
            will conclude. With the daemon running, it prints what that daemon concluded at its start. \
            --json prints one object: "classification" (first-start, clean, cut-short, \
            killed-during-drain, crash, corrupt), "previous_boot", the record's fields, \
            "daemon_running" / "daemon_pid", and "interrupted": [{"session":S,"turns":[ids]},…] \
            (sessions whose turns were cut off and whose client has not carried on yet), \
            and "journal": {"damaged","missing":[files],"records_lost","problems":[…]} (acknowledged \
            journal data found missing: by the running daemon at its start, else by the next start). \
            Exit codes: 0 done, 64 usage, 66 state directory unreadable.
            """)

    @OptionGroup var options: StateOptions

    func run() throws {
        let fs = try options.openStateDirectory()
        let store = ShutdownRecordStore(fs: fs)
        let daemon = options.daemon(fs)
        let owner = options.owner()
        // While the daemon runs, its own open turns are in flight, not interrupted.
        var state = JournalState()
        var check = JournalCheck()
        do {
            let inspected = try JournalInspector.read(fs, runIsOver: !daemon.running)
            state = inspected.state
            // Running: what that daemon found at its start (its manifest);
            // stopped: what the next start will find.
            check = daemon.running ? (try JournalInspector.foundAtLastOpen(fs) ?? JournalCheck()) : inspected.report.check
        } catch {
            fputsStderr("vigilctl: cannot read the turn journal in \(options.stateDir): \(error)\n")
            check.problems.append("cannot read the journal now: \(error)")
        }
        let journalJSON = jsonText(["damaged": check.isDamaged, "missing": check.missing,
                                    "records_lost": check.recordsLost, "problems": check.problems] as [String: Any])
        let interrupted = state.interruptedSessions.map { ($0, state.sessions[$0]?.interruptedTurns ?? []) }
        let interruptedJSON = jsonText(interrupted.map { ["session": $0.0, "turns": $0.1] as [String: Any] })

        if daemon.running {
            // The record now says `running`; the verdict on the previous run
            // is the report the daemon wrote at its start.
            let report = store.readReport() ?? "{\"classification\":\"first-start\",\"previous_boot\":false}"
            if options.json {
                print(String(report.dropLast()) + ",\"daemon_running\":true,\"daemon_pid\":\(daemon.pid.map(String.init) ?? "null"),\"interrupted\":\(interruptedJSON),\"journal\":\(journalJSON)}")
            } else {
                print("\(owner.name) is running (pid \(daemon.pid.map(String.init) ?? "?")); at its start it found:")
                print("  \(report)")
                printInterrupted(interrupted, owner)
                printJournal(check, when: "at its start")
            }
            return
        }
        let previous = PreviousRun.classify(store.read(), currentBootID: currentBootID())
        if options.json {
            print(String(previous.json().dropLast()) + ",\"daemon_running\":false,\"interrupted\":\(interruptedJSON),\"journal\":\(journalJSON)}")
        } else {
            print(previous.summary)
            if let r = previous.record {
                print("  record: state \(r.state.rawValue), pid \(r.pid), boot \(r.bootID), version \(r.version)")
            }
            printInterrupted(interrupted, owner)
            printJournal(check, when: "for the next start")
            print("\(owner.name) is not running: the next start will report this.")
        }
    }

    private func printJournal(_ c: JournalCheck, when: String) {
        guard c.isDamaged else { return print("  journal: complete") }
        print("  JOURNAL DAMAGED \(when): \(c.recordsLost) acknowledged record(s) lost")
        if !c.missing.isEmpty { print("    missing: \(c.missing.joined(separator: ", "))") }
        for p in c.problems { print("    \(p)") }
    }

    private func printInterrupted(_ list: [(String, [String])], _ owner: DirectoryOwner) {
        if list.isEmpty { print("  no session has an interrupted \(owner.unit)"); return }
        print("  \(list.count) interrupted session(s):")
        for (s, turns) in list { print("    \(s): \(turns.joined(separator: ", "))") }
    }
}
