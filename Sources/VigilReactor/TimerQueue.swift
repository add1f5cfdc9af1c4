// Timers: one timerfd armed (absolute, CLOCK_MONOTONIC) to the earliest
// deadline of a binary heap. Cancelled timers are dropped lazily.
import HeapModule

/// Identifies a scheduled timer, for `Reactor.cancelTimer`.
public struct TimerHandle: Hashable, Sendable {
    let id: UInt64
}

struct TimerQueue {
    private struct Entry: Comparable {
        let deadline: UInt64
        let id: UInt64
        static func < (a: Entry, b: Entry) -> Bool {
            a.deadline != b.deadline ? a.deadline < b.deadline : a.id < b.id
        }
    }

    private var heap = Heap<Entry>()
    private var callbacks: [UInt64: () -> Void] = [:]
    private var nextID: UInt64 = 1

    var isEmpty: Bool { callbacks.isEmpty }
    var count: Int { callbacks.count }

    mutating func schedule(at deadline: UInt64, _ callback: @escaping () -> Void) -> TimerHandle {
        let id = nextID
        nextID += 1
        heap.insert(Entry(deadline: deadline, id: id))
        callbacks[id] = callback
        return TimerHandle(id: id)
    }

    @discardableResult
    mutating func cancel(_ handle: TimerHandle) -> Bool {
        callbacks.removeValue(forKey: handle.id) != nil
    }

    /// Earliest live deadline (drops cancelled entries from the top).
    mutating func earliestDeadline() -> UInt64? {
        while let top = heap.min {
            if callbacks[top.id] != nil { return top.deadline }
            heap.removeMin()
        }
        return nil
    }

    /// Removes and returns the callbacks due at `now`, in deadline order.
    /// Timers scheduled by those callbacks wait for the next round, so a
    /// zero-delay timer that re-arms itself cannot starve the loop.
    mutating func popExpired(now: UInt64) -> [() -> Void] {
        var due: [() -> Void] = []
        let limit = nextID
        while let top = heap.min, top.deadline <= now, top.id < limit {
            heap.removeMin()
            if let cb = callbacks.removeValue(forKey: top.id) { due.append(cb) }
        }
        return due
    }
}
