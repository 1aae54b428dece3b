import XCTest
import RunfeedCore
@testable import RunfeedIO
@testable import RunfeedServer

final class ListFeedRegistryTests: XCTestCase {
    private let env = "env_a"
    private let handle = "runs-test-handle"

    /// A tag-list client holding `rows` (its view stored under token 7), read a second ago.
    private func holding(_ h: FeedHarness, _ rows: [RunRow]) -> Offset {
        let readAt = (wallMs() - 1_000) * 1000
        let view = ListView(uniqueKeysWithValues: rows.map { ($0.id, RowVersion(digest: $0.digest, readAtUs: readAt)) })
        h.views.stored[WorkingSetKey(envId: env, handle: handle)] = (7, view)
        return Offset(updatedAtMs: rows.map(\.updatedAtMs).max() ?? 0, tail: readAt / 1000, token: 7)
    }

    func testATagListPollGetsANewRunOfItsTagAsAnInsert() throws {
        let h = try FeedHarness()
        let old = makeRow(id: "run_old", env: env, updatedMs: 1_700_000_001_000, tags: ["orders"])
        h.runsets.rows = [old]
        h.lists.startLive(h.tagRequest(env: env, tags: ["orders"], handle: handle), offset: holding(h, [old]))
        // Held after its first resolve found nothing new.
        XCTAssertEqual(h.lists.count, 1)
        XCTAssertEqual(h.answers.parkedCount, 1)
        XCTAssertTrue(h.answers.replies.isEmpty)

        let new = makeRow(id: "run_new", env: env, createdMs: 1_700_000_002_000, updatedMs: 1_700_000_002_000,
                          tags: ["orders"])
        h.runsets.rows.append(new)
        h.publish(on: env, ChangeRecord(runId: new.id, envId: env, tags: ["orders"], updatedAtMs: new.updatedAtMs))

        XCTAssertEqual(h.runsets.hydrates.last, [new.id])
        XCTAssertEqual(h.answers.replies.count, 1)
        let reply = try XCTUnwrap(h.answers.replies.first)
        XCTAssertTrue(reply.live)
        XCTAssertEqual(reply.handle, handle)
        XCTAssertEqual(reply.rows.map(\.0.id), [new.id])
        XCTAssertEqual(reply.rows.map(\.1), [.insert])
        // The client's new view is stored under the token its offset carries.
        let token = try XCTUnwrap(reply.offset.token)
        XCTAssertNotEqual(token, 7)
        let stored = try XCTUnwrap(h.views.stored[WorkingSetKey(envId: env, handle: handle)])
        XCTAssertEqual(stored.token, token)
        XCTAssertEqual(Set(stored.view.keys), [old.id, new.id])
        XCTAssertEqual(h.lists.count, 0)
    }

    func testARunOfAnotherTagNeverAnswersIt() throws {
        let h = try FeedHarness()
        let old = makeRow(id: "run_old", env: env, updatedMs: 1_700_000_001_000, tags: ["orders"])
        h.runsets.rows = [old]
        h.lists.startLive(h.tagRequest(env: env, tags: ["orders"], handle: handle), offset: holding(h, [old]))
        let other = makeRow(id: "run_other", env: env, updatedMs: 1_700_000_002_000, tags: ["emails"])
        h.runsets.rows.append(other)
        h.publish(on: env, ChangeRecord(runId: other.id, envId: env, tags: ["emails"], updatedAtMs: other.updatedAtMs))
        // A full record of another tag is not even read.
        XCTAssertTrue(h.runsets.hydrates.isEmpty)
        XCTAssertTrue(h.answers.replies.isEmpty)
        XCTAssertEqual(h.lists.count, 1)
    }

    func testTheBackstopAtTheDeadlineAnswersUpToDateAfterAFreshResolve() throws {
        let h = try FeedHarness(holdMs: 50)
        let old = makeRow(id: "run_old", env: env, updatedMs: 1_700_000_001_000, tags: ["orders"])
        h.runsets.rows = [old]
        let held = holding(h, [old])
        h.lists.startLive(h.tagRequest(env: env, tags: ["orders"], handle: handle), offset: held)
        let resolvesWhenHeld = h.runsets.resolves
        XCTAssertTrue(h.answers.replies.isEmpty)

        h.runUntilAnswered()

        // The deadline resolved the list once more and found nothing the client does not hold.
        XCTAssertEqual(h.runsets.resolves, resolvesWhenHeld + 1)
        XCTAssertEqual(h.answers.replies.count, 1)
        let reply = try XCTUnwrap(h.answers.replies.first)
        XCTAssertTrue(reply.live)
        XCTAssertTrue(reply.rows.isEmpty)
        XCTAssertEqual(reply.offset.updatedAtMs, held.updatedAtMs)
        XCTAssertGreaterThan(reply.offset.basisMs, held.basisMs, "the basis moves to the backstop's read")
        XCTAssertEqual(h.lists.count, 0)
    }
}
