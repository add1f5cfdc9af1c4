// One instance per state directory: an exclusive flock on the state
// directory itself (its own descriptor), held for the life of the process
// (the kernel drops it when the process dies, however it dies). A lock on a
// file inside the directory could be lost by unlinking that file: a second
// instance would create a new one and lock it while the first still serves.
// The directory cannot be unlinked while it holds our files, and renaming it
// away leaves the lock on the directory that holds the state.
// The holder's pid is written into a holder file named by the daemon (vigild:
// `vigild.lock`) so a second instance (and vigilctl) can say who holds the
// lock. That file is flocked too, but only so that an older vigild (which
// locked just the file) and this one see each other during an upgrade;
// safety rests on the directory's lock.
import Glibc
import SystemPackage
import VigilSystem

/// The exclusive lock of one state directory, held while this object lives.
public final class StateDirectoryLock {
    public enum Failure: Error, CustomStringConvertible {
        case held(byPID: Int32?)
        case system(SystemCallError)

        public var description: String {
            switch self {
            case .held(let pid?): "another instance (pid \(pid)) holds the state directory lock"
            case .held(nil): "another process holds the state directory lock"
            case .system(let e): "cannot lock the state directory: \(e)"
            }
        }
    }

    /// A descriptor of the directory of our own (its own open file
    /// description: flock locks belong to that, not to the inode's other fds).
    private let fd: Int32
    /// The holder file, also flocked: an older vigild, which locked only
    /// that file, sees this instance too (and this one sees it).
    private let fileFD: Int32

    private init(fd: Int32, fileFD: Int32) {
        self.fd = fd
        self.fileFD = fileFD
    }

    deinit {
        Glibc.close(fd)
        if fileFD >= 0 { Glibc.close(fileFD) }
    }

    private static func openDirectory(_ dir: PosixStateFileSystem) throws(SystemCallError) -> Int32 {
        try SystemCall.run("open(\(dir.path))") { openat(dir.directoryFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    }

    /// Takes the lock or reports who holds it.
    /// - Parameter holderFile: the file in `dir` that names the holder's pid
    ///   (e.g. `NAME.lock`); flocked too, for instances that lock only it.
    public static func acquire(in dir: PosixStateFileSystem, holderFile fileName: String) throws(Failure) -> StateDirectoryLock {
        let fd: Int32
        do { fd = try openDirectory(dir) } catch { throw .system(error) }
        // vigilctl probes with a shared lock held for microseconds: a few
        // short retries keep that probe from failing a start as "held".
        var retries = 20
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = SystemCall.errno
            if e == .interrupted { continue }
            if e == .wouldBlock && retries > 0 {
                retries -= 1
                usleep(5_000)
                continue
            }
            Glibc.close(fd)
            if e == .wouldBlock { throw .held(byPID: holderPID(dir, fileName)) }
            throw .system(SystemCallError("flock(\(dir.path))", e))
        }
        // Who holds it, for the next one to report: best effort, not needed
        // for safety (a full disk must fail later, at the record, clearly).
        // Opened like every state file: a FIFO here cannot block the start.
        var fileFD: Int32 = -1
        if let pidFile = try? dir.openRegular(fileName, O_RDWR | O_CREAT) {
            var fileRetries = 20  // vigilctl's probe, as above
            while flock(pidFile, LOCK_EX | LOCK_NB) != 0 {
                let e = SystemCall.errno
                if e == .interrupted { continue }
                if e != .wouldBlock { break }  // best effort: the directory lock is what counts
                if fileRetries > 0 {
                    fileRetries -= 1
                    usleep(5_000)
                    continue
                }
                // Only an older vigild locks just the file.
                Glibc.close(pidFile)
                Glibc.close(fd)
                throw .held(byPID: holderPID(dir, fileName))
            }
            let text = Array("\(getpid())\n".utf8)
            _ = ftruncate(pidFile, 0)
            _ = text.withUnsafeBytes { pwrite(pidFile, $0.baseAddress, $0.count, 0) }
            fileFD = pidFile
        }
        return StateDirectoryLock(fd: fd, fileFD: fileFD)
    }

    /// The pid of a live holder, or nil when nobody holds the lock. Takes no
    /// lasting lock and creates nothing: it changes nothing.
    /// - Parameter holderFiles: the holder files the directory's daemons use;
    ///   the first one naming a pid names the holder.
    public static func holder(in dir: PosixStateFileSystem, holderFiles: [String]) -> Int32?? {
        guard let fd = try? openDirectory(dir) else { return .none }
        defer { Glibc.close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            // An older vigild locks only its file.
            let lockedFile = holderFiles.contains { name in
                guard let file = try? dir.openRegular(name, O_RDONLY) else { return false }
                defer { Glibc.close(file) }
                if flock(file, LOCK_SH | LOCK_NB) == 0 {
                    flock(file, LOCK_UN)
                    return false
                }
                return true
            }
            if !lockedFile { return .none }
        }
        return .some(holderFiles.lazy.compactMap { holderPID(dir, $0) }.first)
    }

    private static func holderPID(_ dir: PosixStateFileSystem, _ fileName: String) -> Int32? {
        guard let bytes = try? dir.read(fileName) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: "\n"))
    }
}
