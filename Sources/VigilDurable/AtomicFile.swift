// Replacing a small file so that, at any instant of a crash or power loss,
// the name holds either the complete old content or the complete new one:
//   create NAME.tmp → write → fsync(tmp)   the new bytes are on disk
//   rename(NAME.tmp → NAME)                 atomic switch of the name
//   fsync(directory)                        the switch itself is on disk
// Without the first fsync a power loss can leave NAME pointing at an empty
// or partial inode; without the directory fsync the rename can be lost and
// the old record reappear after the crash.
import Glibc
import VigilSystem

public enum AtomicFile {
    // No switch leaves a flush out: the negative controls of the crash and
    // power-loss tests wrap the file system instead (test doubles).
    public static func replace(_ name: String, with bytes: [UInt8], in fs: any StateFileSystem) throws(SystemCallError) {
        let tmp = name + ".tmp"
        let h = try fs.create(tmp)
        do throws(SystemCallError) {
            try fs.write(h, bytes)
            try fs.sync(h)
        } catch {
            try? fs.close(h)
            try? fs.remove(tmp)
            throw error
        }
        try fs.close(h)
        try fs.rename(tmp, to: name)
        try fs.syncDirectory()
    }
}
