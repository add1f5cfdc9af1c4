// vigil entry point. The first statement blocks the daemon's signals before
// any thread exists (docs/embedding.md): only the signalfd ever sees them.
import VigilDaemon
import VigilSystemd

Daemon.blockSignals()
JournalLogHandler.bootstrap(identifier: "vigil")
VigilCommand.main()
