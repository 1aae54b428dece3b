import XCTest
@testable import RunfeedCore

final class ProcessEnvironmentTests: XCTestCase {
    let env = ProcessEnvironment(["A": "", "B": "  ", "C": "x", "D": "y", "N": " 42 ", "BAD": "4x", "F": "0.15", "E": "1e3",
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

final class RedisEndpointTests: XCTestCase {
    func testDefaults() {
        let e = RedisEndpoint.pubsub(from: ProcessEnvironment([:]))
        XCTAssertEqual(e, RedisEndpoint(host: "127.0.0.1", port: 6379, username: nil, password: nil, tls: RedisTLS(), cluster: false))
        XCTAssertFalse(e.shardedPubSub)
    }

    func testPerFieldFallback() {
        let e = RedisEndpoint.pubsub(from: ProcessEnvironment([
            "REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_HOST": "native.redis",
            "PUBSUB_REDIS_HOST": "pubsub.redis",
            "PUBSUB_REDIS_PORT": "6380",
            "REDIS_PORT": "6381",
            "REDIS_PASSWORD": "secret",
            "REDIS_TLS_DISABLED": "true",
            "REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_USERNAME": "",
            "PUBSUB_REDIS_USERNAME": "user",
        ]))
        XCTAssertEqual(e.host, "native.redis")
        XCTAssertEqual(e.port, 6380)
        XCTAssertEqual(e.username, "user")
        XCTAssertEqual(e.password, "secret")
        XCTAssertNil(e.tls)
        XCTAssertFalse(e.cluster)
    }

    func testClusterAndSharded() {
        let e = RedisEndpoint.pubsub(from: ProcessEnvironment(["REDIS_CLUSTER_MODE_ENABLED": "1"]))
        XCTAssertTrue(e.cluster)
        XCTAssertTrue(e.shardedPubSub)
        let off = RedisEndpoint.pubsub(from: ProcessEnvironment(["REDIS_CLUSTER_MODE_ENABLED": "1",
                                                                 "REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_SHARDED_ENABLED": "0"]))
        XCTAssertTrue(off.cluster)
        XCTAssertFalse(off.shardedPubSub)
        // Sharded pub/sub exists only in cluster mode.
        XCTAssertFalse(RedisEndpoint.pubsub(from: ProcessEnvironment(["REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_SHARDED_ENABLED": "1"])).shardedPubSub)
    }

    func testTLSIsUpstreamsDefault() {
        XCTAssertNotNil(RedisEndpoint.pubsub(from: ProcessEnvironment([:])).tls)
        XCTAssertNotNil(RedisEndpoint.pubsub(from: ProcessEnvironment(["REDIS_TLS_DISABLED": "false"])).tls)
        XCTAssertNil(RedisEndpoint.pubsub(from: ProcessEnvironment(["REDIS_TLS_DISABLED": "true"])).tls)
        XCTAssertNotNil(RedisEndpoint.pubsub(from: ProcessEnvironment(["REDIS_TLS_DISABLED": "true",
                                                                       "PUBSUB_REDIS_TLS_DISABLED": "false"])).tls)
        let env = ProcessEnvironment(["RUNFEED_REDIS_TLS_CA_FILE": "/ca.pem", "RUNFEED_REDIS_TLS_SERVER_NAME": "r.example"])
        XCTAssertEqual(RedisTLS.from(env), RedisTLS(caFile: "/ca.pem", serverName: "r.example"))
        XCTAssertEqual(RedisEndpoint.pubsub(from: env).tls, RedisTLS(caFile: "/ca.pem", serverName: "r.example"))
    }

    func testBadPortFallsBack() {
        XCTAssertEqual(RedisEndpoint.pubsub(from: ProcessEnvironment(["REDIS_PORT": "99999"])).port, 6379)
        XCTAssertEqual(RedisEndpoint.pubsub(from: ProcessEnvironment(["REDIS_PORT": "abc"])).port, 6379)
    }
}
