// How the journal's appends reach the disk. In production, a linked
// write + fdatasync through the reactor's disk backend (io_uring, or the
// pwrite/fdatasync fallback). In crash tests, the simulated file system.
import Glibc
import VigilReactor

public protocol JournalIO: AnyObject {
    /// The journal directory, for the synchronous, rare operations
    /// (listing, reading at start-up, creating segments, snapshots).
    var fs: any StateFileSystem { get }
    /// Writes `bytes` at `offset`, then fdatasync; `completion` runs on the
    /// loop once both are done (nil) or one failed.
    func writeAndSync(_ handle: StateFileHandle, _ bytes: [UInt8], at offset: UInt64,
                      completion: @escaping (SystemCallError?) -> Void)
}

/// Production: the reactor's `DiskIO` (io_uring or syscalls).
public final class DiskJournalIO: JournalIO {
    public let fs: any StateFileSystem
    let disk: any DiskIO
    public init(fs: any StateFileSystem, disk: any DiskIO) {
        self.fs = fs
        self.disk = disk
    }

    public func writeAndSync(_ handle: StateFileHandle, _ bytes: [UInt8], at offset: UInt64,
                             completion: @escaping (SystemCallError?) -> Void) {
        let count = bytes.count
        disk.submit([.write(fd: handle, bytes: bytes, offset: offset), .fsync(fd: handle, dataOnly: true)], linked: true) { r in
            switch (r[0].result, r[1].result) {
            case (.success(let n), .success) where n == count: completion(nil)
            // A short write (disk full mid-write) breaks the chain; say why.
            case (.success, _): completion(SystemCallError("write (short)", .noSpace))
            case (.failure(let e), _): completion(e)
            case (_, .failure(let e)): completion(e)
            }
        }
    }
}
