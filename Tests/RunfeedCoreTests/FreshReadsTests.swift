import XCTest
@testable import RunfeedCore

final class FreshReadsTests: XCTestCase {
    typealias Reads = FreshReads<String, String>

    private func started(_ a: Reads.WantAction) -> (freshAfter: Int64, waiters: [String])? {
        if case .start(let f, let w) = a { return (f, w) }
        return nil
    }

    private func isJoined(_ a: Reads.WantAction) -> Bool {
        if case .joinedCurrent = a { return true }
        return false
    }

    private func isQueued(_ a: Reads.WantAction) -> Bool {
        if case .queuedNext = a { return true }
        return false
    }

    func testFirstCallerStartsARead() {
        var r = Reads(readsCountFromSend: true)
        let s = started(r.want("k", freshAfter: 10, nowUs: 100, waiter: "a"))
        XCTAssertEqual(s?.freshAfter, 10)
        XCTAssertEqual(s?.waiters, ["a"])
        XCTAssertEqual(r.inFlightStartedAt("k"), 100)
        XCTAssertEqual(r.inFlightCount, 1)
    }

    func testCallersCoveredByTheReadInFlightJoinIt() {
        var r = Reads(readsCountFromSend: true)
        _ = r.want("k", freshAfter: 10, nowUs: 100, waiter: "a")
        XCTAssertTrue(isJoined(r.want("k", freshAfter: 100, nowUs: 150, waiter: "b")))
        XCTAssertTrue(isJoined(r.want("k", freshAfter: 50, nowUs: 160, waiter: "c")))
        let f = r.finished("k", nowUs: 200)
        XCTAssertEqual(f.answer, ["a", "b", "c"])
        XCTAssertNil(f.start)
        XCTAssertNil(r.inFlightStartedAt("k"))
        XCTAssertEqual(r.inFlightCount, 0)
    }

    /// A caller arriving during a read that started too early for it waits for the next read, which starts
    /// when the current one finishes, fresh enough for every such caller; it is not answered by the old read.
    func testCallerNeedingFresherWaitsForTheNextRead() {
        var r = Reads(readsCountFromSend: true)
        _ = r.want("k", freshAfter: 10, nowUs: 100, waiter: "a")
        XCTAssertTrue(isQueued(r.want("k", freshAfter: 120, nowUs: 130, waiter: "b")))
        XCTAssertTrue(isQueued(r.want("k", freshAfter: 110, nowUs: 140, waiter: "c")))
        let f = r.finished("k", nowUs: 300)
        XCTAssertEqual(f.answer, ["a"])
        XCTAssertEqual(f.start?.freshAfter, 120)
        XCTAssertEqual(f.start?.waiters, ["b", "c"])
        // The next read counts from when it is sent.
        XCTAssertEqual(r.inFlightStartedAt("k"), 300)
        // Someone needing up to then joins it.
        XCTAssertTrue(isJoined(r.want("k", freshAfter: 290, nowUs: 310, waiter: "d")))
        let g = r.finished("k", nowUs: 400)
        XCTAssertEqual(g.answer, ["b", "c", "d"])
        XCTAssertNil(g.start)
        XCTAssertEqual(r.inFlightCount, 0)
    }

    /// A replica read counts as started at the freshness it asked for (the gate waits for the watermark).
    func testReplicaReadsCountFromTheirFreshness() {
        var r = Reads(readsCountFromSend: false)
        _ = r.want("k", freshAfter: 50, nowUs: 100, waiter: "a")
        XCTAssertEqual(r.inFlightStartedAt("k"), 50)
        XCTAssertTrue(isJoined(r.want("k", freshAfter: 50, nowUs: 110, waiter: "b")))
        XCTAssertTrue(isQueued(r.want("k", freshAfter: 51, nowUs: 110, waiter: "c")))
        let f = r.finished("k", nowUs: 200)
        XCTAssertEqual(f.answer, ["a", "b"])
        XCTAssertEqual(f.start?.freshAfter, 51)
        XCTAssertEqual(r.inFlightStartedAt("k"), 51)
    }

    func testKeysAreIndependent() {
        var r = Reads(readsCountFromSend: true)
        XCTAssertNotNil(started(r.want("a", freshAfter: 0, nowUs: 10, waiter: "1")))
        XCTAssertNotNil(started(r.want("b", freshAfter: 0, nowUs: 20, waiter: "2")))
        XCTAssertEqual(r.inFlightCount, 2)
        XCTAssertEqual(r.finished("b", nowUs: 30).answer, ["2"])
        XCTAssertEqual(r.inFlightStartedAt("a"), 10)
    }

    func testJoinIfFreshOnlyJoinsAReadLateEnough() {
        var r = Reads(readsCountFromSend: true)
        XCTAssertFalse(r.joinIfFresh("k", freshAfter: 0, waiter: "x"))
        XCTAssertEqual(r.inFlightCount, 0)
        _ = r.want("k", freshAfter: 0, nowUs: 100, waiter: "a")
        XCTAssertFalse(r.joinIfFresh("k", freshAfter: 101, waiter: "late"))
        XCTAssertTrue(r.joinIfFresh("k", freshAfter: 100, waiter: "b"))
        let f = r.finished("k", nowUs: 200)
        XCTAssertEqual(f.answer, ["a", "b"])
        XCTAssertNil(f.start)
    }

    func testFinishingUnknownKeyDoesNothing() {
        var r = Reads(readsCountFromSend: true)
        let f = r.finished("k", nowUs: 1)
        XCTAssertEqual(f.answer, [])
        XCTAssertNil(f.start)
        XCTAssertEqual(r.inFlightCount, 0)
    }
}
