import XCTest
@testable import RunfeedCore

final class PubSubSessionTests: XCTestCase {
    typealias A = PubSubSession.Action

    /// Opens a session without AUTH and answers its PING probe at time 0.
    private func open(_ s: inout PubSubSession) {
        s.started(nowMs: 0)
        XCTAssertEqual(s.opened(nowMs: 0).first, .send(["PING"]))
        XCTAssertEqual(s.received(.status("PONG"), nowMs: 0), [.ready])
    }

    private func sub(_ ch: String, _ n: Int64 = 1) -> RedisReply { .array([.string("subscribe"), .string(ch), .integer(n)]) }
    private func unsub(_ ch: String, _ n: Int64 = 0) -> RedisReply { .array([.string("unsubscribe"), .string(ch), .integer(n)]) }
    private func ssub(_ ch: String) -> RedisReply { .array([.string("ssubscribe"), .string(ch), .integer(1)]) }
    private func sunsub(_ ch: String) -> RedisReply { .array([.string("sunsubscribe"), .string(ch), .integer(0)]) }

    func testAuthenticatesThenSubscribesEverythingWanted() {
        var s = PubSubSession(sharded: false, auth: ["AUTH", "runfeed", "pw"])
        XCTAssertEqual(s.want("b"), [])
        XCTAssertEqual(s.want("a"), [])
        s.started(nowMs: 0)
        XCTAssertEqual(s.opened(nowMs: 10), [.send(["AUTH", "runfeed", "pw"]), .send(["SUBSCRIBE", "a"]), .send(["SUBSCRIBE", "b"])])
        XCTAssertFalse(s.isReady)
        XCTAssertEqual(s.received(.status("OK"), nowMs: 11), [.ready])
        XCTAssertTrue(s.isReady)
        XCTAssertEqual(s.received(sub("a"), nowMs: 12), [.confirmed("a", atMs: 12)])
        XCTAssertEqual(s.received(sub("b", 2), nowMs: 13), [.confirmed("b", atMs: 13)])
        XCTAssertEqual(s.confirmed, ["a": 12, "b": 13])
    }

    func testWithoutAuthAPingMustBeAnsweredFirst() {
        var s = PubSubSession(sharded: true, auth: nil)
        s.started(nowMs: 0)
        XCTAssertEqual(s.opened(nowMs: 1), [.send(["PING"])])
        XCTAssertFalse(s.isReady)
        XCTAssertEqual(s.received(.status("PONG"), nowMs: 1), [.ready])
        XCTAssertEqual(s.want("x"), [.send(["SSUBSCRIBE", "x"])])
        XCTAssertEqual(s.want("x"), [], "wanted twice, subscribed once")
        XCTAssertEqual(s.received(ssub("x"), nowMs: 2), [.confirmed("x", atMs: 2)])
        XCTAssertEqual(s.drop("x"), [.send(["SUNSUBSCRIBE", "x"])])
        XCTAssertEqual(s.received(sunsub("x"), nowMs: 3), [.lost("x")])
        XCTAssertTrue(s.confirmed.isEmpty)
    }

    func testRefusedAuthFailsTheConnection() {
        var s = PubSubSession(sharded: false, auth: ["AUTH", "pw"])
        s.started(nowMs: 0)
        _ = s.opened(nowMs: 0)
        XCTAssertEqual(s.received(.error("WRONGPASS invalid username-password pair"), nowMs: 1),
                       [.fail("AUTH refused: WRONGPASS invalid username-password pair")])
    }

    func testDroppedWhileSubscribing() {
        var s = PubSubSession(sharded: false, auth: nil)
        open(&s)
        XCTAssertEqual(s.want("a"), [.send(["SUBSCRIBE", "a"])])
        XCTAssertEqual(s.drop("a"), [.send(["UNSUBSCRIBE", "a"])], "pipelined right behind the SUBSCRIBE")
        XCTAssertEqual(s.received(sub("a"), nowMs: 1), [], "not wanted any more: never announced")
        XCTAssertEqual(s.received(unsub("a"), nowMs: 2), [])
        XCTAssertTrue(s.confirmed.isEmpty)
    }

    func testWantedAgainWhileUnsubscribing() {
        var s = PubSubSession(sharded: false, auth: nil)
        open(&s)
        _ = s.want("a")
        _ = s.received(sub("a"), nowMs: 1)
        XCTAssertEqual(s.drop("a"), [.send(["UNSUBSCRIBE", "a"])])
        XCTAssertEqual(s.want("a"), [], "the UNSUBSCRIBE reply subscribes again")
        XCTAssertEqual(s.received(unsub("a"), nowMs: 2), [.lost("a"), .send(["SUBSCRIBE", "a"])])
        XCTAssertEqual(s.received(sub("a"), nowMs: 3), [.confirmed("a", atMs: 3)])
    }

    func testMessagesOfBothKinds() {
        var s = PubSubSession(sharded: false, auth: nil)
        open(&s)
        XCTAssertEqual(s.received(.array([.string("message"), .string("c"), .string("p")]), nowMs: 1),
                       [.message(channel: "c", payload: "p")])
        XCTAssertEqual(s.received(.array([.string("smessage"), .string("c"), .string("q")]), nowMs: 1),
                       [.message(channel: "c", payload: "q")])
    }

    func testServerEndsAShardedSubscription() {
        var s = PubSubSession(sharded: true, auth: nil)
        open(&s)
        _ = s.want("realtime:env:{e1}")
        _ = s.received(ssub("realtime:env:{e1}"), nowMs: 1)
        // Slot migrated: the server sends sunsubscribe on its own.
        XCTAssertEqual(s.received(sunsub("realtime:env:{e1}"), nowMs: 2),
                       [.lost("realtime:env:{e1}"), .evicted("realtime:env:{e1}")])
        XCTAssertFalse(s.desired.contains("realtime:env:{e1}"))
    }

    func testMovedOnSubscribe() {
        var s = PubSubSession(sharded: true, auth: nil)
        open(&s)
        _ = s.want("ch")
        XCTAssertEqual(s.received(.error("MOVED 1234 10.0.0.2:6380"), nowMs: 1), [.moved("ch", slot: 1234, address: "10.0.0.2:6380")])
        XCTAssertFalse(s.desired.contains("ch"))
        XCTAssertNil(PubSubSession.parseMoved("MOVED 99999 h:1"))
        XCTAssertNil(PubSubSession.parseMoved("ASK 12 h:1"))
    }

    func testOtherSubscribeErrorsFail() {
        var s = PubSubSession(sharded: false, auth: nil)
        open(&s)
        _ = s.want("ch")
        XCTAssertEqual(s.received(.error("NOPERM this user has no permissions to access the 'ch' channel"), nowMs: 1),
                       [.fail("SUBSCRIBE ch refused: NOPERM this user has no permissions to access the 'ch' channel")])
    }

    func testPingAfterSilenceAndFailureWithoutPong() {
        var s = PubSubSession(sharded: false, auth: nil, pingIntervalMs: 5_000, pongTimeoutMs: 3_000)
        open(&s)
        XCTAssertEqual(s.tick(nowMs: 4_999), [])
        XCTAssertEqual(s.tick(nowMs: 5_000), [.send(["PING"])])
        XCTAssertEqual(s.tick(nowMs: 6_000), [], "one PING at a time")
        // Messages do not answer the PING.
        _ = s.received(.array([.string("message"), .string("c"), .string("p")]), nowMs: 7_000)
        XCTAssertEqual(s.tick(nowMs: 8_000), [.fail("no reply to PING within 3000 ms")])
    }

    func testPongInEitherFormKeepsTheConnection() {
        var s = PubSubSession(sharded: false, auth: nil, pingIntervalMs: 1_000, pongTimeoutMs: 1_000)
        open(&s)
        XCTAssertEqual(s.tick(nowMs: 1_000), [.send(["PING"])])
        XCTAssertEqual(s.received(.array([.string("pong"), .string("")]), nowMs: 1_100), [], "subscribed mode")
        XCTAssertEqual(s.tick(nowMs: 2_050), [])
        XCTAssertEqual(s.tick(nowMs: 2_100), [.send(["PING"])])
        XCTAssertEqual(s.received(.status("PONG"), nowMs: 2_200), [], "no subscription: plain PONG")
        XCTAssertEqual(s.tick(nowMs: 3_000), [])
    }

    func testUnexpectedRepliesFail() {
        var s = PubSubSession(sharded: false, auth: nil)
        open(&s)
        XCTAssertEqual(s.received(.status("PONG"), nowMs: 1), [.fail("unexpected PONG")])
        var a = PubSubSession(sharded: false, auth: ["AUTH", "pw"])
        _ = a.opened(nowMs: 0)
        XCTAssertEqual(a.received(.status("PONG"), nowMs: 1), [.fail("unexpected PONG")])
        var t = PubSubSession(sharded: false, auth: nil)
        open(&t)
        XCTAssertEqual(t.received(sub("never-asked"), nowMs: 1), [.fail("unexpected subscribe reply for never-asked")])
    }

    func testUnansweredFirstCommandFails() {
        var s = PubSubSession(sharded: false, auth: ["AUTH", "pw"], pongTimeoutMs: 1_000)
        s.started(nowMs: 0)
        _ = s.opened(nowMs: 10)
        XCTAssertEqual(s.tick(nowMs: 1_009), [])
        XCTAssertEqual(s.tick(nowMs: 1_010), [.fail("no reply to AUTH within 1000 ms of connecting")])
        var p = PubSubSession(sharded: false, auth: nil, pongTimeoutMs: 1_000)
        _ = p.opened(nowMs: 0)
        XCTAssertEqual(p.tick(nowMs: 1_000), [.fail("no reply to PING within 1000 ms of connecting")])
    }

    func testConnectTimeout() {
        var s = PubSubSession(sharded: false, auth: nil, connectTimeoutMs: 2_000)
        s.started(nowMs: 100)
        XCTAssertEqual(s.tick(nowMs: 2_099), [])
        XCTAssertEqual(s.tick(nowMs: 2_100), [.fail("not connected within 2000 ms")])
        XCTAssertEqual(s.tick(nowMs: 5_000), [], "reported once")
    }

    func testClosedLosesConfirmedAndReopenResubscribes() {
        var s = PubSubSession(sharded: false, auth: nil)
        open(&s)
        _ = s.want("a")
        _ = s.want("b")
        _ = s.received(sub("a"), nowMs: 1)
        XCTAssertEqual(s.closed(), [.lost("a")], "b was never confirmed")
        XCTAssertEqual(s.tick(nowMs: 100_000), [], "no PING while closed")
        s.started(nowMs: 2)
        XCTAssertEqual(s.opened(nowMs: 3), [.send(["PING"]), .send(["SUBSCRIBE", "a"]), .send(["SUBSCRIBE", "b"])])
        XCTAssertEqual(s.received(.array([.string("pong"), .string("")]), nowMs: 3), [.ready])
        XCTAssertEqual(s.received(sub("a"), nowMs: 4), [.confirmed("a", atMs: 4)])
    }

    func testWantAndDropWhileNotConnectedOnlyChangeTheWantedSet() {
        var s = PubSubSession(sharded: false, auth: nil)
        XCTAssertEqual(s.want("a"), [])
        XCTAssertEqual(s.want("b"), [])
        XCTAssertEqual(s.want("a"), [])
        XCTAssertEqual(s.drop("b"), [])
        XCTAssertEqual(s.drop("zz"), [])
        XCTAssertEqual(s.desired, ["a"])
        // Connecting but not yet open: still nothing sent.
        s.started(nowMs: 0)
        XCTAssertEqual(s.want("c"), [])
        XCTAssertEqual(s.drop("c"), [])
        XCTAssertEqual(s.opened(nowMs: 1), [.send(["PING"]), .send(["SUBSCRIBE", "a"])])
    }

    func testReconnectResubscribesExactlyTheWantedSet() {
        var s = PubSubSession(sharded: true, auth: nil)
        open(&s)
        XCTAssertEqual(s.want("a"), [.send(["SSUBSCRIBE", "a"])])
        XCTAssertEqual(s.want("b"), [.send(["SSUBSCRIBE", "b"])])
        XCTAssertEqual(s.want("c"), [.send(["SSUBSCRIBE", "c"])])
        XCTAssertEqual(s.received(ssub("a"), nowMs: 1), [.confirmed("a", atMs: 1)])
        XCTAssertEqual(s.received(ssub("b"), nowMs: 1), [.confirmed("b", atMs: 1)])
        // b dropped (unsubscribe in flight), c still being subscribed, d wanted: then the connection fails.
        XCTAssertEqual(s.drop("b"), [.send(["SUNSUBSCRIBE", "b"])])
        XCTAssertEqual(s.want("d"), [.send(["SSUBSCRIBE", "d"])])
        XCTAssertEqual(s.failed(), [.lost("a"), .lost("b"), .reconnect(afterMs: 100)])
        XCTAssertEqual(s.confirmed, [:])
        XCTAssertEqual(s.desired, ["a", "c", "d"])
        // While disconnected the set still changes.
        XCTAssertEqual(s.drop("c"), [])
        XCTAssertEqual(s.want("e"), [])
        s.started(nowMs: 10)
        XCTAssertEqual(s.opened(nowMs: 11), [.send(["PING"]), .send(["SSUBSCRIBE", "a"]), .send(["SSUBSCRIBE", "d"]),
                                             .send(["SSUBSCRIBE", "e"])])
        XCTAssertEqual(s.received(.status("PONG"), nowMs: 12), [.ready])
        // Late replies of the old connection never arrive here; the new ones confirm.
        XCTAssertEqual(s.received(ssub("a"), nowMs: 13), [.confirmed("a", atMs: 13)])
        XCTAssertEqual(s.received(ssub("d"), nowMs: 13), [.confirmed("d", atMs: 13)])
        XCTAssertEqual(s.received(ssub("e"), nowMs: 13), [.confirmed("e", atMs: 13)])
        XCTAssertEqual(Set(s.confirmed.keys), ["a", "d", "e"])
    }

    func testDropDuringAPendingSubscribe() {
        var s = PubSubSession(sharded: false, auth: nil)
        open(&s)
        XCTAssertEqual(s.want("a"), [.send(["SUBSCRIBE", "a"])])
        XCTAssertEqual(s.drop("a"), [.send(["UNSUBSCRIBE", "a"])])
        // Dropping again sends nothing more.
        XCTAssertEqual(s.drop("a"), [])
        // The subscribe's confirmation is not reported (nobody wants it); the unsubscribe already follows it.
        XCTAssertEqual(s.received(sub("a"), nowMs: 1), [])
        XCTAssertEqual(s.confirmed, [:])
        XCTAssertEqual(s.received(unsub("a"), nowMs: 2), [])
        XCTAssertEqual(s.confirmed, [:])
        XCTAssertEqual(s.desired, [])
        // A reconnect subscribes nothing.
        XCTAssertEqual(s.failed(), [.reconnect(afterMs: 100)])
        s.started(nowMs: 3)
        XCTAssertEqual(s.opened(nowMs: 3), [.send(["PING"])])
    }

    func testReconnectBacksOffUntilAConnectionAnswers() {
        var s = PubSubSession(sharded: false, auth: ["AUTH", "pw"])
        var delays: [Int64] = []
        for _ in 0..<8 {
            s.started(nowMs: 0)
            if case .reconnect(let d)? = s.failed().last { delays.append(d) }
        }
        XCTAssertEqual(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000])
        // Opened but not answered yet: still backing off.
        s.started(nowMs: 0)
        _ = s.opened(nowMs: 0)
        XCTAssertEqual(s.failed().last, .reconnect(afterMs: 5000))
        s.started(nowMs: 0)
        _ = s.opened(nowMs: 0)
        XCTAssertEqual(s.received(.status("OK"), nowMs: 1), [.ready])
        XCTAssertEqual(s.failed().last, .reconnect(afterMs: 100))
        // shutdown-style close: no reconnect.
        XCTAssertEqual(s.closed(), [])
    }
}
