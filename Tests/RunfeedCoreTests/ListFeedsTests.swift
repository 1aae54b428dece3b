import XCTest
@testable import RunfeedCore

// MARK: Tags parameter

final class TagFilterTests: XCTestCase {
    private func ok(_ raw: String?, file: StaticString = #filePath, line: UInt = #line) -> [String]? {
        switch TagFilter.parse(raw) {
        case .success(let t): return t
        case .failure(let e): XCTFail("unexpected error \(e.body)", file: file, line: line); return nil
        }
    }

    /// The issue messages of a 400 Query Error (fails if the parse succeeded).
    private func messages(_ raw: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        guard case .failure(let e) = TagFilter.parse(raw) else {
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
            if case .success = TagFilter.parse(t) { XCTFail("0x\(String(c, radix: 16)) accepted") }
        }
        XCTAssertTrue(TagFilter.isValid(" "))
        XCTAssertFalse(TagFilter.isValid(""))
    }

    func testErrorBodyIsWellFormedJSON() {
        guard case .failure(let e) = TagFilter.parse("ok,a\"b\\c\u{1}") else { return XCTFail() }
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
        let h = ListHandle.mintRuns(floorMs: 1_759_996_500_000, seq: 42, nonce: "0a1b2c3d")
        XCTAssertEqual(h, .runs(floorMs: 1_759_996_500_000, seq: 42, nonce: "0a1b2c3d"))
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
        for h in [ListHandle.runs(floorMs: 0, seq: 0, nonce: "ffffffff"),
                  .runs(floorMs: Int64.max, seq: UInt64.max, nonce: "01234567"),
                  .batch(batchId: "b", seq: UInt64.max, nonce: "89abcdef")] {
            XCTAssertEqual(ListHandle.parse(h.text), h)
        }
    }

    func testMintNormalizes() {
        XCTAssertEqual(ListHandle.mintRuns(floorMs: -5, seq: 1, nonce: "0a1b2c3d"), .runs(floorMs: 0, seq: 1, nonce: "0a1b2c3d"))
        for bad in ["", "ABCDEF01", "0a1b2c3", "0a1b2c3d4", "0a1b2c3g"] {
            let h = ListHandle.mintRuns(floorMs: 1, seq: 1, nonce: bad)
            XCTAssertTrue(ListHandle.isValidNonce(h.nonce), bad)
            XCTAssertEqual(ListHandle.parse(h.text), h)
            XCTAssertTrue(ListHandle.isValidNonce(ListHandle.mintBatch(batchId: "b", seq: 1, nonce: bad).nonce))
        }
        XCTAssertTrue(ListHandle.isValidNonce(ListHandle.mintRuns(floorMs: 1, seq: 1).nonce))
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
        XCTAssertTrue(FeedQuery.isValidHandle(ListHandle.mintRuns(floorMs: Int64.max, seq: UInt64.max).text))
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

final class ListDiffTests: XCTestCase {
    private func v(_ id: String, _ u: Int64) -> RunVersion { RunVersion(runId: id, updatedAtMs: u) }
    private func e(_ i: Int, _ op: String) -> ListEmit { ListEmit(index: i, operation: op) }

    func testWithoutWorkingSetEmitsUpdatesNewerThanFloor() {
        let r = ListDiff.diff([v("a", 100), v("b", 200), v("c", 50)], workingSet: nil, floorMs: 100)
        XCTAssertEqual(r, ListDiffResult(emits: [e(1, "update")], offsetMs: 200))
    }

    func testWithoutWorkingSetFloorZeroSendsEverythingAsUpdates() {
        let r = ListDiff.diff([v("a", 1), v("b", 2)], workingSet: nil, floorMs: 0)
        XCTAssertEqual(r.emits, [e(0, "update"), e(1, "update")])
        XCTAssertEqual(r.offsetMs, 2)
    }

    func testWithWorkingSet() {
        let ws: [String: Int64] = ["a": 100, "b": 150]
        let r = ListDiff.diff([v("a", 100), v("b", 200), v("c", 10)], workingSet: ws, floorMs: 150)
        XCTAssertEqual(r.emits, [e(1, "update"), e(2, "insert")])
        XCTAssertEqual(r.offsetMs, 200)
    }

    func testWorkingSetIgnoresFloorForMembership() {
        // A new member older than the floor is still an insert: the working set decides.
        let r = ListDiff.diff([v("new", 5)], workingSet: ["old": 900], floorMs: 900)
        XCTAssertEqual(r.emits, [e(0, "insert")])
        XCTAssertEqual(r.offsetMs, 900)
    }

    func testEqualMillisecondIsNotEmitted() {
        XCTAssertEqual(ListDiff.diff([v("a", 100)], workingSet: ["a": 100], floorMs: 0).emits, [])
        XCTAssertEqual(ListDiff.diff([v("a", 100)], workingSet: nil, floorMs: 100).emits, [])
        XCTAssertEqual(ListDiff.diff([v("a", 101)], workingSet: ["a": 100], floorMs: 0).emits, [e(0, "update")])
    }

    func testOlderRowNeverEmits() {
        let r = ListDiff.diff([v("a", 90)], workingSet: ["a": 100], floorMs: 0)
        XCTAssertEqual(r.emits, [])
        XCTAssertEqual(r.offsetMs, 90)
    }

    func testOffsetCoversAllRowsAndFloor() {
        XCTAssertEqual(ListDiff.diff([v("a", 500)], workingSet: ["a": 500], floorMs: 100).offsetMs, 500)
        XCTAssertEqual(ListDiff.diff([v("a", 10)], workingSet: nil, floorMs: 1000).offsetMs, 1000)
        XCTAssertEqual(ListDiff.diff([], workingSet: nil, floorMs: 77), ListDiffResult(emits: [], offsetMs: 77))
        XCTAssertEqual(ListDiff.diff([], workingSet: [:], floorMs: 0), ListDiffResult(emits: [], offsetMs: 0))
    }

    func testEmptyWorkingSetMakesEverythingAnInsert() {
        let r = ListDiff.diff([v("a", 1), v("b", 2)], workingSet: [:], floorMs: 1_000)
        XCTAssertEqual(r.emits, [e(0, "insert"), e(1, "insert")])
        XCTAssertEqual(r.offsetMs, 1_000)
    }

    func testDuplicateRunsAreJudgedOnceByNewestOccurrence() {
        XCTAssertEqual(ListDiff.diff([v("a", 100), v("a", 200)], workingSet: nil, floorMs: 0).emits, [e(1, "update")])
        XCTAssertEqual(ListDiff.diff([v("a", 200), v("a", 100)], workingSet: nil, floorMs: 0).emits, [e(0, "update")])
        XCTAssertEqual(ListDiff.diff([v("a", 200), v("a", 200)], workingSet: [:], floorMs: 0).emits, [e(0, "insert")])
        XCTAssertEqual(ListDiff.diff([v("a", 100), v("b", 1), v("a", 300)], workingSet: ["a": 200], floorMs: 0).emits,
                       [e(1, "insert"), e(2, "update")])
    }

    func testMergeKeepsMax() {
        var ws: [String: Int64] = ["a": 200]
        ListDiff.merge(&ws, [v("a", 100), v("b", 5), v("b", 7), v("b", 6)])
        XCTAssertEqual(ws, ["a": 200, "b": 7])
        ListDiff.merge(&ws, [v("a", 201)])
        XCTAssertEqual(ws["a"], 201)
    }

    func testReplace() {
        XCTAssertEqual(ListDiff.replace([v("a", 1), v("a", 3), v("b", 2), v("a", 2)]), ["a": 3, "b": 2])
        XCTAssertEqual(ListDiff.replace([]), [:])
    }

    func testSnapshotThenLiveScenario() {
        let snapshot = [v("a", 100), v("b", 120)]
        var ws = ListDiff.replace(snapshot)
        XCTAssertEqual(ListDiff.diff(snapshot, workingSet: ws, floorMs: 120).emits, [])
        let live = [v("b", 130), v("c", 125)]
        let r = ListDiff.diff(live, workingSet: ws, floorMs: 120)
        XCTAssertEqual(r.emits, [e(0, "update"), e(1, "insert")])
        XCTAssertEqual(r.offsetMs, 130)
        ListDiff.merge(&ws, live)
        XCTAssertEqual(ws, ["a": 100, "b": 130, "c": 125])
        XCTAssertEqual(ListDiff.diff(live, workingSet: ws, floorMs: r.offsetMs).emits, [])
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

final class ListDiffReplaceTests: XCTestCase {
    func testReplaceKeepsNewerVersionsAlreadySent() {
        let ws = ListDiff.replace([RunVersion(runId: "a", updatedAtMs: 5), RunVersion(runId: "b", updatedAtMs: 9)],
                                  previous: ["a": 7, "b": 3, "gone": 1])
        XCTAssertEqual(ws, ["a": 7, "b": 9])
        XCTAssertEqual(ListDiff.replace([RunVersion(runId: "a", updatedAtMs: 5)], previous: nil), ["a": 5])
        // A stale (cached) resolve diffed against the result emits nothing for run a.
        XCTAssertTrue(ListDiff.diff([RunVersion(runId: "a", updatedAtMs: 5)], workingSet: ws, floorMs: 0).emits.isEmpty)
    }

    func testReplaceWithoutHistoryRaisesVersionsToTheFloor() {
        let rows = [RunVersion(runId: "a", updatedAtMs: 5), RunVersion(runId: "b", updatedAtMs: 20)]
        let ws = ListDiff.replace(rows, previous: nil, floorMs: 10)
        XCTAssertEqual(ws, ["a": 10, "b": 20])
        // A fresh read of a at 10 (what the floor already covered) is not new; at 11 it is.
        XCTAssertTrue(ListDiff.diff([RunVersion(runId: "a", updatedAtMs: 10)], workingSet: ws, floorMs: 10).emits.isEmpty)
        XCTAssertEqual(ListDiff.diff([RunVersion(runId: "a", updatedAtMs: 11)], workingSet: ws, floorMs: 10).emits.count, 1)
        // With history, the floor does not rewrite it.
        XCTAssertEqual(ListDiff.replace(rows, previous: ["a": 3], floorMs: 10), ["a": 5, "b": 20])
    }
}
