// vigilctl: the operator's view of a vigild state directory. Offline
// commands read the directory without changing it (no lock taken, nothing
// created), so they are safe next to a running daemon.
import ArgumentParser
import Glibc
import VigilDurable
import VigilLifecycle

enum VigilctlExit {
    static let ok: Int32 = 0
    static let usage: Int32 = 64
    /// The state directory does not exist or cannot be read.
    static let noInput: Int32 = 66
}

struct Vigilctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigilctl",
        abstract: "Inspect a Vigil daemon and its state directory.",
        subcommands: [LastShutdown.self])
}

struct LastShutdown: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "last-shutdown",
        abstract: "How the previous run of vigild ended.",
        discussion: """
            With the daemon stopped, this reads the shutdown record and prints what the next start \
            will conclude. With the daemon running, it prints what that daemon concluded at its start. \
            --json prints one object: "classification" (first-start, clean, cut-short, \
            killed-during-drain, crash, corrupt), "previous_boot", the record's fields, and \
            "daemon_running" / "daemon_pid". Exit codes: 0 done, 64 usage, 66 state directory unreadable.
            """)

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("vigild's state directory.", valueName: "dir"))
    var stateDir: String = ProcessEnvironment.get("VIGIL_STATE_DIR") ?? "vigil-state"

    @Flag(name: .customLong("json"), help: "Print a JSON object instead of text.")
    var json = false

    func run() throws {
        let fs: PosixStateFileSystem
        do { fs = try PosixStateFileSystem(path: stateDir, create: false) } catch {
            fputsStderr("vigilctl: cannot open state directory \(stateDir): \(error)\n")
            throw ExitCode(VigilctlExit.noInput)
        }
        let store = ShutdownRecordStore(fs: fs)
        let holder = StateDirectoryLock.holder(in: fs)
        if case .some(let pid) = holder {
            // Running: the record now says `running`; the verdict on the
            // previous run is the report the daemon wrote at its start.
            let report = store.readReport() ?? "{\"classification\":\"first-start\",\"previous_boot\":false}"
            if json {
                print(String(report.dropLast()) + ",\"daemon_running\":true,\"daemon_pid\":\(pid.map(String.init) ?? "null")}")
            } else {
                print("vigild is running (pid \(pid.map(String.init) ?? "?")); at its start it found:")
                print("  \(report)")
            }
            return
        }
        let previous = PreviousRun.classify(store.read(), currentBootID: currentBootID())
        if json {
            print(String(previous.json().dropLast()) + ",\"daemon_running\":false}")
        } else {
            print(previous.summary)
            if let r = previous.record {
                print("  record: state \(r.state.rawValue), pid \(r.pid), boot \(r.bootID), version \(r.version)")
            }
            print("vigild is not running: the next start will report this.")
        }
    }
}

func fputsStderr(_ s: String) {
    _ = s.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
}

Vigilctl.main()
