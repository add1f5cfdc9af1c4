// The journal's I/O on the crash-simulating file system, for crash tests:
// completions are delivered on the loop like the real backend's.
import VigilDurable
import VigilReactor

/// Tests: the simulated file system, completions delivered on the loop in a
/// later iteration like the real backends.
public final class SimulatedJournalIO: JournalIO {
    public let fs: any StateFileSystem
    let reactor: Reactor

    public init(fs: SimulatedStateFileSystem, reactor: Reactor) {
        self.fs = fs
        self.reactor = reactor
    }

    public func writeAndSync(_ handle: StateFileHandle, _ bytes: [UInt8], at offset: UInt64,
                             completion: @escaping (SystemCallError?) -> Void) {
        var failure: SystemCallError?
        do {
            try fs.write(handle, bytes, at: offset)
            try fs.dataSync(handle)
        } catch {
            failure = error
        }
        reactor.deliverOnLoop { completion(failure) }
    }
}
