// `vigilctl sessions`: every session the journal knows, with its status and
// the ids of its turns in flight or interrupted.
import ArgumentParser
import Foundation
import VigilDurable
import VigilGateway

struct SessionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "The sessions vigild (or `vigil run`'s ledger) knows, and which were interrupted.",
        discussion: """
            Running: asks the daemon ({"op":"sessions"}). Not running, or a `vigil run` state directory: \
            replays the journal read-only. \
            --json prints {"running":BOOL,"sessions":[{"session":S,"status":"active"|"interrupted",\
            "in_flight":[ids],"interrupted":[ids]},…]}. Exit codes: 0 done, 66 state directory or \
            journal unreadable, 69 running but the control socket did not answer, 77 permission denied.
            """)

    @OptionGroup var options: StateOptions

    func run() throws {
        let fs = try options.openStateDirectory()
        let running = options.daemon(fs).running
        var sessions: [[String: Any]]
        // `vigil run` has no control socket: its ledger's journal is read
        // read-only (its own open units are in flight, not interrupted).
        let supervised = options.isSupervised(running: running)
        if running && !supervised {
            let answer: String
            do { answer = try ControlClient.request("{\"op\":\"sessions\"}", socketPath: options.socketPath) } catch {
                fputsStderr("vigilctl: vigild is running but its control socket did not answer: \(error)\n")
                throw ExitCode(error.permissionDenied ? VigilctlExit.noPermission : VigilctlExit.unavailable)
            }
            guard let o = jsonObject(answer), let list = o["sessions"] as? [[String: Any]] else {
                fputsStderr("vigilctl: unexpected answer from vigild: \(answer)\n")
                throw ExitCode(VigilctlExit.unavailable)
            }
            sessions = list
        } else {
            let state: JournalState
            do { state = try JournalInspector.read(fs, runIsOver: !running).state } catch {
                fputsStderr("vigilctl: cannot read the journal in \(options.stateDir): \(error)\n")
                throw ExitCode(VigilctlExit.noInput)
            }
            var bytes: [UInt8] = []
            SessionListing.append(state, to: &bytes)
            sessions = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [[String: Any]] ?? []
        }
        if options.json {
            print(jsonText(["running": running, "sessions": sessions] as [String: Any]))
            return
        }
        let owner = options.owner()
        print("\(sessions.count) session(s)\(running ? "" : " (\(owner.name) is not running)")")
        for s in sessions {
            var line = "  \(s["session"] ?? "?")  \(s["status"] ?? "?")"
            if let f = s["in_flight"] as? [String], !f.isEmpty { line += "  in flight: \(f.joined(separator: ", "))" }
            if let i = s["interrupted"] as? [String], !i.isEmpty { line += "  interrupted \(owner.unit)s: \(i.joined(separator: ", "))" }
            print(line)
        }
    }
}
