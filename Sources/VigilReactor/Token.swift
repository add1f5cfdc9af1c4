// mio-style identity of a registration. The generation makes a token unique
// over time: when a descriptor is deregistered (and perhaps closed and its
// number reused) while events for it are still in the current epoll batch,
// those events carry the old generation and are dropped instead of being
// delivered to the new owner of the slot.

/// Identifies one registration with the reactor.
public struct Token: Hashable, Sendable, CustomStringConvertible {
    public let index: UInt32
    public let generation: UInt32

    init(index: UInt32, generation: UInt32) {
        self.index = index
        self.generation = generation
    }

    init(raw: UInt64) {
        self.index = UInt32(truncatingIfNeeded: raw)
        self.generation = UInt32(truncatingIfNeeded: raw >> 32)
    }

    /// The value stored in `epoll_event.data.u64`.
    var raw: UInt64 { UInt64(generation) << 32 | UInt64(index) }

    public var description: String { "Token(\(index)#\(generation))" }
}

/// What a registration wants to hear about.
public struct Interest: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let readable = Interest(rawValue: 1)
    public static let writable = Interest(rawValue: 2)
}

/// What epoll reported for a registration.
public struct Readiness: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let readable = Readiness(rawValue: 1)
    public static let writable = Readiness(rawValue: 2)
    /// The peer closed (EPOLLHUP/EPOLLRDHUP): reads will return 0 soon.
    public static let hangup = Readiness(rawValue: 4)
    /// EPOLLERR: the next read or write reports the error.
    public static let error = Readiness(rawValue: 8)
}
