// vigild entry point. The very first statement blocks the daemon's signals:
// no thread exists yet, so every thread created later inherits the mask and
// the signalfd is the only way any of these signals is ever seen.
import VigilDaemon
import VigilSystemd

Daemon.blockSignals()
// Before any Logger exists: structured journal entries when stderr is the
// journal (systemd's JOURNAL_STREAM), plain stderr lines otherwise.
JournalLogHandler.bootstrap(identifier: "vigild")
VigildCommand.main()
