import XCTest
@testable import RunfeedCore

// MARK: Tags parameter

final class TagsParameterTests: XCTestCase {
    private func ok(_ raw: String?, file: StaticString = #filePath, line: UInt = #line) -> [String]? {
        switch TagsParameter.parse(raw) {
        case .success(let t): return t
        case .failure(let e): XCTFail("unexpected error \(e.body)", file: file, line: line); return nil
        }
    }

    /// The issue messages of a 400 Query Error (fails if the parse succeeded).
    private func messages(_ raw: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        guard case .failure(let e) = TagsParameter.parse(raw) else {
            XCTFail("expected an error for \(raw.debugDescription)", file: file, line: line); return []
        }
        XCTAssertEqual(e.status, 400, file: file, line: line)
        guard let obj = JSONValue.parse(e.body)?.objectValue else {
            XCTFail("body is not JSON: \(e.body)", file: file, line: line); return []
        }
        XCTAssertEqual(obj["error"]?.stringValue, "Query Error", file: file, line: line)
        return obj["details"]?.arrayValue?.compactMap { $0.objectValue?["message"]?.stringValue } ?? []
    }

    func testAbsentOrEmptyMeansNoFilter() {
        XCTAssertEqual(ok(nil), [])
        XCTAssertEqual(ok(""), [])
    }

    func testSplitsWithoutTrimming() {
        XCTAssertEqual(ok("user:42"), ["user:42"])
        XCTAssertEqual(ok("a,b"), ["a", "b"])
        XCTAssertEqual(ok(" a,a "), [" a", "a "])
        XCTAssertEqual(ok("a b, c"), [" c", "a b"])
    }

    func testSortedAndDeduplicated() {
        XCTAssertEqual(ok("b,a"), ["a", "b"])
        XCTAssertEqual(ok("a,b"), ok("b,a"))
        XCTAssertEqual(ok("x,a,x,a,x"), ["a", "x"])
        // Byte-wise order: uppercase before lowercase, UTF-8 after ASCII.
        XCTAssertEqual(ok("é,z,B,a"), ["B", "a", "z", "é"])
    }

    func testCanonicallyEquivalentTagsStayDistinct() {
        let nfc = "\u{E9}", nfd = "e\u{301}"
        XCTAssertEqual(nfc, nfd)  // Swift String equality is canonical
        let tags = ok(nfc + "," + nfd)!
        XCTAssertEqual(tags.count, 2)
        XCTAssertEqual(tags.map { Array($0.utf8) }, [Array(nfd.utf8), Array(nfc.utf8)])
    }

    func testSingleQuotesAndPunctuationAllowed() {
        XCTAssertEqual(ok("it's"), ["it's"])
        XCTAssertEqual(ok("' OR 1=1 --"), ["' OR 1=1 --"])
        XCTAssertEqual(ok("a/b:c;d{e}[f]%g"), ["a/b:c;d{e}[f]%g"])
        XCTAssertEqual(ok("emoji😀"), ["emoji😀"])
        XCTAssertEqual(ok("\u{80}\u{9F}"), ["\u{80}\u{9F}"])  // C1 controls are not in the rejected set
    }

    func testEmptyElements() {
        XCTAssertEqual(messages("a,,b"), [#"Invalid tag: """#])
        XCTAssertEqual(messages("a,"), [#"Invalid tag: """#])
        XCTAssertEqual(messages(",a"), [#"Invalid tag: """#])
        XCTAssertEqual(messages(","), [#"Invalid tag: """#])
    }

    func testRejectedCharacters() {
        XCTAssertEqual(messages("a\"b"), [#"Invalid tag: "a\"b""#])
        XCTAssertEqual(messages("a\\b"), [#"Invalid tag: "a\\b""#])
        XCTAssertEqual(messages("a\u{1F}b"), [#"Invalid tag: "a\u001fb""#])
        XCTAssertEqual(messages("a\u{7F}b"), ["Invalid tag: \"a\u{7F}b\""])
        XCTAssertEqual(messages("\u{0}"), [#"Invalid tag: "\u0000""#])
        XCTAssertEqual(messages("a\nb"), [#"Invalid tag: "a\nb""#])
        XCTAssertEqual(messages("tab\there"), [#"Invalid tag: "tab\there""#])
        for c in (0x00...0x1F).map({ UInt8($0) }) + [0x7F] {
            let t = "x" + String(decoding: [c], as: UTF8.self)
            if case .success = TagsParameter.parse(t) { XCTFail("0x\(String(c, radix: 16)) accepted") }
        }
        XCTAssertTrue(TagsParameter.isValid(" "))
        XCTAssertFalse(TagsParameter.isValid(""))
    }

    func testErrorBodyIsWellFormedJSON() {
        guard case .failure(let e) = TagsParameter.parse("ok,a\"b\\c\u{1}") else { return XCTFail() }
        XCTAssertEqual(e.body, #"{"error":"Query Error","details":[{"message":"Invalid tag: \"a\\\"b\\\\c\\u0001\"","path":["tags"]}]}"#)
    }

    func testEveryInvalidTagIsReportedOnce() {
        XCTAssertEqual(messages("a\",b,,c\\,,a\""), [#"Invalid tag: "a\"""#, #"Invalid tag: """#, #"Invalid tag: "c\\""#])
    }

    func testTagCountLimit() {
        let hundred = (0..<100).map { "t\($0)" }.joined(separator: ",")
        XCTAssertEqual(ok(hundred)?.count, 100)
        XCTAssertEqual(messages(hundred + ",x").count, 1)
        // The raw element count is what is limited (duplicates included).
        XCTAssertEqual(messages(Array(repeating: "a", count: 101).joined(separator: ",")).count, 1)
        XCTAssertEqual(ok(Array(repeating: "a", count: 100).joined(separator: ",")), ["a"])
    }

    func testTagLengthLimit() {
        XCTAssertEqual(ok(String(repeating: "a", count: 500))?.first?.count, 500)
        XCTAssertEqual(ok(String(repeating: "é", count: 500))?.count, 1)  // counted in characters, not bytes
        let m = messages("ok," + String(repeating: "a", count: 501))
        XCTAssertEqual(m.count, 1)
        XCTAssertTrue(m[0].hasPrefix("Tag too long"))
    }
}

// MARK: Handles

final class ListHandleTests: XCTestCase {
    func testRunsHandleText() {
        let h = ListHandle.mintTagFeed(floorMs: 1_759_996_500_000, seq: 42, nonce: "0a1b2c3d")
        XCTAssertEqual(h, .tagFeed(floorMs: 1_759_996_500_000, seq: 42, nonce: "0a1b2c3d"))
        XCTAssertEqual(h.text, "runs_1759996500000_42_0a1b2c3d")
        XCTAssertEqual(ListHandle.parse(h.text), h)
        XCTAssertEqual(h.seq, 42)
        XCTAssertEqual(h.nonce, "0a1b2c3d")
    }

    func testBatchHandleText() {
        let h = ListHandle.mintBatch(batchId: "cm5batch0001xyz", seq: 7, nonce: "deadbeef")
        XCTAssertEqual(h.text, "batch_cm5batch0001xyz_7_deadbeef")
        XCTAssertEqual(ListHandle.parse(h.text), .batch(batchId: "cm5batch0001xyz", seq: 7, nonce: "deadbeef"))
    }

    func testBatchIdWithUnderscoresRoundTrips() {
        for id in ["a_b", "_lead", "trail_", "a__b", "1_2_3", "_", "batch_x_9_0a1b2c3d"] {
            let h = ListHandle.mintBatch(batchId: id, seq: 3, nonce: "00000000")
            XCTAssertEqual(ListHandle.parse(h.text), h, id)
        }
    }

    func testExtremeNumbersRoundTrip() {
        for h in [ListHandle.tagFeed(floorMs: 0, seq: 0, nonce: "ffffffff"),
                  .tagFeed(floorMs: Int64.max, seq: UInt64.max, nonce: "01234567"),
                  .batch(batchId: "b", seq: UInt64.max, nonce: "89abcdef")] {
            XCTAssertEqual(ListHandle.parse(h.text), h)
        }
    }

    func testMintNormalizes() {
        XCTAssertEqual(ListHandle.mintTagFeed(floorMs: -5, seq: 1, nonce: "0a1b2c3d"), .tagFeed(floorMs: 0, seq: 1, nonce: "0a1b2c3d"))
        for bad in ["", "ABCDEF01", "0a1b2c3", "0a1b2c3d4", "0a1b2c3g"] {
            let h = ListHandle.mintTagFeed(floorMs: 1, seq: 1, nonce: bad)
            XCTAssertTrue(ListHandle.isValidNonce(h.nonce), bad)
            XCTAssertEqual(ListHandle.parse(h.text), h)
            XCTAssertTrue(ListHandle.isValidNonce(ListHandle.mintBatch(batchId: "b", seq: 1, nonce: bad).nonce))
        }
        XCTAssertTrue(ListHandle.isValidNonce(ListHandle.mintTagFeed(floorMs: 1, seq: 1).nonce))
    }

    func testRandomNonce() {
        var seen = Set<String>()
        for _ in 0..<50 {
            let n = ListHandle.randomNonce()
            XCTAssertTrue(ListHandle.isValidNonce(n), n)
            seen.insert(n)
        }
        XCTAssertGreaterThan(seen.count, 40)
        XCTAssertEqual(ListHandle.hex8(0), "00000000")
        XCTAssertEqual(ListHandle.hex8(0xDEADBEEF), "deadbeef")
        XCTAssertEqual(ListHandle.hex8(0x0000000F), "0000000f")
    }

    func testMintedHandlesAreValidRequestHandles() {
        XCTAssertTrue(FeedQuery.isValidHandle(ListHandle.mintTagFeed(floorMs: Int64.max, seq: UInt64.max).text))
        XCTAssertTrue(FeedQuery.isValidHandle(ListHandle.mintBatch(batchId: "cm5q0x1y20003abcdefghijkl", seq: 1 << 53).text))
    }

    func testGarbage() {
        for bad in ["", "_", "runs", "runs_", "runs__", "runs_1_2", "runs_1_2_3", "runs_1_2_0a1b2c3",
                    "runs_1_2_0a1b2c3d0", "runs_1_2_0A1B2C3D", "runs_1_2_0a1b2c3g", "runs_1_2_0a1b2c3d_",
                    "runs_-1_2_0a1b2c3d", "runs_1_-2_0a1b2c3d", "runs_+1_2_0a1b2c3d", "runs_1_+2_0a1b2c3d",
                    "runs_ 1_2_0a1b2c3d", "runs_1 _2_0a1b2c3d", "runs_1.5_2_0a1b2c3d", "runs_１_2_0a1b2c3d",
                    "runs_9223372036854775808_1_0a1b2c3d", "runs_1_18446744073709551616_0a1b2c3d",
                    "runs_123456789012345678901_1_0a1b2c3d", "runs_1__0a1b2c3d", "runs__1_0a1b2c3d",
                    "runs_1_2_3_0a1b2c3d", "runs_x_2_0a1b2c3d", "RUNS_1_2_0a1b2c3d", "Runs_1_2_0a1b2c3d",
                    "batch__1_0a1b2c3d", "batch_1_0a1b2c3d", "batch_b_x_0a1b2c3d", "batch_b_1_", "batch",
                    "batches_b_1_0a1b2c3d", "run-cm123", "run_abc", "xruns_1_2_0a1b2c3d", "_1_2_0a1b2c3d",
                    "runs_1_2_0a1b2c3d\n", "runs_1_2_\u{0}a1b2c3d"] {
            XCTAssertNil(ListHandle.parse(bad), bad.debugDescription)
        }
    }
}

// MARK: Diff

/// A resolved or hydrated row: run id, updatedAt (ms), digest, and when its read started (µs).
func rv(_ id: String, _ updatedAtMs: Int64, _ digest: UInt64, at readAtUs: Int64) -> RunVersion {
    RunVersion(runId: id, updatedAtMs: updatedAtMs, version: RowVersion(digest: digest, readAtUs: readAtUs))
}

func ver(_ digest: UInt64, at readAtUs: Int64) -> RowVersion { RowVersion(digest: digest, readAtUs: readAtUs) }

/// A view's membership-time entry (`ListDiff.membersKey`) read at `readAtUs`.
func members(at readAtUs: Int64) -> RowVersion { RowVersion(digest: 0, readAtUs: readAtUs) }

final class ListDiffTests: XCTestCase {
    private func e(_ i: Int, _ op: ChangeOperation) -> ListEmit { ListEmit(index: i, operation: op) }

    func testWithoutViewEveryRowIsAnUpdate() {
        // Nothing is known about what the client holds: every row is sent, as an upsert, whatever its stamp.
        let rows = [rv("a", 100, 1, at: 10), rv("b", 200, 2, at: 10), rv("c", 50, 3, at: 10)]
        XCTAssertEqual(ListDiff.diff(rows, view: nil), [e(0, .update), e(1, .update), e(2, .update)])
        XCTAssertEqual(ListDiff.offsetMs(rows, floorMs: 100), 200)
        XCTAssertEqual(ListDiff.diff([rv("a", 1, 1, at: 0), rv("b", 2, 2, at: 0)], view: nil),
                       [e(0, .update), e(1, .update)])
        XCTAssertEqual(ListDiff.diff([], view: nil), [])
    }

    func testWithView() {
        let view: ListView = ["a": ver(1, at: 10), "b": ver(2, at: 10)]
        let rows = [rv("a", 100, 1, at: 20), rv("b", 200, 3, at: 20), rv("c", 10, 4, at: 20)]
        XCTAssertEqual(ListDiff.diff(rows, view: view), [e(1, .update), e(2, .insert)])
        XCTAssertEqual(ListDiff.offsetMs(rows, floorMs: 150), 200)
    }

    func testNewMemberIsAnInsertWhateverItsStamp() {
        // Membership is decided by the view, not by updatedAt or the floor.
        XCTAssertEqual(ListDiff.diff([rv("new", 5, 1, at: 0)], view: ["old": ver(9, at: 900)]), [e(0, .insert)])
        XCTAssertEqual(ListDiff.offsetMs([rv("new", 5, 1, at: 0)], floorMs: 900), 900)
    }

    func testSameContentIsNotEmitted() {
        let view: ListView = ["a": ver(7, at: 10)]
        XCTAssertEqual(ListDiff.diff([rv("a", 100, 7, at: 10)], view: view), [])
        XCTAssertEqual(ListDiff.diff([rv("a", 100, 7, at: 99)], view: view), [])
        XCTAssertEqual(ListDiff.diff([rv("a", 101, 7, at: 99)], view: view), [])
    }

    func testSameMillisecondDifferentContentIsAnUpdate() {
        let view: ListView = ["a": ver(7, at: 10)]
        XCTAssertEqual(ListDiff.diff([rv("a", 100, 8, at: 11)], view: view), [e(0, .update)])
    }

    func testEarlierStampedLaterReadIsAnUpdate() {
        // A commit that carries an earlier app-server stamp than the version the client holds.
        XCTAssertEqual(ListDiff.diff([rv("a", 90, 8, at: 20)], view: ["a": ver(7, at: 10)]), [e(0, .update)])
        XCTAssertEqual(ListDiff.offsetMs([rv("a", 90, 8, at: 20)], floorMs: 100), 100)
    }

    func testStaleReadIsNotEmitted() {
        // A different row read no later than the client's version is an older version: never sent.
        let view: ListView = ["a": ver(7, at: 10)]
        XCTAssertEqual(ListDiff.diff([rv("a", 500, 8, at: 9)], view: view), [])
        XCTAssertEqual(ListDiff.diff([rv("a", 500, 8, at: 10)], view: view), [])
        XCTAssertEqual(ListDiff.diff([rv("a", 500, 8, at: 0)], view: view), [])
        XCTAssertEqual(ListDiff.offsetMs([rv("a", 90, 8, at: 9)], floorMs: 0), 90)
    }

    func testOffsetCoversAllRowsAndFloor() {
        XCTAssertEqual(ListDiff.offsetMs([rv("a", 500, 1, at: 0)], floorMs: 100), 500)
        XCTAssertEqual(ListDiff.offsetMs([rv("a", 10, 1, at: 0)], floorMs: 1000), 1000)
        XCTAssertEqual(ListDiff.offsetMs([], floorMs: 77), 77)
        XCTAssertEqual(ListDiff.offsetMs([], floorMs: 0), 0)
        XCTAssertEqual(ListDiff.offsetMs([rv("a", 10, 1, at: 0), rv("b", 30, 1, at: 0), rv("c", 20, 1, at: 0)], floorMs: 0), 30)
    }

    func testEmptyViewMakesEverythingAnInsert() {
        XCTAssertEqual(ListDiff.diff([rv("a", 1, 1, at: 5), rv("b", 2, 2, at: 5)], view: [:]),
                       [e(0, .insert), e(1, .insert)])
    }

    func testDuplicateRunsAreJudgedOnceByLatestRead() {
        XCTAssertEqual(ListDiff.diff([rv("a", 100, 1, at: 1), rv("a", 200, 2, at: 2)], view: nil), [e(1, .update)])
        XCTAssertEqual(ListDiff.diff([rv("a", 200, 2, at: 2), rv("a", 100, 1, at: 1)], view: nil), [e(0, .update)])
        // Equal reads: the first one.
        XCTAssertEqual(ListDiff.diff([rv("a", 200, 1, at: 2), rv("a", 200, 2, at: 2)], view: [:]), [e(0, .insert)])
        XCTAssertEqual(ListDiff.diff([rv("a", 100, 1, at: 100), rv("b", 1, 5, at: 1), rv("a", 300, 3, at: 300)],
                                     view: ["a": ver(2, at: 200)]),
                       [e(1, .insert), e(2, .update)])
        // The latest read holds what the client already has: nothing, even if another occurrence differs.
        XCTAssertEqual(ListDiff.diff([rv("a", 100, 9, at: 250), rv("a", 100, 2, at: 300)], view: ["a": ver(2, at: 200)]), [])
        // Sorted by updatedAt, the latest read can come last and be earlier-stamped.
        XCTAssertEqual(ListDiff.diff([rv("a", 300, 9, at: 250), rv("a", 100, 3, at: 300)], view: ["a": ver(2, at: 200)]),
                       [e(1, .update)])
    }

    func testMerge() {
        let view: ListView = ["a": ver(1, at: 10), "z": ver(26, at: 1)]
        let rows = [rv("a", 100, 2, at: 20), rv("b", 100, 5, at: 20), rv("c", 100, 6, at: 20)]
        // Only the sent rows change the view; the rest (and runs the hydrate did not list) stay.
        let merged = ListDiff.merge(view, rows, emits: [e(0, .update), e(1, .insert)])
        XCTAssertEqual(merged, ["a": ver(2, at: 20), "b": ver(5, at: 20), "z": ver(26, at: 1)])
        XCTAssertEqual(ListDiff.merge(view, rows, emits: []), view)
        // An emitted row replaces whatever was there (diff only emits what supersedes it).
        XCTAssertEqual(ListDiff.merge(["a": ver(1, at: 10)], [rv("a", 1, 3, at: 11)], emits: [e(0, .update)]),
                       ["a": ver(3, at: 11)])
    }

    func testMergeOfDiffWithDuplicates() {
        let view: ListView = ["a": ver(1, at: 10)]
        let rows = [rv("a", 100, 2, at: 20), rv("a", 90, 3, at: 30)]
        let emits = ListDiff.diff(rows, view: view)
        XCTAssertEqual(emits, [e(1, .update)])
        XCTAssertEqual(ListDiff.merge(view, rows, emits: emits), ["a": ver(3, at: 30)])
    }

    func testSnapshotThenLiveScenario() {
        // The snapshot sends every member (no view yet).
        let snapshot = [rv("a", 100, 1, at: 1_000), rv("b", 120, 2, at: 1_000)]
        let sent = ListDiff.diff(snapshot, view: nil)
        XCTAssertEqual(sent.count, 2)
        var view = ListDiff.replace(nil, snapshot, emits: sent)
        // A new view: its membership was read with the snapshot's rows.
        XCTAssertEqual(view, ["a": ver(1, at: 1_000), "b": ver(2, at: 1_000), "#members": members(at: 1_000)])
        // The same rows again: nothing new.
        XCTAssertEqual(ListDiff.diff(snapshot, view: view), [])
        // Live: b changes within the same millisecond, c joins with an older stamp.
        let live = [rv("b", 120, 3, at: 2_000), rv("c", 110, 4, at: 2_000)]
        let emits = ListDiff.diff(live, view: view)
        XCTAssertEqual(emits, [e(0, .update), e(1, .insert)])
        XCTAssertEqual(ListDiff.offsetMs(live, floorMs: 120), 120)
        view = ListDiff.merge(view, live, emits: emits)
        // A hydrate's merge leaves the membership time alone.
        XCTAssertEqual(view, ["a": ver(1, at: 1_000), "b": ver(3, at: 2_000), "c": ver(4, at: 2_000),
                              "#members": members(at: 1_000)])
        XCTAssertEqual(ListDiff.diff(live, view: view), [])
        // A cached resolve older than the live reads moves nothing backwards.
        let cached = [rv("a", 100, 1, at: 1_500), rv("b", 120, 2, at: 1_500), rv("c", 110, 5, at: 1_500)]
        XCTAssertEqual(ListDiff.diff(cached, view: view), [])
    }
}

final class ListDiffReplaceTests: XCTestCase {
    private func e(_ i: Int, _ op: ChangeOperation) -> ListEmit { ListEmit(index: i, operation: op) }

    func testWithoutViewTheResolveIsTheView() {
        let rows = [rv("a", 5, 1, at: 10), rv("b", 9, 2, at: 10)]
        XCTAssertEqual(ListDiff.replace(nil, rows, emits: ListDiff.diff(rows, view: nil)),
                       ["a": ver(1, at: 10), "b": ver(2, at: 10), "#members": members(at: 10)])
        // No rows and no membership time: nothing to date the membership by.
        XCTAssertEqual(ListDiff.replace(nil, [], emits: []), [:])
        // Duplicates: the latest read of each run; the membership time is the earliest read of all the rows.
        let dup = [rv("a", 1, 1, at: 1), rv("a", 3, 3, at: 3), rv("b", 2, 2, at: 2), rv("a", 2, 2, at: 2)]
        XCTAssertEqual(ListDiff.replace(nil, dup, emits: ListDiff.diff(dup, view: nil)),
                       ["a": ver(3, at: 3), "b": ver(2, at: 2), "#members": members(at: 1)])
    }

    func testSentRowsReplaceTheClientsVersion() {
        let view: ListView = ["a": ver(1, at: 10), "b": ver(2, at: 10)]
        let rows = [rv("a", 5, 3, at: 20), rv("b", 5, 2, at: 20), rv("c", 5, 4, at: 20)]
        let emits = ListDiff.diff(rows, view: view)
        XCTAssertEqual(emits, [e(0, .update), e(2, .insert)])
        XCTAssertEqual(ListDiff.replace(view, rows, emits: emits),
                       ["a": ver(3, at: 20), "b": ver(2, at: 10), "c": ver(4, at: 20)])
    }

    func testSkippedStaleRowsKeepTheClientsVersion() {
        // The resolve came from a cache older than the version the client holds.
        let view: ListView = ["a": ver(7, at: 50), "b": ver(8, at: 50)]
        let rows = [rv("a", 5, 6, at: 40), rv("b", 5, 8, at: 40)]
        let emits = ListDiff.diff(rows, view: view)
        XCTAssertEqual(emits, [])
        let replaced = ListDiff.replace(view, rows, emits: emits)
        XCTAssertEqual(replaced, view)
        // Diffing the stale resolve against the result still emits nothing; a fresh read of a new row does.
        XCTAssertEqual(ListDiff.diff(rows, view: replaced), [])
        XCTAssertEqual(ListDiff.diff([rv("a", 5, 6, at: 60)], view: replaced), [e(0, .update)])
    }

    func testRunsNoLongerListedAreDropped() {
        let view: ListView = ["a": ver(1, at: 10), "gone": ver(2, at: 10)]
        let rows = [rv("a", 5, 1, at: 20)]
        // "gone" drops out: the membership time moves to the resolve's read.
        XCTAssertEqual(ListDiff.replace(view, rows, emits: ListDiff.diff(rows, view: view)),
                       ["a": ver(1, at: 10), "#members": members(at: 20)])
        // Read at the same moment as the resolve: the resolve speaks for it.
        let same: ListView = ["a": ver(1, at: 10), "gone": ver(2, at: 20)]
        XCTAssertEqual(ListDiff.replace(same, rows, emits: []), ["a": ver(1, at: 10), "#members": members(at: 20)])
    }

    func testRunsReadAfterTheResolveStay() {
        // The client's version of "new" came from a hydrate that started after the (cached) resolve.
        let view: ListView = ["a": ver(1, at: 10), "new": ver(2, at: 30), "gone": ver(3, at: 5)]
        let rows = [rv("a", 5, 1, at: 20)]
        // "gone" (read before the resolve) drops out, so the membership time is set.
        XCTAssertEqual(ListDiff.replace(view, rows, emits: ListDiff.diff(rows, view: view)),
                       ["a": ver(1, at: 10), "new": ver(2, at: 30), "#members": members(at: 20)])
        // With nothing dropping (only a run read after the resolve is missing), no membership time appears.
        let kept: ListView = ["a": ver(1, at: 10), "new": ver(2, at: 30)]
        XCTAssertEqual(ListDiff.replace(kept, rows, emits: ListDiff.diff(rows, view: kept)), kept)
    }
}

/// The membership time (`ListDiff.membersKey`) and what is built on it: `replace`, `sendFloorUs` and
/// `needsFresherRead`.
final class ListDiffMembersTests: XCTestCase {
    private func e(_ i: Int, _ op: ChangeOperation) -> ListEmit { ListEmit(index: i, operation: op) }

    /// The view's run entries, without the membership time.
    private func runs(_ v: ListView) -> ListView { v.filter { $0.key != ListDiff.membersKey } }

    /// `replace` with the emits `diff` gives.
    private func resolve(_ view: ListView?, _ rows: [RunVersion], membersReadAtUs: Int64 = 0) -> ListView {
        ListDiff.replace(view, rows, emits: ListDiff.diff(rows, view: view), membersReadAtUs: membersReadAtUs)
    }

    func testMembersKey() {
        XCTAssertEqual(ListDiff.membersKey, "#members")
    }

    // MARK: replace

    func testNewViewSetsTheMembershipTime() {
        let rows = [rv("a", 5, 1, at: 12), rv("b", 9, 2, at: 10)]
        // From the earliest read of the rows...
        XCTAssertEqual(resolve(nil, rows), ["a": ver(1, at: 12), "b": ver(2, at: 10), "#members": members(at: 10)])
        // ...or from membersReadAtUs when given, earlier or later than the rows.
        XCTAssertEqual(resolve(nil, rows, membersReadAtUs: 7), ["a": ver(1, at: 12), "b": ver(2, at: 10), "#members": members(at: 7)])
        XCTAssertEqual(resolve(nil, rows, membersReadAtUs: 15), ["a": ver(1, at: 12), "b": ver(2, at: 10), "#members": members(at: 15)])
        // An empty set dated by its membership query.
        XCTAssertEqual(resolve(nil, [], membersReadAtUs: 5), ["#members": members(at: 5)])
    }

    func testDroppedRunSetsTheMembershipTime() {
        let view: ListView = ["a": ver(1, at: 10), "gone": ver(2, at: 10), "#members": members(at: 5)]
        let rows = [rv("a", 5, 1, at: 20)]
        let dropped = resolve(view, rows)
        XCTAssertEqual(runs(dropped), ["a": ver(1, at: 10)])
        XCTAssertEqual(dropped[ListDiff.membersKey], members(at: 20))
        // From membersReadAtUs when given (here earlier than the rows, later than the old time).
        XCTAssertEqual(resolve(view, rows, membersReadAtUs: 18), ["a": ver(1, at: 10), "#members": members(at: 18)])
        XCTAssertEqual(resolve(view, rows, membersReadAtUs: 25), ["a": ver(1, at: 10), "#members": members(at: 25)])
        // A view with no membership time yet gets one when a run drops.
        XCTAssertEqual(resolve(["a": ver(1, at: 10), "gone": ver(2, at: 10)], rows),
                       ["a": ver(1, at: 10), "#members": members(at: 20)])
        // A drop that comes with an update and an insert.
        let mixed = [rv("a", 5, 3, at: 20), rv("c", 5, 4, at: 22)]
        XCTAssertEqual(resolve(view, mixed),
                       ["a": ver(3, at: 20), "c": ver(4, at: 22), "#members": members(at: 20)])
    }

    func testMembershipTimeIsNeverLowered() {
        let view: ListView = ["a": ver(1, at: 10), "gone": ver(2, at: 10), "#members": members(at: 50)]
        let rows = [rv("a", 5, 1, at: 20)]
        XCTAssertEqual(resolve(view, rows), ["a": ver(1, at: 10), "#members": members(at: 50)])
        XCTAssertEqual(resolve(view, rows, membersReadAtUs: 40), ["a": ver(1, at: 10), "#members": members(at: 50)])
        XCTAssertEqual(resolve(view, rows, membersReadAtUs: 50), ["a": ver(1, at: 10), "#members": members(at: 50)])
        XCTAssertEqual(resolve(view, rows, membersReadAtUs: 60), ["a": ver(1, at: 10), "#members": members(at: 60)])
        // An empty resolve drops every run; the time still only moves forward.
        XCTAssertEqual(resolve(view, [], membersReadAtUs: 30), ["#members": members(at: 50)])
        XCTAssertEqual(resolve(view, [], membersReadAtUs: 70), ["#members": members(at: 70)])
    }

    func testMembershipTimeIsKeptWhenNothingDrops() {
        let view: ListView = ["a": ver(1, at: 10), "b": ver(2, at: 10), "#members": members(at: 5)]
        // The same members again, read later: the view is unchanged, membership time included.
        let same = [rv("a", 5, 1, at: 20), rv("b", 5, 2, at: 20)]
        XCTAssertEqual(ListDiff.diff(same, view: view), [])
        XCTAssertEqual(resolve(view, same), view)
        XCTAssertEqual(resolve(view, same, membersReadAtUs: 30), view)
        // An update and an insert drop nothing: the old time stays.
        let changed = [rv("a", 5, 1, at: 20), rv("b", 5, 3, at: 20), rv("c", 5, 4, at: 20)]
        XCTAssertEqual(ListDiff.diff(changed, view: view), [e(1, .update), e(2, .insert)])
        XCTAssertEqual(resolve(view, changed, membersReadAtUs: 30),
                       ["a": ver(1, at: 10), "b": ver(3, at: 20), "c": ver(4, at: 20), "#members": members(at: 5)])
        // A missing run read after the resolve stays, so nothing drops.
        let late: ListView = ["a": ver(1, at: 10), "late": ver(2, at: 30), "#members": members(at: 5)]
        XCTAssertEqual(resolve(late, [rv("a", 5, 1, at: 20)], membersReadAtUs: 25), late)
        // A view without a membership time does not gain one when nothing drops.
        let bare: ListView = ["a": ver(1, at: 10), "b": ver(2, at: 10)]
        XCTAssertEqual(resolve(bare, same, membersReadAtUs: 30), bare)
        // The membership entry is not a run: read before the resolve, it is not "dropped".
        let onlyA: ListView = ["a": ver(1, at: 10), "#members": members(at: 5)]
        XCTAssertEqual(resolve(onlyA, [rv("a", 5, 1, at: 20)], membersReadAtUs: 99), onlyA)
    }

    func testEmptyResolveWithoutMembershipTimeSetsNone() {
        XCTAssertEqual(resolve(nil, []), [:])
        XCTAssertEqual(resolve([:], []), [:])
        // Every run drops, but nothing dates the membership: no entry appears...
        XCTAssertEqual(resolve(["a": ver(1, at: 10)], []), [:])
        // ...and an existing one is kept as it was.
        XCTAssertEqual(resolve(["a": ver(1, at: 10), "#members": members(at: 5)], []), ["#members": members(at: 5)])
        XCTAssertEqual(resolve(["#members": members(at: 5)], []), ["#members": members(at: 5)])
        // With a membership time, the empty set is dated by it.
        XCTAssertEqual(resolve(["a": ver(1, at: 10)], [], membersReadAtUs: 40), ["#members": members(at: 40)])
    }

    // MARK: sendFloorUs

    func testSendFloorWithoutView() {
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 1_000, view: nil, skewMs: 250), 1_250_999)
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 1_000, view: nil, skewMs: 0), 1_000_999)
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 0, view: nil, skewMs: 0), 999)
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 1_760_000_000_123, view: nil, skewMs: 2_000),
                       1_760_000_002_123_999)
        // A negative allowance counts as none.
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 1_000, view: nil, skewMs: -50), 1_000_999)
    }

    func testSendFloorWithView() {
        // The latest read in the view, the membership time included; the basis and skew play no part.
        let view: ListView = ["a": ver(1, at: 10), "b": ver(2, at: 30), "#members": members(at: 50)]
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 1_000_000, view: view, skewMs: 250), 50)
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 0, view: view, skewMs: 0), 50)
        // A run read after the membership time.
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 0, view: ["a": ver(1, at: 70), "#members": members(at: 50)], skewMs: 0), 70)
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 0, view: ["a": ver(1, at: 10), "b": ver(2, at: 30)], skewMs: 0), 30)
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 9, view: ["#members": members(at: 40)], skewMs: 9), 40)
        // An empty view has no read to be after.
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 1_000, view: [:], skewMs: 250), Int64.min)
        // The floor of a view `replace` built is its membership time when a run dropped.
        let replaced = resolve(["a": ver(1, at: 10), "gone": ver(2, at: 10)], [rv("a", 5, 1, at: 20)], membersReadAtUs: 25)
        XCTAssertEqual(ListDiff.sendFloorUs(basisMs: 0, view: replaced, skewMs: 0), 25)
    }

    func testSendFloorOfASnapshotAndOfAPollWithAnOffset() {
        // A snapshot (no offset) holds nothing: any read may be sent, however old — a cached runset included.
        XCTAssertEqual(ListDiff.sendFloorUs(offset: nil, view: nil, skewMs: 250, askedAtMs: 5_000), Int64.min)
        XCTAssertFalse(ListDiff.needsFresherRead([rv("a", 5, 1, at: 1)], view: nil,
                                                 floorUs: ListDiff.sendFloorUs(offset: nil, view: nil, skewMs: 250, askedAtMs: 5_000)))
        // With an offset and no view (it was lost), reads must come after the poll asked, skew allowed.
        let offset = Offset(updatedAtMs: 10, tail: 1_000, token: 7)
        XCTAssertEqual(ListDiff.sendFloorUs(offset: offset, view: nil, skewMs: 250, askedAtMs: 5_000), 5_250_999)
        XCTAssertEqual(ListDiff.sendFloorUs(offset: offset, view: nil, skewMs: 250, askedAtMs: 500), 1_250_999)
        // With a view, its latest read.
        XCTAssertEqual(ListDiff.sendFloorUs(offset: offset, view: ["a": ver(1, at: 70)], skewMs: 250, askedAtMs: 5_000), 70)
    }

    // MARK: needsFresherRead

    func testNeedsFresherReadWithView() {
        let view: ListView = ["a": ver(1, at: 100), "b": ver(2, at: 100), "#members": members(at: 150)]
        let floor = ListDiff.sendFloorUs(basisMs: 0, view: view, skewMs: 0)
        XCTAssertEqual(floor, 150)
        func needs(_ rows: [RunVersion]) -> Bool { ListDiff.needsFresherRead(rows, view: view, floorUs: floor) }
        // An update read at or before the floor.
        XCTAssertEqual(ListDiff.diff([rv("a", 5, 5, at: 120)], view: view), [e(0, .update)])
        XCTAssertTrue(needs([rv("a", 5, 5, at: 120)]))
        XCTAssertTrue(needs([rv("a", 5, 5, at: 150)]))
        XCTAssertFalse(needs([rv("a", 5, 5, at: 151)]))
        // An insert read at or before the floor (a run the view does not list was absent as of 150).
        XCTAssertEqual(ListDiff.diff([rv("c", 5, 3, at: 20)], view: view), [e(0, .insert)])
        XCTAssertTrue(needs([rv("c", 5, 3, at: 20)]))
        XCTAssertTrue(needs([rv("c", 5, 3, at: 150)]))
        XCTAssertFalse(needs([rv("c", 5, 3, at: 151)]))
        // Only skipped rows are old (the same row; an older read of another): nothing old would be sent.
        let skippedOld = [rv("a", 5, 1, at: 50), rv("b", 5, 9, at: 90), rv("c", 5, 3, at: 200)]
        XCTAssertEqual(ListDiff.diff(skippedOld, view: view), [e(2, .insert)])
        XCTAssertFalse(needs(skippedOld))
        XCTAssertFalse(needs([rv("a", 5, 1, at: 120), rv("b", 5, 2, at: 150)]))
        // One old emitted row among fresh ones is enough.
        XCTAssertTrue(needs([rv("a", 5, 5, at: 300), rv("c", 5, 3, at: 140)]))
        XCTAssertFalse(needs([]))
    }

    func testNeedsFresherReadWithoutView() {
        let floor = ListDiff.sendFloorUs(basisMs: 1, view: nil, skewMs: 0)
        XCTAssertEqual(floor, 1_999)
        // Every row is sent (as an update): any read at or before the floor needs a fresher one.
        XCTAssertTrue(ListDiff.needsFresherRead([rv("a", 5, 1, at: 1_999)], view: nil, floorUs: floor))
        XCTAssertTrue(ListDiff.needsFresherRead([rv("a", 5, 1, at: 5_000), rv("b", 5, 2, at: 10)], view: nil, floorUs: floor))
        XCTAssertFalse(ListDiff.needsFresherRead([rv("a", 5, 1, at: 2_000), rv("b", 5, 2, at: 5_000)], view: nil, floorUs: floor))
        XCTAssertFalse(ListDiff.needsFresherRead([], view: nil, floorUs: floor))
        // A duplicate is judged by its latest read: an older occurrence is not sent.
        XCTAssertFalse(ListDiff.needsFresherRead([rv("a", 5, 1, at: 10), rv("a", 5, 2, at: 3_000)], view: nil, floorUs: floor))
    }
}

// MARK: Working-set store

final class ListViewDeltaTests: XCTestCase {
    func testChangedAndRemoved() {
        let old: ListView = ["b": ver(2, at: 1), "a": ver(1, at: 1), "x": ver(9, at: 1), "c": ver(3, at: 1)]
        let new: ListView = ["c": ver(4, at: 2), "a": ver(1, at: 1), "d": ver(5, at: 2), "b": ver(2, at: 3)]
        let d = ListViewDelta.between(old, new)
        XCTAssertEqual(d.changed.map(\.0), ["b", "c", "d"])
        XCTAssertEqual(d.changed.map(\.1), [ver(2, at: 3), ver(4, at: 2), ver(5, at: 2)])
        XCTAssertEqual(d.removed, ["x"])
        XCTAssertFalse(d.isEmpty)
        XCTAssertEqual(d, ListViewDelta(changed: [("b", ver(2, at: 3)), ("c", ver(4, at: 2)), ("d", ver(5, at: 2))],
                                        removed: ["x"]))
    }

    func testRemovedIsSorted() {
        let old: ListView = ["z": ver(1, at: 1), "m": ver(1, at: 1), "a": ver(1, at: 1), "k": ver(1, at: 1)]
        XCTAssertEqual(ListViewDelta.between(old, ["k": ver(1, at: 1)]).removed, ["a", "m", "z"])
        XCTAssertEqual(ListViewDelta.between(old, ["k": ver(1, at: 1)]).changed.count, 0)
        XCTAssertEqual(ListViewDelta.between(old, [:]).removed, ["a", "k", "m", "z"])
    }

    func testNilOldIsEverything() {
        let new: ListView = ["b": ver(2, at: 1), "a": ver(1, at: 1)]
        let d = ListViewDelta.between(nil, new)
        XCTAssertEqual(d, ListViewDelta(changed: [("a", ver(1, at: 1)), ("b", ver(2, at: 1))], removed: []))
        XCTAssertTrue(ListViewDelta.between(nil, [:]).isEmpty)
    }

    func testUnchangedIsEmpty() {
        let v: ListView = ["a": ver(1, at: 1), "b": ver(2, at: 2)]
        XCTAssertTrue(ListViewDelta.between(v, v).isEmpty)
        XCTAssertEqual(ListViewDelta.between(v, v), ListViewDelta(changed: [], removed: []))
    }

    func testEqualityIsOrderSensitive() {
        XCTAssertNotEqual(ListViewDelta(changed: [("a", ver(1, at: 1)), ("b", ver(2, at: 1))], removed: []),
                          ListViewDelta(changed: [("b", ver(2, at: 1)), ("a", ver(1, at: 1))], removed: []))
        XCTAssertNotEqual(ListViewDelta(changed: [("a", ver(1, at: 1))], removed: []),
                          ListViewDelta(changed: [("a", ver(1, at: 2))], removed: []))
    }

    func testApplyingTheDeltaGivesTheNewView() {
        let old: ListView = ["a": ver(1, at: 1), "b": ver(2, at: 1), "c": ver(3, at: 1)]
        let new: ListView = ["a": ver(1, at: 1), "b": ver(7, at: 5), "d": ver(4, at: 5)]
        let d = ListViewDelta.between(old, new)
        var applied = old
        for (k, v) in d.changed { applied[k] = v }
        for k in d.removed { applied[k] = nil }
        XCTAssertEqual(applied, new)
    }
}

final class ListViewCodecTests: XCTestCase {
    func testEncode() {
        XCTAssertEqual(ListViewCodec.encode(ver(0xdead_beef, at: 1_760_000_000_123_456)), "deadbeef:1760000000123456")
        XCTAssertEqual(ListViewCodec.encode(ver(UInt64.max, at: 0)), "ffffffffffffffff:0")
        XCTAssertEqual(ListViewCodec.encode(ver(1, at: -5)), "1:-5")
    }

    func testRoundTrip() {
        for v in [ver(1, at: 0), ver(0xdead_beef, at: 1_760_000_000_123_456), ver(UInt64.max, at: Int64.max),
                  ver(1 << 63, at: Int64.min), ver(0, at: 1)] {
            XCTAssertEqual(ListViewCodec.decode(ListViewCodec.encode(v)), v, ListViewCodec.encode(v))
        }
    }

    func testRejectsMalformed() {
        for bad in ["", ":", "ff", "ff:", ":5", "ff:5:6", "zz:5", "ff:x", "ff:5.0", "ff:5 ", " ff:5", "ff :5",
                    "10000000000000000:5", "00000000000000001:5", "ff:9223372036854775808", "ff;5", "0xff:5",
                    "-1:5"] {
            XCTAssertNil(ListViewCodec.decode(bad), bad)
        }
        XCTAssertEqual(ListViewCodec.decode("0000000000000001:5"), ver(1, at: 5))  // 16 hex digits
    }

    func testViewFromPairs() {
        let pairs = ["@token", "77", "run_a", "deadbeef:10", "run_b", "1:20"]
        XCTAssertEqual(ListViewCodec.view(fromPairs: pairs, token: 77), ["run_a": ver(0xdead_beef, at: 10), "run_b": ver(1, at: 20)])
        // The token field may come anywhere.
        XCTAssertEqual(ListViewCodec.view(fromPairs: ["run_a", "2:3", "@token", "18446744073709551615"], token: UInt64.max),
                       ["run_a": ver(2, at: 3)])
        // An empty working set that belongs to the token.
        XCTAssertEqual(ListViewCodec.view(fromPairs: ["@token", "5"], token: 5), [:])
        XCTAssertEqual(ListViewCodec.tokenField, "@token")
    }

    func testViewFromPairsRejects() {
        let pairs = ["@token", "77", "run_a", "deadbeef:10"]
        XCTAssertNil(ListViewCodec.view(fromPairs: pairs, token: 78), "another token")
        XCTAssertNil(ListViewCodec.view(fromPairs: ["run_a", "deadbeef:10"], token: 77), "missing token")
        XCTAssertNil(ListViewCodec.view(fromPairs: [], token: 77), "nothing stored")
        XCTAssertNil(ListViewCodec.view(fromPairs: ["@token", "77", "run_a"], token: 77), "odd pair count")
        XCTAssertNil(ListViewCodec.view(fromPairs: ["@token"], token: 77), "odd pair count")
        XCTAssertNil(ListViewCodec.view(fromPairs: ["@token", "77", "run_a", "garbage"], token: 77), "malformed value")
        XCTAssertNil(ListViewCodec.view(fromPairs: ["@token", "x77", "run_a", "1:1"], token: 77), "malformed token")
    }

    func testStoreRoundTrip() {
        // What the store writes (token + encoded view) reads back as the same view.
        let view: ListView = ["a": ver(1, at: 10), "b": ver(UInt64.max, at: 20), "c": ver(0xabc, at: 0)]
        var pairs = [ListViewCodec.tokenField, String(UInt64(123_456_789))]
        for (k, v) in view.sorted(by: { $0.key < $1.key }) { pairs += [k, ListViewCodec.encode(v)] }
        XCTAssertEqual(ListViewCodec.view(fromPairs: pairs, token: 123_456_789), view)
    }
}

// MARK: Filters

final class ListFilterTests: XCTestCase {
    private func full(_ tags: [String], batch: String? = nil) -> ChangeRecord {
        ChangeRecord(runId: "r1", envId: "e1", tags: tags, batchId: batch)
    }

    private func partial(batch: String? = nil) -> ChangeRecord {
        ChangeRecord(runId: "r1", envId: "e1", tags: nil, batchId: batch)
    }

    private func row(tags: String?, batch: String? = nil) -> RunRow {
        RunRow(raw: sampleRaw([.runTags: tags], batchId: batch))!
    }

    func testInitNormalizes() {
        let f = ListFilter.tags(["b", "a", "b"], floorMs: 5)
        XCTAssertEqual(f.kind, .tags(["a", "b"]))
        XCTAssertEqual(f.tags, ["a", "b"])
        XCTAssertNil(f.batchId)
        XCTAssertEqual(f.floorMs, 5)
        let b = ListFilter(kind: .batch(batchId: "b1"), floorMs: 99)
        XCTAssertEqual(b.floorMs, 0)
        XCTAssertEqual(b.batchId, "b1")
        XCTAssertEqual(b.tags, [])
    }

    func testHashableByteExact() {
        XCTAssertEqual(ListFilter.tags(["a", "b"], floorMs: 1), ListFilter.tags(["b", "a"], floorMs: 1))
        XCTAssertNotEqual(ListFilter.tags(["a"], floorMs: 1), ListFilter.tags(["a"], floorMs: 2))
        XCTAssertNotEqual(ListFilter.tags([], floorMs: 0), ListFilter.batch(""))
        let nfc = ListFilter.tags(["\u{E9}"], floorMs: 0), nfd = ListFilter.tags(["e\u{301}"], floorMs: 0)
        XCTAssertNotEqual(nfc, nfd)
        XCTAssertEqual(Set([nfc, nfd, nfc]).count, 2)
        XCTAssertNotEqual(ListFilter.batch("\u{E9}"), ListFilter.batch("e\u{301}"))
        XCTAssertEqual(Set([ListFilter.batch("x"), .batch("x"), .tags(["x"], floorMs: 0)]).count, 2)
    }

    func testTagsMayMatch() {
        let f = ListFilter.tags(["a", "b"], floorMs: 0)
        XCTAssertTrue(f.mayMatch(full(["a", "b"])))
        XCTAssertTrue(f.mayMatch(full(["c", "b", "a"])))
        XCTAssertFalse(f.mayMatch(full(["a"])))
        XCTAssertFalse(f.mayMatch(full([])))
        XCTAssertTrue(f.mayMatch(partial()))
        XCTAssertTrue(f.mayMatch(full(["a", "b"], batch: "anything")))
    }

    func testUnfilteredTagFeedMatchesEveryRecord() {
        let f = ListFilter.tags([], floorMs: 0)
        XCTAssertTrue(f.mayMatch(full([])))
        XCTAssertTrue(f.mayMatch(full(["x"])))
        XCTAssertTrue(f.mayMatch(partial()))
    }

    func testTagMatchingIsByteExact() {
        let f = ListFilter.tags(["\u{E9}"], floorMs: 0)
        XCTAssertFalse(f.mayMatch(full(["e\u{301}"])))
        XCTAssertTrue(f.mayMatch(full(["\u{E9}"])))
        XCTAssertFalse(ListFilter.tags(["A"], floorMs: 0).mayMatch(full(["a"])))
        // Many record tags (set path).
        let many = (0..<20).map { "t\($0)" }
        XCTAssertTrue(ListFilter.tags(["t3", "t17"], floorMs: 0).mayMatch(full(many)))
        XCTAssertFalse(ListFilter.tags(["t3", "t20"], floorMs: 0).mayMatch(full(many)))
    }

    func testBatchMayMatch() {
        let f = ListFilter.batch("b1")
        XCTAssertTrue(f.mayMatch(full([], batch: "b1")))
        XCTAssertFalse(f.mayMatch(full([], batch: "b2")))
        // A full record with a null batchId says the run is in no batch.
        XCTAssertFalse(f.mayMatch(full([], batch: nil)))
        XCTAssertTrue(f.mayMatch(partial(batch: nil)))
        XCTAssertTrue(f.mayMatch(partial(batch: "b2")))
        XCTAssertTrue(f.mayMatch(ChangeRecord.parse("cmbare123")!))
    }

    func testTagsContains() {
        let r = row(tags: #"{user:42,"a b"}"#)
        let created = PGText.timestampToEpochMs("2026-06-11 08:15:02.12")!
        XCTAssertEqual(r.createdAtMs, created)
        XCTAssertTrue(ListFilter.tags(["user:42"], floorMs: created).contains(r))
        XCTAssertTrue(ListFilter.tags(["a b", "user:42"], floorMs: 0).contains(r))
        XCTAssertTrue(ListFilter.tags([], floorMs: created).contains(r))
        XCTAssertFalse(ListFilter.tags(["user:42"], floorMs: created + 1).contains(r))
        XCTAssertFalse(ListFilter.tags(["user:4"], floorMs: 0).contains(r))
        XCTAssertFalse(ListFilter.tags(["user:42", "x"], floorMs: 0).contains(r))
        XCTAssertFalse(ListFilter.tags(["a"], floorMs: 0).contains(row(tags: nil)))
        XCTAssertTrue(ListFilter.tags([], floorMs: 0).contains(row(tags: nil)))
    }

    func testBatchContains() {
        XCTAssertTrue(ListFilter.batch("b1").contains(row(tags: nil, batch: "b1")))
        XCTAssertFalse(ListFilter.batch("b1").contains(row(tags: nil, batch: "b2")))
        XCTAssertFalse(ListFilter.batch("b1").contains(row(tags: nil, batch: nil)))
    }

    func testCacheKey() {
        let skip = ColumnSet(skipping: [.payload, .output])
        XCTAssertEqual(ListFilter.tags(["b", "a"], floorMs: 123).cacheKey(envId: "env1", limit: 1000, columns: .all),
                       #"env1|["a","b"]||123|1000|"#)
        XCTAssertEqual(ListFilter.tags([], floorMs: 0).cacheKey(envId: "env1", limit: 5, columns: skip),
                       "env1|[]||0|5|output,payload")
        XCTAssertEqual(ListFilter.batch("cmb1").cacheKey(envId: "env1", limit: 1000, columns: .all),
                       "env1|[]|cmb1|0|1000|")
        XCTAssertEqual(ListFilter.tags(["it's"], floorMs: 1).cacheKey(envId: "e", limit: 1, columns: .all),
                       #"e|["it's"]||1|1|"#)
    }

    func testCacheKeysDiffer() {
        let base = ListFilter.tags(["a"], floorMs: 60_000)
        let keys = [
            base.cacheKey(envId: "e1", limit: 1000, columns: .all),
            base.cacheKey(envId: "e2", limit: 1000, columns: .all),
            base.cacheKey(envId: "e1", limit: 999, columns: .all),
            base.cacheKey(envId: "e1", limit: 1000, columns: ColumnSet(skipping: [.payload])),
            ListFilter.tags(["a"], floorMs: 120_000).cacheKey(envId: "e1", limit: 1000, columns: .all),
            ListFilter.tags(["a", "b"], floorMs: 60_000).cacheKey(envId: "e1", limit: 1000, columns: .all),
            ListFilter.batch("a").cacheKey(envId: "e1", limit: 1000, columns: .all),
        ]
        XCTAssertEqual(Set(keys).count, keys.count)
    }

    func testCacheKeyIsAsciiAndByteExact() {
        let nfc = ListFilter.tags(["\u{E9}"], floorMs: 0).cacheKey(envId: "e", limit: 1, columns: .all)
        let nfd = ListFilter.tags(["e\u{301}"], floorMs: 0).cacheKey(envId: "e", limit: 1, columns: .all)
        XCTAssertEqual(nfc, #"e|["\u00e9"]||0|1|"#)
        XCTAssertEqual(nfd, #"e|["e\u0301"]||0|1|"#)
        XCTAssertNotEqual(nfc, nfd)
        let emoji = ListFilter.tags(["😀"], floorMs: 0).cacheKey(envId: "e", limit: 1, columns: .all)
        XCTAssertEqual(emoji, #"e|["\ud83d\ude00"]||0|1|"#)
        // The escaped JSON still decodes to the original tags.
        let json = String(emoji.split(separator: "|")[1])
        XCTAssertEqual(JSONValue.parse(json)?.stringArrayValue, ["😀"])
    }
}

final class ListViewBaseCodecTests: XCTestCase {
    private func ver(_ d: UInt64, at: Int64) -> RowVersion { RowVersion(digest: d, readAtUs: at) }

    func testBaseRoundTripGroupsByReadTime() {
        var view: ListView = [:]
        for i in 0..<500 { view["run_\(i)"] = ver(UInt64(i) &* 0x9e37_79b9_7f4a_7c15 | 1, at: i < 400 ? 1_000 : 2_000) }
        view["odd"] = ver(UInt64.max, at: -3)
        let text = ListViewCodec.encodeBase(view)
        XCTAssertEqual(ListViewCodec.decodeBase(text), view)
        XCTAssertEqual(text.split(separator: "\n").filter { $0.hasPrefix("@") }.count, 3, "one line per read time")
        XCTAssertEqual(ListViewCodec.decodeBase(ListViewCodec.encodeBase([:])), [:])
    }

    func testBaseRejectsMalformedText() {
        XCTAssertNil(ListViewCodec.decodeBase("run_a ff\n"), "an entry before any read time")
        XCTAssertNil(ListViewCodec.decodeBase("@x\nrun_a ff\n"), "a bad read time")
        XCTAssertNil(ListViewCodec.decodeBase("@5\nrun_a\n"), "no digest")
        XCTAssertNil(ListViewCodec.decodeBase("@5\nrun_a zz\n"), "not hex")
        XCTAssertNil(ListViewCodec.decodeBase("@5\nrun_a 1ffffffffffffffff\n"), "17 hex digits")
        XCTAssertNil(ListViewCodec.decodeBase("@5\n ff\n"), "no run id")
    }

    func testRunFieldsApplyOverTheBase() {
        let base: ListView = ["a": ver(1, at: 10), "b": ver(2, at: 10), "c": ver(3, at: 10)]
        let pairs = [ListViewCodec.tokenField, "9", ListViewCodec.baseField, ListViewCodec.encodeBase(base),
                     "b", ListViewCodec.encode(ver(22, at: 20)), "c", ListViewCodec.removed, "d", ListViewCodec.encode(ver(4, at: 30))]
        XCTAssertEqual(ListViewCodec.view(fromPairs: pairs, token: 9), ["a": ver(1, at: 10), "b": ver(22, at: 20), "d": ver(4, at: 30)])
        // The order of the pairs does not matter (Redis returns hash fields in any order).
        let shuffled = [pairs[6], pairs[7], pairs[2], pairs[3], pairs[8], pairs[9], pairs[0], pairs[1], pairs[4], pairs[5]]
        XCTAssertEqual(ListViewCodec.view(fromPairs: shuffled, token: 9), ListViewCodec.view(fromPairs: pairs, token: 9))
        XCTAssertNil(ListViewCodec.view(fromPairs: pairs, token: 8), "another token")
        XCTAssertNil(ListViewCodec.view(fromPairs: [ListViewCodec.tokenField, "9", ListViewCodec.baseField, "garbage"], token: 9))
    }

    func testDeltaOverABaseGivesTheNewView() {
        let old: ListView = ["a": ver(1, at: 10), "b": ver(2, at: 10), "c": ver(3, at: 10)]
        let new: ListView = ["a": ver(1, at: 10), "b": ver(5, at: 40), "e": ver(6, at: 40)]
        let d = ListViewDelta.between(old, new)
        var pairs = [ListViewCodec.tokenField, "2", ListViewCodec.baseField, ListViewCodec.encodeBase(old)]
        for (id, v) in d.changed { pairs += [id, ListViewCodec.encode(v)] }
        for id in d.removed { pairs += [id, ListViewCodec.removed] }
        XCTAssertEqual(ListViewCodec.view(fromPairs: pairs, token: 2), new)
    }
}
