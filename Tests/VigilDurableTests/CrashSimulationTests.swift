import Glibc
import SystemPackage
import VigilDurable
import VigilReactor
import VigilTesting
import XCTest

/// Crash at every step of the record's whole life (take-over — creation or
/// migration of the file, or `running` in place — stopping, stopped), as a
/// process kill, as a power loss, and as a power loss that tears the slot
/// being written; check what the next start concludes.
final class CrashSimulationTests: XCTestCase {
    private let boot = "boot-a"

    /// One transition of a run: the step from which a process kill no
    /// longer undoes it (its pwrite, or the rename that creates the file)
    /// and the step count once it is durable (its last step).
    private struct Marker {
        let name: String
        let visibleStep: Int
        let endStep: Int
    }

    private enum Seed: CaseIterable {
        /// A never-used directory.
        case empty
        /// A clean record of format 1 (rename-based, earlier versions).
        case version1
        /// A clean record in a format-2 file (written in place).
        case slots
    }

    private func runLifecycle(_ store: ShutdownRecordStore, fs: SimulatedStateFileSystem, outcome: ShutdownRecord.Outcome, markers: inout [Marker]) throws {
        let signal = SignalInfo(signal: SIGTERM, senderPID: 1, senderUID: 0, code: 0, value: 0, receivedAtNs: 1)
        func mark(_ name: String, _ body: () throws -> Void) throws {
            try body()
            let visible = fs.journal.lastIndex { $0 == "pwrite" || $0 == "rename shutdown.record.tmp shutdown.record" }!
            markers.append(Marker(name: name, visibleStep: visible, endStep: fs.steps))
        }
        try mark("running") { _ = try store.takeOver(running: sampleRecord(.running), currentBootID: boot) }
        try mark("stopping") { try store.markStopping(signal: signal, budgetMs: 1000, inFlight: 5) }
        try mark("stopped") { try store.markStopped(outcome: outcome, abandoned: outcome == .clean ? 0 : 5, drainMs: 10) }
    }

    private func expected(_ marker: String?, seed: Seed, outcome: ShutdownRecord.Outcome) -> RunClassification {
        switch marker {
        case nil: return seed == .empty ? .firstStart : .clean  // the previous run's record is still the truth
        case "running": return .crash
        case "stopping": return .killedDuringDrain
        default: return outcome == .clean ? .clean : .cutShort
        }
    }

    private func seededFS(_ seed: Seed) throws -> SimulatedStateFileSystem {
        let fs = SimulatedStateFileSystem()
        var earlier = sampleRecord(.stopped)
        earlier.outcome = .clean
        earlier.abandoned = 0
        switch seed {
        case .empty: break
        case .version1: try AtomicFile.replace(ShutdownRecordStore.recordName, with: earlier.version1Encoded(), in: fs)
        case .slots:
            let bytes = ShutdownRecordSlot(sequence: 8, record: sampleRecord(.stopping)).encoded()! + ShutdownRecordSlot(sequence: 9, record: earlier).encoded()!
            try AtomicFile.replace(ShutdownRecordStore.recordName, with: bytes, in: fs)
        }
        return fs
    }

    /// How a crash at a step ends.
    private enum Ending: CustomStringConvertible {
        case kill
        case powerLoss
        /// Power loss while the device had written back these sectors of the unsynced write.
        case tornPowerLoss(String, (Int) -> Bool)

        var description: String {
            switch self {
            case .kill: "kill"
            case .powerLoss: "power loss"
            case .tornPowerLoss(let name, _): "power loss tearing \(name)"
            }
        }
    }

    /// Partial write-backs of a slot's eight sectors (the slot is at 0 or 4096).
    private static let tears: [(String, (Int) -> Bool)] = {
        var t: [(String, (Int) -> Bool)] = []
        for k in 1..<8 {
            t.append(("the first \(k) sectors", { (s: Int) -> Bool in s % 8 < k }))
            t.append(("all but the first \(k) sectors", { (s: Int) -> Bool in s % 8 >= k }))
        }
        t.append(("the even sectors", { (s: Int) -> Bool in s % 2 == 0 }))
        t.append(("only the last sector", { (s: Int) -> Bool in s % 8 == 7 }))
        return t
    }()

    private func sweep(seed: Seed, outcome: ShutdownRecord.Outcome,
                       wrap: (SimulatedStateFileSystem) -> any StateFileSystem = { $0 }) throws -> (violations: [String], points: Int) {
        // A dry run to learn the steps.
        let dry = try seededFS(seed)
        let base = dry.steps
        var markers: [Marker] = []
        try runLifecycle(ShutdownRecordStore(fs: wrap(dry)), fs: dry, outcome: outcome, markers: &markers)
        let total = dry.steps
        var violations: [String] = []
        var points = 0
        let endings: [Ending] = [.kill, .powerLoss] + Self.tears.map { .tornPowerLoss($0.0, $0.1) }
        for k in base...total {
            for ending in endings {
                let fs = try seededFS(seed)
                fs.crashAtStep = k
                var ignored: [Marker] = []
                do {
                    try runLifecycle(ShutdownRecordStore(fs: wrap(fs)), fs: fs, outcome: outcome, markers: &ignored)
                    XCTAssertEqual(k, total, "only the step past the end runs to completion")
                } catch {}
                switch ending {
                case .kill: fs.processKilled()
                case .powerLoss: fs.powerLoss()
                case .tornPowerLoss(_, let sectors): fs.powerLoss(writtenBack: sectors)
                }
                points += 1
                // What the next start concludes.
                let found = PreviousRun.classify(ShutdownRecordStore(fs: fs).read(), currentBootID: boot).classification
                // A power loss keeps a transition once its last step (fdatasync,
                // or the directory fsync that creates the file) is done; a kill
                // once its pwrite (or the creating rename) ran. A torn write of
                // an unsynced slot is invalid, so the durable record must win —
                // unless the write-back happened to cover every changed sector,
                // in which case the new record is whole and may win.
                let durable = markers.last { $0.endStep <= k }?.name
                let visible = markers.last { $0.visibleStep < k }?.name
                let want: Set<RunClassification>
                switch ending {
                case .kill: want = [expected(visible, seed: seed, outcome: outcome)]
                case .powerLoss: want = [expected(durable, seed: seed, outcome: outcome)]
                case .tornPowerLoss: want = [expected(durable, seed: seed, outcome: outcome), expected(visible, seed: seed, outcome: outcome)]
                }
                if !want.contains(found) {
                    violations.append("\(seed) step \(k) \(ending): found \(found.rawValue), want \(want.map(\.rawValue).sorted())")
                }
            }
        }
        return (violations, points)
    }

    func testEveryCrashPointClassifiesExactly() throws {
        for seed in Seed.allCases {
            for outcome in [ShutdownRecord.Outcome.clean, .cutShort] {
                let (v, points) = try sweep(seed: seed, outcome: outcome)
                XCTAssertEqual(v, [], "\(seed) \(outcome)")
                XCTAssertGreaterThan(points, 100)
            }
        }
    }

    func testTornNewerSlotLeavesTheOlderRecord() throws {
        // SIGTERM arrives: the stopping slot is written, the power goes while
        // the device has written only part of it. The running record wins.
        for (name, sectors) in Self.tears {
            let fs = try seededFS(.slots)
            let store = ShutdownRecordStore(fs: fs)
            _ = try store.takeOver(running: sampleRecord(.running), currentBootID: boot)
            fs.crashAtStep = fs.steps + 1  // after the pwrite, before its fdatasync
            XCTAssertThrowsError(try store.markStopping(signal: SignalInfo(signal: SIGTERM, senderPID: 1, senderUID: 0, code: 0, value: 0, receivedAtNs: 1), budgetMs: 1, inFlight: 0))
            guard case .valid(let seen) = ShutdownRecordStore(fs: fs).read() else { return XCTFail(name) }
            XCTAssertEqual(seen.state, .stopping, "visible (safe from a kill) before the flush")
            fs.powerLoss(writtenBack: sectors)
            let contents = ShutdownRecordSlot.decodeFile(try XCTUnwrap(try fs.read(ShutdownRecordStore.recordName)))
            XCTAssertEqual(contents.newest?.slot.record.state, .running, name)
            // takeOver wrote `running` over slot 0 (the older of the seed's), so stopping went to slot 1.
            guard case .failure(let why) = contents.slots[1] else { return XCTFail("\(name): the torn slot decoded") }
            XCTAssertTrue(why.reason.hasPrefix("CRC32C mismatch"), "\(name): \(why)")
            XCTAssertEqual(PreviousRun.classify(ShutdownRecordStore(fs: fs).read(), currentBootID: boot).classification, .crash, name)
        }
    }

    func testNegativeControlWithoutDirectoryFsyncFails() throws {
        // Without the directory fsync at the file's creation a power loss
        // undoes the new file and everything written into it: the sweep
        // must notice, or it proves nothing.
        for seed in [Seed.empty, .version1] {
            let (v, _) = try sweep(seed: seed, outcome: .clean, wrap: { FlushSkippingFileSystem($0, skipDirectorySync: true) })
            XCTAssertFalse(v.isEmpty, "the crash sweep cannot detect a missing directory fsync (\(seed))")
        }
    }

    func testNegativeControlWithoutDataSyncFails() throws {
        // Without the fdatasync an in-place record is visible but not durable.
        let (v, _) = try sweep(seed: .slots, outcome: .clean, wrap: { FlushSkippingFileSystem($0, skipDataSync: true) })
        XCTAssertFalse(v.isEmpty, "the crash sweep cannot detect a missing fdatasync")
        XCTAssertTrue(v.contains { $0.contains("power loss") && $0.contains("found clean, want [\"crash\"]") }, v.joined(separator: "\n"))
    }

    func testAtomicReplaceNeverTearsAFile() throws {
        // AtomicFile still writes the report, the journal snapshot and the
        // record file's creation: whatever the crash point, a whole file.
        for k in 0..<12 {
            for powerLoss in [false, true] {
                let fs = try seededFS(.version1)
                fs.crashAtStep = fs.steps + k
                try? AtomicFile.replace(ShutdownRecordStore.recordName, with: sampleRecord(.stopping).version1Encoded(), in: fs)
                if powerLoss { fs.powerLoss() } else { fs.processKilled() }
                guard case .valid = ShutdownRecordStore(fs: fs).read() else {
                    return XCTFail("torn record after crash at step \(k)")
                }
            }
        }
    }
}
