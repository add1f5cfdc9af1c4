// The few file operations the durable layer performs inside the state
// directory, behind a protocol so the same code runs against the real
// filesystem and against `SimulatedStateFileSystem` (in the VigilTesting target), which loses what was
// not fsynced when a test "pulls the plug" (SQLite's crash-test VFS idea).
import VigilSystem

/// A descriptor-like handle returned by `create`.
public typealias StateFileHandle = Int32

/// Operations on files in one directory, named relative to it.
public protocol StateFileSystem: AnyObject {
    /// The whole file, or nil when it does not exist.
    func read(_ name: String) throws(SystemCallError) -> [UInt8]?
    /// Creates or truncates `name` for writing (mode 0600, never through a symlink).
    func create(_ name: String) throws(SystemCallError) -> StateFileHandle
    /// Writes all of `bytes` at the end of the file.
    func write(_ handle: StateFileHandle, _ bytes: [UInt8]) throws(SystemCallError)
    /// fsync(2): data and metadata of the file are durable.
    func sync(_ handle: StateFileHandle) throws(SystemCallError)
    func close(_ handle: StateFileHandle) throws(SystemCallError)
    /// renameat(2) within the directory (atomically replaces `to`).
    func rename(_ from: String, to: String) throws(SystemCallError)
    /// fsync(2) of the directory itself: created, renamed and removed names are durable.
    func syncDirectory() throws(SystemCallError)
    func remove(_ name: String) throws(SystemCallError)
    func exists(_ name: String) -> Bool

    // Appending to existing files (the journal's segments).
    /// Names in the directory (not "." or "..").
    func list() throws(SystemCallError) -> [String]
    /// Opens an existing file for positioned writes (no truncation).
    func openForWriting(_ name: String) throws(SystemCallError) -> StateFileHandle
    /// pwrite(2) of all of `bytes` at `offset`.
    func write(_ handle: StateFileHandle, _ bytes: [UInt8], at offset: UInt64) throws(SystemCallError)
    /// fdatasync(2).
    func dataSync(_ handle: StateFileHandle) throws(SystemCallError)
    /// ftruncate(2).
    func truncate(_ handle: StateFileHandle, to size: UInt64) throws(SystemCallError)
    /// Whether `name` in the directory still names the file `handle` has
    /// open: false once it was removed, or replaced by another file (a
    /// rename over it, a restore from a backup). Writes through the handle
    /// would then go to a file nobody reads.
    func names(_ name: String, _ handle: StateFileHandle) -> Bool
}
