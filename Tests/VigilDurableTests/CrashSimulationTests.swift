import Glibc
import VigilDurable
import VigilReactor
import XCTest

/// Crash at every step of the record's whole life (take-over, stopping,
/// stopped), both as a process kill and as a power loss, and check what the
/// next start concludes.
final class CrashSimulationTests: XCTestCase {
    private let boot = "boot-a"

    /// The transitions of one run, in order, with the classification the
    /// next start must report once each has taken effect.
    private func runLifecycle(_ store: ShutdownRecordStore, markers: inout [(name: String, renameStep: Int, endStep: Int)], fs: SimulatedStateFileSystem, outcome: ShutdownRecord.Outcome) throws {
        let signal = SignalInfo(signal: SIGTERM, senderPID: 1, senderUID: 0, code: 0, value: 0, receivedAtNs: 1)
        func mark(_ name: String, _ body: () throws -> Void) throws {
            try body()
            // The rename is the last-but-one mutating step when the directory is synced, else the last.
            let renameIdx = fs.journal.lastIndex { $0.hasPrefix("rename") }!
            markers.append((name, renameIdx, fs.steps))
        }
        try mark("running") { _ = try store.takeOver(running: sampleRecord(.running), currentBootID: boot) }
        try mark("stopping") { try store.markStopping(signal: signal, budgetMs: 1000, inFlight: 5) }
        try mark("stopped") { try store.markStopped(outcome: outcome, abandoned: outcome == .clean ? 0 : 5, drainMs: 10) }
    }

    private func expected(_ marker: String?, outcome: ShutdownRecord.Outcome) -> RunClassification {
        switch marker {
        case nil: return .clean  // the previous run's clean record is still the truth
        case "running": return .crash
        case "stopping": return .killedDuringDrain
        default: return outcome == .clean ? .clean : .cutShort
        }
    }

    /// A directory holding a clean record from an earlier run.
    private func seededFS() throws -> SimulatedStateFileSystem {
        let fs = SimulatedStateFileSystem()
        var earlier = sampleRecord(.stopped)
        earlier.outcome = .clean
        earlier.abandoned = 0
        try AtomicFile.replace(ShutdownRecordStore.recordName, with: earlier.encoded(), in: fs)
        return fs
    }

    private func sweep(syncDirectory: Bool, outcome: ShutdownRecord.Outcome) throws -> [String] {
        // A dry run to learn the steps.
        let dry = try seededFS()
        let base = dry.steps
        var markers: [(name: String, renameStep: Int, endStep: Int)] = []
        try runLifecycle(ShutdownRecordStore(fs: dry, syncDirectory: syncDirectory), markers: &markers, fs: dry, outcome: outcome)
        let total = dry.steps
        var violations: [String] = []
        for k in base...total {
            for powerLoss in [false, true] {
                let fs = try seededFS()
                fs.crashAtStep = k
                var ignored: [(name: String, renameStep: Int, endStep: Int)] = []
                let store = ShutdownRecordStore(fs: fs, syncDirectory: syncDirectory)
                do {
                    try runLifecycle(store, markers: &ignored, fs: fs, outcome: outcome)
                    XCTAssertEqual(k, total, "only the step past the end runs to completion")
                } catch {}
                if powerLoss { fs.powerLoss() } else { fs.processKilled() }
                // What the next start concludes.
                let found = PreviousRun.classify(ShutdownRecordStore(fs: fs).read(), currentBootID: boot).classification
                // Power loss keeps a transition once its directory fsync is done
                // (its last step); a process kill keeps it once its rename ran.
                let reached = markers.last { m in powerLoss ? m.endStep <= k : m.renameStep < k }?.name
                let want = expected(reached, outcome: outcome)
                if found != want {
                    violations.append("step \(k) \(powerLoss ? "power loss" : "kill"): found \(found.rawValue), want \(want.rawValue)")
                }
            }
        }
        return violations
    }

    func testEveryCrashPointClassifiesExactly() throws {
        for outcome in [ShutdownRecord.Outcome.clean, .cutShort] {
            let v = try sweep(syncDirectory: true, outcome: outcome)
            XCTAssertEqual(v, [], "\(outcome)")
        }
    }

    func testNegativeControlWithoutDirectoryFsyncFails() throws {
        // Without the directory fsync a power loss undoes "durable" records:
        // the sweep must notice, or it proves nothing.
        let v = try sweep(syncDirectory: false, outcome: .clean)
        XCTAssertFalse(v.isEmpty, "the crash sweep cannot detect a missing directory fsync")
    }

    func testAtomicReplaceNeverTearsTheRecord() throws {
        // Whatever the crash point, the record reads as a whole record.
        for k in 0..<12 {
            for powerLoss in [false, true] {
                let fs = try seededFS()
                fs.crashAtStep = fs.steps + k
                try? AtomicFile.replace(ShutdownRecordStore.recordName, with: sampleRecord(.stopping).encoded(), in: fs)
                if powerLoss { fs.powerLoss() } else { fs.processKilled() }
                guard case .valid = ShutdownRecordStore(fs: fs).read() else {
                    return XCTFail("torn record after crash at step \(k)")
                }
            }
        }
    }
}
