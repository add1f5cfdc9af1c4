// Trial directories: created fresh, removed recursively afterwards (no
// Foundation in vigil-bench; nftw is not importable).
import Glibc

enum ScratchDirectory {
    /// mkdtemp under `parent`.
    static func make(in parent: String, prefix: String) -> String? {
        var template = Array((parent + "/" + prefix + "XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { return nil }
        return String(cString: p)
    }

    /// mkdir with mode 0700; true if it now exists as a new directory.
    static func create(_ path: String) -> Bool { mkdir(path, 0o700) == 0 }

    /// rm -rf, without following symbolic links.
    static func remove(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) != S_IFDIR { unlink(path); return }
        if let dir = opendir(path) {
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafePointer(to: &entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for n in names { remove(path + "/" + n) }
        }
        rmdir(path)
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read it, close).
    static func freeTCPPort() -> UInt16? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        return ok ? UInt16(bigEndian: a.sin_port) : nil
    }
}
