// Replacing a small file so that, at any instant of a crash or power loss,
// the name holds either the complete old content or the complete new one:
//   create NAME.tmp → write → fsync(tmp)   the new bytes are on disk
//   rename(NAME.tmp → NAME)                 atomic switch of the name
//   fsync(directory)                        the switch itself is on disk
// Without the first fsync a power loss can leave NAME pointing at an empty
// or partial inode; without the directory fsync the rename can be lost and
// the old record reappear after the crash.
import Glibc
import VigilReactor

public enum AtomicFile {
    /// Debug switch for the power-loss test's negative control
    /// (`VIGIL_DEBUG_SKIP_DIR_FSYNC=1`): omits the directory fsync, which
    /// must make that test fail. Never set it in production.
    public static let skipDirectorySync: Bool = {
        guard let v = getenv("VIGIL_DEBUG_SKIP_DIR_FSYNC") else { return false }
        return String(cString: v) == "1"
    }()

    public static func replace(_ name: String, with bytes: [UInt8], in fs: any StateFileSystem,
                               syncDirectory: Bool = !skipDirectorySync) throws(SystemCallError) {
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
        if syncDirectory { try fs.syncDirectory() }
    }
}
