import XCTest
@testable import RunfeedCore

final class ReplicaGateTests: XCTestCase {
    private let ms: Int64 = 1000

    private func gate(_ edit: (inout ReplicaGateSettings) -> Void = { _ in }) -> ReplicaGate {
        var s = ReplicaGateSettings()
        edit(&s)
        return ReplicaGate(settings: s)
    }

    func testWALPositionText() {
        XCTAssertEqual(WALPosition(text: "16/B374D848")?.value, 0x16_B374_D848)
        XCTAssertEqual(WALPosition(text: "0/0")?.value, 0)
        XCTAssertEqual(WALPosition(text: "FFFFFFFF/FFFFFFFF")?.value, UInt64.max)
        XCTAssertEqual(WALPosition(0x16_B374_D848).description, "16/B374D848")
        for bad in ["", "16", "16/", "/1", "g/1", "1/2/3", "123456789/1", " 1/2"] {
            XCTAssertNil(WALPosition(text: bad), bad)
        }
        XCTAssertLessThan(WALPosition(text: "1/FFFFFFFF")!, WALPosition(text: "2/0")!)
    }

    func testLookupsGoToTheReplicaUnlessItIsDown() {
        var g = gate()
        XCTAssertEqual(g.route(freshAfterUs: nil, waitingSinceUs: 0, nowUs: 0), .replica(nil))
        g.replicaCheckFailed()
        XCTAssertEqual(g.route(freshAfterUs: nil, waitingSinceUs: 0, nowUs: 0), .primary(.down))
        g.replicaChecked(replay: WALPosition(1), inRecovery: true, doneUs: 10)
        XCTAssertEqual(g.route(freshAfterUs: nil, waitingSinceUs: 0, nowUs: 20), .replica(nil))
    }

    func testAFreshReadWaitsForTheWatermarkThenCountsAsStartedThere() {
        var g = gate()
        let x = 1_000 * ms
        // No position known yet: wait (at most maxDelay).
        XCTAssertEqual(g.route(freshAfterUs: x, waitingSinceUs: x, nowUs: x), .wait(untilUs: x + 1_000 * ms))
        g.setWanted(afterUs: x, nowUs: x)
        let a = g.actions(nowUs: x)
        XCTAssertTrue(a.samplePrimary, "a waiting read needs a primary position sampled after it")
        g.primarySampleStarted(nowUs: x + 1)
        g.primarySampled(sentUs: x + 1, dbUs: 5_000_000, lsn: WALPosition(100), nowUs: x + 2 * ms)
        // The replica is behind that position: still waiting.
        g.replicaCheckStarted(nowUs: x + 40 * ms)
        g.replicaChecked(replay: WALPosition(99), inRecovery: true, doneUs: x + 41 * ms)
        XCTAssertNil(g.watermark)
        XCTAssertEqual(g.route(freshAfterUs: x, waitingSinceUs: x, nowUs: x + 41 * ms), .wait(untilUs: x + 1_000 * ms))
        // Caught up: the read goes to the replica and counts as a read started when the sample was sent.
        g.replicaCheckStarted(nowUs: x + 51 * ms)
        g.replicaChecked(replay: WALPosition(100), inRecovery: true, doneUs: x + 52 * ms)
        let w = ReplicaWatermark(monoUs: x + 1, dbUs: 5_000_000)
        XCTAssertEqual(g.watermark, w)
        XCTAssertEqual(g.route(freshAfterUs: x, waitingSinceUs: x, nowUs: x + 52 * ms), .replica(w))
        // A read that needs a later moment than the watermark does not get it.
        if case .replica = g.route(freshAfterUs: x + 2, waitingSinceUs: x + 52 * ms, nowUs: x + 52 * ms) {
            XCTFail("a watermark older than the read's freshness must not serve it")
        }
        // The lag measured: from the sample's send to the check that saw it replayed.
        XCTAssertEqual(g.lagEstimateUs(nowUs: x + 52 * ms), 52 * ms - 1)
    }

    func testTheWatermarkIsTheLatestSampleTheReplicaReplayed() {
        var g = gate()
        g.primarySampled(sentUs: 10, dbUs: 1_010, lsn: WALPosition(5), nowUs: 11)
        g.primarySampled(sentUs: 20, dbUs: 1_020, lsn: WALPosition(9), nowUs: 21)
        g.primarySampled(sentUs: 30, dbUs: 1_030, lsn: WALPosition(12), nowUs: 31)
        g.replicaChecked(replay: WALPosition(10), inRecovery: true, doneUs: 40)
        XCTAssertEqual(g.watermark, ReplicaWatermark(monoUs: 20, dbUs: 1_020))
        // A replica check never moves the watermark back.
        g.replicaChecked(replay: WALPosition(6), inRecovery: true, doneUs: 50)
        XCTAssertEqual(g.watermark, ReplicaWatermark(monoUs: 20, dbUs: 1_020))
        g.replicaChecked(replay: WALPosition(12), inRecovery: true, doneUs: 60)
        XCTAssertEqual(g.watermark, ReplicaWatermark(monoUs: 30, dbUs: 1_030))
    }

    func testGivesUpAfterTheLongestWaitAndSkipsTheReplicaForTheFloor() {
        var g = gate()
        let x = 10_000 * ms
        XCTAssertEqual(g.route(freshAfterUs: x, waitingSinceUs: x, nowUs: x + 999 * ms), .wait(untilUs: x + 1_000 * ms))
        XCTAssertEqual(g.route(freshAfterUs: x, waitingSinceUs: x, nowUs: x + 1_000 * ms), .primary(.timedOut))
        g.waitedInVain(waitedUs: 1_000 * ms, nowUs: x + 1_000 * ms)
        // Lag estimate now above the longest wait: the next read goes to the primary at once …
        XCTAssertEqual(g.route(freshAfterUs: x + 1_100 * ms, waitingSinceUs: x + 1_100 * ms, nowUs: x + 1_100 * ms), .primary(.lagging))
        // … until the floor expires (60 s).
        let later = x + 62_000 * ms
        XCTAssertEqual(g.route(freshAfterUs: later, waitingSinceUs: later, nowUs: later), .wait(untilUs: later + 1_000 * ms))
    }

    func testAMeasuredLagAboveTheLongestWaitGoesToThePrimaryAtOnce() {
        var g = gate()
        g.primarySampled(sentUs: 0, dbUs: 0, lsn: WALPosition(1), nowUs: 1)
        g.replicaChecked(replay: WALPosition(1), inRecovery: true, doneUs: 2_000 * ms)  // 2 s lag
        let now = 2_001 * ms
        XCTAssertEqual(g.route(freshAfterUs: now, waitingSinceUs: now, nowUs: now), .primary(.lagging))
        // Older freshness the watermark covers still goes to the replica.
        XCTAssertEqual(g.route(freshAfterUs: 0, waitingSinceUs: now, nowUs: now), .replica(ReplicaWatermark(monoUs: 0, dbUs: 0)))
        // A longer wait allowed: the read waits instead.
        var h = gate { $0.maxDelayMs = 3_000 }
        h.primarySampled(sentUs: 0, dbUs: 0, lsn: WALPosition(1), nowUs: 1)
        h.replicaChecked(replay: WALPosition(1), inRecovery: true, doneUs: 2_000 * ms)
        XCTAssertEqual(h.route(freshAfterUs: now, waitingSinceUs: now, nowUs: now), .wait(untilUs: now + 3_000 * ms))
    }

    func testGateOffNeverWaits() {
        var g = gate { $0.enabled = false }
        g.primarySampled(sentUs: 100, dbUs: 7, lsn: WALPosition(1), nowUs: 101)
        g.replicaChecked(replay: WALPosition(1), inRecovery: true, doneUs: 102)
        XCTAssertEqual(g.route(freshAfterUs: 100, waitingSinceUs: 200, nowUs: 200), .replica(ReplicaWatermark(monoUs: 100, dbUs: 7)))
        XCTAssertEqual(g.route(freshAfterUs: 150, waitingSinceUs: 200, nowUs: 200), .primary(.gateOff))
    }

    func testUnknownPositionsSendFreshReadsToThePrimaryAndKeepLookups() {
        var g = gate()
        g.primarySampleFailed(unavailable: true)
        XCTAssertEqual(g.route(freshAfterUs: 5, waitingSinceUs: 5, nowUs: 5), .primary(.positionsUnknown))
        XCTAssertEqual(g.route(freshAfterUs: nil, waitingSinceUs: 5, nowUs: 5), .replica(nil))
        var h = gate()
        h.replicaChecked(replay: nil, inRecovery: true, doneUs: 5)
        XCTAssertEqual(h.route(freshAfterUs: 5, waitingSinceUs: 5, nowUs: 5), .primary(.positionsUnknown))
    }

    func testAServerNotInRecoveryIsReadAsCurrent() {
        var g = gate()
        g.replicaChecked(replay: nil, inRecovery: false, doneUs: 5)
        XCTAssertEqual(g.route(freshAfterUs: 5, waitingSinceUs: 5, nowUs: 6), .replica(nil))
    }

    func testSamplingIsPeriodicWhileActiveAndStopsWhenIdle() {
        var g = gate()
        XCTAssertFalse(g.actions(nowUs: 0).samplePrimary, "no reads yet: nothing to sample")
        g.noteRead(nowUs: 0)
        var a = g.actions(nowUs: 0)
        XCTAssertTrue(a.samplePrimary)
        g.primarySampleStarted(nowUs: 0)
        g.primarySampled(sentUs: 0, dbUs: 0, lsn: WALPosition(1), nowUs: 1 * ms)
        a = g.actions(nowUs: 1 * ms)
        XCTAssertTrue(a.sampleReplica, "the replica is checked after the primary sample")
        g.replicaCheckStarted(nowUs: 1 * ms)
        g.replicaChecked(replay: WALPosition(1), inRecovery: true, doneUs: 2 * ms)
        a = g.actions(nowUs: 2 * ms)
        XCTAssertFalse(a.samplePrimary)
        XCTAssertFalse(a.sampleReplica)
        XCTAssertEqual(a.wakeAtUs, 250 * ms)
        XCTAssertTrue(g.actions(nowUs: 250 * ms).samplePrimary)
        // 30 s without a replica read: idle.
        let idle = g.actions(nowUs: 31_000 * ms)
        XCTAssertFalse(idle.samplePrimary)
        XCTAssertFalse(idle.sampleReplica)
        XCTAssertNil(idle.wakeAtUs)
    }

    func testAWaitingReadChecksTheReplicaAtOnceThenEveryMargin() {
        var g = gate()
        g.noteRead(nowUs: 0)
        g.setWanted(afterUs: 100 * ms, nowUs: 100 * ms)
        XCTAssertTrue(g.actions(nowUs: 100 * ms).samplePrimary)
        g.primarySampleStarted(nowUs: 100 * ms)
        g.primarySampled(sentUs: 100 * ms, dbUs: 0, lsn: WALPosition(50), nowUs: 101 * ms)
        // The replica is checked at once, then every margin (10 ms) until it has replayed that position.
        var a = g.actions(nowUs: 130 * ms)
        XCTAssertTrue(a.sampleReplica)
        g.replicaCheckStarted(nowUs: 130 * ms)
        g.replicaChecked(replay: WALPosition(40), inRecovery: true, doneUs: 131 * ms)
        a = g.actions(nowUs: 131 * ms)
        XCTAssertEqual(a.wakeAtUs, 141 * ms, "then every margin (10 ms)")
        g.replicaCheckStarted(nowUs: 141 * ms)
        g.replicaChecked(replay: WALPosition(50), inRecovery: true, doneUs: 142 * ms)
        XCTAssertEqual(g.route(freshAfterUs: 100 * ms, waitingSinceUs: 100 * ms, nowUs: 142 * ms),
                       .replica(ReplicaWatermark(monoUs: 100 * ms, dbUs: 0)))
    }

    func testStaleReplicaRowsAreReadAgainOnThePrimary() {
        XCTAssertFalse(ReplicaStaleness.needsPrimaryRead(fromReplica: false, rowUpdatedAtMs: nil, recordUpdatedAtMs: 5))
        XCTAssertTrue(ReplicaStaleness.needsPrimaryRead(fromReplica: true, rowUpdatedAtMs: nil, recordUpdatedAtMs: nil))
        XCTAssertTrue(ReplicaStaleness.needsPrimaryRead(fromReplica: true, rowUpdatedAtMs: 4, recordUpdatedAtMs: 5))
        XCTAssertFalse(ReplicaStaleness.needsPrimaryRead(fromReplica: true, rowUpdatedAtMs: 5, recordUpdatedAtMs: 5))
        XCTAssertFalse(ReplicaStaleness.needsPrimaryRead(fromReplica: true, rowUpdatedAtMs: 6, recordUpdatedAtMs: 5))
        XCTAssertFalse(ReplicaStaleness.needsPrimaryRead(fromReplica: true, rowUpdatedAtMs: 6, recordUpdatedAtMs: nil))
    }
}

extension ReplicaGateTests {
    func testALagIsNotMeasuredAcrossAnIdleStretch() {
        var g = gate()
        g.primarySampleStarted(nowUs: 0)
        g.primarySampled(sentUs: 0, dbUs: 0, lsn: WALPosition(1), nowUs: 1)
        // The first check after 30 s of idleness reaches it: that says nothing about the lag.
        g.replicaCheckStarted(nowUs: 30_000 * ms)
        g.replicaChecked(replay: WALPosition(1), inRecovery: true, doneUs: 30_001 * ms)
        XCTAssertEqual(g.lagEstimateUs(nowUs: 30_001 * ms), 30 * ms, "the default lag")
        // A check that missed a sample, then one that finds it: measured.
        g.primarySampled(sentUs: 30_100 * ms, dbUs: 0, lsn: WALPosition(2), nowUs: 30_101 * ms)
        g.replicaCheckStarted(nowUs: 30_110 * ms)
        g.replicaChecked(replay: WALPosition(1), inRecovery: true, doneUs: 30_111 * ms)
        g.replicaCheckStarted(nowUs: 30_300 * ms)
        g.replicaChecked(replay: WALPosition(2), inRecovery: true, doneUs: 30_301 * ms)
        XCTAssertEqual(g.lagEstimateUs(nowUs: 30_301 * ms), 201 * ms)
    }
}

extension ReplicaGateTests {
    func testAReplicaReadIsLabelledExactlyOrNotAtAll() {
        // Replay did not move around the statement: the later of the last replayed commit and the watermark.
        XCTAssertEqual(ReplicaLabel.readAtUs(watermarkDbUs: 100, replayedBeforeUs: 90, replayedAfterUs: 90), 100)
        XCTAssertEqual(ReplicaLabel.readAtUs(watermarkDbUs: 100, replayedBeforeUs: 120, replayedAfterUs: 120), 120)
        // Replay moved during the statement, or nothing replayed yet: not placed, read again on the primary.
        XCTAssertNil(ReplicaLabel.readAtUs(watermarkDbUs: 100, replayedBeforeUs: 120, replayedAfterUs: 130))
        XCTAssertNil(ReplicaLabel.readAtUs(watermarkDbUs: 100, replayedBeforeUs: nil, replayedAfterUs: nil))
        XCTAssertNil(ReplicaLabel.readAtUs(watermarkDbUs: 100, replayedBeforeUs: nil, replayedAfterUs: 130))
    }
}

extension ReplicaGateTests {
    func testWithoutAViewRowsMustBeReadAfterThePollAsked() {
        // Basis 1000 ms, skew 250: before, any read after 1250.999 ms could be sent as it is.
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 1_000, view: nil, skewMs: 250), 1_250_999)
        // The poll asked at 5000 ms: the client may hold reads from up to then, whatever its basis says.
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 1_000, view: nil, skewMs: 250, askedAtMs: 5_000), 5_250_999)
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 9_000, view: nil, skewMs: 250, askedAtMs: 5_000), 9_250_999)
        // With a view the view decides.
        let view: ListView = ["r": RowVersion(digest: 1, readAtUs: 7)]
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 1_000, view: view, skewMs: 250, askedAtMs: 5_000), 7)
    }
}
