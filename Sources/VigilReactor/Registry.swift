import CVigil
import Glibc

/// The table behind epoll's `data.u64`: slot index → handler, with a
/// generation per slot so stale events are recognised (see `Token`).
struct Registry {
    struct Slot {
        var fd: Int32 = -1
        var generation: UInt32 = 0
        var interest: Interest = []
        var handler: ((Readiness) -> Void)?
    }

    private(set) var slots: [Slot] = []
    private var free: [UInt32] = []
    private(set) var count = 0

    mutating func insert(fd: Int32, interest: Interest, handler: @escaping (Readiness) -> Void) -> Token {
        let index: UInt32
        if let reused = free.popLast() {
            index = reused
        } else {
            index = UInt32(slots.count)
            slots.append(Slot())
        }
        slots[Int(index)].fd = fd
        slots[Int(index)].interest = interest
        slots[Int(index)].handler = handler
        count += 1
        return Token(index: index, generation: slots[Int(index)].generation)
    }

    func isLive(_ token: Token) -> Bool {
        Int(token.index) < slots.count
            && slots[Int(token.index)].generation == token.generation
            && slots[Int(token.index)].handler != nil
    }

    func fd(of token: Token) -> Int32? { isLive(token) ? slots[Int(token.index)].fd : nil }

    mutating func setInterest(_ token: Token, _ interest: Interest) {
        slots[Int(token.index)].interest = interest
    }

    func interest(of token: Token) -> Interest { slots[Int(token.index)].interest }

    /// Frees the slot; bumping the generation is what invalidates events
    /// still queued in the current batch.
    @discardableResult
    mutating func remove(_ token: Token) -> Int32? {
        guard isLive(token) else { return nil }
        let i = Int(token.index)
        let fd = slots[i].fd
        slots[i].handler = nil
        slots[i].fd = -1
        slots[i].generation &+= 1
        free.append(token.index)
        count -= 1
        return fd
    }

    /// The handler for an event's raw token, or nil when the event is stale.
    @inline(__always)
    func handler(forRaw raw: UInt64) -> ((Readiness) -> Void)? {
        let index = Int(UInt32(truncatingIfNeeded: raw))
        guard index < slots.count else { return nil }
        let slot = slots[index]
        guard slot.generation == UInt32(truncatingIfNeeded: raw >> 32) else { return nil }
        return slot.handler
    }
}

extension Interest {
    var epollEvents: UInt32 {
        var e: UInt32 = 0
        if contains(.readable) { e |= EPOLLIN.rawValue | EPOLLRDHUP.rawValue }
        if contains(.writable) { e |= EPOLLOUT.rawValue }
        return e
    }
}

extension Readiness {
    init(epollEvents e: UInt32) {
        var r: Readiness = []
        if e & EPOLLIN.rawValue != 0 { r.insert(.readable) }
        if e & EPOLLOUT.rawValue != 0 { r.insert(.writable) }
        if e & (EPOLLHUP.rawValue | EPOLLRDHUP.rawValue) != 0 { r.insert(.hangup) }
        if e & EPOLLERR.rawValue != 0 { r.insert(.error) }
        self = r
    }
}
