import Glibc
import VigilDurable
import VigilReactor
import VigilTesting
import XCTest

func sampleRecord(_ state: ShutdownRecord.State = .running, boot: String = "boot-a") -> ShutdownRecord {
    var r = ShutdownRecord(running: 4242, bootID: boot, startedAtNs: 1_700_000_000_000_000_000, version: "0.1.0")
    r.state = state
    if state != .running {
        r.signal = SIGTERM; r.senderPID = 1; r.senderUID = 0
        r.stopRequestedAtNs = 1_700_000_001_000_000_000; r.budgetMs = 9000; r.inFlight = 3
    }
    if state == .stopped {
        r.outcome = .cutShort; r.abandoned = 2; r.drainMs = 9000; r.stoppedAtNs = 1_700_000_010_000_000_000
    }
    return r
}

final class ShutdownRecordTests: XCTestCase {
    func testRoundTripOfEveryState() throws {
        for state in [ShutdownRecord.State.running, .stopping, .stopped] {
            let r = sampleRecord(state)
            XCTAssertEqual(try ShutdownRecord(version1: r.version1Encoded()), r)
            let slot = try XCTUnwrap(ShutdownRecordSlot(sequence: 7, record: r).encoded())
            XCTAssertEqual(slot.count, 4096)
            XCTAssertEqual(try ShutdownRecordSlot(decoding: slot[...]), ShutdownRecordSlot(sequence: 7, record: r))
        }
    }

    func testCRC32CKnownAnswer() {
        // RFC 3720 B.4 test vector: 32 bytes of zeros.
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    }

    func testEveryKindOfDamageIsDetected() {
        let good = sampleRecord(.stopping).version1Encoded()
        var cases: [(String, [UInt8])] = [
            ("empty", []),
            ("truncated header", Array(good.prefix(10))),
            ("truncated payload", Array(good.prefix(good.count - 7))),
            ("garbage", (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 37) }),
            ("trailing bytes", good + [0]),
        ]
        var wrongMagic = good; wrongMagic[0] ^= 0x20; cases.append(("wrong magic", wrongMagic))
        var wrongVersion = good; wrongVersion[8] = 2; cases.append(("wrong version", wrongVersion))
        for (name, bytes) in cases {
            XCTAssertThrowsError(try ShutdownRecord(version1: bytes), name)
        }
        // Every single-bit flip anywhere in the file is caught.
        for bit in 0..<(good.count * 8) {
            var flipped = good
            flipped[bit / 8] ^= UInt8(1 << (bit % 8))
            XCTAssertThrowsError(try ShutdownRecord(version1: flipped), "bit \(bit) flip accepted")
        }
    }

    func testEveryKindOfSlotDamageIsDetected() throws {
        let good = try XCTUnwrap(ShutdownRecordSlot(sequence: 3, record: sampleRecord(.stopping)).encoded())
        func reason(_ bytes: [UInt8]) -> String? {
            do { _ = try ShutdownRecordSlot(decoding: bytes[...]); return nil } catch { return error.reason }
        }
        XCTAssertEqual(reason([UInt8](repeating: 0, count: 4096)), "empty")
        XCTAssertEqual(reason(Array(good.prefix(512)) + [UInt8](repeating: 0, count: 3584))?.hasPrefix("CRC32C mismatch"), true, "torn after one sector")
        XCTAssertEqual(reason(Array(good.prefix(4000))), "slot of 4000 bytes")
        // A slot whose CRC is right but whose header is not ours.
        var otherVersion = good; otherVersion[8] = 3
        otherVersion.replaceSubrange(4092..<4096, with: withUnsafeBytes(of: CRC32C.checksum(Array(otherVersion[0..<4092])).littleEndian, Array.init))
        XCTAssertEqual(reason(otherVersion), "unsupported format version 3")
        // Every single-bit flip in the header, payload and CRC; one per byte of the padding.
        let payloadEnd = 24 + sampleRecord(.stopping).payload().count
        for byte in 0..<4096 {
            let bits = byte < payloadEnd || byte >= 4092 ? Array(0..<8) : [byte % 8]
            for bit in bits {
                var flipped = good
                flipped[byte] ^= UInt8(1 << bit)
                XCTAssertNotNil(reason(flipped), "byte \(byte) bit \(bit) flip accepted")
            }
        }
        XCTAssertNil(ShutdownRecordSlot(sequence: 1, record: { var r = sampleRecord(); r.version = String(repeating: "x", count: 4096); return r }()).encoded(),
                     "a payload larger than a slot is refused, not truncated")
    }

    /// A record file of format 2 with `a` in slot 0 and `b` in slot 1 (nil: empty).
    private func slotFile(_ a: (UInt64, ShutdownRecord)?, _ b: (UInt64, ShutdownRecord)?) -> [UInt8] {
        [a, b].flatMap { s in s.map { ShutdownRecordSlot(sequence: $0.0, record: $0.1).encoded()! } ?? [UInt8](repeating: 0, count: 4096) }
    }

    private func fs(holding bytes: [UInt8]) throws -> SimulatedStateFileSystem {
        let fs = SimulatedStateFileSystem()
        try AtomicFile.replace(ShutdownRecordStore.recordName, with: bytes, in: fs)
        return fs
    }

    func testReadingPicksTheValidSlotWithTheHighestSequence() throws {
        let running = sampleRecord(.running), stopping = sampleRecord(.stopping)
        XCTAssertEqual(ShutdownRecordStore(fs: try fs(holding: slotFile((4, running), (5, stopping)))).read(), .valid(stopping))
        XCTAssertEqual(ShutdownRecordStore(fs: try fs(holding: slotFile((6, running), (5, stopping)))).read(), .valid(running), "by sequence, not by position")
        XCTAssertEqual(ShutdownRecordStore(fs: try fs(holding: slotFile((4, running), nil))).read(), .valid(running), "an empty slot")
        var torn = slotFile((4, running), (5, stopping))
        torn.replaceSubrange(4096 + 1024..<8192, with: [UInt8](repeating: 0, count: 3072))
        XCTAssertEqual(ShutdownRecordStore(fs: try fs(holding: torn)).read(), .valid(running), "a torn newer slot: the older wins")
        var bothBad = slotFile((4, running), (5, stopping))
        bothBad[100] ^= 1; bothBad[4096 + 100] ^= 1
        guard case .corrupt(let why) = ShutdownRecordStore(fs: try fs(holding: bothBad)).read() else { return XCTFail("both slots invalid must be corrupt") }
        XCTAssertTrue(why.hasPrefix("no valid slot (slot 0: CRC32C mismatch"), why)
        XCTAssertTrue(why.contains("; slot 1: CRC32C mismatch"), why)
        guard case .corrupt = ShutdownRecordStore(fs: try fs(holding: [UInt8](repeating: 0, count: 8192))).read() else { return XCTFail("two empty slots") }
    }

    func testFormat1RecordIsReadAndMigratedAtTakeOver() throws {
        var clean = sampleRecord(.stopped); clean.outcome = .clean; clean.abandoned = 0
        let fs = try fs(holding: clean.version1Encoded())
        XCTAssertEqual(ShutdownRecordStore(fs: fs).read(), .valid(clean), "format 1 is still read")
        let store = ShutdownRecordStore(fs: fs)
        let before = fs.journal.count
        let prev = try store.takeOver(running: sampleRecord(.running), currentBootID: "boot-a")
        XCTAssertEqual(prev.classification, .clean, "classified from the format-1 record")
        XCTAssertEqual(Array(fs.journal.suffix(5)), ["create shutdown.record.tmp", "write", "fsync", "rename shutdown.record.tmp shutdown.record", "fsync-dir"],
                       "the format-2 file is created once: tmp, fsync, rename, directory fsync")
        XCTAssertGreaterThan(fs.journal.count - before, 5)
        XCTAssertEqual(fs.journal.last, "fsync-dir", "the new file's name is durable")
        let file = try XCTUnwrap(try fs.read(ShutdownRecordStore.recordName))
        XCTAssertEqual(file.count, 8192, "created at its final size")
        XCTAssertEqual(file, slotFile((1, sampleRecord(.running)), nil))
        XCTAssertFalse(fs.exists("shutdown.record.tmp"))
        // From now on: in place, alternating, one pwrite and one fdatasync each.
        let signal = SignalInfo(signal: SIGTERM, senderPID: 1, senderUID: 0, code: 0, value: 0, receivedAtNs: 1)
        let mark = fs.journal.count
        try store.markStopping(signal: signal, budgetMs: 9000, inFlight: 3)
        XCTAssertEqual(Array(fs.journal[mark...]), ["pwrite", "fdatasync"])
        XCTAssertEqual(ShutdownRecordSlot.decodeFile(try fs.read(ShutdownRecordStore.recordName)!).newest?.index, 1)
        try store.markStopped(outcome: .clean, abandoned: 0, drainMs: 5)
        XCTAssertEqual(Array(fs.journal[mark...]), ["pwrite", "fdatasync", "pwrite", "fdatasync"])
        let contents = ShutdownRecordSlot.decodeFile(try fs.read(ShutdownRecordStore.recordName)!)
        XCTAssertEqual(contents.newest?.index, 0)
        XCTAssertEqual(contents.newest?.slot.sequence, 3)
        XCTAssertEqual(contents.newest?.slot.record.state, .stopped)
        guard case .success(let older) = contents.slots[1] else { return XCTFail() }
        XCTAssertEqual(older.record.state, .stopping, "the previous record stays in the other slot")
        XCTAssertEqual(fs.fileNames, ["last-shutdown.json", "shutdown.record"])
        // The next start writes `running` in place too: no new name, no directory fsync.
        let next = ShutdownRecordStore(fs: fs)
        let mark2 = fs.journal.count
        XCTAssertEqual(try next.takeOver(running: sampleRecord(.running), currentBootID: "boot-a").classification, .clean)
        XCTAssertEqual(Array(fs.journal[mark2...].filter { !$0.contains("last-shutdown") }), ["write", "fsync", "fsync-dir", "pwrite", "fdatasync"])
        XCTAssertEqual(ShutdownRecordSlot.decodeFile(try fs.read(ShutdownRecordStore.recordName)!).newest?.slot.sequence, 4)
    }

    func testFullDiskDoesNotStopTheStoppingRecord() throws {
        let fs = SimulatedStateFileSystem()
        let store = ShutdownRecordStore(fs: fs)
        _ = try store.takeOver(running: sampleRecord(.running), currentBootID: "boot-a")
        fs.failWith = .noSpace  // the disk fills up while the daemon runs
        let signal = SignalInfo(signal: SIGTERM, senderPID: 1, senderUID: 0, code: 0, value: 0, receivedAtNs: 1)
        XCTAssertNoThrow(try store.markStopping(signal: signal, budgetMs: 9000, inFlight: 3))
        XCTAssertEqual(store.read(), .valid(store.current!))
        XCTAssertEqual(store.current?.state, .stopping)
        XCTAssertNoThrow(try store.markStopped(outcome: .clean, abandoned: 0, drainMs: 1))
        fs.powerLoss()
        guard case .valid(let r) = ShutdownRecordStore(fs: fs).read() else { return XCTFail() }
        XCTAssertEqual(r.state, .stopped, "durable although the disk is full")
    }

    func testAHandoverIsAddedToTheStoppedRecordOnlyWhenMarked() throws {
        let fs = SimulatedStateFileSystem()
        let store = ShutdownRecordStore(fs: fs)
        _ = try store.takeOver(running: sampleRecord(.running), currentBootID: "boot-a")
        let signal = SignalInfo(signal: SIGTERM, senderPID: 1, senderUID: 0, code: 0, value: 0, receivedAtNs: 1)
        try store.markStopping(signal: signal, budgetMs: 9000, inFlight: 0)
        try store.markStopped(outcome: .clean, abandoned: 0, drainMs: 3)
        guard case .valid(let plain) = store.read() else { return XCTFail() }
        XCTAssertNil(plain.handedOver, "no handover claimed before the store took the connections")
        try store.markHandedOver(connections: 501)
        fs.powerLoss()
        let previous = PreviousRun.classify(ShutdownRecordStore(fs: fs).read(), currentBootID: "boot-a")
        XCTAssertEqual(previous.classification, .clean, "a handover is a clean stop, with a detail")
        XCTAssertEqual(previous.record?.handedOver, 501)
        XCTAssertTrue(previous.summary.contains("501 connection(s) handed over"), previous.summary)
        XCTAssertTrue(previous.json().contains("\"handed_over\":501"), previous.json())
        var r = sampleRecord(.stopped)
        r.handedOver = 7
        XCTAssertEqual(try ShutdownRecordSlot(decoding: ShutdownRecordSlot(sequence: 3, record: r).encoded()![...]).record, r)
    }

    /// The record file removed, or replaced by another file, while the
    /// daemon runs: the next record is written again under the name (the
    /// next start would otherwise read the stale or missing file).
    func testARemovedOrReplacedRecordFileIsWrittenAgain() throws {
        let signal = SignalInfo(signal: SIGTERM, senderPID: 1, senderUID: 0, code: 0, value: 0, receivedAtNs: 1)
        for replace in [false, true] {
            for powerGoesAfterStopping in [true, false] {
                let fs = SimulatedStateFileSystem()
                let store = ShutdownRecordStore(fs: fs)
                _ = try store.takeOver(running: sampleRecord(.running), currentBootID: "boot-a")
                if replace {
                    let h = try fs.create("restored")
                    try fs.write(h, Array("an old backup".utf8))
                    try fs.sync(h)
                    try fs.close(h)
                    try fs.rename("restored", to: ShutdownRecordStore.recordName)
                } else {
                    try fs.remove(ShutdownRecordStore.recordName)
                }
                try fs.syncDirectory()
                try store.markStopping(signal: signal, budgetMs: 9000, inFlight: 2)
                XCTAssertEqual(store.filesRecreated, 1)
                if !powerGoesAfterStopping {
                    // The new file takes the later records in place.
                    try store.markStopped(outcome: .clean, abandoned: 0, drainMs: 1)
                    XCTAssertEqual(store.filesRecreated, 1)
                }
                fs.powerLoss()
                guard case .valid(let r) = ShutdownRecordStore(fs: fs).read() else { return XCTFail("replace \(replace): \(ShutdownRecordStore(fs: fs).read())") }
                XCTAssertEqual(r.state, powerGoesAfterStopping ? .stopping : .stopped, "durable under the name after \(replace ? "a rename over it" : "its removal")")
            }
        }
    }

    /// The same on a real directory: the check compares device and inode.
    func testARemovedRecordFileIsWrittenAgainOnDisk() throws {
        let dir = NSTemporaryDirectory() + "vigil-replaced-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fs = try PosixStateFileSystem(path: dir)
        let store = ShutdownRecordStore(fs: fs)
        _ = try store.takeOver(running: sampleRecord(.running), currentBootID: "boot-a")
        try store.markStopping(signal: SignalInfo(signal: SIGTERM, senderPID: 1, senderUID: 0, code: 0, value: 0, receivedAtNs: 1), budgetMs: 1, inFlight: 0)
        XCTAssertEqual(store.filesRecreated, 0, "the same file: nothing to do")
        XCTAssertEqual(rename(dir + "/" + ShutdownRecordStore.recordName, dir + "/moved-away"), 0)
        try store.markStopped(outcome: .clean, abandoned: 0, drainMs: 1)
        XCTAssertEqual(store.filesRecreated, 1)
        guard case .valid(let r) = ShutdownRecordStore(fs: fs).read() else { return XCTFail() }
        XCTAssertEqual(r.state, .stopped)
    }

    func testAFailedWriteIsRetriedInTheSameSlot() throws {
        let fs = SimulatedStateFileSystem()
        let store = ShutdownRecordStore(fs: fs)
        _ = try store.takeOver(running: sampleRecord(.running), currentBootID: "boot-a")
        let signal = SignalInfo(signal: SIGTERM, senderPID: 1, senderUID: 0, code: 0, value: 0, receivedAtNs: 1)
        // The pwrite reaches the page cache, the flush fails: slot 1 may hold
        // anything on the disk, so slot 0 (the durable `running`) must not be
        // the next one overwritten.
        fs.crashAtStep = fs.steps + 1
        XCTAssertThrowsError(try store.markStopping(signal: signal, budgetMs: 1, inFlight: 0)) { error in
            XCTAssertEqual((error as? SystemCallError)?.call, "fdatasync(shutdown.record, slot 1)")
        }
        XCTAssertEqual(store.current?.state, .running, "current is what is durable")
        try store.markStopped(outcome: .cutShort, abandoned: 1, drainMs: 1)
        let contents = ShutdownRecordSlot.decodeFile(try fs.read(ShutdownRecordStore.recordName)!)
        guard case .success(let s0) = contents.slots[0], case .success(let s1) = contents.slots[1] else { return XCTFail(contents.reasons) }
        XCTAssertEqual(s0.record.state, .running)
        XCTAssertEqual(s0.sequence, 1)
        XCTAssertEqual(s1.record.state, .stopped)
        XCTAssertEqual(s1.sequence, 3, "the sequence grew past the failed write's")
        fs.failWith = .ioError
        XCTAssertThrowsError(try store.markStopped(outcome: .clean, abandoned: 0, drainMs: 1)) { error in
            XCTAssertEqual(error as? SystemCallError, SystemCallError("pwrite(shutdown.record, slot 0)", .ioError))
        }
    }

    func testClassificationTable() {
        let boot = "boot-a"
        func classify(_ r: ShutdownRecordStore.ReadResult) -> PreviousRun { PreviousRun.classify(r, currentBootID: boot) }
        XCTAssertEqual(classify(.absent).classification, .firstStart)
        XCTAssertEqual(classify(.valid(sampleRecord(.running))).classification, .crash)
        XCTAssertEqual(classify(.valid(sampleRecord(.stopping))).classification, .killedDuringDrain)
        XCTAssertEqual(classify(.valid(sampleRecord(.stopped))).classification, .cutShort)
        var clean = sampleRecord(.stopped); clean.outcome = .clean; clean.abandoned = 0
        XCTAssertEqual(classify(.valid(clean)).classification, .clean)
        XCTAssertEqual(classify(.corrupt("x")).classification, .corrupt)
        XCTAssertTrue(classify(.corrupt("x")).isUnclean)
        XCTAssertFalse(classify(.valid(sampleRecord(.running))).previousBoot)
        let foreign = classify(.valid(sampleRecord(.running, boot: "boot-b")))
        XCTAssertEqual(foreign.classification, .crash)
        XCTAssertTrue(foreign.previousBoot, "a record from another boot says so")
        XCTAssertTrue(classify(.valid(clean)).json().contains(#""classification":"clean","previous_boot":false"#))
    }

    func testRecordOfALivePidIsStillACrash() throws {
        // The lock guarantees no other instance uses the directory, so a
        // `running` record naming a live pid (ours here) is a recycled pid.
        let fs = SimulatedStateFileSystem()
        let store = ShutdownRecordStore(fs: fs)
        var r = sampleRecord(.running); r.pid = getpid()
        try AtomicFile.replace(ShutdownRecordStore.recordName, with: r.version1Encoded(), in: fs)
        let prev = try store.takeOver(running: sampleRecord(.running), currentBootID: "boot-a")
        XCTAssertEqual(prev.classification, .crash)
    }

    func testCorruptRecordIsKeptAsideAndReplaced() throws {
        let fs = SimulatedStateFileSystem()
        try AtomicFile.replace(ShutdownRecordStore.recordName, with: Array("not a record".utf8), in: fs)
        let store = ShutdownRecordStore(fs: fs)
        let running = sampleRecord(.running)
        let prev = try store.takeOver(running: running, currentBootID: "boot-a")
        XCTAssertEqual(prev.classification, .corrupt)
        XCTAssertEqual(prev.keptAs, "shutdown.record.corrupt-\(running.startedAtNs)")
        XCTAssertEqual(try fs.read(prev.keptAs!), Array("not a record".utf8), "the bad bytes are kept for inspection")
        XCTAssertEqual(store.read(), .valid(running))
        XCTAssertEqual(try fs.read(ShutdownRecordStore.recordName)?.count, 8192, "a new format-2 file")
        XCTAssertTrue(store.readReport()?.contains(#""classification":"corrupt""#) ?? false)
    }

    func testSlotFileWithNoValidSlotIsKeptAsideAndReplaced() throws {
        var bad = slotFile((4, sampleRecord(.running)), (5, sampleRecord(.stopping)))
        bad[10] ^= 0xFF; bad[4096 + 4095] ^= 0xFF
        let fs = try fs(holding: bad)
        let store = ShutdownRecordStore(fs: fs)
        let running = sampleRecord(.running)
        let prev = try store.takeOver(running: running, currentBootID: "boot-a")
        XCTAssertEqual(prev.classification, .corrupt)
        XCTAssertEqual(try fs.read(prev.keptAs!), bad)
        XCTAssertEqual(try fs.read(ShutdownRecordStore.recordName), slotFile((1, running), nil))
    }

    func testWriteErrorsAreReportedExactly() {
        let fs = SimulatedStateFileSystem()
        let store = ShutdownRecordStore(fs: fs)
        fs.failWith = .noSpace
        XCTAssertThrowsError(try store.takeOver(running: sampleRecord(), currentBootID: "b")) { error in
            XCTAssertEqual((error as? SystemCallError)?.errno, .noSpace)
        }
        fs.failWith = .readOnlyFileSystem
        XCTAssertThrowsError(try store.takeOver(running: sampleRecord(), currentBootID: "b")) { error in
            XCTAssertEqual((error as? SystemCallError)?.errno, .readOnlyFileSystem)
        }
    }

    /// A supervised program's own end: exit 0 with nothing open is a clean
    /// stop; anything else stays `running` (a crash for every reader, older
    /// ones too) with the status or signal as optional keys.
    func testProgramExitRecordsAndTheirClassification() throws {
        for (exit, open, verdict, state) in [((Int32(0), Int32?.none), 0, RunClassification.clean, ShutdownRecord.State.stopped),
                                             ((0, nil), 2, .crash, .running), ((4, nil), 0, .crash, .running),
                                             ((nil, SIGKILL), 0, .crash, .running)] as [((Int32?, Int32?), Int, RunClassification, ShutdownRecord.State)] {
            let fs = SimulatedStateFileSystem()
            let store = ShutdownRecordStore(fs: fs)
            _ = try store.takeOver(running: ShutdownRecord(running: 9, bootID: "b", startedAtNs: 1, version: "1"), currentBootID: "b")
            try store.markProgramExited(status: exit.0, signal: exit.1, openWork: open)
            guard case .valid(let r) = ShutdownRecordStore(fs: fs).read() else { return XCTFail("\(exit)") }
            XCTAssertEqual(r.state, state, "\(exit)")
            XCTAssertEqual(r.abandoned, open)
            XCTAssertEqual(r.programExitStatus, exit.0)
            XCTAssertEqual(r.programExitSignal, exit.1)
            let previous = PreviousRun.classify(.valid(r), currentBootID: "b")
            XCTAssertEqual(previous.classification, verdict, "\(exit), \(open) open")
            XCTAssertTrue(previous.json().contains(exit.1 != nil ? "\"program_exit_signal\":9" : "\"program_exit_status\":"), previous.json())
            // Round trip through the payload.
            XCTAssertEqual(try ShutdownRecord(payload: r.payload()[...]), r)
        }
    }
}

final class RunHistoryTests: XCTestCase {
    private func ended(_ pid: Int32, _ started: UInt64, state: ShutdownRecord.State = .stopped) -> PreviousRun {
        var r = ShutdownRecord(running: pid, bootID: "b\tx", startedAtNs: started, version: "1")
        r.state = state
        if state == .stopped { r.outcome = .clean; r.abandoned = 0; r.drainMs = 5; r.stoppedAtNs = started + 10 }
        return PreviousRun.classify(.valid(r), currentBootID: "b")
    }

    func testKeepsTheLastHundredRunsOldestFirst() throws {
        let fs = SimulatedStateFileSystem()
        XCTAssertNil(RunHistory.Entry(PreviousRun.classify(.absent, currentBootID: "b")), "a first start ended no run")
        for i in 1...130 { try RunHistory.append(RunHistory.Entry(ended(Int32(i), UInt64(i)))!, in: fs) }
        let h = RunHistory.read(fs)
        XCTAssertEqual(h.entries.count, RunHistory.limit)
        XCTAssertEqual(h.entries.first?["pid"], "31")
        XCTAssertEqual(h.entries.last?["pid"], "130")
        XCTAssertEqual(h.entries.last?["class"], "clean")
        XCTAssertEqual(h.entries.last?["drain_ms"], "5")
        XCTAssertEqual(h.entries.last?["boot_id"], "b x", "no TAB inside a value")
        XCTAssertEqual(h.damagedLines, 0)
    }

    func testTheSameRunTwiceIsReplacedNotDoubled() throws {
        let fs = SimulatedStateFileSystem()
        try RunHistory.append(RunHistory.Entry(ended(7, 70, state: .running))!, in: fs)
        try RunHistory.append(RunHistory.Entry(ended(7, 70, state: .running))!, in: fs)
        try RunHistory.append(RunHistory.Entry(ended(8, 80))!, in: fs)
        XCTAssertEqual(RunHistory.read(fs).entries.map { $0["pid"]! }, ["7", "8"])
        XCTAssertEqual(RunHistory.read(fs).entries.first?["class"], "crash")
    }

    func testDamagedAndTruncatedLinesAreSkippedAndReported() throws {
        let fs = SimulatedStateFileSystem()
        for i in 1...3 { try RunHistory.append(RunHistory.Entry(ended(Int32(i), UInt64(i)))!, in: fs) }
        var bytes = try fs.read(RunHistory.fileName)!
        let firstNewline = bytes.firstIndex(of: 10)!
        bytes[firstNewline - 3] ^= 0x01           // a flipped bit in the first line
        bytes.removeLast(5)                       // a torn last line
        try AtomicFile.replace(RunHistory.fileName, with: bytes + Array("garbage\n".utf8), in: fs)
        let h = RunHistory.read(fs)
        XCTAssertEqual(h.entries.map { $0["pid"]! }, ["2"])
        XCTAssertEqual(h.damagedLines, 2, "the flipped line, and the torn one (run into the garbage)")
        // Appending keeps what is readable.
        try RunHistory.append(RunHistory.Entry(ended(4, 4))!, in: fs)
        XCTAssertEqual(RunHistory.read(fs).entries.map { $0["pid"]! }, ["2", "4"])
        XCTAssertEqual(RunHistory.read(fs).damagedLines, 0)
    }
}
