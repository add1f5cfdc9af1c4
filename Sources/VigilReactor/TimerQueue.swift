// Timers: one timerfd armed (absolute, CLOCK_MONOTONIC) to the earliest
// deadline of a binary heap. Cancelled timers are dropped lazily. A repeating
// timer keeps its handle: it is put back into the heap with its next
// deadline each time it fires, until cancelled.
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

    private struct Callback {
        let body: () -> Void
        /// Nanoseconds between firings; 0 for a one-shot timer.
        let period: UInt64
    }

    private var heap = Heap<Entry>()
    private var callbacks: [UInt64: Callback] = [:]
    private var nextID: UInt64 = 1

    var isEmpty: Bool { callbacks.isEmpty }
    var count: Int { callbacks.count }

    mutating func schedule(at deadline: UInt64, every period: UInt64 = 0, _ callback: @escaping () -> Void) -> TimerHandle {
        let id = nextID
        nextID += 1
        heap.insert(Entry(deadline: deadline, id: id))
        callbacks[id] = Callback(body: callback, period: period)
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
    /// zero-delay timer that re-arms itself cannot starve the loop. A
    /// repeating timer goes back in at its next deadline after `now`: ticks
    /// missed while the loop was busy are skipped, not replayed in a burst.
    mutating func popExpired(now: UInt64) -> [() -> Void] {
        var due: [() -> Void] = []
        let limit = nextID
        while let top = heap.min, top.deadline <= now, top.id < limit {
            heap.removeMin()
            guard let cb = callbacks[top.id] else { continue }
            if cb.period == 0 {
                callbacks.removeValue(forKey: top.id)
            } else {
                var next = top.deadline &+ cb.period
                if next <= now { next = now &+ cb.period }
                heap.insert(Entry(deadline: next, id: top.id))
            }
            due.append(cb.body)
        }
        return due
    }
}
