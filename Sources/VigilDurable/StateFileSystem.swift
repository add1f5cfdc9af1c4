// The few file operations the durable layer performs inside the state
// directory, behind a protocol so the same code runs against the real
// filesystem and against `SimulatedStateFileSystem`, which loses what was
// not fsynced when a test "pulls the plug" (SQLite's crash-test VFS idea).
import VigilReactor

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
}
