import XCTest
import RunfeedCore
@testable import RunfeedIO
@testable import RunfeedServer

final class RunFeedRegistryTests: XCTestCase {
    private let env = "env_a"
    private let runId = "run1"

    /// A client holding `row`, read a second ago.
    private func offset(holding row: RunRow) -> Offset {
        Offset(updatedAtMs: row.updatedAtMs, tail: wallMs() - 1_000, token: row.digest)
    }

    func testHeldPollIsAnsweredWithTheNewerRowWhenItsRunChanges() throws {
        let h = try FeedHarness()
        let v1 = makeRow(id: runId, env: env, status: "QUEUED", updatedMs: 1_700_000_001_000)
        h.runRows.rows[RunKey(envId: env, runId: runId)] = v1
        h.runs.startLive(h.runRequest(env: env, runId: runId), offset: offset(holding: v1))
        // Held: the gap read found what the client holds.
        XCTAssertEqual(h.runs.count, 1)
        XCTAssertEqual(h.answers.parkedCount, 1)
        XCTAssertTrue(h.answers.replies.isEmpty)
        XCTAssertEqual(h.subscriber.wanted, [Channels.env(env)])

        let v2 = makeRow(id: runId, env: env, status: "COMPLETED_SUCCESSFULLY", updatedMs: 1_700_000_002_000)
        h.runRows.rows[RunKey(envId: env, runId: runId)] = v2
        h.publish(on: env, ChangeRecord(runId: runId, envId: env, tags: [], updatedAtMs: v2.updatedAtMs))

        XCTAssertEqual(h.answers.replies.count, 1)
        let reply = try XCTUnwrap(h.answers.replies.first)
        XCTAssertTrue(reply.live)
        XCTAssertEqual(reply.handle, "run-" + runId)
        XCTAssertEqual(reply.rows.count, 1)
        XCTAssertEqual(reply.rows.first?.0.digest, v2.digest)
        XCTAssertEqual(reply.rows.first?.1, .update)
        XCTAssertEqual(reply.offset.updatedAtMs, v2.updatedAtMs)
        XCTAssertEqual(reply.offset.token, v2.digest)
        XCTAssertEqual(h.runs.count, 0)
    }

    func testAChangeOnAnotherEnvironmentsChannelNeverAnswersIt() throws {
        let h = try FeedHarness()
        let other = "env_b"
        let v1 = makeRow(id: runId, env: env, updatedMs: 1_700_000_001_000)
        let elsewhere = makeRow(id: "run2", env: other, updatedMs: 1_700_000_001_000)
        h.runRows.rows[RunKey(envId: env, runId: runId)] = v1
        h.runRows.rows[RunKey(envId: other, runId: "run2")] = elsewhere
        h.runs.startLive(h.runRequest(env: env, runId: runId), offset: offset(holding: v1))
        // A poll of the other environment keeps its channel subscribed.
        h.runs.startLive(h.runRequest(env: other, runId: "run2"), offset: offset(holding: elsewhere))
        XCTAssertEqual(h.runs.count, 2)
        let readsBefore = h.runRows.reads.count

        let v2 = makeRow(id: runId, env: env, status: "COMPLETED_SUCCESSFULLY", updatedMs: 1_700_000_002_000)
        h.runRows.rows[RunKey(envId: env, runId: runId)] = v2
        // The record names the held run and even claims its environment, but arrives on the other channel.
        h.publish(on: other, ChangeRecord(runId: runId, envId: env, tags: [], updatedAtMs: v2.updatedAtMs))
        XCTAssertEqual(h.runRows.reads.count, readsBefore, "a record of another environment starts no read")
        XCTAssertTrue(h.answers.replies.isEmpty)
        XCTAssertEqual(h.runs.count, 2)

        // The same record on the run's own channel answers it.
        h.publish(on: env, ChangeRecord(runId: runId, envId: env, tags: [], updatedAtMs: v2.updatedAtMs))
        XCTAssertEqual(h.answers.replies.count, 1)
        XCTAssertEqual(h.answers.replies.first?.handle, "run-" + runId)
        XCTAssertEqual(h.answers.replies.first?.rows.first?.0.digest, v2.digest)
        XCTAssertEqual(h.runs.count, 1)
    }

    func testTheBackstopAtTheDeadlineAnswersUpToDateWhenNothingChanged() throws {
        let h = try FeedHarness(holdMs: 50)
        let v1 = makeRow(id: runId, env: env, updatedMs: 1_700_000_001_000)
        h.runRows.rows[RunKey(envId: env, runId: runId)] = v1
        let held = offset(holding: v1)
        h.runs.startLive(h.runRequest(env: env, runId: runId), offset: held)
        XCTAssertTrue(h.answers.replies.isEmpty)

        h.runUntilAnswered()

        XCTAssertEqual(h.answers.replies.count, 1)
        let reply = try XCTUnwrap(h.answers.replies.first)
        XCTAssertTrue(reply.live)
        XCTAssertTrue(reply.rows.isEmpty, "nothing the client does not hold")
        XCTAssertEqual(reply.offset.updatedAtMs, held.updatedAtMs)
        XCTAssertEqual(reply.offset.token, v1.digest)
        // The backstop re-read went through the batched read, and moved the basis to it.
        XCTAssertEqual(h.runRows.reads.last?.kind, "batched")
        XCTAssertGreaterThan(reply.offset.basisMs, held.basisMs)
        XCTAssertEqual(h.runs.count, 0)
    }

    func testARecordOfAnotherRunStartsNoRead() throws {
        let h = try FeedHarness()
        let v1 = makeRow(id: runId, env: env, updatedMs: 1_700_000_001_000)
        h.runRows.rows[RunKey(envId: env, runId: runId)] = v1
        h.runs.startLive(h.runRequest(env: env, runId: runId), offset: offset(holding: v1))
        let readsBefore = h.runRows.reads.count
        h.publish(on: env, ChangeRecord(runId: "someOtherRun", envId: env, tags: [], updatedAtMs: 1_700_000_003_000))
        XCTAssertEqual(h.runRows.reads.count, readsBefore)
        XCTAssertTrue(h.answers.replies.isEmpty)
        XCTAssertEqual(h.runs.count, 1)
    }

    func testADrainAnswersEveryHeldPollUpToDate() throws {
        let h = try FeedHarness()
        let v1 = makeRow(id: runId, env: env, updatedMs: 1_700_000_001_000)
        h.runRows.rows[RunKey(envId: env, runId: runId)] = v1
        let held = offset(holding: v1)
        h.runs.startLive(h.runRequest(env: env, runId: runId), offset: held)
        h.runs.answerAll()
        XCTAssertEqual(h.answers.replies.count, 1)
        XCTAssertEqual(h.answers.replies.first?.rows.count, 0)
        XCTAssertEqual(h.answers.replies.first?.offset.token, v1.digest)
        XCTAssertEqual(h.answers.replies.first?.offset.updatedAtMs, held.updatedAtMs)
        XCTAssertEqual(h.runs.count, 0)
    }
}
