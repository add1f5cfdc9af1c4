// `vigilctl status`: the running daemon's own answer (pid, uptime, sessions,
// turns in flight, draining), else what the state directory says.
import ArgumentParser
import Foundation
import VigilDurable
import VigilLifecycle

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Whether vigild (or `vigil run`) is running, and what it is doing.",
        discussion: """
            Running: asks the daemon on its control socket ({"op":"status"}); --json prints its answer \
            with "running":true. Not running: reads the state directory; --json prints \
            {"running":false,"sessions":N,"interrupted_sessions":N,"previous_run":CLASSIFICATION,"journal_damaged":BOOL}. \
            Exit codes: 0 running, 3 not running, 66 state directory unreadable, 69 running but the \
            control socket did not answer, 77 permission denied.
            """)

    @OptionGroup var options: StateOptions

    func run() throws {
        let fs = try options.openStateDirectory()
        let daemon = options.daemon(fs)
        if options.isSupervised(running: daemon.running) {
            // `vigil run`: no control socket; the lock holder and the journal say enough.
            let open = (try? JournalInspector.read(fs, runIsOver: false).state.openTurnCount) ?? 0
            if options.json {
                print(jsonText(["running": true, "pid": daemon.pid.map { Int($0) } ?? 0, "supervisor": "vigil run", "open_units": open] as [String: Any]))
            } else {
                print("vigil run is running: pid \(daemon.pid.map(String.init) ?? "?"), \(open) ledger unit(s) open (state \(options.stateDir))")
            }
            return
        }
        if daemon.running {
            let answer: String
            do { answer = try ControlClient.request("{\"op\":\"status\"}", socketPath: options.socketPath) } catch {
                fputsStderr("vigilctl: vigild is running (pid \(daemon.pid.map(String.init) ?? "?")) but its control socket did not answer: \(error)\n")
                throw ExitCode(error.permissionDenied ? VigilctlExit.noPermission : VigilctlExit.unavailable)
            }
            guard var o = jsonObject(answer), o["op"] as? String == "status" else {
                fputsStderr("vigilctl: unexpected answer from vigild: \(answer)\n")
                throw ExitCode(VigilctlExit.unavailable)
            }
            o["op"] = nil
            o["running"] = true
            if options.json { print(jsonText(o)); return }
            let uptime = (o["uptime_ms"] as? Int ?? 0) / 1000
            print("vigild is running: pid \(o["pid"] ?? "?"), up \(uptime / 3600)h\(uptime / 60 % 60)m\(uptime % 60)s, version \(o["version"] ?? "?")")
            print("  \((o["draining"] as? Bool) == true ? "DRAINING (stopping)" : "serving"); agent \(o["agent"] ?? "?"); disk I/O \(o["disk_io"] ?? "?")")
            print("  connections \(o["connections"] ?? 0), sessions \(o["sessions"] ?? 0) (\(o["interrupted_sessions"] ?? 0) interrupted), turns in flight \(o["turns_in_flight"] ?? 0)")
            print("  previous run: \(o["previous_run"] ?? "?")")
            if (o["journal_damaged"] as? Bool) == true {
                print("  JOURNAL DAMAGED: acknowledged data was missing at the start (vigilctl last-shutdown says what)")
            }
            return
        }
        let journal: (state: JournalState, report: JournalReplayReport)
        do { journal = try JournalInspector.read(fs, runIsOver: true) } catch {
            fputsStderr("vigilctl: cannot read the journal in \(options.stateDir): \(error)\n")
            throw ExitCode(VigilctlExit.noInput)
        }
        let previous = PreviousRun.classify(ShutdownRecordStore(fs: fs).read(), currentBootID: currentBootID())
        if options.json {
            print(jsonText([
                "running": false, "sessions": journal.state.sessions.count,
                "interrupted_sessions": journal.state.interruptedSessionCount,
                "previous_run": previous.classification.rawValue,
                "journal_damaged": journal.report.check.isDamaged,
            ] as [String: Any]))
        } else {
            print("\(options.owner().name) is not running (state \(options.stateDir))")
            print("  \(journal.state.sessions.count) session(s), \(journal.state.interruptedSessionCount) interrupted; \(previous.summary)")
            if journal.report.check.isDamaged {
                print("  JOURNAL DAMAGED: the next start will report acknowledged data missing (vigilctl last-shutdown says what)")
            }
        }
        throw ExitCode(VigilctlExit.notRunning)
    }
}
