// The optional handover capability: a service that can give its client
// connections to systemd's fd store at a restart and take them back in the
// next instance, so its clients see a pause instead of a disconnect
// (docs/embedding.md, "Handover"). The entry point decides when; the
// service only says what each connection's state is and how to resume it.
import VigilReactor

/// A ``DaemonService`` whose connections survive a restart under systemd.
///
/// The entry point calls, in this order:
/// 1. at start, after ``DaemonService/start(_:)`` and before READY=1:
///    ``adopt(_:)`` with what the previous instance handed over (validated:
///    each descriptor is a connected stream socket named in a state memfd
///    whose checksum, version and daemon name match);
/// 2. at a stop that is a restart with an fd store (the rule is in
///    docs/systemd.md): ``prepareHandover()`` in the stop signal's handler,
///    right before ``DaemonService/stopAdmitting(_:)`` (both after the
///    `stopping` record); the drain follows as usual (it must not say goodbye);
/// 3. once the stop is decided (drain complete, or cut short and
///    ``DaemonService/abandon()`` done): ``handOver()``; the entry point
///    stores the connections and the state, then the process exits. If the
///    store refuses, ``handoverFailed()`` — say goodbye as a plain stop would.
public protocol HandoverService: DaemonService {
    /// The previous instance's connections (possibly none). Register those
    /// you resume; close those you do not (each is yours from now on).
    func adopt(_ handover: InheritedHandover)
    /// This stop hands over: stop reading requests (they wait in the kernel
    /// for the next instance), keep every connection open, never say goodbye.
    func prepareHandover()
    /// The connections to store, each with the state it needs to resume
    /// (bytes read past the last complete line, output not yet written,
    /// whatever binds it to the application). Connections not listed are
    /// the service's to close.
    func handOver() -> [HandedOverDescriptor]
    /// Listening sockets of the service's own to keep for the next instance
    /// (not socket units' listeners: systemd keeps those anyway), each with
    /// a state that says what it serves; the next instance finds them with
    /// ``DaemonContext/takeHandedOverListener(matching:)``. Keep them open
    /// but stop accepting in ``prepareHandover()``/``DaemonService/stopAdmitting(_:)``:
    /// clients connecting meanwhile wait in their backlog. Default: none.
    func handOverListeners() -> [HandedOverDescriptor]
    /// The store could not take the connections: tell the clients goodbye now.
    func handoverFailed()
}

extension HandoverService {
    /// No listener of the service's own is kept.
    public func handOverListeners() -> [HandedOverDescriptor] { [] }
}

/// A connection or a listener given to the fd store, with the service's opaque state.
public struct HandedOverDescriptor: Sendable {
    /// A connected (or, for a listener, listening) stream socket; the entry point does not close it.
    public let fd: Int32
    /// The service's own encoding; only the service reads it back.
    public let state: [UInt8]

    /// A descriptor and the state that goes with it.
    public init(fd: Int32, state: [UInt8]) {
        self.fd = fd
        self.state = state
    }
}

/// What a new instance receives from the one it replaced.
public struct InheritedHandover: Sendable {
    /// Validated connections: connected stream sockets, each with the state
    /// the previous instance stored for that very socket.
    public let connections: [HandedOverDescriptor]
    /// Descriptors and states refused (closed), with why: for the log and tests.
    public let refused: [String]

    /// What a previous instance handed over, and what was refused.
    public init(connections: [HandedOverDescriptor], refused: [String]) {
        self.connections = connections
        self.refused = refused
    }
}
