// The exit codes `Daemon.run` returns (sysexits.h, as service managers and
// shells expect). vigild and `vigil run` document the same table.

/// Exit codes returned by ``Daemon/run(_:makeService:)``.
public enum DaemonExit {
    /// A requested stop completed (clean or cut short: the record says which).
    public static let ok: Int32 = 0
    /// A fatal error while running, or a shutdown record that could not be
    /// made durable.
    public static let fatal: Int32 = 1
    /// Bad configuration (EX_USAGE).
    public static let usage: Int32 = 64
    /// The event loop could not be created (EX_OSERR).
    public static let osError: Int32 = 71
    /// The state directory cannot be created, locked or written (EX_CANTCREAT).
    public static let stateDirectoryUnusable: Int32 = 73
    /// Another instance holds the state directory (EX_TEMPFAIL).
    public static let locked: Int32 = 75
}
