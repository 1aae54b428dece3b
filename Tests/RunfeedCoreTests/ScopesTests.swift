import XCTest
@testable import RunfeedCore

final class ScopeTests: XCTestCase {
    let runRes = RouteResources.run(friendlyId: "run_1", taskIdentifier: "my-task", runTags: ["user:42", "t"], batchFriendlyId: "batch_9")

    func testParseFirstTwoColonsOnly() {
        let s = Scope("read:tags:env:prod")
        XCTAssertEqual(s.action, "read")
        XCTAssertEqual(s.type, "tags")
        XCTAssertEqual(s.id, "env:prod")
        XCTAssertTrue(ScopeSet(["read:tags:env:prod"]).authorizes(any: [Resource(type: "tags", id: "env:prod")]))
        XCTAssertFalse(ScopeSet(["read:tags:env"]).authorizes(any: [Resource(type: "tags", id: "env:prod")]))
    }

    func testEmptyScopesDeny() {
        XCTAssertFalse(ScopeSet([]).authorizes(any: runRes))
        XCTAssertFalse(ScopeSet(["read:runs"]).authorizes(any: []))
    }

    func testAdmin() {
        XCTAssertTrue(ScopeSet(["admin"]).authorizes(any: [Resource(type: "anything")]))
        XCTAssertFalse(ScopeSet(["admin:runs"]).authorizes(any: [Resource(type: "runs")]))
        XCTAssertFalse(ScopeSet(["admin:runs:run_1"]).authorizes(any: runRes))
    }

    func testActions() {
        XCTAssertTrue(ScopeSet(["*:runs"]).authorizes(any: runRes))
        XCTAssertFalse(ScopeSet(["write:runs"]).authorizes(any: runRes))
        XCTAssertFalse(ScopeSet(["write:inputStreams:run_1"]).authorizes(any: runRes))
        XCTAssertFalse(ScopeSet(["read"]).authorizes(any: [Resource(type: "runs")]))
    }

    func testTypeAll() {
        XCTAssertTrue(ScopeSet(["read:all"]).authorizes(any: runRes))
        XCTAssertTrue(ScopeSet(["read:all"]).authorizes(any: [Resource(type: "runs")]))
        XCTAssertTrue(ScopeSet(["read:all:run_1"]).authorizes(any: runRes))
        XCTAssertFalse(ScopeSet(["read:all:run_2"]).authorizes(any: runRes))
    }

    func testIdMatching() {
        XCTAssertTrue(ScopeSet(["read:runs:run_1"]).authorizes(any: runRes))
        XCTAssertFalse(ScopeSet(["read:runs:run_2"]).authorizes(any: runRes))
        XCTAssertFalse(ScopeSet(["read:runs:RUN_1"]).authorizes(any: runRes))
        XCTAssertTrue(ScopeSet(["read:tasks:my-task"]).authorizes(any: runRes))
        XCTAssertTrue(ScopeSet(["read:tags:user:42"]).authorizes(any: runRes))
        XCTAssertTrue(ScopeSet(["read:batch:batch_9"]).authorizes(any: runRes))
        XCTAssertFalse(ScopeSet(["read:batch:batch_8"]).authorizes(any: runRes))
    }

    func testIdScopeNeverMatchesCollection() {
        XCTAssertFalse(ScopeSet(["read:runs:run_1"]).authorizes(any: [Resource(type: "runs")]))
        XCTAssertTrue(ScopeSet(["read:runs"]).authorizes(any: [Resource(type: "runs")]))
        XCTAssertFalse(ScopeSet(["read:runs:"]).authorizes(any: [Resource(type: "runs"), Resource(type: "runs", id: "run_1")]))
    }

    func testAnyScopeAnyResource() {
        XCTAssertTrue(ScopeSet(["write:x", "read:runs:nope", "read:tags:t"]).authorizes(any: runRes))
    }

    func testRouteResources() {
        XCTAssertEqual(runRes, [Resource(type: "runs", id: "run_1"), Resource(type: "tasks", id: "my-task"),
                                Resource(type: "tags", id: "user:42"), Resource(type: "tags", id: "t"),
                                Resource(type: "batch", id: "batch_9")])
        XCTAssertEqual(RouteResources.run(friendlyId: "r", taskIdentifier: "t", runTags: [], batchFriendlyId: nil).count, 2)
        XCTAssertEqual(RouteResources.tagFeed(tags: ["a", "b"]), [Resource(type: "runs"), Resource(type: "tags"),
                                                                  Resource(type: "tags", id: "a"), Resource(type: "tags", id: "b")])
        XCTAssertEqual(RouteResources.batch(friendlyId: "batch_1"), [Resource(type: "batch", id: "batch_1"), Resource(type: "runs")])
    }

    func testRouteScenarios() {
        // read:runs opens every route.
        let readRuns = ScopeSet(["read:runs"])
        XCTAssertTrue(readRuns.authorizes(any: RouteResources.tagFeed(tags: [])))
        XCTAssertTrue(readRuns.authorizes(any: RouteResources.batch(friendlyId: "batch_1")))
        // read:tags:foo may subscribe to ?tags=foo,bar but not to an untagged list.
        let foo = ScopeSet(["read:tags:foo"])
        XCTAssertTrue(foo.authorizes(any: RouteResources.tagFeed(tags: ["foo", "bar"])))
        XCTAssertFalse(foo.authorizes(any: RouteResources.tagFeed(tags: [])))
        XCTAssertTrue(ScopeSet(["read:tags"]).authorizes(any: RouteResources.tagFeed(tags: [])))
        // A run-scoped token cannot open a batch or a list.
        let run = ScopeSet(["read:runs:run_1"])
        XCTAssertFalse(run.authorizes(any: RouteResources.batch(friendlyId: "batch_1")))
        XCTAssertFalse(run.authorizes(any: RouteResources.tagFeed(tags: ["x"])))
    }

    func testIdsCompareByteForByte() {
        let composed = "caf\u{E9}"
        let decomposed = "cafe\u{301}"
        XCTAssertTrue(ScopeSet(["read:tags:" + composed]).authorizes(any: [Resource(type: "tags", id: composed)]))
        XCTAssertFalse(ScopeSet(["read:tags:" + composed]).authorizes(any: [Resource(type: "tags", id: decomposed)]))
    }
}
