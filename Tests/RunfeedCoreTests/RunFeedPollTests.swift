import XCTest
@testable import RunfeedCore

final class HoldTimingTests: XCTestCase {
    func testDefaultRange() {
        XCTAssertEqual(HoldTiming.holdMs(baseMs: 20_000, jitterRatio: 0.15, unit: 0), 17_000)
        XCTAssertEqual(HoldTiming.holdMs(baseMs: 20_000, jitterRatio: 0.15, unit: 1), 23_000)
        XCTAssertEqual(HoldTiming.holdMs(baseMs: 20_000, jitterRatio: 0.15, unit: 0.5), 20_000)
        XCTAssertEqual(HoldTiming.holdMs(baseMs: 20_000, jitterRatio: 0.15, unit: 0.25), 18_500)
    }

    func testNoJitterAndClamping() {
        XCTAssertEqual(HoldTiming.holdMs(baseMs: 5_000, jitterRatio: 0, unit: 0.9), 5_000)
        XCTAssertEqual(HoldTiming.holdMs(baseMs: 20_000, jitterRatio: 0.15, unit: 7), 23_000)
        XCTAssertEqual(HoldTiming.holdMs(baseMs: 20_000, jitterRatio: 0.15, unit: -1), 17_000)
        XCTAssertEqual(HoldTiming.holdMs(baseMs: -5, jitterRatio: 0.15, unit: 0.5), 0)
        XCTAssertEqual(HoldTiming.holdMs(baseMs: 1000, jitterRatio: 5, unit: 1), 2000)
    }
}

final class RunFeedPollTests: XCTestCase {
    let floor: Int64 = 1000

    private func holding() -> RunFeedPoll {
        var p = RunFeedPoll(floorMs: floor, needsGapRead: false)
        XCTAssertEqual(p.start(), .hold)
        return p
    }

    private func reading(_ reason: RunFeedPoll.ReadReason) -> RunFeedPoll {
        switch reason {
        case .gap:
            var p = RunFeedPoll(floorMs: floor, needsGapRead: true)
            XCTAssertEqual(p.start(), .readRow)
            return p
        case .notify:
            var p = holding()
            XCTAssertEqual(p.handle(.notified), .readRow)
            return p
        case .backstop:
            var p = holding()
            XCTAssertEqual(p.handle(.deadline), .readRow)
            return p
        }
    }

    private func done() -> RunFeedPoll {
        var p = holding()
        XCTAssertEqual(p.handle(.aborted), .emitUpToDate)
        return p
    }

    func testStart() {
        var gap = RunFeedPoll(floorMs: floor, needsGapRead: true)
        XCTAssertEqual(gap.state, .idle)
        XCTAssertEqual(gap.start(), .readRow)
        XCTAssertEqual(gap.state, .reading(.gap))
        var noGap = RunFeedPoll(floorMs: floor, needsGapRead: false)
        XCTAssertEqual(noGap.start(), .hold)
        XCTAssertEqual(noGap.state, .holding)
    }

    func testStartTwiceIsHarmless() {
        var p = reading(.gap)
        XCTAssertEqual(p.start(), .hold)
        XCTAssertEqual(p.state, .reading(.gap))
        var d = done()
        XCTAssertEqual(d.start(), .finishSilently)
    }

    // MARK: holding

    func testHoldingNotified() {
        var p = holding()
        XCTAssertEqual(p.handle(.notified), .readRow)
        XCTAssertEqual(p.state, .reading(.notify))
    }

    func testHoldingDeadline() {
        var p = holding()
        XCTAssertEqual(p.handle(.deadline), .readRow)
        XCTAssertEqual(p.state, .reading(.backstop))
    }

    func testHoldingAborted() {
        var p = holding()
        XCTAssertEqual(p.handle(.aborted), .emitUpToDate)
        XCTAssertTrue(p.isDone)
    }

    func testHoldingUnsolicitedRowRead() {
        var p = holding()
        XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor)), .hold)
        XCTAssertEqual(p.state, .holding)
        XCTAssertEqual(p.handle(.rowRead(updatedAtMs: nil)), .hold)
        XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor + 1)), .emitRow)
        XCTAssertTrue(p.isDone)
    }

    // MARK: reading (all three reasons)

    func testReadAdvancedEmitsRowForEveryReason() {
        for reason in [RunFeedPoll.ReadReason.gap, .notify, .backstop] {
            var p = reading(reason)
            XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor + 1)), .emitRow, "\(reason)")
            XCTAssertEqual(p.state, .done)
        }
    }

    func testReadNotAdvancedHoldsForGapAndNotify() {
        for reason in [RunFeedPoll.ReadReason.gap, .notify] {
            for u in [Int64?.none, floor, floor - 1] {
                var p = reading(reason)
                XCTAssertEqual(p.handle(.rowRead(updatedAtMs: u)), .hold, "\(reason) \(String(describing: u))")
                XCTAssertEqual(p.state, .holding)
            }
        }
    }

    func testBackstopReadNotAdvancedEmitsUpToDate() {
        for u in [Int64?.none, floor, 0] {
            var p = reading(.backstop)
            XCTAssertEqual(p.handle(.rowRead(updatedAtMs: u)), .emitUpToDate)
            XCTAssertTrue(p.isDone)
        }
    }

    func testDeadlineDuringReadMarksBackstop() {
        for reason in [RunFeedPoll.ReadReason.gap, .notify] {
            var p = reading(reason)
            XCTAssertEqual(p.handle(.deadline), .hold)
            XCTAssertEqual(p.state, .reading(.backstop))
            XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor)), .emitUpToDate)
        }
        var b = reading(.backstop)
        XCTAssertEqual(b.handle(.deadline), .hold)
        XCTAssertEqual(b.state, .reading(.backstop))
    }

    func testDeadlineDuringReadStillEmitsAdvancedRow() {
        var p = reading(.notify)
        XCTAssertEqual(p.handle(.deadline), .hold)
        XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor + 5)), .emitRow)
    }

    func testAbortDuringRead() {
        for reason in [RunFeedPoll.ReadReason.gap, .notify, .backstop] {
            var p = reading(reason)
            XCTAssertEqual(p.handle(.aborted), .emitUpToDate)
            XCTAssertTrue(p.isDone)
            XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor + 1)), .finishSilently)
        }
    }

    func testNotifyDuringReadTriggersReRead() {
        for reason in [RunFeedPoll.ReadReason.gap, .notify] {
            var p = reading(reason)
            XCTAssertEqual(p.handle(.notified), .hold)
            XCTAssertTrue(p.notifiedDuringRead)
            XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor)), .readRow)
            XCTAssertEqual(p.state, .reading(.notify))
            XCTAssertFalse(p.notifiedDuringRead)
            XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor)), .hold)
        }
    }

    func testNotifyDuringBackstopReadIsIgnored() {
        var p = reading(.backstop)
        XCTAssertEqual(p.handle(.notified), .hold)
        XCTAssertFalse(p.notifiedDuringRead)
        XCTAssertEqual(p.handle(.rowRead(updatedAtMs: nil)), .emitUpToDate)
    }

    // MARK: done

    func testEverythingAfterDoneIsSilent() {
        let events: [RunFeedEvent] = [.notified, .deadline, .aborted, .rowRead(updatedAtMs: nil), .rowRead(updatedAtMs: floor + 1)]
        for e in events {
            var p = done()
            XCTAssertEqual(p.handle(e), .finishSilently)
            XCTAssertEqual(p.state, .done)
        }
        var emitted = reading(.gap)
        XCTAssertEqual(emitted.handle(.rowRead(updatedAtMs: floor + 1)), .emitRow)
        for e in events { XCTAssertEqual(emitted.handle(e), .finishSilently) }
    }

    func testEventsBeforeStartBehaveAsHolding() {
        var p = RunFeedPoll(floorMs: floor, needsGapRead: true)
        XCTAssertEqual(p.handle(.notified), .readRow)
        XCTAssertEqual(p.state, .reading(.notify))
    }

    func testFullLongPollScenario() {
        var p = RunFeedPoll(floorMs: floor, needsGapRead: true)
        XCTAssertEqual(p.start(), .readRow)
        XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor)), .hold)      // gap read: nothing new
        XCTAssertEqual(p.handle(.notified), .readRow)                      // a change arrives
        XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor)), .hold)      // replica still stale
        XCTAssertEqual(p.handle(.deadline), .readRow)                      // backstop
        XCTAssertEqual(p.handle(.rowRead(updatedAtMs: floor + 20)), .emitRow)
        XCTAssertEqual(p.handle(.deadline), .finishSilently)
    }
}
