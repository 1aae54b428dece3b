import XCTest
@testable import RunfeedCore

final class RouteTests: XCTestCase {
    func testMatchesTheThreeRoutes() {
        XCTAssertEqual(Route.match(path: "/realtime/v1/runs/run_123"), .run(friendlyId: "run_123"))
        XCTAssertEqual(Route.match(path: "/realtime/v1/runs/run_123/"), .run(friendlyId: "run_123"))
        XCTAssertEqual(Route.match(path: "/realtime/v1/runs"), .tagFeed)
        XCTAssertEqual(Route.match(path: "/realtime/v1/runs/"), .tagFeed)
        XCTAssertEqual(Route.match(path: "/realtime/v1/batches/batch_9"), .batch(friendlyId: "batch_9"))
    }

    func testRejectsOtherPaths() {
        XCTAssertNil(Route.match(path: "/realtime/v1/batches"))
        XCTAssertNil(Route.match(path: "/realtime/v1/runs/a/b"))
        XCTAssertNil(Route.match(path: "/realtime/v2/runs/run_1"))
        XCTAssertNil(Route.match(path: "/api/v1/runs/run_1"))
        XCTAssertNil(Route.match(path: ""))
        XCTAssertNil(Route.match(path: "/realtime/v1/runs/has space"))
        XCTAssertNil(Route.match(path: "/realtime/v1/runs/quote\"d"))
        XCTAssertNil(Route.match(path: "/realtime/v1/runs/" + String(repeating: "x", count: 129)))
        XCTAssertEqual(Route.match(path: "/realtime/v1/runs/" + String(repeating: "x", count: 128)),
                       .run(friendlyId: String(repeating: "x", count: 128)))
    }
}

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
