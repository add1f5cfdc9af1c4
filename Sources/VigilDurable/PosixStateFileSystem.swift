// The real state directory: every call is relative to the directory's
// descriptor (openat/renameat/unlinkat), with O_NOFOLLOW|O_CLOEXEC, so a
// path swapped for a symlink behind our back is refused, not followed.
// Every file is opened with O_NONBLOCK and checked with fstat to be a
// regular file: a FIFO or device put in place of a state file is refused
// at once instead of blocking the daemon (or vigilctl) in open or read.
import Glibc
import SystemPackage
import VigilSystem

public final class PosixStateFileSystem: StateFileSystem {
    public let path: String
    /// The directory's descriptor (O_DIRECTORY|O_NOFOLLOW).
    public let directoryFD: Int32

    /// Opens (creating with mode 0700 if needed) the state directory.
    /// A symlink or a non-directory is refused; so is one we cannot write.
    public init(path: String, create: Bool = true) throws(SystemCallError) {
        self.path = path
        if create && mkdir(path, 0o700) != 0 {
            let e = SystemCall.lastError("mkdir(\(path))")
            if e.errno != .fileExists { throw e }
        }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            var e = SystemCall.errno
            // O_NOFOLLOW on a symlink with O_DIRECTORY reports ENOTDIR or ELOOP.
            var st = stat()
            if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK { e = .tooManySymbolicLinkLevels }
            throw SystemCallError(e == .tooManySymbolicLinkLevels ? "open(\(path)): refusing a symlink" : "open(\(path))", e)
        }
        directoryFD = fd
    }

    deinit { Glibc.close(directoryFD) }

    /// Refuses a directory that another user could write into (or swap
    /// files in): owned by another uid, or writable by group or others.
    /// Whoever can write there can forge the record or delete the journal.
    public func checkPrivate() throws(SystemCallError) {
        var st = stat()
        _ = try SystemCall.run("fstat(\(path))") { fstat(directoryFD, &st) }
        let uid = geteuid()
        if st.st_uid != uid {
            throw SystemCallError("\(path) is owned by uid \(st.st_uid), not by this process's uid \(uid): refusing a state directory another user controls", .permissionDenied)
        }
        let mode = st.st_mode & 0o7777
        if mode & (S_IWGRP | S_IWOTH) != 0 {
            throw SystemCallError("\(path) has mode \(String(mode, radix: 8)): others can write into it (chmod go-w, or use a directory of mode 0700)", .permissionDenied)
        }
    }

    /// The type of `name` if it exists and is not a regular file ("FIFO",
    /// "directory", …), nil for a regular file or no file at all.
    public func nonRegularType(_ name: String) -> String? {
        var st = stat()
        guard fstatat(directoryFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return Self.typeName(st.st_mode)
    }

    static func typeName(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: nil
        case S_IFIFO: "a FIFO"
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symlink"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        default: "not a regular file"
        }
    }

    /// openat with O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC, then fstat: anything but
    /// a regular file is refused (EINVAL, naming what it is). O_NONBLOCK is
    /// cleared again on the regular file (io_uring must not see it).
    func openRegular(_ name: String, _ flags: Int32, _ mode: mode_t = 0o600) throws(SystemCallError) -> Int32? {
        let fd = openat(directoryFD, name, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, mode)
        if fd < 0 {
            let e = SystemCall.lastError("open(\(name))")
            if e.errno == .noSuchFileOrDirectory && flags & O_CREAT == 0 { return nil }
            // A FIFO without a reader (ENXIO for O_WRONLY) or a symlink (ELOOP).
            if let kind = nonRegularType(name) { throw Self.notRegular(name, kind) }
            throw e
        }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let e = SystemCall.lastError("fstat(\(name))")
            Glibc.close(fd)
            throw e
        }
        if let kind = Self.typeName(st.st_mode) {
            Glibc.close(fd)
            throw Self.notRegular(name, kind)
        }
        let fl = fcntl(fd, F_GETFL)
        if fl >= 0 { _ = fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) }
        return fd
    }

    static func notRegular(_ name: String, _ kind: String) -> SystemCallError {
        SystemCallError("refusing \(name): it is \(kind), not a regular file", .invalidArgument)
    }

    /// Checks that files can be created here (EACCES, EROFS, ENOSPC surface now, not at SIGTERM).
    public func checkWritable() throws(SystemCallError) {
        _ = try SystemCall.run("access(\(path), W_OK)") { faccessat(directoryFD, ".", W_OK | X_OK, AT_EACCESS) }
    }

    public func read(_ name: String) throws(SystemCallError) -> [UInt8]? {
        guard let fd = try openRegular(name, O_RDONLY) else { return nil }
        defer { Glibc.close(fd) }
        return try SystemCall.readToEnd(fd, name: "read(\(name))")
    }

    public func create(_ name: String) throws(SystemCallError) -> StateFileHandle {
        // O_TRUNC only once the file is known to be regular.
        let fd = try openRegular(name, O_WRONLY | O_CREAT)!
        if ftruncate(fd, 0) != 0 {
            let e = SystemCall.lastError("ftruncate(\(name))")
            Glibc.close(fd)
            throw e
        }
        return fd
    }

    public func write(_ handle: StateFileHandle, _ bytes: [UInt8]) throws(SystemCallError) {
        try SystemCall.writeAll(handle, bytes, name: "write")
    }

    public func sync(_ handle: StateFileHandle) throws(SystemCallError) {
        _ = try SystemCall.run("fsync") { fsync(handle) }
    }

    public func close(_ handle: StateFileHandle) throws(SystemCallError) {
        // close can report a deferred write error (EIO, ENOSPC on NFS); the
        // descriptor is gone either way, so it is never retried.
        if Glibc.close(handle) != 0 {
            let e = SystemCall.lastError("close")
            if e.errno != .interrupted { throw e }
        }
    }

    public func rename(_ from: String, to: String) throws(SystemCallError) {
        _ = try SystemCall.run("rename(\(from) → \(to))") { renameat(directoryFD, from, directoryFD, to) }
    }

    public func syncDirectory() throws(SystemCallError) {
        _ = try SystemCall.run("fsync(\(path))") { fsync(directoryFD) }
    }

    public func remove(_ name: String) throws(SystemCallError) {
        if unlinkat(directoryFD, name, 0) != 0 {
            let e = SystemCall.lastError("unlink(\(name))")
            if e.errno != .noSuchFileOrDirectory { throw e }
        }
    }

    public func exists(_ name: String) -> Bool {
        var st = stat()
        return fstatat(directoryFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    public func list() throws(SystemCallError) -> [String] {
        let fd = try SystemCall.run("open(\(path))") { openat(directoryFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard let dir = fdopendir(fd) else {
            let e = SystemCall.lastError("fdopendir(\(path))")
            Glibc.close(fd)
            throw e
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
        guard let fd = try openRegular(name, O_WRONLY) else {
            throw SystemCallError("open(\(name))", .noSuchFileOrDirectory)
        }
        return fd
    }

    public func write(_ handle: StateFileHandle, _ bytes: [UInt8], at offset: UInt64) throws(SystemCallError) {
        try SystemCall.writeAll(handle, bytes, at: offset, name: "pwrite")
    }

    public func dataSync(_ handle: StateFileHandle) throws(SystemCallError) {
        _ = try SystemCall.run("fdatasync") { fdatasync(handle) }
    }

    public func truncate(_ handle: StateFileHandle, to size: UInt64) throws(SystemCallError) {
        _ = try SystemCall.run("ftruncate") { ftruncate(handle, off_t(size)) }
    }

    public func names(_ name: String, _ handle: StateFileHandle) -> Bool {
        var open = stat(), named = stat()
        guard fstat(handle, &open) == 0 else { return false }
        guard fstatat(directoryFD, name, &named, AT_SYMLINK_NOFOLLOW) == 0 else { return false }
        return open.st_dev == named.st_dev && open.st_ino == named.st_ino
    }
}
