import Glibc
import VigilDurable
import VigilReactor
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
            XCTAssertEqual(try ShutdownRecord(decoding: r.encoded()), r)
        }
    }

    func testCRC32CKnownAnswer() {
        // RFC 3720 B.4 test vector: 32 bytes of zeros.
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    }

    func testEveryKindOfDamageIsDetected() {
        let good = sampleRecord(.stopping).encoded()
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
            XCTAssertThrowsError(try ShutdownRecord(decoding: bytes), name)
        }
        // Every single-bit flip anywhere in the file is caught.
        for bit in 0..<(good.count * 8) {
            var flipped = good
            flipped[bit / 8] ^= UInt8(1 << (bit % 8))
            XCTAssertThrowsError(try ShutdownRecord(decoding: flipped), "bit \(bit) flip accepted")
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
        try AtomicFile.replace(ShutdownRecordStore.recordName, with: r.encoded(), in: fs)
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
        XCTAssertTrue(store.readReport()?.contains(#""classification":"corrupt""#) ?? false)
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
}
