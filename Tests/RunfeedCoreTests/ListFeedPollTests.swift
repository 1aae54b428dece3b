import XCTest
@testable import RunfeedCore

final class ListFeedPollTests: XCTestCase {
    private func e(_ i: Int, _ op: ChangeOperation) -> ListEmit { ListEmit(index: i, operation: op) }

    /// What the client holds at the start of most tests: a and b, both read at t=100.
    let held: ListView = ["a": RowVersion(digest: 1, readAtUs: 100), "b": RowVersion(digest: 2, readAtUs: 100)]
    let floor: Int64 = 1_000

    /// The held rows as a resolve or hydrate would see them now (same content, a later read).
    private func unchanged(at t: Int64 = 200) -> [RunVersion] {
        [rv("a", 900, 1, at: t), rv("b", 800, 2, at: t)]
    }

    private func holding(_ view: ListView? = nil) -> ListFeedPoll {
        var p = ListFeedPoll(view: view ?? held, floorMs: floor)
        XCTAssertEqual(p.start(.replay([])), .hold)
        XCTAssertEqual(p.state, .holding)
        return p
    }

    private func hydrating(_ runs: Set<String>) -> ListFeedPoll {
        var p = holding()
        XCTAssertEqual(p.handle(.records(runs)), .hydrate(runs))
        XCTAssertEqual(p.state, .hydrating)
        return p
    }

    private func resolving(endsPoll: Bool) -> ListFeedPoll {
        var p = holding()
        XCTAssertEqual(p.handle(endsPoll ? .deadline : .resync), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: endsPoll))
        return p
    }

    private func done() -> ListFeedPoll {
        var p = holding()
        XCTAssertEqual(p.handle(.aborted), .upToDate(fromRead: false))
        return p
    }

    // MARK: start

    func testInitialState() {
        let p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.state, .idle)
        XCTAssertEqual(p.view, held)
        XCTAssertEqual(p.offsetMs, floor)
        XCTAssertFalse(p.viewChanged)
        XCTAssertFalse(p.isDone)
        XCTAssertEqual(ListFeedPoll(view: held, floorMs: -5).offsetMs, 0)
    }

    func testStartWithoutViewResolves() {
        for how in [ListPollStart.resolve, .replay([]), .replay(["a"])] {
            var p = ListFeedPoll(view: nil, floorMs: floor)
            XCTAssertEqual(p.start(how), .resolve, "\(how)")
            XCTAssertEqual(p.state, .resolving(endsPoll: false))
        }
    }

    func testStartResolve() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.start(.resolve), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: false))
    }

    func testStartReplayEmptyHolds() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.start(.replay([])), .hold)
        XCTAssertEqual(p.state, .holding)
    }

    func testStartReplayHydrates() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.start(.replay(["a", "c"])), .hydrate(["a", "c"]))
        XCTAssertEqual(p.state, .hydrating)
    }

    func testStartTwice() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.start(.replay(["a"])), .hydrate(["a"]))
        XCTAssertEqual(p.start(.resolve), .hold)
        XCTAssertEqual(p.state, .hydrating)
        var d = done()
        XCTAssertEqual(d.start(.resolve), .finishSilently)
    }

    func testEventsBeforeStartBehaveAsHolding() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.handle(.records(["a"])), .hydrate(["a"]))
        XCTAssertEqual(p.state, .hydrating)
        var q = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(q.handle(.deadline), .resolve)
        XCTAssertEqual(q.state, .resolving(endsPoll: true))
    }

    // MARK: records and hydrates

    func testRecordsWhileHoldingHydrate() {
        var p = holding()
        XCTAssertEqual(p.handle(.records([])), .hold)
        XCTAssertEqual(p.state, .holding)
        XCTAssertEqual(p.handle(.records(["a", "z"])), .hydrate(["a", "z"]))
        XCTAssertEqual(p.state, .hydrating)
    }

    func testHydrateWithNothingNewHolds() {
        var p = hydrating(["a", "b"])
        XCTAssertEqual(p.handle(.hydrated(unchanged())), .hold)
        XCTAssertEqual(p.state, .holding)
        XCTAssertEqual(p.view, held)
        XCTAssertFalse(p.viewChanged)
        XCTAssertEqual(p.offsetMs, floor)
        // An empty hydrate (the runs no longer match) is nothing new either.
        XCTAssertEqual(p.handle(.records(["a"])), .hydrate(["a"]))
        XCTAssertEqual(p.handle(.hydrated([])), .hold)
        XCTAssertEqual(p.view, held)
    }

    func testRecordsWhileHydratingArePendingAndHydratedAfterwards() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.records(["b"])), .hold)
        XCTAssertEqual(p.handle(.records(["c", "b"])), .hold)
        XCTAssertEqual(p.pending, ["b", "c"])
        XCTAssertEqual(p.handle(.hydrated([rv("a", 900, 1, at: 200)])), .hydrate(["b", "c"]))
        XCTAssertEqual(p.pending, [])
        XCTAssertEqual(p.state, .hydrating)
        XCTAssertEqual(p.handle(.hydrated([rv("b", 800, 2, at: 300)])), .hold)
        XCTAssertEqual(p.state, .holding)
    }

    func testRecordsWhileResolvingArePendingAndHydratedAfterwards() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.start(.resolve), .resolve)
        XCTAssertEqual(p.handle(.records(["a"])), .hold)
        XCTAssertEqual(p.pending, ["a"])
        XCTAssertEqual(p.handle(.resolved(unchanged())), .hydrate(["a"]))
        XCTAssertEqual(p.handle(.hydrated([rv("a", 950, 5, at: 300)])), .answer([e(0, .update)]))
    }

    func testHydrateThatEmitsAnswers() {
        var p = hydrating(["a", "b", "c"])
        let rows = [rv("c", 1_200, 3, at: 200), rv("a", 900, 1, at: 200), rv("b", 950, 9, at: 200)]
        XCTAssertEqual(p.handle(.hydrated(rows)), .answer([e(0, .insert), e(2, .update)]))
        XCTAssertTrue(p.isDone)
        XCTAssertEqual(p.view, ["a": ver(1, at: 100), "b": ver(9, at: 200), "c": ver(3, at: 200)])
        XCTAssertTrue(p.viewChanged)
        XCTAssertEqual(p.offsetMs, 1_200)
    }

    func testHydrateAnswerKeepsRunsItDidNotList() {
        var p = hydrating(["b"])
        XCTAssertEqual(p.handle(.hydrated([rv("b", 10, 9, at: 200)])), .answer([e(0, .update)]))
        XCTAssertEqual(p.view, ["a": ver(1, at: 100), "b": ver(9, at: 200)])
        XCTAssertEqual(p.offsetMs, floor)
    }

    func testPendingRecordsAreDroppedWhenTheHydrateAnswers() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.records(["b"])), .hold)
        XCTAssertEqual(p.handle(.hydrated([rv("a", 900, 7, at: 200)])), .answer([e(0, .update)]))
        XCTAssertEqual(p.pending, [])
    }

    func testFailedHydrateSettles() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.hydrated(nil)), .hold)
        XCTAssertEqual(p.state, .holding)
        XCTAssertEqual(p.view, held)
        // With records waiting, they are read next.
        var q = hydrating(["a"])
        XCTAssertEqual(q.handle(.records(["b"])), .hold)
        XCTAssertEqual(q.handle(.hydrated(nil)), .hydrate(["b"]))
        // After the deadline, the backstop.
        var r = hydrating(["a"])
        XCTAssertEqual(r.handle(.deadline), .hold)
        XCTAssertEqual(r.handle(.hydrated(nil)), .resolve)
        XCTAssertEqual(r.state, .resolving(endsPoll: true))
        XCTAssertFalse(r.viewChanged)
    }

    func testHydrateResultWhenNotHydratingIsIgnored() {
        var p = holding()
        XCTAssertEqual(p.handle(.hydrated([rv("c", 1, 3, at: 200)])), .hold)
        XCTAssertEqual(p.state, .holding)
        XCTAssertEqual(p.view, held)
        var r = resolving(endsPoll: false)
        XCTAssertEqual(r.handle(.hydrated([rv("c", 1, 3, at: 200)])), .hold)
        XCTAssertEqual(r.state, .resolving(endsPoll: false))
    }

    func testResolveResultWhenNotResolvingIsIgnored() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.resolved([rv("c", 1, 3, at: 200)])), .hold)
        XCTAssertEqual(p.state, .hydrating)
        XCTAssertEqual(p.view, held)
    }

    // MARK: the diff rules as the poll applies them

    func testStaleDifferentVersionIsNotEmitted() {
        // A different row read before the client's version (a cache a moment old).
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.hydrated([rv("a", 900, 5, at: 50)])), .hold)
        XCTAssertEqual(p.view, held)
        var q = resolving(endsPoll: true)
        XCTAssertEqual(q.handle(.resolved([rv("a", 900, 5, at: 50), rv("b", 800, 2, at: 50)])),
                       .upToDate(fromRead: true))
        XCTAssertEqual(q.view, held)
        XCTAssertFalse(q.viewChanged)
    }

    func testSameMillisecondDifferentContentIsAnUpdate() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.hydrated([rv("a", floor, 5, at: 200)])), .answer([e(0, .update)]))
        XCTAssertEqual(p.view?["a"], ver(5, at: 200))
        XCTAssertEqual(p.offsetMs, floor)
    }

    func testEarlierStampedDifferentContentIsAnUpdate() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.hydrated([rv("a", 1, 5, at: 200)])), .answer([e(0, .update)]))
        XCTAssertEqual(p.offsetMs, floor)
    }

    func testRunMissingFromTheViewIsAnInsert() {
        var p = hydrating(["c"])
        XCTAssertEqual(p.handle(.hydrated([rv("c", 5, 3, at: 50)])), .answer([e(0, .insert)]))
        XCTAssertEqual(p.view?["c"], ver(3, at: 50))
        var q = ListFeedPoll(view: [:], floorMs: 0)
        XCTAssertEqual(q.start(.replay(["c"])), .hydrate(["c"]))
        XCTAssertEqual(q.handle(.hydrated([rv("c", 5, 3, at: 50)])), .answer([e(0, .insert)]))
        XCTAssertEqual(q.view, ["c": ver(3, at: 50)])
    }

    func testNilViewSendsEveryRowAsUpdateAndHoldsTheFullSet() {
        var p = ListFeedPoll(view: nil, floorMs: floor)
        XCTAssertEqual(p.start(.replay(["a"])), .resolve)
        let rows = [rv("a", 900, 1, at: 200), rv("b", 2_000, 2, at: 200), rv("c", 5, 3, at: 200)]
        XCTAssertEqual(p.handle(.resolved(rows)), .answer([e(0, .update), e(1, .update), e(2, .update)]))
        XCTAssertEqual(p.view, ["a": ver(1, at: 200), "b": ver(2, at: 200), "c": ver(3, at: 200),
                                "#members": members(at: 200)])
        XCTAssertTrue(p.viewChanged)
        XCTAssertEqual(p.offsetMs, 2_000)
        XCTAssertTrue(p.isDone)
    }

    func testNilViewAndEmptyResolveHoldsWithAnEmptyView() {
        var p = ListFeedPoll(view: nil, floorMs: floor)
        XCTAssertEqual(p.start(.resolve), .resolve)
        XCTAssertEqual(p.handle(.resolved([])), .hold)
        XCTAssertEqual(p.state, .holding)
        XCTAssertEqual(p.view, [:])
        XCTAssertTrue(p.viewChanged)
        // A run that joins later is an insert.
        XCTAssertEqual(p.handle(.records(["a"])), .hydrate(["a"]))
        XCTAssertEqual(p.handle(.hydrated([rv("a", 5, 1, at: 300)])), .answer([e(0, .insert)]))
        XCTAssertEqual(p.view, ["a": ver(1, at: 300)])
    }

    func testNilViewFailedResolveHoldsAndTheBackstopStillResolves() {
        var p = ListFeedPoll(view: nil, floorMs: floor)
        XCTAssertEqual(p.start(.resolve), .resolve)
        XCTAssertEqual(p.handle(.resolved(nil)), .hold)
        XCTAssertNil(p.view)
        XCTAssertEqual(p.handle(.deadline), .resolve)
        XCTAssertEqual(p.handle(.resolved(nil)), .upToDate(fromRead: false))
        XCTAssertNil(p.view)
        XCTAssertFalse(p.viewChanged)
    }

    // MARK: full resolves

    func testNonEndingResolveWithNothingNewHolds() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.start(.resolve), .resolve)
        XCTAssertEqual(p.handle(.resolved(unchanged())), .hold)
        XCTAssertEqual(p.state, .holding)
        XCTAssertEqual(p.view, held)
        XCTAssertFalse(p.viewChanged)
    }

    func testResolveAnswerReplacesTheView() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.start(.resolve), .resolve)
        // a unchanged, b gone, c joins.
        let rows = [rv("c", 1_500, 3, at: 200), rv("a", 900, 1, at: 200)]
        XCTAssertEqual(p.handle(.resolved(rows)), .answer([e(0, .insert)]))
        XCTAssertEqual(p.view, ["a": ver(1, at: 100), "c": ver(3, at: 200), "#members": members(at: 200)])
        XCTAssertTrue(p.viewChanged)
        XCTAssertEqual(p.offsetMs, 1_500)
    }

    func testNonEndingResolveThatOnlyDropsRunsHoldsWithTheNewView() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.start(.resolve), .resolve)
        XCTAssertEqual(p.handle(.resolved([rv("a", 900, 1, at: 200)])), .hold)
        XCTAssertEqual(p.view, ["a": ver(1, at: 100), "#members": members(at: 200)])
        XCTAssertTrue(p.viewChanged)
        XCTAssertFalse(p.isDone)
    }

    // MARK: membership time

    /// `held` with a membership time.
    private var heldWithMembers: ListView { held.merging(["#members": members(at: 150)]) { $1 } }

    private func backstopping(_ view: ListView) -> ListFeedPoll {
        var p = holding(view)
        XCTAssertEqual(p.handle(.deadline), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: true))
        return p
    }

    func testBackstopThatChangesNothingStoresNoNewView() {
        for view in [heldWithMembers, held] {
            for membersAt: Int64 in [0, 300] {
                var p = backstopping(view)
                XCTAssertEqual(p.handle(.resolved(unchanged(), membersReadAtUs: membersAt)), .upToDate(fromRead: true))
                XCTAssertTrue(p.isDone)
                XCTAssertEqual(p.view, view, "membersReadAtUs \(membersAt)")
                XCTAssertFalse(p.viewChanged, "membersReadAtUs \(membersAt)")
            }
        }
        // Nor does a non-ending resolve that changes nothing.
        var q = ListFeedPoll(view: heldWithMembers, floorMs: floor)
        XCTAssertEqual(q.start(.resolve), .resolve)
        XCTAssertEqual(q.handle(.resolved(unchanged(), membersReadAtUs: 300)), .hold)
        XCTAssertEqual(q.view, heldWithMembers)
        XCTAssertFalse(q.viewChanged)
    }

    func testBackstopThatDropsARunStoresTheNewView() {
        var p = backstopping(heldWithMembers)
        XCTAssertEqual(p.handle(.resolved([rv("a", 900, 1, at: 200)], membersReadAtUs: 300)), .upToDate(fromRead: true))
        XCTAssertEqual(p.view, ["a": ver(1, at: 100), "#members": members(at: 300)])
        XCTAssertTrue(p.viewChanged)
        // Without a membership time: the rows' earliest read.
        var q = backstopping(heldWithMembers)
        XCTAssertEqual(q.handle(.resolved([rv("a", 900, 1, at: 200)])), .upToDate(fromRead: true))
        XCTAssertEqual(q.view, ["a": ver(1, at: 100), "#members": members(at: 200)])
        XCTAssertTrue(q.viewChanged)
        // An older membership time does not lower the view's; the drop still changes the view.
        var r = backstopping(heldWithMembers)
        XCTAssertEqual(r.handle(.resolved([rv("a", 900, 1, at: 200)], membersReadAtUs: 120)), .upToDate(fromRead: true))
        XCTAssertEqual(r.view, ["a": ver(1, at: 100), "#members": members(at: 150)])
        XCTAssertTrue(r.viewChanged)
        // An empty set dated by its membership query.
        var s = backstopping(held)
        XCTAssertEqual(s.handle(.resolved([], membersReadAtUs: 300)), .upToDate(fromRead: true))
        XCTAssertEqual(s.view, ["#members": members(at: 300)])
        XCTAssertTrue(s.viewChanged)
    }

    func testBackstopAnswerWithoutDropsKeepsTheMembershipTime() {
        var p = backstopping(heldWithMembers)
        let rows = [rv("c", 1_200, 3, at: 200)] + unchanged()
        XCTAssertEqual(p.handle(.resolved(rows, membersReadAtUs: 300)), .answer([e(0, .insert)]))
        XCTAssertEqual(p.view, ["a": ver(1, at: 100), "b": ver(2, at: 100), "c": ver(3, at: 200),
                                "#members": members(at: 150)])
        XCTAssertTrue(p.viewChanged)
    }

    func testNilViewResolveUsesTheMembershipTime() {
        var p = ListFeedPoll(view: nil, floorMs: floor)
        XCTAssertEqual(p.start(.resolve), .resolve)
        XCTAssertEqual(p.handle(.resolved(unchanged(), membersReadAtUs: 180)), .answer([e(0, .update), e(1, .update)]))
        XCTAssertEqual(p.view, ["a": ver(1, at: 200), "b": ver(2, at: 200), "#members": members(at: 180)])
        XCTAssertTrue(p.viewChanged)
        var q = ListFeedPoll(view: nil, floorMs: floor)
        XCTAssertEqual(q.start(.resolve), .resolve)
        XCTAssertEqual(q.handle(.resolved([], membersReadAtUs: 180)), .hold)
        XCTAssertEqual(q.view, ["#members": members(at: 180)])
        XCTAssertTrue(q.viewChanged)
    }

    func testHydrateLeavesTheMembershipTime() {
        var p = holding(heldWithMembers)
        XCTAssertEqual(p.handle(.records(["c"])), .hydrate(["c"]))
        XCTAssertEqual(p.handle(.hydrated([rv("c", 5, 3, at: 200)])), .answer([e(0, .insert)]))
        XCTAssertEqual(p.view, heldWithMembers.merging(["c": ver(3, at: 200)]) { $1 })
        XCTAssertEqual(p.view?["#members"], members(at: 150))
    }

    // MARK: deadline and backstop

    func testDeadlineWhileHoldingStartsTheBackstop() {
        var p = holding()
        XCTAssertEqual(p.handle(.deadline), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: true))
        XCTAssertTrue(p.deadlinePassed)
    }

    func testBackstopWithNewRowsAnswers() {
        var p = resolving(endsPoll: true)
        let rows = [rv("a", 900, 1, at: 200), rv("b", 1_100, 7, at: 200)]
        XCTAssertEqual(p.handle(.resolved(rows)), .answer([e(1, .update)]))
        XCTAssertTrue(p.isDone)
        XCTAssertEqual(p.view, ["a": ver(1, at: 100), "b": ver(7, at: 200)])
        XCTAssertTrue(p.viewChanged)
        XCTAssertEqual(p.offsetMs, 1_100)
    }

    func testBackstopWithNothingNewIsUpToDateFromRead() {
        var p = resolving(endsPoll: true)
        XCTAssertEqual(p.handle(.resolved(unchanged())), .upToDate(fromRead: true))
        XCTAssertTrue(p.isDone)
        XCTAssertEqual(p.view, held)
        XCTAssertFalse(p.viewChanged)
        XCTAssertEqual(p.offsetMs, floor)
    }

    func testBackstopThatDropsRunsIsUpToDateWithTheNewView() {
        var p = resolving(endsPoll: true)
        XCTAssertEqual(p.handle(.resolved([rv("b", 1_050, 2, at: 200)])), .upToDate(fromRead: true))
        XCTAssertEqual(p.view, ["b": ver(2, at: 100), "#members": members(at: 200)])
        XCTAssertTrue(p.viewChanged)
        XCTAssertEqual(p.offsetMs, 1_050)
        // An empty resolve with no membership time: every run drops, but nothing dates the membership.
        var q = resolving(endsPoll: true)
        XCTAssertEqual(q.handle(.resolved([])), .upToDate(fromRead: true))
        XCTAssertEqual(q.view, [:])
        XCTAssertTrue(q.viewChanged)
    }

    func testFailedBackstopIsUpToDateKeepingTheView() {
        var p = resolving(endsPoll: true)
        XCTAssertEqual(p.handle(.resolved(nil)), .upToDate(fromRead: false))
        XCTAssertTrue(p.isDone)
        XCTAssertEqual(p.view, held)
        XCTAssertFalse(p.viewChanged)
        XCTAssertEqual(p.offsetMs, floor)
    }

    func testDeadlineDuringHydrateWaitsThenBackstops() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.deadline), .hold)
        XCTAssertEqual(p.state, .hydrating)
        XCTAssertEqual(p.handle(.hydrated(unchanged())), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: true))
        XCTAssertEqual(p.handle(.resolved(unchanged(at: 300))), .upToDate(fromRead: true))
    }

    func testDeadlineDuringHydrateThatEmitsAnswersAtOnce() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.deadline), .hold)
        XCTAssertEqual(p.handle(.hydrated([rv("a", 900, 5, at: 200)])), .answer([e(0, .update)]))
        XCTAssertTrue(p.isDone)
    }

    func testDeadlineBeatsPendingRecords() {
        // The backstop resolve covers the records that waited.
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.records(["b"])), .hold)
        XCTAssertEqual(p.handle(.deadline), .hold)
        XCTAssertEqual(p.handle(.hydrated(unchanged())), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: true))
        XCTAssertEqual(p.handle(.resolved([rv("a", 900, 1, at: 300), rv("b", 990, 8, at: 300)])), .answer([e(1, .update)]))
    }

    func testDeadlineDuringNonEndingResolveBackstopsAfterIt() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.start(.resolve), .resolve)
        XCTAssertEqual(p.handle(.deadline), .hold)
        XCTAssertEqual(p.state, .resolving(endsPoll: false))
        // The result, if it has something new, answers.
        var q = p
        XCTAssertEqual(q.handle(.resolved([rv("c", 1, 3, at: 200)] + unchanged())), .answer([e(0, .insert)]))
        // If not, the poll must still end: through the backstop.
        XCTAssertEqual(p.handle(.resolved(unchanged())), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: true))
        XCTAssertEqual(p.handle(.resolved(unchanged(at: 300))), .upToDate(fromRead: true))
    }

    func testDeadlineDuringBackstopIsHarmless() {
        var p = resolving(endsPoll: true)
        XCTAssertEqual(p.handle(.deadline), .hold)
        XCTAssertEqual(p.state, .resolving(endsPoll: true))
        XCTAssertEqual(p.handle(.records(["a"])), .hold)
        XCTAssertEqual(p.handle(.resolved(unchanged())), .upToDate(fromRead: true))
    }

    // MARK: resync

    func testResyncWhileHoldingResolvesWithoutEndingThePoll() {
        var p = holding()
        XCTAssertEqual(p.handle(.resync), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: false))
        XCTAssertEqual(p.handle(.resolved(unchanged())), .hold)
        XCTAssertFalse(p.isDone)
        XCTAssertEqual(p.state, .holding)
        // It can still answer later.
        XCTAssertEqual(p.handle(.records(["b"])), .hydrate(["b"]))
        XCTAssertEqual(p.handle(.hydrated([rv("b", 1, 4, at: 300)])), .answer([e(0, .update)]))
    }

    func testResyncWhileHydratingWaitsForTheRead() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.resync), .hold)
        XCTAssertTrue(p.resyncPending)
        XCTAssertEqual(p.state, .hydrating)
        XCTAssertEqual(p.handle(.hydrated(unchanged())), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: false))
        XCTAssertFalse(p.resyncPending)
        XCTAssertEqual(p.handle(.resolved(unchanged(at: 300))), .hold)
    }

    func testResyncWhileResolvingResolvesAgain() {
        var p = resolving(endsPoll: false)
        XCTAssertEqual(p.handle(.resync), .hold)
        XCTAssertEqual(p.handle(.resolved(unchanged())), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: false))
        XCTAssertEqual(p.handle(.resolved(unchanged(at: 300))), .hold)
    }

    func testResyncThenRecordsWhileBusy() {
        // A resync resolve goes first; the records that waited are read after it.
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.resync), .hold)
        XCTAssertEqual(p.handle(.records(["b"])), .hold)
        XCTAssertEqual(p.handle(.hydrated(unchanged())), .resolve)
        XCTAssertEqual(p.handle(.resolved(unchanged(at: 300))), .hydrate(["b"]))
    }

    func testResyncWaitingForAnAnsweringReadIsDropped() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.resync), .hold)
        XCTAssertEqual(p.handle(.hydrated([rv("a", 1, 9, at: 300)])), .answer([e(0, .update)]))
        XCTAssertEqual(p.handle(.resolved(unchanged())), .finishSilently)
    }

    func testDeadlineBeatsResync() {
        var p = hydrating(["a"])
        XCTAssertEqual(p.handle(.resync), .hold)
        XCTAssertEqual(p.handle(.deadline), .hold)
        XCTAssertEqual(p.handle(.hydrated(unchanged())), .resolve)
        XCTAssertEqual(p.state, .resolving(endsPoll: true))
    }

    func testResyncDuringBackstop() {
        var p = resolving(endsPoll: true)
        XCTAssertEqual(p.handle(.resync), .hold)
        XCTAssertEqual(p.handle(.resolved(unchanged())), .upToDate(fromRead: true))
    }

    // MARK: aborted and done

    func testAbortedInEveryState() {
        var idle = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(idle.handle(.aborted), .upToDate(fromRead: false))
        var h = holding()
        XCTAssertEqual(h.handle(.aborted), .upToDate(fromRead: false))
        var hy = hydrating(["a"])
        XCTAssertEqual(hy.handle(.records(["b"])), .hold)
        XCTAssertEqual(hy.handle(.aborted), .upToDate(fromRead: false))
        XCTAssertEqual(hy.pending, [])
        for ends in [false, true] {
            var r = resolving(endsPoll: ends)
            XCTAssertEqual(r.handle(.aborted), .upToDate(fromRead: false))
            XCTAssertTrue(r.isDone)
            XCTAssertEqual(r.view, held)
            XCTAssertFalse(r.viewChanged)
        }
    }

    func testEverythingAfterDoneIsSilent() {
        let events: [ListPollEvent] = [.records(["a"]), .resolved(unchanged()), .resolved(nil), .hydrated([rv("c", 1, 3, at: 9)]),
                                       .hydrated(nil), .resync, .deadline, .aborted]
        for ev in events {
            var p = done()
            XCTAssertEqual(p.handle(ev), .finishSilently, "\(ev)")
            XCTAssertEqual(p.state, .done)
            XCTAssertEqual(p.view, held)
        }
        var answered = hydrating(["c"])
        XCTAssertEqual(answered.handle(.hydrated([rv("c", 1, 3, at: 200)])), .answer([e(0, .insert)]))
        let view = answered.view
        for ev in events {
            XCTAssertEqual(answered.handle(ev), .finishSilently, "\(ev)")
            XCTAssertEqual(answered.view, view)
        }
        var upToDate = resolving(endsPoll: true)
        XCTAssertEqual(upToDate.handle(.resolved(unchanged())), .upToDate(fromRead: true))
        for ev in events { XCTAssertEqual(upToDate.handle(ev), .finishSilently, "\(ev)") }
    }

    // MARK: scenarios

    func testFullLongPollScenario() {
        var p = ListFeedPoll(view: held, floorMs: floor)
        XCTAssertEqual(p.start(.replay(["a"])), .hydrate(["a"]))           // the gap: a was touched
        XCTAssertEqual(p.handle(.records(["b"])), .hold)                    // b arrives meanwhile
        XCTAssertEqual(p.handle(.hydrated([rv("a", 900, 1, at: 150)])), .hydrate(["b"]))  // a unchanged
        XCTAssertEqual(p.handle(.hydrated([])), .hold)                      // b no longer matches
        XCTAssertEqual(p.handle(.records(["c"])), .hydrate(["c"]))
        XCTAssertEqual(p.handle(.hydrated([rv("c", 400, 3, at: 50)])), .answer([e(0, .insert)]))
        XCTAssertEqual(p.view, ["a": ver(1, at: 100), "b": ver(2, at: 100), "c": ver(3, at: 50)])
        XCTAssertTrue(p.viewChanged)
        XCTAssertEqual(p.offsetMs, floor)
        XCTAssertEqual(p.handle(.deadline), .finishSilently)
    }

    func testViewCarriesIntoTheNextPoll() {
        // The next poll starts from the view the first one ended with: the row it sent is not sent again.
        var first = hydrating(["a"])
        XCTAssertEqual(first.handle(.hydrated([rv("a", 900, 5, at: 200)])), .answer([e(0, .update)]))
        var next = ListFeedPoll(view: first.view, floorMs: first.offsetMs)
        XCTAssertEqual(next.start(.replay(["a"])), .hydrate(["a"]))
        XCTAssertEqual(next.handle(.hydrated([rv("a", 900, 5, at: 300)])), .hold)
        XCTAssertEqual(next.handle(.records(["a"])), .hydrate(["a"]))
        XCTAssertEqual(next.handle(.hydrated([rv("a", 900, 1, at: 150)])), .hold)  // an older read of the old row
        XCTAssertEqual(next.handle(.deadline), .resolve)
        XCTAssertEqual(next.handle(.resolved([rv("a", 900, 6, at: 400), rv("b", 800, 2, at: 400)])), .answer([e(0, .update)]))
    }
}
