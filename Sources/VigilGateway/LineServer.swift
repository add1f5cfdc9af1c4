// Newline-delimited framing over non-blocking stream sockets on the reactor.
// The hot path does not allocate per request: each read lands in one shared
// scratch buffer, complete lines are handed to the handler straight from it,
// and all replies produced by that read go out in one write(2). Only a
// partial line or unwritten output is copied into the connection, so an
// idle connection holds no buffers at all.
import Glibc
import Logging
import VigilReactor

/// Receives complete lines and produces replies.
public protocol LineHandler: AnyObject {
    /// One complete line, without its newline. Append replies to `out`.
    func handle(line: UnsafeRawBufferPointer, from connection: LineConnection, out: inout [UInt8])
    /// A line longer than the limit: append the error; the connection closes after it.
    func lineTooLong(limit: Int, from connection: LineConnection, out: inout [UInt8])
    func connectionOpened(_ connection: LineConnection)
    func connectionClosed(_ connection: LineConnection)
    /// The client half-closed (EOF). Return true to keep the connection open
    /// for answers still to come; the handler then closes it
    /// (`closeAfterWriting`) once they are sent.
    func inputEnded(_ connection: LineConnection) -> Bool
}

extension LineHandler {
    public func connectionOpened(_ connection: LineConnection) {}
    public func connectionClosed(_ connection: LineConnection) {}
    public func inputEnded(_ connection: LineConnection) -> Bool { false }
}

/// One client connection.
public final class LineConnection {
    public let fd: Int32
    public let id: UInt64
    var token: Token?
    // Loop-confined, and touched for every line: dynamic exclusivity
    // checks here cost more than the work (docs/benchmarks.md).
    @exclusivity(unchecked) var pending: [UInt8] = []
    @exclusivity(unchecked) var unsent: [UInt8] = []
    @exclusivity(unchecked) var unsentOffset = 0
    @exclusivity(unchecked) var closeAfterFlush = false
    /// An over-long line was reported and the rest of it is being skipped
    /// (``LineServer/keepsConnectionAfterLongLine``).
    @exclusivity(unchecked) var skippingLongLine = false
    /// Complete lines wait in `pending` because this client's answers
    /// piled up (``LineServer`` backpressure): handled as it reads them.
    @exclusivity(unchecked) var backlogged = false
    /// The client half-closed; the connection stays for answers still due.
    @exclusivity(unchecked) public internal(set) var inputEnded = false
    @exclusivity(unchecked) public internal(set) var isClosed = false
    /// Accepted after ``LineServer/pauseReading()`` (on a listener still
    /// watched, e.g. a control socket): served as usual, never handed over.
    public internal(set) var acceptedWhilePaused = false
    /// Overrides the server's `maxUnsentBytes` for this connection (a control
    /// client that asked for a large listing).
    public var unsentLimit: Int?
    /// The handler's own per-connection state (found without a lookup on
    /// the hot path). The handler clears it in connectionClosed.
    public var userData: AnyObject?
    unowned let server: LineServer

    init(fd: Int32, id: UInt64, server: LineServer) {
        self.fd = fd
        self.id = id
        self.server = server
    }

    /// Sends bytes outside of a read callback (e.g. a reply that completes later).
    public func send(_ bytes: [UInt8]) {
        guard !isClosed else { return }
        server.write(bytes, to: self)
    }

    /// Closes after everything queued has been written.
    public func closeAfterWriting() {
        closeAfterFlush = true
        server.write([], to: self)
    }
}

public final class LineServer {
    public let reactor: Reactor
    public let maxLineBytes: Int
    let handler: any LineHandler
    let logger: Logger

    /// `unlinkPath`: a Unix socket we bound ourselves (never one systemd passed:
    /// systemd keeps that name across our restarts).
    private var listeners: [(fd: Int32, token: Token, address: String, unlinkPath: String?)] = []
    /// Listeners no longer watched but kept open for a handover: clients
    /// connecting meanwhile wait in their backlog for the next instance.
    public private(set) var pausedListeners: [(fd: Int32, address: String)] = []
    private var connections: [Int32: LineConnection] = [:]
    private var nextID: UInt64 = 1
    private let scratch: UnsafeMutableRawBufferPointer
    @exclusivity(unchecked) private var out: [UInt8] = []
    /// Stop reading from a client whose unsent replies exceed this.
    private let backpressureBytes = 1 << 20
    /// A client that stops reading while replies keep coming (turns it sent
    /// earlier) is disconnected once this much is queued for it: the bound
    /// on what one client can make the daemon hold.
    public var maxUnsentBytes = 8 << 20
    /// After an over-long line: false (default) closes the connection once
    /// the error is sent; true skips the line up to its newline and keeps
    /// serving the connection (a ledger client must not lose its session
    /// over one bad line).
    public var keepsConnectionAfterLongLine = false
    /// Clients disconnected for not reading.
    public private(set) var slowClientsDropped = 0
    /// How long a listener rests after accept failed for want of resources.
    public var acceptBackoff: Duration = .milliseconds(100)
    /// At most one log line per this interval about failing accepts.
    public var acceptLogInterval: Duration = .seconds(5)
    /// accept(2) failures for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM).
    public private(set) var acceptFailures = 0
    private var failuresSinceLog = 0
    /// A handover is under way: requests stay in the kernel for the next
    /// instance; only output is written.
    public private(set) var readingPaused = false
    private var lastAcceptLogNs: UInt64 = 0

    public init(reactor: Reactor, handler: any LineHandler, maxLineBytes: Int = 64 * 1024, logger: Logger) {
        self.reactor = reactor
        self.handler = handler
        self.maxLineBytes = maxLineBytes
        self.logger = logger
        scratch = .allocate(byteCount: 64 * 1024, alignment: 64)
        out.reserveCapacity(64 * 1024)
    }

    deinit {
        closeAll()
        scratch.deallocate()
    }

    public var connectionCount: Int { connections.count }
    public var listenerCount: Int { listeners.count }

    /// Binds and serves `address`; returns the bound address (real port for `:0`).
    @discardableResult
    public func listen(on address: SocketAddress) throws(SystemCallError) -> SocketAddress {
        let fd = try StreamSocket.listen(on: address)
        var bound = address
        switch address {
        case .ipv4(let h, 0): bound = .ipv4(host: h, port: try StreamSocket.localPort(fd))
        case .ipv6(let h, 0): bound = .ipv6(host: h, port: try StreamSocket.localPort(fd))
        default: break
        }
        do { try adopt(listener: fd, name: bound.description) } catch {
            StreamSocket.close(fd)
            throw error
        }
        if case .unix(let path) = address { listeners[listeners.count - 1].unlinkPath = path }
        return bound
    }

    /// Serves an already-listening socket (e.g. one passed by systemd, or
    /// kept by a previous instance). `unlinkPath`: a Unix socket's name to
    /// remove when the listener is closed (never one systemd passed).
    public func adopt(listener fd: Int32, name: String, unlinkPath: String? = nil) throws(SystemCallError) {
        var token: Token?
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        token = try reactor.register(fd, interest: .readable) { [unowned self] _ in self.acceptAll(fd) }
        listeners.append((fd, token!, name, unlinkPath))
    }

    /// Stops accepting on every listener not named in `keeping`, but keeps
    /// them open, unwatched (``pausedListeners``), for a handover. A Unix
    /// socket's name is not removed: the next instance serves it.
    public func pauseListeners(keeping: Set<String> = []) {
        for l in listeners where !keeping.contains(l.address) {
            reactor.deregister(l.token)
            pausedListeners.append((l.fd, l.address))
        }
        listeners.removeAll { !keeping.contains($0.address) }
    }

    /// Serves a connected stream socket handed over by a previous instance:
    /// `unsent` is written first, `pending` (bytes read past the last
    /// complete line) is kept as if this server had read it.
    @discardableResult
    public func adopt(connection fd: Int32, pending: [UInt8], unsent: [UInt8]) throws(SystemCallError) -> LineConnection {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        StreamSocket.setNoDelay(fd)
        let conn = LineConnection(fd: fd, id: nextID, server: self)
        nextID += 1
        conn.token = try reactor.register(fd, interest: .readable) { [unowned self, unowned conn] r in
            self.onEvent(conn, r)
        }
        connections[fd] = conn
        conn.pending = pending
        handler.connectionOpened(conn)
        if !unsent.isEmpty && !conn.isClosed { write(unsent, to: conn) }
        return conn
    }

    /// Stops reading from every connection (a handover: what clients send
    /// now is read by the next instance); answers still go out.
    public func pauseReading() {
        readingPaused = true
        for c in Array(connections.values) where !c.isClosed { flush(c) }
    }

    /// Every open connection (for a handover).
    public var openConnections: [LineConnection] { Array(connections.values) }

    /// Bytes read past the last complete line, and output not yet written.
    public func handoverState(of conn: LineConnection) -> (pending: [UInt8], unsent: [UInt8]) {
        (conn.pending, conn.unsentOffset < conn.unsent.count ? Array(conn.unsent[conn.unsentOffset...]) : [])
    }

    /// Stops accepting (the first step of a drain); open connections stay.
    /// Listeners named in `keeping` (the control socket) stay open.
    public func closeListeners(keeping: Set<String> = []) {
        for l in listeners where !keeping.contains(l.address) {
            reactor.deregister(l.token)
            StreamSocket.close(l.fd)
            // A Unix socket's name would outlive us and mislead clients.
            if let path = l.unlinkPath { unlink(path) }
        }
        listeners.removeAll { !keeping.contains($0.address) }
    }

    public func closeAll() {
        closeListeners()
        for l in pausedListeners { StreamSocket.close(l.fd) }
        pausedListeners = []
        for c in Array(connections.values) { close(c) }
    }

    private func acceptAll(_ listener: Int32) {
        // Bounded so a connection storm cannot starve established clients.
        for _ in 0..<64 {
            let fd: Int32
            do {
                guard let accepted = try StreamSocket.accept(listener) else { return }
                fd = accepted
            } catch {
                acceptFailed(listener, error)
                return
            }
            StreamSocket.setNoDelay(fd)
            let conn = LineConnection(fd: fd, id: nextID, server: self)
            conn.acceptedWhilePaused = readingPaused
            nextID += 1
            do {
                conn.token = try reactor.register(fd, interest: .readable) { [unowned self, unowned conn] r in
                    self.onEvent(conn, r)
                }
            } catch {
                logger.error("cannot watch connection: \(error)")
                StreamSocket.close(fd)
                continue
            }
            connections[fd] = conn
            handler.connectionOpened(conn)
        }
    }

    /// EMFILE/ENFILE/ENOBUFS/ENOMEM: the kernel keeps the connection queued
    /// and the listener stays readable, so retrying on the next readiness
    /// would spin the loop — and the log — as fast as it goes. The listener
    /// is paused for `acceptBackoff` (established clients are served
    /// meanwhile, and may free descriptors), and the failure is logged once
    /// per `acceptLogInterval`, with how often it happened.
    private func acceptFailed(_ listener: Int32, _ error: SystemCallError) {
        acceptFailures += 1
        failuresSinceLog += 1
        let now = monotonicNanoseconds()
        if lastAcceptLogNs == 0 || now - lastAcceptLogNs >= acceptLogInterval.nanosecondsValue {
            logger.error("accept failed: \(error) (\(failuresSinceLog) time(s) since the last report); new connections paused for \(acceptBackoff.milliseconds) ms at a time")
            lastAcceptLogNs = now
            failuresSinceLog = 0
        }
        guard let token = listeners.first(where: { $0.fd == listener })?.token else { return }
        try? reactor.reregister(token, interest: [])
        _ = reactor.schedule(after: acceptBackoff) { [weak self] in
            // The listener may have been closed meanwhile (the drain): then
            // the token is gone and its fd number may be someone else's.
            guard let self, self.listeners.contains(where: { $0.token == token }) else { return }
            try? self.reactor.reregister(token, interest: .readable)
        }
    }

    private func onEvent(_ conn: LineConnection, _ r: Readiness) {
        if r.contains(.writable) {
            flush(conn)
            if conn.backlogged && !conn.isClosed && conn.unsent.count - conn.unsentOffset < backpressureBytes { processBacklog(conn) }
        }
        if conn.isClosed { return }
        if readingPaused && !conn.acceptedWhilePaused {
            // Only a hang-up or an error can wake a paused connection: the
            // client is gone, nothing is left to hand over.
            if r.contains(.hangup) || r.contains(.error) { close(conn) }
            return
        }
        if r.contains(.readable) || r.contains(.hangup) || r.contains(.error) { readAndProcess(conn) }
    }

    private func readAndProcess(_ conn: LineConnection) {
        out.removeAll(keepingCapacity: true)
        readLoop: for _ in 0..<4 {
            let result: IOResult
            do { result = try StreamSocket.read(conn.fd, into: scratch) } catch {
                close(conn)
                return
            }
            switch result {
            case .wouldBlock:
                break readLoop
            case .processed(0):
                // EOF: replies already produced still go out (half-close);
                // the handler may keep the connection for answers to come.
                if !out.isEmpty { write(out, to: conn) }
                if conn.isClosed { return }
                if handler.inputEnded(conn) {
                    conn.inputEnded = true
                    flush(conn)  // stop watching for input
                } else {
                    close(conn)
                }
                return
            case .processed(let n):
                let tooLong: Bool
                var from = 0
                if conn.skippingLongLine {
                    // The rest of a line already reported as too long.
                    guard let nl = memchr(scratch.baseAddress!, 0x0A, n) else {
                        if n < scratch.count { break readLoop }
                        continue readLoop
                    }
                    from = UnsafeRawPointer(scratch.baseAddress!).distance(to: UnsafeRawPointer(nl)) + 1
                    conn.skippingLongLine = false
                }
                if conn.pending.isEmpty {
                    let consumed = from + processLines(UnsafeRawBufferPointer(rebasing: scratch[from..<n]), conn)
                    if conn.isClosed { return }
                    if consumed < n { conn.pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[consumed..<n])) }
                } else {
                    conn.pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
                    let consumed = conn.pending.withUnsafeBytes { processLines($0, conn) }
                    if conn.isClosed { return }
                    conn.pending.removeFirst(consumed)
                }
                if conn.closeAfterFlush || conn.backlogged { break readLoop }
                tooLong = conn.pending.count > maxLineBytes
                if tooLong {
                    handler.lineTooLong(limit: maxLineBytes, from: conn, out: &out)
                    conn.pending = []
                    if keepsConnectionAfterLongLine {
                        conn.skippingLongLine = true
                        if n < scratch.count { break readLoop }
                        continue readLoop
                    }
                    conn.closeAfterFlush = true
                    break readLoop
                }
                if n < scratch.count { break readLoop }
            }
        }
        // (Backlogged: also to stop watching for input until it is handled.)
        if !out.isEmpty || conn.closeAfterFlush || conn.backlogged { write(out, to: conn) }
    }

    /// The client has read enough of its answers: the lines that waited in
    /// `pending` are handled now (as far as backpressure lets them).
    private func processBacklog(_ conn: LineConnection) {
        out.removeAll(keepingCapacity: true)
        conn.backlogged = false
        let consumed = conn.pending.withUnsafeBytes { processLines($0, conn) }
        if conn.isClosed { return }
        conn.pending.removeFirst(consumed)
        write(out, to: conn)
    }

    /// Hands every complete line to the handler; returns the bytes consumed.
    /// Stops early, marking the connection backlogged, once this client's
    /// answers (produced now, or queued unread) reach `backpressureBytes`:
    /// a client pipelining requests with large answers (a ledger's
    /// `interrupted`) and not reading them would otherwise make the loop
    /// build them all at once — memory, and time the stop signal waits for.
    private func processLines(_ buf: UnsafeRawBufferPointer, _ conn: LineConnection) -> Int {
        guard let base = buf.baseAddress else { return 0 }
        var start = 0
        while start < buf.count {
            if out.count + conn.unsent.count - conn.unsentOffset >= backpressureBytes {
                conn.backlogged = true
                break
            }
            guard let nl = memchr(base + start, 0x0A, buf.count - start) else { break }
            let end = base.distance(to: UnsafeRawPointer(nl))
            var lineEnd = end
            if lineEnd > start, buf[lineEnd - 1] == 0x0D { lineEnd -= 1 }
            if end - start > maxLineBytes {
                handler.lineTooLong(limit: maxLineBytes, from: conn, out: &out)
                if keepsConnectionAfterLongLine {
                    start = end + 1
                    continue
                }
                conn.closeAfterFlush = true
                return buf.count
            }
            if lineEnd > start {
                handler.handle(line: UnsafeRawBufferPointer(rebasing: buf[start..<lineEnd]), from: conn, out: &out)
                if conn.isClosed { return buf.count }
            }
            start = end + 1
        }
        return start
    }

    /// Writes `bytes` after anything still unsent; queues the rest.
    func write(_ bytes: [UInt8], to conn: LineConnection) {
        if conn.unsent.isEmpty && !bytes.isEmpty {
            var written = 0
            while written < bytes.count {
                let r: IOResult
                do { r = try bytes.withUnsafeBytes { (b) throws(SystemCallError) -> IOResult in try StreamSocket.write(conn.fd, from: UnsafeRawBufferPointer(rebasing: b[written...])) } } catch {
                    close(conn)
                    return
                }
                guard case .processed(let k) = r else { break }
                written += k
            }
            if written < bytes.count { conn.unsent.append(contentsOf: bytes[written...]) }
        } else if !bytes.isEmpty {
            conn.unsent.append(contentsOf: bytes)
        }
        if conn.unsent.count - conn.unsentOffset > (conn.unsentLimit ?? maxUnsentBytes) {
            dropSlowClient(conn, queued: conn.unsent.count - conn.unsentOffset)
            return
        }
        flush(conn)
    }

    private func flush(_ conn: LineConnection) {
        while conn.unsentOffset < conn.unsent.count {
            let r: IOResult
            do {
                r = try conn.unsent.withUnsafeBytes { (b) throws(SystemCallError) -> IOResult in
                    try StreamSocket.write(conn.fd, from: UnsafeRawBufferPointer(rebasing: b[conn.unsentOffset...]))
                }
            } catch {
                close(conn)
                return
            }
            guard case .processed(let k) = r else { break }
            conn.unsentOffset += k
        }
        if conn.unsentOffset == conn.unsent.count {
            conn.unsent = []
            conn.unsentOffset = 0
            if conn.closeAfterFlush { close(conn); return }
        } else if conn.unsentOffset >= 64 << 10 && conn.unsentOffset * 2 >= conn.unsent.count {
            // A client that always lags a little never drains to zero: drop
            // what was sent, or the buffer would keep every byte ever sent.
            conn.unsent.removeFirst(conn.unsentOffset)
            conn.unsentOffset = 0
        }
        var interest: Interest = []
        // Backlogged: no more input until the waiting lines are handled; a
        // writable event (at once, when nothing is unsent) resumes them.
        if !conn.unsent.isEmpty || conn.backlogged { interest.insert(.writable) }
        if conn.unsent.count - conn.unsentOffset < backpressureBytes && !conn.backlogged && !conn.closeAfterFlush && !conn.inputEnded && (!readingPaused || conn.acceptedWhilePaused) { interest.insert(.readable) }
        if let t = conn.token { try? reactor.reregister(t, interest: interest) }
    }

    /// Disconnects a client that let `queued` bytes of answers pile up.
    func dropSlowClient(_ conn: LineConnection, queued: Int) {
        guard !conn.isClosed else { return }
        slowClientsDropped += 1
        logger.warning("connection \(conn.id): \(queued) bytes of answers queued unread; disconnecting")
        close(conn)
    }

    /// Closes a connection now (unsent bytes are dropped).
    public func close(_ conn: LineConnection) {
        guard !conn.isClosed else { return }
        conn.isClosed = true
        if let t = conn.token { reactor.deregister(t) }
        conn.token = nil
        connections[conn.fd] = nil
        StreamSocket.close(conn.fd)
        handler.connectionClosed(conn)
    }
}
