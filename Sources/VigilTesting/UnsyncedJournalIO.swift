// The turn journal's negative control: its batches written without the
// fdatasync and acknowledged all the same, so a power-loss test can show
// that it would catch a journal that acknowledges before the flush. A test
// double: the libraries have no switch that skips a flush.
import VigilDurable
import VigilReactor

public final class UnsyncedJournalIO: JournalIO {
    public let fs: any StateFileSystem
    public let disk: any DiskIO

    public init(fs: any StateFileSystem, disk: any DiskIO) {
        self.fs = fs
        self.disk = disk
    }

    public func writeAndSync(_ handle: StateFileHandle, _ bytes: [UInt8], at offset: UInt64, completion: @escaping (SystemCallError?) -> Void) {
        disk.submit([.write(fd: handle, bytes: bytes, offset: offset)], linked: false) { r in
            if case .failure(let e) = r[0].result { completion(e) } else { completion(nil) }
        }
    }
}
