// vigild entry point. The very first statement blocks the daemon's signals:
// no thread exists yet, so every thread created later inherits the mask and
// the signalfd is the only way any of these signals is ever seen.
import VigilReactor

SignalSource.blockDaemonSignals()
VigildCommand.main()
