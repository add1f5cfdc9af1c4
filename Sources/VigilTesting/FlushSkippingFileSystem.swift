// The negative controls' file system: a real (or simulated) state directory
// with its fdatasync and/or its directory fsync left out, so a crash or
// power-loss test can show it would catch a missing flush. A test double:
// the libraries have no switch that skips a flush.
import VigilDurable
import VigilReactor

/// Forwards everything to `inner` except the flushes switched off.
public final class FlushSkippingFileSystem: StateFileSystem {
    public let inner: any StateFileSystem
    /// Leave out `dataSync` (fdatasync) from now on.
    public var skipDataSync: Bool
    /// Leave out `syncDirectory` from now on.
    public var skipDirectorySync: Bool

    public init(_ inner: any StateFileSystem, skipDataSync: Bool = false, skipDirectorySync: Bool = false) {
        self.inner = inner
        self.skipDataSync = skipDataSync
        self.skipDirectorySync = skipDirectorySync
    }

    public func read(_ name: String) throws(SystemCallError) -> [UInt8]? { try inner.read(name) }
    public func create(_ name: String) throws(SystemCallError) -> StateFileHandle { try inner.create(name) }
    public func write(_ handle: StateFileHandle, _ bytes: [UInt8]) throws(SystemCallError) { try inner.write(handle, bytes) }
    public func sync(_ handle: StateFileHandle) throws(SystemCallError) { try inner.sync(handle) }
    public func close(_ handle: StateFileHandle) throws(SystemCallError) { try inner.close(handle) }
    public func rename(_ from: String, to: String) throws(SystemCallError) { try inner.rename(from, to: to) }
    public func syncDirectory() throws(SystemCallError) { if !skipDirectorySync { try inner.syncDirectory() } }
    public func remove(_ name: String) throws(SystemCallError) { try inner.remove(name) }
    public func exists(_ name: String) -> Bool { inner.exists(name) }
    public func list() throws(SystemCallError) -> [String] { try inner.list() }
    public func openForWriting(_ name: String) throws(SystemCallError) -> StateFileHandle { try inner.openForWriting(name) }
    public func write(_ handle: StateFileHandle, _ bytes: [UInt8], at offset: UInt64) throws(SystemCallError) { try inner.write(handle, bytes, at: offset) }
    public func dataSync(_ handle: StateFileHandle) throws(SystemCallError) { if !skipDataSync { try inner.dataSync(handle) } }
    public func truncate(_ handle: StateFileHandle, to size: UInt64) throws(SystemCallError) { try inner.truncate(handle, to: size) }
    public func names(_ name: String, _ handle: StateFileHandle) -> Bool { inner.names(name, handle) }
}
