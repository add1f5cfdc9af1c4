import Foundation
import Glibc
import VigilDurable
import VigilGateway
import VigilReactor
import XCTest

/// Framing through the full gateway (the v1 protocol handler) on a
/// reactor thread; the test talks to it with blocking sockets.
final class LineServerTests: XCTestCase {
    private var harness: GatewayHarness!
    private var port: UInt16 { harness.port }

    override func setUpWithError() throws {
        harness = try GatewayHarness()
    }

    override func tearDown() {
        harness?.stop()
    }

    /// A blocking client: send everything, half-close, read all replies.
    private func exchange(_ payload: [UInt8], halfClose: Bool = true) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(r, 0)
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sent = 0
        while sent < payload.count {
            let n = payload.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, payload.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        if halfClose { shutdown(fd, Int32(SHUT_WR)) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    func testPipelinedPings() throws {
        let reply = try exchange(Array(String(repeating: "{\"op\":\"ping\"}\n", count: 5000).utf8))
        XCTAssertEqual(reply, String(repeating: "{\"op\":\"pong\"}\n", count: 5000))
    }

    func testBadLinesGetErrorsAndTheConnectionStaysOpen() throws {
        let reply = try exchange(Array("nonsense\n{\"op\":\"fly\"}\n{}\n\r\n{\"op\":\"ping\"}\r\n".utf8))
        let lines = reply.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 4, reply)
        XCTAssertTrue(lines[0].hasPrefix(#"{"op":"error","code":"bad_request","message":"malformed JSON"#), lines[0])
        XCTAssertEqual(lines[1], #"{"op":"error","code":"bad_request","message":"unknown op 'fly'"}"#)
        XCTAssertEqual(lines[2], #"{"op":"error","code":"bad_request","message":"missing field 'op'"}"#)
        XCTAssertEqual(lines[3], #"{"op":"pong"}"#)
    }

    func testLineOverLimitGetsAnErrorAndIsClosed() throws {
        // 64 KiB exactly is allowed; one byte more is not.
        let ok = "{\"op\":\"ping\",\"pad\":\"" + String(repeating: "x", count: 65536 - 22) + "\"}"
        XCTAssertEqual(ok.utf8.count, 65536)
        XCTAssertEqual(try exchange(Array((ok + "\n").utf8)), "{\"op\":\"pong\"}\n")
        let big = Array(("{\"op\":\"ping\"}\n" + String(repeating: "y", count: 70000) + "\n{\"op\":\"ping\"}\n").utf8)
        let reply = try exchange(big, halfClose: false)  // the server must close on its own
        let lines = reply.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, #"{"op":"pong"}"#)
        XCTAssertEqual(lines.count, 2, reply)
        XCTAssertTrue(lines[1].contains("line longer than 65536 bytes"), lines[1])
    }

    func testLinesSplitAcrossManySegments() throws {
        // Byte-by-byte delivery exercises the partial-line path.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
        for b in Array("{\"op\":\"ping\"}\n{\"op\":\"ping\"}\n".utf8) {
            var c = b
            _ = Glibc.send(fd, &c, 1, 0)
            usleep(200)
        }
        shutdown(fd, Int32(SHUT_WR))
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1024)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "{\"op\":\"pong\"}\n{\"op\":\"pong\"}\n")
    }

    func testSlowReaderGetsEveryReply() throws {
        // 200k pings (2.8 MB of replies) without reading until all are sent:
        // replies pile up in the server (backpressure path) and must all arrive.
        let count = 200_000
        let reply = try exchange(Array(String(repeating: "{\"op\":\"ping\"}\n", count: count).utf8))
        XCTAssertEqual(reply.utf8.count, count * 14)
    }
}
