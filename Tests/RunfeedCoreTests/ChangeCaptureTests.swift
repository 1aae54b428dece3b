import XCTest
@testable import RunfeedCore

final class ChangeCaptureTests: XCTestCase {
    private var walEnd: UInt64 = 1000

    private func feed(_ c: inout ChangeCapture, _ m: PGOutputMessage) throws {
        walEnd += 10
        try c.receive(frame: PGOutputEncoder.xlogData(start: LSN(walEnd - 10), end: LSN(walEnd), m))
    }

    private func row(_ id: String, env: String = "env_1", tags: String? = "{user:42}", batch: String? = nil,
                     updatedAt: String = "2026-01-02 03:04:05.678") -> [TupleValue] {
        [.text(id), .text(updatedAt), tags.map(TupleValue.text) ?? .null, .text(env), batch.map(TupleValue.text) ?? .null]
    }

    private func transaction(_ c: inout ChangeCapture, commit: UInt64, end: UInt64, time: Int64 = 5_000_000,
                             _ changes: [PGOutputMessage]) throws {
        try feed(&c, .begin(finalLSN: LSN(commit), commitTimeUs: time, xid: 1))
        for m in changes { try feed(&c, m) }
        try feed(&c, .commit(flags: 0, commitLSN: LSN(commit), endLSN: LSN(end), commitTimeUs: time))
    }

    func testInsertUpdateDeleteBecomeRecordsAtCommit() throws {
        var c = ChangeCapture()
        try feed(&c, .relation(PGOutputTests.taskRun))
        try feed(&c, .begin(finalLSN: LSN(0x2000), commitTimeUs: 1, xid: 1))
        try feed(&c, .insert(relationId: 16390, new: row("run_1", tags: "{user:42,\"a b\"}", batch: "batch_1")))
        try feed(&c, .update(relationId: 16390, old: nil, new: row("run_2", env: "env_2", tags: nil)))
        XCTAssertEqual(c.pending(max: 10), [], "nothing before the commit")
        try feed(&c, .commit(flags: 0, commitLSN: LSN(0x2000), endLSN: LSN(0x2030), commitTimeUs: 1))
        let ms = PGText.timestampToEpochMs("2026-01-02 03:04:05.678")
        XCTAssertEqual(c.pending(max: 10), [
            ChangeRecord(v: 1, runId: "run_1", envId: "env_1", tags: ["user:42", "a b"], batchId: "batch_1", updatedAtMs: ms, lsn: "0/2000"),
            ChangeRecord(v: 1, runId: "run_2", envId: "env_2", tags: [], batchId: nil, updatedAtMs: ms, lsn: "0/2000"),
        ])
        XCTAssertEqual(c.counters.changes, 2)
    }

    func testConfirmedOnlyAfterPublish() throws {
        var c = ChangeCapture(startAt: LSN(100))
        try feed(&c, .relation(PGOutputTests.taskRun))
        try transaction(&c, commit: 0x2000, end: 0x2030, [.insert(relationId: 16390, new: row("a")), .insert(relationId: 16390, new: row("b"))])
        try transaction(&c, commit: 0x3000, end: 0x3030, [.insert(relationId: 16390, new: row("c"))])
        XCTAssertEqual(c.confirmed, LSN(100))
        XCTAssertEqual(c.backlog, 3)
        XCTAssertEqual(c.pending(max: 2).map(\.runId), ["a", "b"])
        XCTAssertEqual(c.pending(max: 2).map(\.runId), ["a", "b"], "the same until acknowledged (a failed publish retries)")
        c.published(1)
        XCTAssertEqual(c.confirmed, LSN(100), "half a transaction published confirms nothing")
        c.published(1)
        XCTAssertEqual(c.confirmed, LSN(0x2030))
        XCTAssertEqual(c.pending(max: 5).map(\.runId), ["c"])
        c.published(1)
        XCTAssertEqual(c.confirmed, LSN(0x3030))
        XCTAssertEqual(c.backlog, 0)
        XCTAssertEqual(c.counters.published, 3)
    }

    func testEmptyTransactionsAndOtherTablesConfirmAtOnce() throws {
        var c = ChangeCapture()
        var other = PGOutputTests.taskRun
        other.id = 77
        other.name = "TaskRunAttempt"
        try feed(&c, .relation(other))
        try transaction(&c, commit: 0x500, end: 0x530, [.insert(relationId: 77, new: row("x"))])
        XCTAssertEqual(c.confirmed, LSN(0x530))
        XCTAssertEqual(c.pending(max: 5), [])
        XCTAssertEqual(c.counters.changes, 0)
    }

    func testBacklogStopsReadingButNotInsideATransaction() throws {
        var c = ChangeCapture(settings: ChangeCaptureSettings(maxBacklog: 3))
        try feed(&c, .relation(PGOutputTests.taskRun))
        try feed(&c, .begin(finalLSN: LSN(0x900), commitTimeUs: 1, xid: 1))
        for i in 0..<5 { try feed(&c, .insert(relationId: 16390, new: row("r\(i)"))) }
        XCTAssertTrue(c.wantsData, "a transaction is read to its commit")
        try feed(&c, .commit(flags: 0, commitLSN: LSN(0x900), endLSN: LSN(0x950), commitTimeUs: 1))
        XCTAssertFalse(c.wantsData)
        c.published(2)
        XCTAssertEqual(c.backlog, 3)
        XCTAssertFalse(c.wantsData)
        c.published(1)
        XCTAssertTrue(c.wantsData)
        XCTAssertEqual(c.confirmed, LSN(0), "still two unpublished")
        c.published(2)
        XCTAssertEqual(c.confirmed, LSN(0x950))
    }

    func testLastChangeOfARunInATransactionWins() throws {
        var c = ChangeCapture()
        try feed(&c, .relation(PGOutputTests.taskRun))
        try transaction(&c, commit: 0x10, end: 0x20, [
            .insert(relationId: 16390, new: row("a", tags: "{x}")),
            .update(relationId: 16390, old: nil, new: row("a", tags: "{x,y}")),
            .insert(relationId: 16390, new: row("b")),
        ])
        XCTAssertEqual(c.pending(max: 5).map(\.runId), ["a", "b"])
        XCTAssertEqual(c.pending(max: 5).first?.tags, ["x", "y"])
    }

    func testUnchangedToastTagsFallBackToOldOrPartial() throws {
        var c = ChangeCapture()
        try feed(&c, .relation(PGOutputTests.taskRun))
        var unchanged = row("a")
        unchanged[2] = .unchangedToast
        try transaction(&c, commit: 0x10, end: 0x20, [.update(relationId: 16390, old: nil, new: unchanged)])
        XCTAssertNil(c.pending(max: 1).first?.tags, "unknown tags: a partial record (tag feeds hydrate)")
        c.published(1)
        try transaction(&c, commit: 0x30, end: 0x40, [.update(relationId: 16390, old: row("b", tags: "{old}"), new: {
            var r = row("b"); r[2] = .unchangedToast; return r }())])
        XCTAssertEqual(c.pending(max: 1).first?.tags, ["old"])
    }

    func testDeleteWithoutEnvIsSkippedAndCounted() throws {
        var c = ChangeCapture()
        try feed(&c, .relation(PGOutputTests.taskRun))
        try transaction(&c, commit: 0x10, end: 0x20, [
            .delete(relationId: 16390, old: [.text("a"), .null, .null, .null, .null]),
            .delete(relationId: 16390, old: row("b")),  // REPLICA IDENTITY FULL
        ])
        XCTAssertEqual(c.pending(max: 5).map(\.runId), ["b"])
        XCTAssertEqual(c.counters.skipped, 1)
    }

    func testColumnListWithoutTagsGivesPartialRecords() throws {
        var c = ChangeCapture()
        let rel = Relation(id: 5, namespace: "public", name: "TaskRun", replicaIdentity: 100, columns: [
            RelationColumn(isKey: true, name: "id", typeOid: 25, typeModifier: -1),
            RelationColumn(isKey: false, name: "runtimeEnvironmentId", typeOid: 25, typeModifier: -1),
        ])
        try feed(&c, .relation(rel))
        try transaction(&c, commit: 0x10, end: 0x20, [.insert(relationId: 5, new: [.text("a"), .text("e")])])
        XCTAssertEqual(c.pending(max: 5), [ChangeRecord(v: 1, runId: "a", envId: "e", lsn: "0/10")])
    }

    func testKeepaliveConfirmsOnlyWhenIdle() throws {
        var c = ChangeCapture()
        try feed(&c, .relation(PGOutputTests.taskRun))
        try transaction(&c, commit: 0x10, end: 0x20, [.insert(relationId: 16390, new: row("a"))])
        try c.receive(frame: PGOutputEncoder.keepalive(end: LSN(0x9000), replyRequested: false))
        XCTAssertEqual(c.confirmed, LSN(0), "records wait: the keepalive confirms nothing")
        XCTAssertEqual(c.lagBytes, 0x9000)
        c.published(1)
        XCTAssertEqual(c.confirmed, LSN(0x20))
        try feed(&c, .begin(finalLSN: LSN(0x9100), commitTimeUs: 1, xid: 2))
        try c.receive(frame: PGOutputEncoder.keepalive(end: LSN(0x9200), replyRequested: false))
        XCTAssertEqual(c.confirmed, LSN(0x20), "inside a transaction: nothing")
        try feed(&c, .commit(flags: 0, commitLSN: LSN(0x9100), endLSN: LSN(0x9150), commitTimeUs: 1))
        try c.receive(frame: PGOutputEncoder.keepalive(end: LSN(0x9300), replyRequested: false))
        XCTAssertEqual(c.confirmed, LSN(0x9300))
        XCTAssertEqual(c.lagBytes, 0)
    }

    func testStatusUpdates() throws {
        var c = ChangeCapture(settings: ChangeCaptureSettings(statusIntervalUs: 10_000_000))
        XCTAssertTrue(c.statusDue(nowUs: 0), "first one at once")
        let u = c.statusUpdate(nowUs: 0, clockUs: 42)
        XCTAssertEqual(u.count, 34)
        XCTAssertFalse(c.statusDue(nowUs: 5_000_000))
        XCTAssertTrue(c.statusDue(nowUs: 10_000_000), "every 10 s")
        _ = c.statusUpdate(nowUs: 10_000_000, clockUs: 42)
        try c.receive(frame: PGOutputEncoder.keepalive(end: LSN(0), replyRequested: true))
        XCTAssertTrue(c.statusDue(nowUs: 10_000_001), "the server asked")
        _ = c.statusUpdate(nowUs: 10_000_001, clockUs: 42)
        XCTAssertFalse(c.statusDue(nowUs: 10_000_002))
        try c.receive(frame: PGOutputEncoder.keepalive(end: LSN(0x50), replyRequested: false))
        XCTAssertTrue(c.statusDue(nowUs: 10_000_003), "the confirmed position moved")
        let v = c.statusUpdate(nowUs: 10_000_003, clockUs: 42)
        XCTAssertEqual(Array(v[9..<17]), [0, 0, 0, 0, 0, 0, 0, 0x50], "flushed = confirmed")
    }

    func testRestartDropsUnpublishedAndResumesFromSlot() throws {
        var c = ChangeCapture()
        try feed(&c, .relation(PGOutputTests.taskRun))
        try transaction(&c, commit: 0x10, end: 0x20, [.insert(relationId: 16390, new: row("a"))])
        try feed(&c, .begin(finalLSN: LSN(0x30), commitTimeUs: 1, xid: 2))
        c.restart(at: LSN(0x5))
        XCTAssertEqual(c.backlog, 0)
        XCTAssertEqual(c.confirmed, LSN(0x5), "the slot's position (never behind what this process confirmed)")
        XCTAssertTrue(c.wantsData)
        // The replay after a restart needs the Relation again before rows are understood.
        try transaction(&c, commit: 0x10, end: 0x20, [.insert(relationId: 16390, new: row("a"))])
        XCTAssertEqual(c.pending(max: 5), [])
    }

    func testLagSecondsInputs() throws {
        var c = ChangeCapture()
        try feed(&c, .relation(PGOutputTests.taskRun))
        XCTAssertNil(c.oldestUnpublishedCommitUs)
        try transaction(&c, commit: 0x10, end: 0x20, time: 7_000, [.insert(relationId: 16390, new: row("a"))])
        try transaction(&c, commit: 0x30, end: 0x40, time: 9_000, [.insert(relationId: 16390, new: row("b"))])
        XCTAssertEqual(c.oldestUnpublishedCommitUs, 7_000)
        c.published(1)
        XCTAssertEqual(c.oldestUnpublishedCommitUs, 9_000)
        XCTAssertEqual(c.lastPublishedCommitUs, 7_000)
    }

    func testMalformedFramesAreCounted() {
        var c = ChangeCapture()
        XCTAssertThrowsError(try c.receive(frame: [UInt8(ascii: "w"), 1]))
        XCTAssertEqual(c.counters.malformed, 1)
    }
}
