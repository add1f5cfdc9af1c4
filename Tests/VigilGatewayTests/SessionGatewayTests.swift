import Foundation
import Glibc
import VigilDurable
import VigilGateway
import VigilReactor
import VigilTestSupport
import XCTest

/// The protocol of docs/protocol.md against a gateway with a real journal.
final class SessionGatewayTests: XCTestCase {
    private var harness: GatewayHarness!

    override func tearDown() {
        harness?.stop()
        harness = nil
    }

    func testOpenSendReplyAndOrderedAnswers() throws {
        harness = try GatewayHarness()
        let c = try LineSocket(port: harness.port)
        // A ping behind a send waits for the send's `accepted`: answers keep request order.
        c.send(#"{"op":"open","session":"s1"}"# + "\n" + #"{"op":"send","session":"s1","id":"m1","text":"héllo \"q\"","work_ms":50}"# + "\n" + #"{"op":"ping"}"# + "\n")
        let opened = c.nextObject()
        XCTAssertEqual(opened["op"] as? String, "opened")
        XCTAssertEqual(opened["status"] as? String, "new")
        XCTAssertEqual(opened["interrupted"] as? [String], [])
        XCTAssertEqual(c.nextObject() as NSDictionary, ["op": "accepted", "id": "m1"])
        XCTAssertEqual(c.nextLine(), #"{"op":"pong"}"#)
        let reply = c.nextObject()
        XCTAssertEqual(reply as NSDictionary, ["op": "reply", "session": "s1", "id": "m1", "text": "héllo \"q\""])
        // Known now: `active`, durable.
        let again = c.request(#"{"op":"open","session":"s1"}"#)
        XCTAssertEqual(again["status"] as? String, "active")
        let stats = c.request(#"{"op":"stats"}"#)
        XCTAssertEqual(stats["turns_accepted"] as? Int, 1)
        XCTAssertEqual(stats["turns_completed"] as? Int, 1)
        XCTAssertEqual(stats["turns_in_flight"] as? Int, 0)
        XCTAssertEqual(stats["sessions"] as? Int, 1)
        XCTAssertEqual(stats["draining"] as? Bool, false)
    }

    func testSendOpensTheSessionImplicitlyAndDuplicatesInFlightAreRefused() throws {
        harness = try GatewayHarness()
        let c = try LineSocket(port: harness.port)
        c.send(#"{"op":"send","session":"s2","id":"a","text":"x","work_ms":300}"# + "\n" + #"{"op":"send","session":"s2","id":"a","text":"x"}"# + "\n")
        XCTAssertEqual(c.nextObject() as NSDictionary, ["op": "accepted", "id": "a"])
        let dup = c.nextObject()
        XCTAssertEqual(dup["code"] as? String, "bad_request")
        XCTAssertTrue((dup["message"] as? String ?? "").contains("already in flight"), "\(dup)")
        XCTAssertEqual(c.nextObject()["op"] as? String, "reply")
        XCTAssertEqual(harness.onLoop { self.harness.gateway.journal.state.status(of: "s2") }, .active)
    }

    func testAReconnectingClientGetsTheReplyOfItsTurnInFlight() throws {
        harness = try GatewayHarness()
        var a: LineSocket? = try LineSocket(port: harness.port)
        XCTAssertEqual(a!.request(#"{"op":"send","session":"r","id":"1","text":"later","work_ms":400}"#)["op"] as? String, "accepted")
        a = nil  // the client goes away with its turn in flight
        let b = try LineSocket(port: harness.port)
        let opened = b.request(#"{"op":"open","session":"r"}"#)
        XCTAssertEqual(opened["status"] as? String, "active")
        XCTAssertEqual(opened["in_flight"] as? [String], ["1"])
        XCTAssertEqual(b.nextObject() as NSDictionary, ["op": "reply", "session": "r", "id": "1", "text": "later"])
    }

    func testAHalfClosedClientStillGetsItsAnswersThenTheConnectionCloses() throws {
        harness = try GatewayHarness()
        let c = try LineSocket(port: harness.port)
        // `printf … | nc -N` style: send, then shut down the writing side.
        c.send(#"{"op":"open","session":"hc"}"# + "\n" + #"{"op":"send","session":"hc","id":"1","text":"bye","work_ms":100}"# + "\n" + #"{"op":"ping"}"# + "\n")
        shutdown(c.fd, Int32(SHUT_WR))
        XCTAssertEqual(c.nextObject()["status"] as? String, "new")
        XCTAssertEqual(c.nextObject() as NSDictionary, ["op": "accepted", "id": "1"])
        XCTAssertEqual(c.nextLine(), #"{"op":"pong"}"#)
        XCTAssertEqual(c.nextObject() as NSDictionary, ["op": "reply", "session": "hc", "id": "1", "text": "bye"])
        XCTAssertNil(c.nextLine(), "closed once nothing more is due")
        // A half-close with nothing pending still closes at once.
        let d = try LineSocket(port: harness.port)
        d.send(#"{"op":"ping"}"# + "\n")
        shutdown(d.fd, Int32(SHUT_WR))
        XCTAssertEqual(d.nextLine(), #"{"op":"pong"}"#)
        XCTAssertNil(d.nextLine())
    }

    func testBadInputGetsBadRequestAndTheConnectionStaysOpen() throws {
        harness = try GatewayHarness()
        let c = try LineSocket(port: harness.port)
        let bad: [[UInt8]] = [
            Array(#"{"op":"send","session":"s","id":"1"}"#.utf8),                       // no text
            Array(#"{"op":"send","session":"s","id":"1","text":5}"#.utf8),              // wrong type
            Array(#"{"op":"send","session":"s","id":"1","text":"t","work_ms":-1}"#.utf8),
            Array(#"{"op":"send","session":"s","id":"1","text":"t","work_ms":99999999}"#.utf8),
            Array(#"{"op":"open","session":"has space"}"#.utf8),
            Array(#"{"op":"open","session":""}"#.utf8),
            Array(("{\"op\":\"open\",\"session\":\"" + String(repeating: "x", count: 129) + "\"}").utf8),
            Array(#"{"op":"open"}"#.utf8),
            Array(#"{"op":"send","session":"s","id":"1","text":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8),  // invalid UTF-8
            [0x00, 0x01, 0x7B, 0x80, 0xC3],                                                // binary garbage
            Array(#"[1,2]"#.utf8),
            Array(#"{"op":"open","session":"a","session":{"x":[1,{}]}}"#.utf8),
        ]
        for b in bad { c.sendBytes(b + [0x0A]) }
        for (i, b) in bad.enumerated() {
            let e = c.nextObject()
            XCTAssertEqual(e["op"] as? String, "error", "line \(i): \(String(decoding: b, as: UTF8.self)) → \(e)")
            XCTAssertEqual(e["code"] as? String, "bad_request", "line \(i): \(e)")
        }
        XCTAssertEqual(c.request(#"{"op":"ping"}"#)["op"] as? String, "pong")
        XCTAssertEqual(harness.onLoop { self.harness.gateway.journal.state.sessions.count }, 0, "nothing was recorded")
    }

    func testDrainingRefusesNewTurnsAndWaitsForThoseInFlight() throws {
        harness = try GatewayHarness()
        let c = try LineSocket(port: harness.port)
        XCTAssertEqual(c.request(#"{"op":"send","session":"d","id":"1","text":"slow","work_ms":300}"#)["op"] as? String, "accepted")
        var drained = false
        let h = harness!
        h.onLoop {
            h.reactor.spawn {
                await h.gateway.drain(deadlineNs: monotonicNanoseconds() + 5_000_000_000, terminateAhead: .seconds(1))
                drained = true
            }
        }
        usleep(50_000)
        let refused = c.request(#"{"op":"send","session":"d","id":"2","text":"late"}"#)
        XCTAssertEqual(refused["code"] as? String, "draining")
        XCTAssertEqual(refused["id"] as? String, "2")
        XCTAssertEqual(c.nextObject() as NSDictionary, ["op": "reply", "session": "d", "id": "1", "text": "slow"], "the turn in flight still finishes")
        XCTAssertEqual(c.nextObject() as NSDictionary, ["op": "goodbye", "reason": "shutdown"])
        XCTAssertNil(c.nextLine(), "closed after goodbye")
        let deadline = Date().addingTimeInterval(5)
        while !h.onLoop({ drained }) && Date() < deadline { usleep(10_000) }
        XCTAssertTrue(h.onLoop { drained }, "the drain returns once the journal is closed")
        XCTAssertEqual(h.onLoop { h.gateway.journal.state.sessions["d"]?.openTurns }, [], "its completion is durable")
    }

    func testControlRequestsOnlyOnTheUnixSocket() throws {
        harness = try GatewayHarness()
        let tcp = try LineSocket(port: harness.port)
        XCTAssertEqual(tcp.request(#"{"op":"status"}"#)["code"] as? String, "forbidden")
        XCTAssertEqual(tcp.request(#"{"op":"sessions"}"#)["code"] as? String, "forbidden")
        let unix = try LineSocket(unixPath: harness.unixPath)
        _ = unix.request(#"{"op":"open","session":"u1"}"#)
        let status = unix.request(#"{"op":"status"}"#)
        XCTAssertEqual(status["op"] as? String, "status")
        XCTAssertEqual(status["pid"] as? Int, Int(getpid()))
        XCTAssertEqual(status["sessions"] as? Int, 1)
        XCTAssertEqual(status["draining"] as? Bool, false)
        let sessions = unix.request(#"{"op":"sessions"}"#)
        let list = sessions["sessions"] as? [[String: Any]] ?? []
        XCTAssertEqual(list.map { $0["session"] as? String }, ["u1"])
        XCTAssertEqual(list.first?["status"] as? String, "active")
    }

    func testConnectionLimitAndIdleTimeout() throws {
        var o = SessionGateway.Options()
        o.maxConnections = 2
        o.idleTimeout = .milliseconds(300)
        harness = try GatewayHarness(options: o)
        let a = try LineSocket(port: harness.port), b = try LineSocket(port: harness.port)
        XCTAssertEqual(a.request(#"{"op":"ping"}"#)["op"] as? String, "pong")
        XCTAssertEqual(b.request(#"{"op":"ping"}"#)["op"] as? String, "pong")
        let third = try LineSocket(port: harness.port)
        XCTAssertEqual(third.nextObject()["code"] as? String, "too_many_connections")
        XCTAssertNil(third.nextLine(), "refused connections are closed")
        // A connection with a turn in flight is not idle, however quiet.
        XCTAssertEqual(b.request(#"{"op":"send","session":"i","id":"1","text":"t","work_ms":800}"#)["op"] as? String, "accepted")
        let start = Date()
        XCTAssertEqual(a.nextObject() as NSDictionary, ["op": "goodbye", "reason": "idle"])
        XCTAssertNil(a.nextLine())
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 0.1)
        XCTAssertEqual(b.nextObject()["op"] as? String, "reply", "the busy connection got its reply")
    }

    func testReopenAfterRestartReportsInterruptedTurnsUntilTheClientCarriesOn() throws {
        harness = try GatewayHarness()
        let dir = harness.dir
        let c = try LineSocket(port: harness.port)
        XCTAssertEqual(c.request(#"{"op":"send","session":"hurt","id":"t1","text":"x","work_ms":60000}"#)["op"] as? String, "accepted")
        XCTAssertEqual(c.request(#"{"op":"send","session":"idle","id":"t2","text":"y"}"#)["op"] as? String, "accepted")
        XCTAssertEqual(c.nextObject()["id"] as? String, "t2")
        harness.stop(removeDirectory: false)  // the run ends with t1 open
        harness = try GatewayHarness(dir: dir)
        let d = try LineSocket(port: harness.port)
        let hurt = d.request(#"{"op":"open","session":"hurt"}"#)
        XCTAssertEqual(hurt["status"] as? String, "interrupted")
        XCTAssertEqual(hurt["interrupted"] as? [String], ["t1"])
        XCTAssertEqual(d.request(#"{"op":"open","session":"idle"}"#)["status"] as? String, "active")
        XCTAssertEqual(d.request(#"{"op":"open","session":"hurt"}"#)["status"] as? String, "interrupted", "opening again does not clear it")
        // The next turn clears it, durably.
        XCTAssertEqual(d.request(#"{"op":"send","session":"hurt","id":"t1","text":"again"}"#)["op"] as? String, "accepted")
        XCTAssertEqual(d.nextObject()["op"] as? String, "reply")
        XCTAssertEqual(d.request(#"{"op":"open","session":"hurt"}"#)["status"] as? String, "active")
        harness.stop(removeDirectory: false)
        harness = try GatewayHarness(dir: dir)
        let e = try LineSocket(port: harness.port)
        XCTAssertEqual(e.request(#"{"op":"open","session":"hurt"}"#)["status"] as? String, "active")
    }

    func testAClientThatNeverReadsIsDisconnectedAndOthersAreServed() throws {
        harness = try GatewayHarness()
        let h = harness!
        h.onLoop { h.server.maxUnsentBytes = 256 << 10 }
        let slow = try LineSocket(port: harness.port)
        var rcv: Int32 = 4096
        setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &rcv, 4)
        // Big replies to turns sent earlier pile up unread (past what the
        // kernel's socket buffers hold).
        let text = String(repeating: "z", count: 60_000)
        for i in 0..<300 { slow.send(#"{"op":"send","session":"big","id":"\#(i)","text":"\#(text)"}"# + "\n") }
        let other = try LineSocket(port: harness.port)
        let deadline = Date().addingTimeInterval(10)
        while h.onLoop({ h.server.slowClientsDropped }) == 0 && Date() < deadline { usleep(20_000) }
        XCTAssertEqual(h.onLoop { h.server.slowClientsDropped }, 1)
        XCTAssertEqual(other.request(#"{"op":"ping"}"#)["op"] as? String, "pong")
        // Every turn it had acknowledged still completes, durably.
        while h.onLoop({ h.gateway.turnsInFlight }) > 0 && Date() < deadline { usleep(20_000) }
        XCTAssertEqual(h.onLoop { h.gateway.journal.state.sessions["big"]?.openTurns.count }, 0)
        let totals = h.onLoop { h.gateway.totals }
        XCTAssertGreaterThan(totals.turnsAccepted, 0)
        XCTAssertEqual(totals.turnsCompleted, totals.turnsAccepted)
    }
}
