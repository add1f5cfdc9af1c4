// The entry point's part of the run history (RunHistory in VigilDurable):
// at every start, before the previous run's record is overwritten.
import Logging
import VigilDurable

extension Daemon {
    /// Appends the run that ended to the state directory's run history;
    /// a damaged or unwritable history is logged, never fatal.
    static func recordHistory(_ previous: PreviousRun, _ fs: PosixStateFileSystem, _ logger: Logger) {
        guard let entry = RunHistory.Entry(previous) else { return }
        do {
            let history = try RunHistory.append(entry, in: fs)
            if history.damagedLines > 0 || history.problem != nil {
                logger.warning("run history: \(history.damagedLines) damaged line(s) skipped\(history.problem.map { "; \($0)" } ?? ""); the rest is kept")
            }
        } catch {
            logger.error("run history not updated (\(error)); starting anyway")
        }
    }
}
