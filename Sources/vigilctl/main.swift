// vigilctl: the operator's view of a vigild and its state directory.
// `status` and `sessions` ask the running daemon over its control socket
// (own user only); with the daemon stopped they read the state directory.
// Offline reads never change the directory (no lock taken, nothing created,
// a torn journal tail is reported, not cut), so they are safe next to a
// running daemon.
import ArgumentParser

struct Vigilctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigilctl",
        abstract: "Inspect a Vigil daemon and its state directory.",
        discussion: """
            Exit codes: 0 done (status: the daemon is running), 3 status: the daemon is not running, \
            64 usage, 66 state directory unreadable, 69 the daemon is running but its control socket \
            refused the request, 77 permission denied.
            """,
        subcommands: [StatusCommand.self, SessionsCommand.self, LastShutdown.self, HistoryCommand.self])
}

Vigilctl.main()
