import XCTest
@testable import RunfeedCore

final class EnvironmentTests: XCTestCase {
    let env = Environment(["A": "", "B": "  ", "C": "x", "D": "y", "N": " 42 ", "BAD": "4x", "F": "0.15", "E": "1e3",
                           "T1": "1", "T2": "TRUE", "T3": "yes", "F1": "0", "F2": "false", "F3": "No", "G": "maybe"])

    func testString() {
        XCTAssertEqual(env.string(["A", "B", "C", "D"]), "x")
        XCTAssertNil(env.string(["A", "B", "MISSING"]))
        XCTAssertNil(env.string([]))
    }

    func testInt() {
        XCTAssertEqual(env.int(["MISSING", "N"], default: 7), 42)
        XCTAssertEqual(env.int(["MISSING"], default: 7), 7)
        XCTAssertEqual(env.int(["BAD"], default: 7), 7)
        XCTAssertEqual(env.int(["E"], default: 7), 1000)
        XCTAssertEqual(env.int(["F"], default: 7), 7)
    }

    func testDouble() {
        XCTAssertEqual(env.double(["F"], default: 1), 0.15)
        XCTAssertEqual(env.double(["N"], default: 1), 42)
        XCTAssertEqual(env.double(["BAD"], default: 1), 1)
    }

    func testBool() {
        for name in ["T1", "T2", "T3"] { XCTAssertTrue(env.bool([name], default: false), name) }
        for name in ["F1", "F2", "F3"] { XCTAssertFalse(env.bool([name], default: true), name) }
        XCTAssertTrue(env.bool(["MISSING"], default: true))
        XCTAssertFalse(env.bool(["G"], default: false))
        XCTAssertTrue(env.bool(["A", "T1"], default: false))
    }
}

final class RedisSettingsTests: XCTestCase {
    func testDefaults() {
        let s = RedisSettings.pubsub(from: Environment([:]))
        XCTAssertEqual(s, RedisSettings(host: "127.0.0.1", port: 6379, username: nil, password: nil, tlsDisabled: nil, clusterMode: false))
        XCTAssertTrue(s.shardedEnabled)
        XCTAssertFalse(s.useShardedPubSub)
    }

    func testPerFieldFallback() {
        let s = RedisSettings.pubsub(from: Environment([
            "REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_HOST": "native.redis",
            "PUBSUB_REDIS_HOST": "pubsub.redis",
            "PUBSUB_REDIS_PORT": "6380",
            "REDIS_PORT": "6381",
            "REDIS_PASSWORD": "secret",
            "REDIS_TLS_DISABLED": "true",
            "REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_USERNAME": "",
            "PUBSUB_REDIS_USERNAME": "user",
        ]))
        XCTAssertEqual(s.host, "native.redis")
        XCTAssertEqual(s.port, 6380)
        XCTAssertEqual(s.username, "user")
        XCTAssertEqual(s.password, "secret")
        XCTAssertEqual(s.tlsDisabled, true)
        XCTAssertFalse(s.clusterMode)
    }

    func testClusterAndSharded() {
        let s = RedisSettings.pubsub(from: Environment(["REDIS_CLUSTER_MODE_ENABLED": "1"]))
        XCTAssertTrue(s.clusterMode)
        XCTAssertTrue(s.useShardedPubSub)
        let off = RedisSettings.pubsub(from: Environment(["REDIS_CLUSTER_MODE_ENABLED": "1",
                                                          "REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_SHARDED_ENABLED": "0"]))
        XCTAssertFalse(off.useShardedPubSub)
        XCTAssertEqual(RedisSettings.pubsub(from: Environment(["REDIS_TLS_DISABLED": "false"])).tlsDisabled, false)
    }

    func testTLSIsUpstreamsDefault() {
        XCTAssertTrue(RedisSettings.pubsub(from: Environment([:])).usesTLS)
        XCTAssertTrue(RedisSettings.pubsub(from: Environment(["REDIS_TLS_DISABLED": "false"])).usesTLS)
        XCTAssertFalse(RedisSettings.pubsub(from: Environment(["REDIS_TLS_DISABLED": "true"])).usesTLS)
        XCTAssertTrue(RedisSettings.pubsub(from: Environment(["REDIS_TLS_DISABLED": "true",
                                                             "PUBSUB_REDIS_TLS_DISABLED": "false"])).usesTLS)
        let tls = RedisTLS.from(Environment(["RUNFEED_REDIS_TLS_CA_FILE": "/ca.pem", "RUNFEED_REDIS_TLS_SERVER_NAME": "r.example"]))
        XCTAssertEqual(tls, RedisTLS(caFile: "/ca.pem", serverName: "r.example"))
    }

    func testBadPortFallsBack() {
        XCTAssertEqual(RedisSettings.pubsub(from: Environment(["REDIS_PORT": "99999"])).port, 6379)
        XCTAssertEqual(RedisSettings.pubsub(from: Environment(["REDIS_PORT": "abc"])).port, 6379)
    }
}
