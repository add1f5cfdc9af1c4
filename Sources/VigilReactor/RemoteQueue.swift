// Work handed to the loop from other threads (`Reactor.execute`). A plain
// pthread mutex, not Synchronization.Mutex: on Linux the latter locks with
// raw futex calls that ThreadSanitizer cannot see, so every TSan run of the
// reactor reported the queue as a race. Contention is one append per
// execute and one swap per wake-up; either lock is cheap enough.
import Glibc

final class RemoteQueue<Element>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var items: [Element] = []

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func append(_ item: Element) {
        pthread_mutex_lock(mutex)
        items.append(item)
        pthread_mutex_unlock(mutex)
    }

    /// Everything queued so far, in order; the queue is left empty.
    func takeAll() -> [Element] {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if items.isEmpty { return [] }
        let all = items
        items.removeAll(keepingCapacity: true)
        return all
    }

    var isEmpty: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return items.isEmpty
    }
}
