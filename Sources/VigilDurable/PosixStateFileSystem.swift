// The real state directory: every call is relative to the directory's
// descriptor (openat/renameat/unlinkat), with O_NOFOLLOW|O_CLOEXEC, so a
// path swapped for a symlink behind our back is refused, not followed.
import Glibc
import SystemPackage
import VigilReactor

public final class PosixStateFileSystem: StateFileSystem {
    public let path: String
    /// The directory's descriptor (O_DIRECTORY|O_NOFOLLOW).
    public let directoryFD: Int32

    /// Opens (creating with mode 0700 if needed) the state directory.
    /// A symlink or a non-directory is refused; so is one we cannot write.
    public init(path: String, create: Bool = true) throws(SystemCallError) {
        self.path = path
        if create && mkdir(path, 0o700) != 0 {
            let e = Errno(rawValue: Glibc.errno)
            if e != .fileExists { throw SystemCallError("mkdir(\(path))", e) }
        }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            var e = Errno(rawValue: Glibc.errno)
            // O_NOFOLLOW on a symlink with O_DIRECTORY reports ENOTDIR or ELOOP.
            var st = stat()
            if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK { e = .tooManySymbolicLinkLevels }
            throw SystemCallError(e == .tooManySymbolicLinkLevels ? "open(\(path)): refusing a symlink" : "open(\(path))", e)
        }
        directoryFD = fd
    }

    deinit { Glibc.close(directoryFD) }

    /// Checks that files can be created here (EACCES, EROFS, ENOSPC surface now, not at SIGTERM).
    public func checkWritable() throws(SystemCallError) {
        if faccessat(directoryFD, ".", W_OK | X_OK, AT_EACCESS) != 0 {
            throw SystemCallError("access(\(path), W_OK)", Errno(rawValue: Glibc.errno))
        }
    }

    public func read(_ name: String) throws(SystemCallError) -> [UInt8]? {
        let fd = openat(directoryFD, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            let e = Errno(rawValue: Glibc.errno)
            if e == .noSuchFileOrDirectory { return nil }
            throw SystemCallError("open(\(name))", e)
        }
        defer { Glibc.close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let e = Errno(rawValue: Glibc.errno)
                if e == .interrupted { continue }
                throw SystemCallError("read(\(name))", e)
            }
            if n == 0 { return out }
            out.append(contentsOf: buf[0..<n])
        }
    }

    public func create(_ name: String) throws(SystemCallError) -> StateFileHandle {
        let fd = openat(directoryFD, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 { throw SystemCallError("open(\(name))", Errno(rawValue: Glibc.errno)) }
        return fd
    }

    public func write(_ handle: StateFileHandle, _ bytes: [UInt8]) throws(SystemCallError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(handle, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 {
                let e = Errno(rawValue: Glibc.errno)
                if e == .interrupted { continue }
                throw SystemCallError("write", e)
            }
            done += n
        }
    }

    public func sync(_ handle: StateFileHandle) throws(SystemCallError) {
        if fsync(handle) != 0 { throw SystemCallError("fsync", Errno(rawValue: Glibc.errno)) }
    }

    public func close(_ handle: StateFileHandle) throws(SystemCallError) {
        // close can report a deferred write error (EIO, ENOSPC on NFS); the
        // descriptor is gone either way, so it is never retried.
        if Glibc.close(handle) != 0 {
            let e = Errno(rawValue: Glibc.errno)
            if e != .interrupted { throw SystemCallError("close", e) }
        }
    }

    public func rename(_ from: String, to: String) throws(SystemCallError) {
        if renameat(directoryFD, from, directoryFD, to) != 0 {
            throw SystemCallError("rename(\(from) → \(to))", Errno(rawValue: Glibc.errno))
        }
    }

    public func syncDirectory() throws(SystemCallError) {
        if fsync(directoryFD) != 0 { throw SystemCallError("fsync(\(path))", Errno(rawValue: Glibc.errno)) }
    }

    public func remove(_ name: String) throws(SystemCallError) {
        if unlinkat(directoryFD, name, 0) != 0 {
            let e = Errno(rawValue: Glibc.errno)
            if e != .noSuchFileOrDirectory { throw SystemCallError("unlink(\(name))", e) }
        }
    }

    public func exists(_ name: String) -> Bool {
        var st = stat()
        return fstatat(directoryFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    public func list() throws(SystemCallError) -> [String] {
        let fd = openat(directoryFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw SystemCallError("open(\(path))", Errno(rawValue: Glibc.errno)) }
        guard let dir = fdopendir(fd) else {
            Glibc.close(fd)
            throw SystemCallError("fdopendir(\(path))", Errno(rawValue: Glibc.errno))
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func openForWriting(_ name: String) throws(SystemCallError) -> StateFileHandle {
        let fd = openat(directoryFD, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { throw SystemCallError("open(\(name))", Errno(rawValue: Glibc.errno)) }
        return fd
    }

    public func write(_ handle: StateFileHandle, _ bytes: [UInt8], at offset: UInt64) throws(SystemCallError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(handle, $0.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
            if n < 0 {
                let e = Errno(rawValue: Glibc.errno)
                if e == .interrupted { continue }
                throw SystemCallError("pwrite", e)
            }
            done += n
        }
    }

    public func dataSync(_ handle: StateFileHandle) throws(SystemCallError) {
        if fdatasync(handle) != 0 { throw SystemCallError("fdatasync", Errno(rawValue: Glibc.errno)) }
    }

    public func truncate(_ handle: StateFileHandle, to size: UInt64) throws(SystemCallError) {
        if ftruncate(handle, off_t(size)) != 0 { throw SystemCallError("ftruncate", Errno(rawValue: Glibc.errno)) }
    }
}
