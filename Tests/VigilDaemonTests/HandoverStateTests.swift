@testable import VigilDaemon
@testable import VigilGateway
import VigilDurable
import XCTest

/// The handover's state encodings: a state that does not decode exactly is
/// refused whole (docs/systemd.md, "Handover").
final class HandoverStateTests: XCTestCase {
    private let sample = HandoverState(daemonName: "vigild", entries: [(inode: 12345, kind: .connection, state: Array("abc".utf8)), (inode: 1 << 40, kind: .listener, state: [])])

    func testRoundTrip() throws {
        XCTAssertEqual(try HandoverState.decode(sample.encoded()), sample)
        let empty = HandoverState(daemonName: "d", entries: [])
        XCTAssertEqual(try HandoverState.decode(empty.encoded()), empty)
    }

    func testEveryFlippedBitIsRefused() {
        let bytes = sample.encoded()
        for i in 0..<bytes.count {
            for bit in 0..<8 {
                var b = bytes
                b[i] ^= UInt8(1 << bit)
                XCTAssertThrowsError(try HandoverState.decode(b), "bit \(bit) of byte \(i)")
            }
        }
    }

    func testTruncatedOrExtendedIsRefused() {
        let bytes = sample.encoded()
        for n in 0..<bytes.count { XCTAssertThrowsError(try HandoverState.decode(Array(bytes[0..<n])), "\(n) bytes") }
        XCTAssertThrowsError(try HandoverState.decode(bytes + [0]))
    }

    func testAnotherVersionWithAValidChecksumIsRefused() {
        var b = Array(sample.encoded().dropLast(4))
        b[8] = 2  // version 2, checksum recomputed: still not ours to read
        b += withUnsafeBytes(of: CRC32C.checksum(b).littleEndian, Array.init)
        XCTAssertThrowsError(try HandoverState.decode(b)) { XCTAssertTrue("\($0)".contains("version 2"), "\($0)") }
    }

    func testGatewayConnectionStateRoundTripsAndRefusesGarbage() {
        var o: [UInt8] = [SessionGateway.handoverVersion]
        SessionGateway.putBytes(&o, Array("{\"op\":\"pi".utf8))
        SessionGateway.putBytes(&o, Array("{\"op\":\"pong\"}\n".utf8))
        SessionGateway.put32(&o, 1)
        SessionGateway.putString(&o, "s1")
        SessionGateway.put32(&o, 1)
        SessionGateway.putString(&o, "s1")
        SessionGateway.putString(&o, "t1")
        let s = SessionGateway.decodeHandover(o)
        XCTAssertEqual(s?.pending, Array("{\"op\":\"pi".utf8))
        XCTAssertEqual(s?.owned, ["s1"])
        XCTAssertEqual(s?.interrupted.first?.1, "t1")
        XCTAssertNil(SessionGateway.decodeHandover(o + [0]), "trailing byte")
        XCTAssertNil(SessionGateway.decodeHandover(Array(o.dropLast())), "truncated")
        var badID = o
        badID[badID.count - 1] = UInt8(ascii: " ")  // "t " is not a valid id
        XCTAssertNil(SessionGateway.decodeHandover(badID))
        var other = o
        other[0] = 9
        XCTAssertNil(SessionGateway.decodeHandover(other), "unknown version")
    }
}
