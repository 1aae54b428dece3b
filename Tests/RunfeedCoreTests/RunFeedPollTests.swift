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

/// Floor-based tests: a read known only by its `updatedAt` (the digest is irrelevant to a `.floor` view).
extension RunFeedEvent {
    static func rowRead(updatedAtMs: Int64?) -> RunFeedEvent {
        guard let u = updatedAtMs else { return .rowRead(nil) }
        return .rowRead(RunReadResult(updatedAtMs: u, digest: UInt64(bitPattern: u) | 1))
    }
}

final class RunFeedPollDigestTests: XCTestCase {
    let held: UInt64 = 0xABCD_EF01
    let heldAtMs: Int64 = 5_000

    private func read(_ ms: Int64, _ digest: UInt64) -> RunFeedEvent {
        .rowRead(RunReadResult(updatedAtMs: ms, digest: digest))
    }

    private func holding(_ view: RunClientView) -> RunFeedPoll {
        var p = RunFeedPoll(view: view, needsGapRead: false)
        XCTAssertEqual(p.start(), .hold)
        return p
    }

    private func reading(_ view: RunClientView, _ reason: RunFeedPoll.ReadReason) -> RunFeedPoll {
        switch reason {
        case .gap:
            var p = RunFeedPoll(view: view, needsGapRead: true)
            XCTAssertEqual(p.start(), .readRow)
            return p
        case .notify:
            var p = holding(view)
            XCTAssertEqual(p.handle(.notified), .readRow)
            return p
        case .backstop:
            var p = holding(view)
            XCTAssertEqual(p.handle(.deadline), .readRow)
            return p
        }
    }

    func testFloorInitIsAFloorView() {
        let p = RunFeedPoll(floorMs: 77, needsGapRead: true)
        XCTAssertEqual(p.view, .floor(77))
        XCTAssertEqual(p, RunFeedPoll(view: .floor(77), needsGapRead: true))
    }

    func testSameMillisecondDifferentDigestEmits() {
        for reason in [RunFeedPoll.ReadReason.gap, .notify, .backstop] {
            var p = reading(.digest(held), reason)
            XCTAssertEqual(p.handle(read(heldAtMs, held ^ 0xFF)), .emitRow, "\(reason)")
            XCTAssertTrue(p.isDone)
        }
        var h = holding(.digest(held))
        XCTAssertEqual(h.handle(read(heldAtMs, held &+ 1)), .emitRow)
    }

    func testIdenticalDigestHolds() {
        // Same content: nothing to send, whatever updatedAt says.
        for ms in [heldAtMs, heldAtMs + 1_000, heldAtMs - 1_000] {
            for reason in [RunFeedPoll.ReadReason.gap, .notify] {
                var p = reading(.digest(held), reason)
                XCTAssertEqual(p.handle(read(ms, held)), .hold, "\(reason) \(ms)")
                XCTAssertEqual(p.state, .holding)
            }
            var b = reading(.digest(held), .backstop)
            XCTAssertEqual(b.handle(read(ms, held)), .emitUpToDate)
            var h = holding(.digest(held))
            XCTAssertEqual(h.handle(read(ms, held)), .hold)
        }
    }

    func testEarlierStampedWriteEmits() {
        // A later commit carrying an earlier app-server stamp is still a new row.
        for reason in [RunFeedPoll.ReadReason.gap, .notify, .backstop] {
            var p = reading(.digest(held), reason)
            XCTAssertEqual(p.handle(read(heldAtMs - 3, held ^ 0x1_0000)), .emitRow, "\(reason)")
        }
        // The floor rule, for contrast, does not see it.
        var f = reading(.floor(heldAtMs), .notify)
        XCTAssertEqual(f.handle(read(heldAtMs - 3, held ^ 0x1_0000)), .hold)
        var g = reading(.floor(heldAtMs), .notify)
        XCTAssertEqual(g.handle(read(heldAtMs, held ^ 0x1_0000)), .hold)
    }

    func testMissingRunNeverEmits() {
        var p = reading(.digest(held), .notify)
        XCTAssertEqual(p.handle(.rowRead(nil)), .hold)
        var b = reading(.digest(held), .backstop)
        XCTAssertEqual(b.handle(.rowRead(nil)), .emitUpToDate)
    }

    func testNoRowViewEmitsAnyRowAndHoldsOnNil() {
        for reason in [RunFeedPoll.ReadReason.gap, .notify] {
            var p = reading(.digest(nil), reason)
            XCTAssertEqual(p.handle(.rowRead(nil)), .hold, "\(reason)")
            XCTAssertEqual(p.state, .holding)
            XCTAssertEqual(p.handle(.notified), .readRow)
            XCTAssertEqual(p.handle(read(0, 1)), .emitRow, "\(reason)")
            XCTAssertTrue(p.isDone)
        }
        var b = reading(.digest(nil), .backstop)
        XCTAssertEqual(b.handle(.rowRead(nil)), .emitUpToDate)
        var h = holding(.digest(nil))
        XCTAssertEqual(h.handle(.rowRead(nil)), .hold)
        XCTAssertEqual(h.handle(read(heldAtMs, held)), .emitRow)
    }

    func testNotifyDuringReadReReadsWhenDigestUnchanged() {
        var p = reading(.digest(held), .gap)
        XCTAssertEqual(p.handle(.notified), .hold)
        XCTAssertEqual(p.handle(read(heldAtMs, held)), .readRow)
        XCTAssertEqual(p.handle(read(heldAtMs, held ^ 2)), .emitRow)
    }

    func testViewFromOffsetDrivesThePoll() {
        // An offset with a token: the digest decides; without one: the floor.
        let withToken = Offset.parse("5000_1759" + "00000000000000000042")!
        var p = RunFeedPoll(view: RunClientView(withToken), needsGapRead: true)
        XCTAssertEqual(p.view, .digest(42))
        XCTAssertEqual(p.start(), .readRow)
        XCTAssertEqual(p.handle(read(5_000, 42)), .hold)
        XCTAssertEqual(p.handle(.notified), .readRow)
        XCTAssertEqual(p.handle(read(5_000, 43)), .emitRow)

        var legacy = RunFeedPoll(view: RunClientView(Offset.parse("5000_1759")!), needsGapRead: true)
        XCTAssertEqual(legacy.view, .floor(5_000))
        XCTAssertEqual(legacy.start(), .readRow)
        XCTAssertEqual(legacy.handle(read(5_000, 43)), .hold)
        XCTAssertEqual(legacy.handle(.notified), .readRow)
        XCTAssertEqual(legacy.handle(read(5_001, 43)), .emitRow)
    }
}
