import XCTest
@testable import RunfeedCore

final class LimiterBatchTests: XCTestCase {
    let ops: [LimiterOp] = [
        .acquire(envId: "e1", member: "m1", nowMs: 1_000),
        .release(envId: "e1", member: "old1"),
        .acquire(envId: "e2", member: "m2", nowMs: 1_001),
        .acquire(envId: "e1", member: "m3", nowMs: 1_002),
        .release(envId: "e1", member: "old2"),
        .release(envId: "e2", member: "old3"),
    ]

    func testReleasesFirstThenOneScriptCallPerEnvironmentInArrivalOrder() {
        let b = LimiterBatch(ops, limit: 5, sha: "abc")
        XCTAssertEqual(b.commands, [
            ["ZREM", "tr:realtime:native:concurrency:{e1}", "old1", "old2"],
            ["ZREM", "tr:realtime:native:concurrency:{e2}", "old3"],
            ["EVALSHA", "abc", "1", "tr:realtime:native:concurrency:{e1}", "1002", "5", "m1", "m3"],
            ["EVALSHA", "abc", "1", "tr:realtime:native:concurrency:{e2}", "1001", "5", "m2"],
        ])
    }

    func testWithoutAShaTheScriptTextIsSent() {
        let b = LimiterBatch([.acquire(envId: "e", member: "m", nowMs: 7)], limit: 1, sha: nil)
        XCTAssertEqual(b.commands, [["EVAL", LimiterBatch.acquireScript, "1", "tr:realtime:native:concurrency:{e}", "7", "1", "m"]])
    }

    func testOutcomesMapBackToEachOperation() {
        let b = LimiterBatch(ops, limit: 5, sha: "abc")
        let replies: [RedisReply] = [.integer(2), .integer(1), .array([.integer(1), .integer(0)]), .array([.integer(1)])]
        XCTAssertEqual(b.outcomes(ops, replies: replies), [.admitted, .released, .admitted, .rejected, .released, .released])
    }

    func testErrorsAndShortRepliesFailOnlyTheirOperations() {
        let b = LimiterBatch(ops, limit: 5, sha: "abc")
        let replies: [RedisReply] = [.error("ERR x"), .integer(1), .array([.integer(1)]), .error("NOSCRIPT")]
        XCTAssertEqual(b.outcomes(ops, replies: replies), [
            .admitted, .failed("ERR x"), .failed("NOSCRIPT"), .failed("unexpected reply array([RunfeedCore.RedisReply.integer(1)])"),
            .failed("ERR x"), .released,
        ])
        XCTAssertEqual(b.outcomes(ops, replies: []), Array(repeating: .failed("no reply"), count: ops.count))
    }

    func testEmptyBatchSendsNothing() {
        XCTAssertEqual(LimiterBatch([], limit: 1, sha: nil).commands, [])
    }
}
