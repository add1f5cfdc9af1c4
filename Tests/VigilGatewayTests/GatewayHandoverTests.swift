import Foundation
import Glibc
import VigilGateway
import VigilReactor
import VigilTestSupport
import XCTest

/// The gateway's half of a handover, in process and without systemd: one
/// gateway pauses, gives its connections away with their state, stops; a
/// second one on the same journal adopts them (docs/systemd.md, "Handover").
final class GatewayHandoverTests: XCTestCase {
    func testConnectionCarriesOnInTheNextGateway() throws {
        let first = try GatewayHarness()
        let c = try LineSocket(port: first.port)
        c.setTimeout(5)
        let other = try LineSocket(port: first.port)
        other.setTimeout(5)
        c.send(#"{"op":"send","session":"h","id":"t1","text":"one"}"# + "\n")
        XCTAssertEqual(c.nextLine(), #"{"op":"accepted","id":"t1"}"#)
        XCTAssertEqual(c.nextLine(), #"{"op":"reply","session":"h","id":"t1","text":"one"}"#)
        other.send(#"{"op":"ping"}"# + "\n")
        XCTAssertEqual(other.nextLine(), #"{"op":"pong"}"#)
        c.send(#"{"op":"send","session":"h","id":"t2","te"#)  // read now: the partial line is state
        usleep(100_000)
        first.onLoop { first.gateway.prepareHandover(server: first.server) }
        c.send(#"xt":"two"}"# + "\n" + #"{"op":"ping"}"# + "\n")  // sent while paused: stays in the kernel
        usleep(100_000)
        XCTAssertEqual(first.onLoop { first.gateway.pings }, 1, "nothing is read while paused")
        // A listener still watched (vigild's control socket) keeps serving
        // new connections during the drain, without spinning on the paused ones.
        let late = try LineSocket(unixPath: first.unixPath)
        late.setTimeout(5)
        late.send(#"{"op":"ping"}"# + "\n")
        XCTAssertEqual(late.nextLine(), #"{"op":"pong"}"#)
        let handed: [(fd: Int32, state: [UInt8])] = first.onLoop {
            // The harness closes its copies when it stops: keep our own.
            first.gateway.handOverConnections(server: first.server).map { (dup($0.fd), $0.state) }
        }
        XCTAssertEqual(handed.count, 2, "the connection accepted during the drain is not handed over")
        XCTAssertEqual(late.nextLine(), #"{"op":"goodbye","reason":"shutdown"}"#)
        first.stop(removeDirectory: false)

        let second = try GatewayHarness(dir: first.dir)
        defer { second.stop() }
        // Which handed descriptor is `c`: its peer is c's local address.
        let cIndex = handed.firstIndex { port(of: $0.fd, peer: true) == port(of: c.fd, peer: false) }!
        let refused: [String?] = second.onLoop {
            handed.enumerated().map { i, h in
                // The other connection's state is corrupted: refused and closed.
                second.gateway.adoptConnection(fd: h.fd, state: i == cIndex ? h.state : Array(h.state.dropLast()), server: second.server)
            }
        }
        XCTAssertNil(refused[cIndex])
        XCTAssertNotNil(refused[1 - cIndex])
        let cAdopted = c.nextLine()
        // The half line completed after the pause is one request; the ping
        // sent behind it is answered in order; the session's reply comes here.
        XCTAssertEqual(cAdopted, #"{"op":"accepted","id":"t2"}"#)
        XCTAssertEqual(c.nextLine(), #"{"op":"pong"}"#)
        XCTAssertEqual(c.nextLine(), #"{"op":"reply","session":"h","id":"t2","text":"two"}"#)
        XCTAssertNil(other.nextLine(), "the connection whose state did not decode was closed")
    }

    private func port(of fd: Int32, peer: Bool) -> UInt16 {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(fd, $0, &len) : getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: sa.sin_port)
    }
}
