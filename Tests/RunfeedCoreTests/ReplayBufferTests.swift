import XCTest
@testable import RunfeedCore

final class ReplayBufferTests: XCTestCase {
    func testRemembersLatestArrivalPerRun() {
        var b = ReplayBuffer(windowMs: 2000, maxRuns: 10)
        b.record(runId: "a", atMs: 1000)
        b.record(runId: "a", atMs: 1500)
        XCTAssertTrue(b.changed(runId: "a", sinceMs: 1500))
        XCTAssertFalse(b.changed(runId: "a", sinceMs: 1501))
        XCTAssertFalse(b.changed(runId: "b", sinceMs: 0))
        XCTAssertEqual(b.count, 1)
    }

    func testForgetsArrivalsOlderThanTheWindow() {
        var b = ReplayBuffer(windowMs: 2000, maxRuns: 10)
        b.record(runId: "a", atMs: 1000)
        b.record(runId: "b", atMs: 2500)
        XCTAssertTrue(b.changed(runId: "a", sinceMs: 0))
        b.record(runId: "c", atMs: 3001)
        XCTAssertFalse(b.changed(runId: "a", sinceMs: 0))
        XCTAssertTrue(b.changed(runId: "b", sinceMs: 0))
        XCTAssertEqual(Set(b.runs(sinceMs: 0)), ["b", "c"])
    }

    func testSupersededArrivalDoesNotEvictTheNewerOne() {
        var b = ReplayBuffer(windowMs: 1000, maxRuns: 10)
        b.record(runId: "a", atMs: 0)
        b.record(runId: "a", atMs: 900)
        b.prune(nowMs: 1500)
        XCTAssertTrue(b.changed(runId: "a", sinceMs: 900))
    }

    func testCapsTheNumberOfRuns() {
        var b = ReplayBuffer(windowMs: 10_000, maxRuns: 3)
        for (i, r) in ["a", "b", "c", "d"].enumerated() { b.record(runId: r, atMs: Int64(i)) }
        XCTAssertEqual(b.count, 3)
        XCTAssertFalse(b.changed(runId: "a", sinceMs: 0))
        XCTAssertTrue(b.changed(runId: "d", sinceMs: 0))
    }

    func testGapCoveredNeedsAnEarlierSubscriptionAndARecentGap() {
        // Subscribed before the client's last response, which was 500 ms ago: covered.
        XCTAssertTrue(gapCovered(subscribedAtMs: 1000, sinceMs: 9500, nowMs: 10_000, windowMs: 2000, skewMs: 250))
        // Not subscribed at all.
        XCTAssertFalse(gapCovered(subscribedAtMs: nil, sinceMs: 9500, nowMs: 10_000, windowMs: 2000, skewMs: 250))
        // Subscribed only after the response was sent (cold worker, or a hop from another one).
        XCTAssertFalse(gapCovered(subscribedAtMs: 9400, sinceMs: 9500, nowMs: 10_000, windowMs: 2000, skewMs: 250))
        // The gap is older than the replay window.
        XCTAssertFalse(gapCovered(subscribedAtMs: 1000, sinceMs: 7000, nowMs: 10_000, windowMs: 2000, skewMs: 250))
        // A zero or crafted future offset tail never counts as covered.
        XCTAssertFalse(gapCovered(subscribedAtMs: 1000, sinceMs: 0, nowMs: 10_000, windowMs: 2000, skewMs: 250))
        XCTAssertFalse(gapCovered(subscribedAtMs: 1000, sinceMs: 60_000, nowMs: 10_000, windowMs: 2000, skewMs: 250))
    }
}

final class GapReadFreshnessTests: XCTestCase {
    func testUncoveredGapNeedsAReadStartedNow() {
        XCTAssertEqual(gapReadFreshAfter(covered: false, heard: nil, nowUs: 900_000), 900_000)
        XCTAssertEqual(gapReadFreshAfter(covered: false, heard: (4_990, 880_000), nowUs: 900_000), 900_000)
    }

    func testCoveredGapWithoutARecordNeedsNoRead() {
        XCTAssertNil(gapReadFreshAfter(covered: true, heard: nil, nowUs: 900_000))
    }

    func testCoveredGapWithARecordAcceptsAnyReadStartedAfterItArrived() {
        XCTAssertEqual(gapReadFreshAfter(covered: true, heard: (4_960, 860_500), nowUs: 900_000), 860_501)
        // Without the local arrival time only a read started now will do.
        XCTAssertEqual(gapReadFreshAfter(covered: true, heard: (4_960, nil), nowUs: 900_000), 900_000)
        // Never later than now.
        XCTAssertEqual(gapReadFreshAfter(covered: true, heard: (4_960, 950_000), nowUs: 900_000), 900_000)
    }

    func testLastArrivalOnlySinceTheGivenTime() {
        var b = ReplayBuffer(windowMs: 2_000, maxRuns: 10)
        b.record(ChangeRecord(v: 1, runId: "r1", envId: "e"), atMs: 1_000, heardUs: 50)
        b.record(ChangeRecord(v: 1, runId: "r1", envId: "e"), atMs: 1_200, heardUs: 250)
        XCTAssertEqual(b.lastArrival(runId: "r1", sinceMs: 1_100)?.atMs, 1_200)
        XCTAssertEqual(b.lastArrival(runId: "r1", sinceMs: 1_200)?.heardUs, 250)
        XCTAssertNil(b.lastArrival(runId: "r1", sinceMs: 1_201))
        XCTAssertNil(b.lastArrival(runId: "r2", sinceMs: 0))
        b.record(runId: "r3", atMs: 1_300)
        XCTAssertNil(b.lastArrival(runId: "r3", sinceMs: 0)?.heardUs)
        // Forgotten with the arrival.
        b.prune(nowMs: 4_000)
        XCTAssertNil(b.lastArrival(runId: "r1", sinceMs: 0))
    }
}

final class ReplayEvictionTests: XCTestCase {
    func testEvictionForTheRunCapIsRemembered() {
        var b = ReplayBuffer(windowMs: 10_000, maxRuns: 2)
        XCTAssertEqual(b.evictedThroughMs, Int64.min)
        b.record(runId: "a", atMs: 100)
        b.record(runId: "a", atMs: 150)   // supersedes a@100
        b.record(runId: "b", atMs: 200)
        XCTAssertEqual(b.evictedThroughMs, Int64.min)
        b.record(runId: "c", atMs: 300)   // a third run: a@150 goes (a@100 was superseded, no eviction)
        XCTAssertEqual(b.evictedThroughMs, 150)
        XCTAssertNil(b.lastArrival(runId: "a", sinceMs: 0))
        XCTAssertEqual(b.lastArrival(runId: "b", sinceMs: 0)?.atMs, 200)
        // Age-based pruning is not eviction.
        b.prune(nowMs: 20_000)
        XCTAssertEqual(b.evictedThroughMs, 150)
    }
}

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
