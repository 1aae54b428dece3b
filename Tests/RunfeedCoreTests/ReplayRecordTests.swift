import XCTest
@testable import RunfeedCore

final class ReplayRecordTests: XCTestCase {
    private func rec(_ id: String, tags: [String]? = ["t"], batch: String? = nil, u: Int64? = nil,
                     env: String = "e1") -> ChangeRecord {
        ChangeRecord(runId: id, envId: env, tags: tags, batchId: batch, updatedAtMs: u)
    }

    func testLatestRecordPerRun() {
        var b = ReplayBuffer(windowMs: 2000, maxRuns: 10)
        b.record(rec("a", tags: ["x"], u: 1), atMs: 1000)
        b.record(rec("b", tags: ["y"], u: 1), atMs: 1100)
        b.record(rec("a", tags: ["z"], u: 2), atMs: 1200)
        XCTAssertEqual(b.records(sinceMs: 0), [rec("b", tags: ["y"], u: 1), rec("a", tags: ["z"], u: 2)])
        XCTAssertEqual(b.records(sinceMs: 1150), [rec("a", tags: ["z"], u: 2)])
        XCTAssertEqual(b.records(sinceMs: 1200), [rec("a", tags: ["z"], u: 2)])
        XCTAssertEqual(b.records(sinceMs: 1201), [])
        XCTAssertEqual(b.count, 2)
        // The old API sees the same arrivals.
        XCTAssertTrue(b.changed(runId: "a", sinceMs: 1200))
        XCTAssertEqual(Set(b.runs(sinceMs: 0)), ["a", "b"])
        XCTAssertEqual(b.latestRecord(runId: "b"), rec("b", tags: ["y"], u: 1))
        XCTAssertNil(b.latestRecord(runId: "zz"))
    }

    func testWindowPruningDropsRecords() {
        var b = ReplayBuffer(windowMs: 2000, maxRuns: 10)
        b.record(rec("a"), atMs: 1000)
        b.record(rec("b"), atMs: 2500)
        b.record(rec("c"), atMs: 3001)
        XCTAssertEqual(b.records(sinceMs: 0).map(\.runId), ["b", "c"])
        XCTAssertNil(b.latestRecord(runId: "a"))
        b.prune(nowMs: 10_000)
        XCTAssertEqual(b.records(sinceMs: 0), [])
        XCTAssertEqual(b.count, 0)
    }

    func testSupersededArrivalKeepsTheNewerRecord() {
        var b = ReplayBuffer(windowMs: 1000, maxRuns: 10)
        b.record(rec("a", u: 1), atMs: 0)
        b.record(rec("a", u: 2), atMs: 900)
        b.prune(nowMs: 1500)
        XCTAssertEqual(b.records(sinceMs: 0), [rec("a", u: 2)])
    }

    func testMaxRunsEvictionDropsRecords() {
        var b = ReplayBuffer(windowMs: 10_000, maxRuns: 3)
        for (i, r) in ["a", "b", "c", "d"].enumerated() { b.record(rec(r), atMs: Int64(i)) }
        XCTAssertEqual(b.records(sinceMs: 0).map(\.runId), ["b", "c", "d"])
        XCTAssertNil(b.latestRecord(runId: "a"))
    }

    func testFoldingKeepsBatchUpdatedAtAndEnv() {
        var b = ReplayBuffer(windowMs: 10_000, maxRuns: 10)
        b.record(rec("a", tags: ["x"], batch: "b1", u: 50), atMs: 1)
        b.record(rec("a", tags: ["y"], batch: nil, u: 40, env: ""), atMs: 2)
        XCTAssertEqual(b.records(sinceMs: 0), [rec("a", tags: ["y"], batch: "b1", u: 50)])
        // A later full record is not forced partial by an earlier partial one (the latest tags are the truth).
        b.record(rec("c", tags: nil), atMs: 3)
        b.record(rec("c", tags: ["q"]), atMs: 4)
        XCTAssertEqual(b.latestRecord(runId: "c")?.tags, ["q"])
        // But a later partial record does make it partial.
        b.record(rec("c", tags: nil), atMs: 5)
        XCTAssertNil(b.latestRecord(runId: "c")?.tags)
    }

    func testRecordByIdMakesTheRecordPartial() {
        var b = ReplayBuffer(windowMs: 10_000, maxRuns: 10)
        b.record(rec("a", tags: ["x"], batch: "b1", u: 7), atMs: 1)
        b.record(runId: "a", atMs: 2)
        XCTAssertEqual(b.records(sinceMs: 2), [rec("a", tags: nil, batch: "b1", u: 7)])
        b.record(runId: "fresh", atMs: 3)
        XCTAssertEqual(b.records(sinceMs: 3), [ChangeRecord(v: 0, runId: "fresh", envId: "")])
    }

    func testOutOfOrderClockKeepsLatestContentAndMaxTime() {
        var b = ReplayBuffer(windowMs: 10_000, maxRuns: 10)
        b.record(rec("a", tags: ["old"]), atMs: 500)
        b.record(rec("a", tags: ["new"]), atMs: 400)
        XCTAssertEqual(b.records(sinceMs: 450), [rec("a", tags: ["new"])])
        XCTAssertTrue(b.changed(runId: "a", sinceMs: 500))
    }

    func testDuplicateArrivalAtTheSameMs() {
        var b = ReplayBuffer(windowMs: 10_000, maxRuns: 10)
        b.record(rec("a", u: 1), atMs: 5)
        b.record(rec("a", u: 2), atMs: 5)
        XCTAssertEqual(b.records(sinceMs: 0), [rec("a", u: 2)])
    }

    /// `records(sinceMs:)` names exactly the runs of `runs(sinceMs:)`, under random mixed use of both APIs.
    func testRecordsAgreeWithRuns() {
        var rng = TestRNG(seed: 99)
        var b = ReplayBuffer(windowMs: 300, maxRuns: 8)
        var now: Int64 = 0
        for _ in 0..<5000 {
            now += Int64.random(in: 0...40, using: &rng)
            let id = "r\(Int.random(in: 0..<12, using: &rng))"
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: b.record(runId: id, atMs: now)
            case 1: b.prune(nowMs: now)
            default: b.record(rec(id, u: now), atMs: now)
            }
            let since = now - Int64.random(in: 0...400, using: &rng)
            let records = b.records(sinceMs: since)
            XCTAssertEqual(records.count, Set(records.map(\.runId)).count)
            XCTAssertEqual(Set(records.map(\.runId)), Set(b.runs(sinceMs: since)))
            XCTAssertLessThanOrEqual(b.count, 8)
        }
    }
}
