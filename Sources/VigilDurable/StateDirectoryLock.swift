// One instance per state directory: an exclusive flock on `vigild.lock`,
// held for the life of the process (the kernel drops it when the process
// dies, however it dies). The holder's pid is written into the file so a
// second instance can say who holds it.
import Glibc
import SystemPackage
import VigilReactor

public final class StateDirectoryLock {
    public static let fileName = "vigild.lock"

    public enum Failure: Error, CustomStringConvertible {
        case held(byPID: Int32?)
        case system(SystemCallError)

        public var description: String {
            switch self {
            case .held(let pid?): "another vigild (pid \(pid)) holds the state directory lock"
            case .held(nil): "another process holds the state directory lock"
            case .system(let e): "cannot lock the state directory: \(e)"
            }
        }
    }

    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { Glibc.close(fd) }

    /// Takes the lock or reports who holds it.
    public static func acquire(in dir: PosixStateFileSystem) throws(Failure) -> StateDirectoryLock {
        let fd = openat(dir.directoryFD, fileName, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 { throw .system(SystemCallError("open(\(fileName))", Errno(rawValue: Glibc.errno))) }
        // vigilctl probes with a shared lock held for microseconds: a few
        // short retries keep that probe from failing a start as "held".
        var retries = 20
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = Errno(rawValue: Glibc.errno)
            if e == .interrupted { continue }
            if e == .wouldBlock && retries > 0 {
                retries -= 1
                usleep(5_000)
                continue
            }
            Glibc.close(fd)
            if e == .wouldBlock { throw .held(byPID: holderPID(dir)) }
            throw .system(SystemCallError("flock(\(fileName))", e))
        }
        // Who holds it, for the next one to report (not needed for safety).
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return StateDirectoryLock(fd: fd)
    }

    /// The pid of a live holder, or nil when nobody holds the lock. Opens the
    /// file read-only and takes no lasting lock: it changes nothing.
    public static func holder(in dir: PosixStateFileSystem) -> Int32?? {
        let fd = openat(dir.directoryFD, fileName, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { return .none }
        defer { Glibc.close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return .none
        }
        return .some(holderPID(dir))
    }

    private static func holderPID(_ dir: PosixStateFileSystem) -> Int32? {
        guard let bytes = try? dir.read(fileName) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: "\n"))
    }
}
