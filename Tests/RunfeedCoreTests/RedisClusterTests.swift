import XCTest
@testable import RunfeedCore

final class RedisClusterTests: XCTestCase {
    func testCRC16AndSlotsMatchRedis() {
        XCTAssertEqual(RedisSlot.crc16(Array("123456789".utf8)), 0x31C3)
        // Values from redis-cli CLUSTER KEYSLOT.
        XCTAssertEqual(RedisSlot.of("foo"), 12182)
        XCTAssertEqual(RedisSlot.of("bar"), 5061)
        XCTAssertEqual(RedisSlot.of("{user1000}.following"), RedisSlot.of("{user1000}.followers"))
        XCTAssertEqual(RedisSlot.of("{user1000}.following"), RedisSlot.of("user1000"))
        // An empty tag hashes the whole key; only the first tag counts.
        XCTAssertEqual(RedisSlot.of("foo{}{bar}"), Int(RedisSlot.crc16(Array("foo{}{bar}".utf8)) % 16384))
        XCTAssertEqual(RedisSlot.of("foo{{bar}}zap"), RedisSlot.of("{bar"))
        XCTAssertEqual(RedisSlot.of("foo{bar}{zap}"), RedisSlot.of("bar"))
    }

    func testAnEnvironmentsChannelAndKeysShareOneSlot() {
        let env = "cmdemoenv0000000000000001"
        let slot = RedisSlot.of("realtime:env:{\(env)}")
        XCTAssertEqual(slot, RedisSlot.of(env))
        XCTAssertEqual(RedisSlot.of("runfeed:view:{\(env)}:handle-1"), slot)
        XCTAssertEqual(RedisSlot.of(LimiterBatch.key(env)), slot)
    }

    func testSlotMapFromClusterSlots() {
        func node(_ h: String, _ p: Int64) -> RedisReply { .array([.string(h), .integer(p), .string("id")]) }
        let reply = RedisReply.array([
            .array([.integer(0), .integer(5460), node("127.0.0.1", 7001), node("127.0.0.1", 7004)]),
            .array([.integer(5461), .integer(10922), node("", 7002)]),
            .array([.integer(10923), .integer(16383), node("127.0.0.1", 7003)]),
        ])
        var map = RedisSlotMap(clusterSlots: reply, fallbackHost: "10.0.0.9")!
        XCTAssertTrue(map.isComplete)
        XCTAssertEqual(map.node(forSlot: 0), RedisNodeAddress(host: "127.0.0.1", port: 7001))
        XCTAssertEqual(map.node(forSlot: 5461), RedisNodeAddress(host: "10.0.0.9", port: 7002))
        XCTAssertEqual(map.node(forKey: "foo"), RedisNodeAddress(host: "127.0.0.1", port: 7003))
        XCTAssertEqual(map.masters.count, 3)
        map.assign(12182...12182, to: RedisNodeAddress(host: "127.0.0.1", port: 7002))
        XCTAssertEqual(map.node(forKey: "foo"), RedisNodeAddress(host: "127.0.0.1", port: 7002))
        XCTAssertEqual(map.masters.count, 4)
        XCTAssertNil(RedisSlotMap(clusterSlots: .array([.array([.integer(5), .integer(2), node("h", 1)])]), fallbackHost: "x"))
        XCTAssertFalse(RedisSlotMap(clusterSlots: .array([]), fallbackHost: "x")!.isComplete)
    }

    func testRedirects() {
        XCTAssertEqual(RedisRedirect(error: "MOVED 3999 127.0.0.1:6381"), .moved(slot: 3999, address: RedisNodeAddress(host: "127.0.0.1", port: 6381)))
        XCTAssertEqual(RedisRedirect(error: "ASK 3999 [::1]:6381"), .ask(slot: 3999, address: RedisNodeAddress(host: "::1", port: 6381)))
        XCTAssertNil(RedisRedirect(error: "ERR unknown command"))
        XCTAssertNil(RedisRedirect(error: "MOVED 16384 h:1"))
        XCTAssertNil(RedisRedirect(error: "MOVED 1 h:0"))
        XCTAssertEqual(RedisNodeAddress("[::1]:7000")?.description, "[::1]:7000")
    }

    func testCommandKeys() {
        XCTAssertEqual(RedisCommandKey.of(["EVALSHA", "abc", "1", "k1", "a"]), "k1")
        XCTAssertNil(RedisCommandKey.of(["EVAL", "return 1", "0"]))
        XCTAssertEqual(RedisCommandKey.of(["ZREM", "k", "m"]), "k")
        XCTAssertEqual(RedisCommandKey.of(["SPUBLISH", "realtime:env:{e}", "x"]), "realtime:env:{e}")
        XCTAssertNil(RedisCommandKey.of(["PUBLISH", "realtime:env:{e}", "x"]))
        XCTAssertNil(RedisCommandKey.of(["SCRIPT", "LOAD", "x"]))
        XCTAssertNil(RedisCommandKey.of([]))
    }
}
