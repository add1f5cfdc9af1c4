// The entry point's side of a handover through systemd's fd store
// (docs/systemd.md, "Handover"): what a new instance takes at start, and
// what a stopping one stores. Ordering:
//  - at start, before the service exists: every descriptor named
//    `handover.*` is taken and validated against the state memfd; after the
//    service adopted them, FDSTOREREMOVE=1 — a crash of this instance must
//    not hand stale connections to the next one;
//  - at a stop: FDSTORE=1 only after the `stopping` record is durable and
//    the stop is decided; connections first, the state memfd last, so a
//    state is only ever stored for connections already in the store.
// The connections travel in a DescriptorCarrier (two store entries, however
// many connections: systemd 252's store is quadratic in its entries);
// descriptors stored one by one as `handover.connection` are accepted too.
import CVigil
import Glibc
import Logging
import VigilSystemd

enum Handover {
    static let connectionName = FileDescriptorStore.reservedNamePrefix + "connection"
    static let stateName = FileDescriptorStore.reservedNamePrefix + "state"
    static let carrierName = FileDescriptorStore.reservedNamePrefix + "carrier"
    /// The carrier's two ends and the state memfd.
    static let storeEntries: UInt32 = 3
    /// Refuse a state memfd larger than this (a foreign descriptor).
    static let maxStateBytes = 1 << 30

    /// Takes the handover descriptors passed at start; every one is either
    /// in the result or closed (and named in `refused`). `passedAny`: the
    /// store held something of ours, to be removed once adopted.
    static func take(daemonName: String, logger: Logger) -> (handover: InheritedHandover, listeners: [HandedOverDescriptor], passedAny: Bool) {
        let passed = FileDescriptorStore.passedHandoverDescriptors()
        guard !passed.isEmpty else { return (InheritedHandover(connections: [], refused: []), [], false) }
        var refused: [String] = []
        func refuse(_ fd: Int32, _ why: String) {
            close(fd)
            refused.append(why)
            logger.warning("handover: refused \(why); closed")
        }
        var states: [UInt64: (kind: HandoverState.Kind, state: [UInt8])] = [:]
        for d in passed where d.name == stateName {
            switch readState(d.fd) {
            case .success(let bytes):
                do {
                    let state = try HandoverState.decode(bytes)
                    if state.daemonName != daemonName {
                        refused.append("state memfd (fd \(d.fd)) of daemon '\(state.daemonName)', not '\(daemonName)'")
                        logger.warning("handover: refused \(refused.last!)")
                    } else {
                        for e in state.entries where states[e.inode] == nil { states[e.inode] = (e.kind, e.state) }
                    }
                } catch {
                    refused.append("state memfd (fd \(d.fd)): \(error)")
                    logger.warning("handover: refused \(refused.last!)")
                }
            case .failure(let why):
                refused.append("state memfd (fd \(d.fd)): \(why)")
                logger.warning("handover: refused \(refused.last!)")
            }
            close(d.fd)
        }
        var candidates: [PassedSocket] = []
        for d in passed where d.name == carrierName {
            switch DescriptorCarrier.unpack(d.fd) {
            case .success(let fds): candidates += fds.map { PassedSocket(fd: $0, name: "\(carrierName) fd \(d.fd)") }
            case .failure(let why):
                refused.append("fd \(d.fd) (\(d.name)): \(why)")
                logger.warning("handover: refused \(refused.last!); closed")
            }
            close(d.fd)
        }
        var connections: [HandedOverDescriptor] = [], listeners: [HandedOverDescriptor] = []
        for d in passed.filter({ $0.name != stateName && $0.name != carrierName }) + candidates {
            guard d.name == connectionName || d.name.hasPrefix(carrierName) else { refuse(d.fd, "fd \(d.fd) named \(d.name): not a name this library stores"); continue }
            switch streamSocketInode(d.fd) {
            case .failure(let why):
                refuse(d.fd, "fd \(d.fd) (\(d.name)): \(why)")
            case .success(let (inode, listening)):
                guard let entry = states.removeValue(forKey: inode) else {
                    refuse(d.fd, "fd \(d.fd) (socket inode \(inode)): no state was stored for it")
                    continue
                }
                guard (entry.kind == .listener) == listening else {
                    refuse(d.fd, "fd \(d.fd) (socket inode \(inode)): stored as a \(entry.kind), but it is \(listening ? "listening" : "a connection")")
                    continue
                }
                _ = fcntl(d.fd, F_SETFL, fcntl(d.fd, F_GETFL) | O_NONBLOCK)
                if listening { listeners.append(HandedOverDescriptor(fd: d.fd, state: entry.state)) } else { connections.append(HandedOverDescriptor(fd: d.fd, state: entry.state)) }
            }
        }
        if !states.isEmpty {
            // Their sockets were dropped by systemd (peer hung up) or never stored.
            logger.info("handover: \(states.count) stored state(s) without their connection (the peer hung up while the daemon restarted)")
        }
        logger.notice("handover: \(connections.count) connection(s) taken from the fd store, \(refused.count) refused\(listeners.isEmpty ? "" : ", \(listeners.count) listener(s)")")
        return (InheritedHandover(connections: connections, refused: refused), listeners, true)
    }

    /// Stores `connections` and their state; throws (having removed what it
    /// stored) when the store cannot take them all.
    static func store(_ connections: [HandedOverDescriptor], listeners: [HandedOverDescriptor] = [], daemonName: String, storeMax: UInt32) throws(FileDescriptorStoreError) {
        // The carrier's two ends and the state memfd; systemd would
        // silently close what is over its limit.
        guard storeMax >= storeEntries else {
            throw FileDescriptorStoreError("a handover needs \(storeEntries) places in the store; FileDescriptorStoreMax=\(storeMax)")
        }
        var entries: [(inode: UInt64, kind: HandoverState.Kind, state: [UInt8])] = []
        for (kind, list) in [(HandoverState.Kind.connection, connections), (.listener, listeners)] {
            for c in list {
                var st = stat()
                guard fstat(c.fd, &st) == 0 else { throw FileDescriptorStoreError("fstat(\(c.fd)): \(String(cString: strerror(errno)))") }
                entries.append((UInt64(st.st_ino), kind, c.state))
            }
        }
        let bytes = HandoverState(daemonName: daemonName, entries: entries).encoded()
        let memfd = try writeSealedMemfd(bytes)
        defer { close(memfd) }
        let carrier = try DescriptorCarrier.pack((connections + listeners).map(\.fd))
        defer {
            close(carrier.0)
            close(carrier.1)
        }
        do {
            try FileDescriptorStore.store([carrier.0, carrier.1], name: carrierName)
            try FileDescriptorStore.store([memfd], name: stateName)
        } catch {
            removeStored()
            throw error
        }
    }

    static func removeStored() {
        FileDescriptorStore.remove(name: carrierName)
        FileDescriptorStore.remove(name: connectionName)
        FileDescriptorStore.remove(name: stateName)
    }

    static func writeSealedMemfd(_ bytes: [UInt8]) throws(FileDescriptorStoreError) -> Int32 {
        let fd = cvigil_memfd_create("handover-state")
        guard fd >= 0 else { throw FileDescriptorStoreError("memfd_create: \(String(cString: strerror(-fd)))") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                close(fd)
                throw FileDescriptorStoreError("writing the state memfd: \(String(cString: strerror(errno)))")
            }
            written += n
        }
        // Sealed: nobody holding it (the manager, the next instance) can change it.
        let r = cvigil_memfd_seal(fd)
        guard r == 0 else {
            close(fd)
            throw FileDescriptorStoreError("sealing the state memfd: \(String(cString: strerror(-r)))")
        }
        return fd
    }

    static func readState(_ fd: Int32) -> Result<[UInt8], HandoverState.DecodeError> {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(.init(description: "fstat: \(String(cString: strerror(errno)))")) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return .failure(.init(description: "not a memfd (not a regular file)")) }
        guard cvigil_memfd_is_sealed(fd) == 1 else { return .failure(.init(description: "not a sealed memfd")) }
        let size = Int(st.st_size)
        guard size <= maxStateBytes else { return .failure(.init(description: "\(size) bytes: too large")) }
        var bytes = [UInt8](repeating: 0, count: size)
        var got = 0
        while got < size {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, size - got, off_t(got)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return .failure(.init(description: "read: \(n < 0 ? String(cString: strerror(errno)) : "short")")) }
            got += n
        }
        return .success(bytes)
    }

    /// The socket's inode when `fd` is a stream socket that is either
    /// connected or listening (and which of the two).
    static func streamSocketInode(_ fd: Int32) -> Result<(UInt64, Bool), HandoverState.DecodeError> {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(.init(description: "fstat: \(String(cString: strerror(errno)))")) }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else { return .failure(.init(description: "not a socket")) }
        var type: Int32 = 0, listening: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0, type == Int32(SOCK_STREAM.rawValue) else {
            return .failure(.init(description: "not a stream socket"))
        }
        len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 else {
            return .failure(.init(description: "SO_ACCEPTCONN: \(String(cString: strerror(errno)))"))
        }
        if listening != 0 { return .success((UInt64(st.st_ino), true)) }
        var addr = sockaddr_storage()
        var alen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &alen) } }
        guard r == 0 else { return .failure(.init(description: "neither listening nor connected (\(String(cString: strerror(errno))))")) }
        return .success((UInt64(st.st_ino), false))
    }
}
