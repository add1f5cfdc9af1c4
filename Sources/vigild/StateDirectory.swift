import Glibc
import VigilReactor

/// Creates the state directory (mode 0700) if needed and checks it is a real,
/// writable directory. The durable layer (shutdown record, lock) takes over
/// from here in the shutdown-record issue.
enum StateDirectory {
    static func prepare(_ path: String) throws(SystemCallError) {
        if mkdir(path, 0o700) != 0 && Glibc.errno != EEXIST {
            throw SystemCallError("mkdir(\(path))", .init(rawValue: Glibc.errno))
        }
        var st = stat()
        if lstat(path, &st) != 0 { throw SystemCallError("lstat(\(path))", .init(rawValue: Glibc.errno)) }
        if (st.st_mode & S_IFMT) == S_IFLNK { throw SystemCallError("refusing symlink \(path)", .tooManySymbolicLinkLevels) }
        if (st.st_mode & S_IFMT) != S_IFDIR { throw SystemCallError("\(path) is not a directory", .notDirectory) }
        if access(path, W_OK | X_OK) != 0 { throw SystemCallError("access(\(path))", .init(rawValue: Glibc.errno)) }
    }
}
