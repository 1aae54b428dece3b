import XCTest
@testable import RunfeedCore

final class FNV1a64Tests: XCTestCase {
    private func fnv(_ s: String) -> UInt64 {
        var h = FNV1a64()
        h.add(s.utf8)
        return h.value
    }

    func testReferenceVectors() {
        // The published FNV-1a 64-bit test vectors: the digest is the same on every worker and host.
        XCTAssertEqual(fnv(""), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(fnv("a"), 0xaf63_dc4c_8601_ec8c)
        XCTAssertEqual(fnv("foobar"), 0x8594_4171_f739_67e8)
    }

    func testIncrementalEqualsOneShot() {
        var h = FNV1a64()
        h.add("foo".utf8)
        h.add("bar".utf8)
        XCTAssertEqual(h.value, fnv("foobar"))
    }

    func testWordsAreLittleEndianBytes() {
        var a = FNV1a64()
        a.add(UInt64(0x0102_0304_0506_0708))
        var b = FNV1a64()
        b.add([0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01] as [UInt8])
        XCTAssertEqual(a.value, b.value)
    }
}

final class RowDigestTests: XCTestCase {
    func testDeterministic() {
        XCTAssertEqual(RunRow.digest(raw: sampleRaw()), RunRow.digest(raw: sampleRaw()))
        XCTAssertEqual(RunRow(raw: sampleRaw())!.digest, RunRow(raw: sampleRaw())!.digest)
        XCTAssertEqual(RunRow(raw: sampleRaw())!.digest, RunRow.digest(raw: sampleRaw()))
        XCTAssertEqual(RunRow.digest(raw: ["a", nil, ""]), RunRow.digest(raw: ["a", nil, ""]))
        // Pinned value: a change to the digest's byte stream changes every stored version and every
        // client token, so it must be deliberate.
        var h = FNV1a64()
        h.add(UInt64(2))
        h.add(UInt64(2)); h.add("a".utf8)
        h.add(UInt64(0))
        XCTAssertEqual(RunRow.digest(raw: ["a", nil]), h.value)
    }

    func testRowDigestCoversEnvAndBatchAndPadding() {
        // A 26-column row is padded with NULL env/batch ids before it is digested.
        let short = Array(sampleRaw().prefix(26))
        XCTAssertEqual(RunRow(raw: short)!.digest, RunRow.digest(raw: short + [nil, nil]))
        XCTAssertEqual(RunRow(raw: short)!.digest, RunRow(raw: sampleRaw(envId: nil, batchId: nil))!.digest)
        XCTAssertNotEqual(RunRow(raw: sampleRaw(envId: "env_1"))!.digest, RunRow(raw: sampleRaw(envId: "env_2"))!.digest)
        XCTAssertNotEqual(RunRow(raw: sampleRaw(batchId: nil))!.digest, RunRow(raw: sampleRaw(batchId: "b1"))!.digest)
        XCTAssertNotEqual(RunRow(raw: sampleRaw(batchId: ""))!.digest, RunRow(raw: sampleRaw(batchId: nil))!.digest)
    }

    func testEveryColumnChangesTheDigest() {
        let base = RunRow.digest(raw: sampleRaw())
        var seen: Set<UInt64> = [base]
        for c in RunColumn.allCases {
            let current = sampleRaw()[c.index]
            // A different value that keeps the row parseable (timestamps stay timestamps).
            let changed: String
            switch c {
            case .createdAt, .updatedAt: changed = "2026-06-11 08:15:04"
            default: changed = (current ?? "") + "x"
            }
            let d = RunRow.digest(raw: sampleRaw([c: changed]))
            XCTAssertNotEqual(d, base, c.rawValue)
            seen.insert(d)
            if let row = RunRow(raw: sampleRaw([c: changed])) { XCTAssertEqual(row.digest, d, c.rawValue) }
        }
        XCTAssertEqual(seen.count, RunColumn.allCases.count + 1)
    }

    func testSameMillisecondDifferentContentDiffers() {
        // The case updatedAt cannot see: two writes stamped in the same millisecond.
        let a = RunRow(raw: sampleRaw([.status: "EXECUTING"]))!
        let b = RunRow(raw: sampleRaw([.status: "COMPLETED_SUCCESSFULLY"]))!
        XCTAssertEqual(a.updatedAtMs, b.updatedAtMs)
        XCTAssertNotEqual(a.digest, b.digest)
    }

    func testNullAndEmptyDiffer() {
        XCTAssertNotEqual(RunRow.digest(raw: [nil]), RunRow.digest(raw: [""]))
        XCTAssertNotEqual(RunRow.digest(raw: ["", nil]), RunRow.digest(raw: [nil, ""]))
        XCTAssertNotEqual(RunRow.digest(raw: sampleRaw([.metadata: nil])), RunRow.digest(raw: sampleRaw([.metadata: ""])))
        XCTAssertNotEqual(RunRow.digest(raw: sampleRaw([.output: nil])), RunRow.digest(raw: sampleRaw([.output: ""])))
    }

    func testFieldBoundariesMatter() {
        XCTAssertNotEqual(RunRow.digest(raw: ["ab", "c"]), RunRow.digest(raw: ["a", "bc"]))
        XCTAssertNotEqual(RunRow.digest(raw: ["abc", ""]), RunRow.digest(raw: ["", "abc"]))
        XCTAssertNotEqual(RunRow.digest(raw: ["abc"]), RunRow.digest(raw: ["abc", nil]))
        XCTAssertNotEqual(RunRow.digest(raw: ["abc"]), RunRow.digest(raw: ["ab", "c"]))
        XCTAssertNotEqual(RunRow.digest(raw: []), RunRow.digest(raw: [nil]))
        XCTAssertNotEqual(RunRow.digest(raw: sampleRaw([.payload: "{\"a\":1}", .payloadType: "application/json"])),
                          RunRow.digest(raw: sampleRaw([.payload: "{\"a\":1}a", .payloadType: "pplication/json"])))
        // Adjacent columns: the value moves from one column to the next.
        XCTAssertNotEqual(RunRow.digest(raw: sampleRaw([.metadata: "m", .metadataType: ""])),
                          RunRow.digest(raw: sampleRaw([.metadata: "", .metadataType: "m"])))
    }

    func testByteExact() {
        // Canonically equivalent strings are different bytes, hence different rows.
        XCTAssertNotEqual(RunRow.digest(raw: ["\u{E9}"]), RunRow.digest(raw: ["e\u{301}"]))
    }

    func testNeverZero() {
        // A zero hash cannot be produced on demand (that would need an FNV preimage); check a spread of
        // rows, including empty and degenerate ones.
        XCTAssertNotEqual(RunRow.digest(raw: []), 0)
        XCTAssertNotEqual(RunRow.digest(raw: [nil]), 0)
        XCTAssertNotEqual(RunRow.digest(raw: [""]), 0)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let n = Int.random(in: 0...30, using: &rng)
            let raw: [String?] = (0..<n).map { _ in
                Bool.random(using: &rng) ? nil : String(Int.random(in: 0...Int.max, using: &rng), radix: 36)
            }
            XCTAssertNotEqual(RunRow.digest(raw: raw), 0)
        }
    }
}

final class RowVersionTests: XCTestCase {
    func testSameDigestIsNeverSuperseded() {
        let v = RowVersion(digest: 7, readAtUs: 1_000)
        XCTAssertFalse(v.isSupersededBy(RowVersion(digest: 7, readAtUs: 2_000)))
        XCTAssertFalse(v.isSupersededBy(RowVersion(digest: 7, readAtUs: 1_000)))
        XCTAssertFalse(v.isSupersededBy(RowVersion(digest: 7, readAtUs: 0)))
        XCTAssertFalse(v.isSupersededBy(v))
    }

    func testDifferentDigestNeedsAStrictlyLaterRead() {
        let v = RowVersion(digest: 7, readAtUs: 1_000)
        XCTAssertTrue(v.isSupersededBy(RowVersion(digest: 8, readAtUs: 1_001)))
        XCTAssertTrue(v.isSupersededBy(RowVersion(digest: 8, readAtUs: Int64.max)))
        XCTAssertFalse(v.isSupersededBy(RowVersion(digest: 8, readAtUs: 1_000)))
        XCTAssertFalse(v.isSupersededBy(RowVersion(digest: 8, readAtUs: 999)))
        XCTAssertFalse(v.isSupersededBy(RowVersion(digest: 8, readAtUs: 0)))
        // An unknown read time (0) is older than any read.
        XCTAssertTrue(RowVersion(digest: 7, readAtUs: 0).isSupersededBy(RowVersion(digest: 8, readAtUs: 1)))
    }

    func testRowVersionOfARow() {
        var row = RunRow(raw: sampleRaw())!
        XCTAssertEqual(row.readAtUs, 0)
        row.readAtUs = 1_760_000_000_123_456
        XCTAssertEqual(row.version, RowVersion(digest: row.digest, readAtUs: 1_760_000_000_123_456))
        let rv = RunVersion(row)
        XCTAssertEqual(rv.runId, "cm5q0x1y20003")
        XCTAssertEqual(rv.updatedAtMs, row.updatedAtMs)
        XCTAssertEqual(rv.version, row.version)
    }
}

final class RunClientViewTests: XCTestCase {
    func testFromOffsetWithoutToken() {
        XCTAssertEqual(RunClientView(Offset(updatedAtMs: 500, tail: 7)), .floor(500))
        XCTAssertEqual(RunClientView(Offset(updatedAtMs: -4, tail: 7)), .floor(0))
        XCTAssertEqual(RunClientView(Offset.parse("1760000000123_1760000000000")!), .floor(1_760_000_000_123))
    }

    func testFromOffsetWithToken() {
        XCTAssertEqual(RunClientView(Offset(updatedAtMs: 500, tail: 7, token: 42)), .digest(42))
        XCTAssertEqual(RunClientView(Offset(updatedAtMs: 500, tail: 7, token: UInt64.max)), .digest(UInt64.max))
        XCTAssertEqual(RunClientView(Offset.parse("500_7" + "00000000000000000042")!), .digest(42))
    }

    func testTokenZeroMeansNoRow() {
        XCTAssertEqual(RunClientView(Offset(updatedAtMs: 500, tail: 7, token: 0)), .digest(nil))
        XCTAssertEqual(RunClientView(Offset.parse("500_7" + "00000000000000000000")!), .digest(nil))
    }

    func testToken() {
        XCTAssertEqual(RunClientView.digest(nil).token, 0)
        XCTAssertEqual(RunClientView.digest(42).token, 42)
        XCTAssertNil(RunClientView.floor(500).token)
        // The token written into the next offset reads back as the same view.
        for view in [RunClientView.digest(nil), .digest(1), .digest(UInt64.max)] {
            let text = Offset(updatedAtMs: 9, tail: 3, token: view.token).text
            XCTAssertEqual(RunClientView(Offset.parse(text)!), view, text)
        }
        let floorText = Offset(updatedAtMs: 9, tail: 3, token: RunClientView.floor(9).token).text
        XCTAssertEqual(floorText, "9_3")
        XCTAssertEqual(RunClientView(Offset.parse(floorText)!), .floor(9))
    }

    func testIsNewByDigest() {
        let view = RunClientView.digest(42)
        // Same millisecond, different content.
        XCTAssertTrue(view.isNew(updatedAtMs: 1_000, digest: 43))
        // Stamped earlier than what the client holds, different content.
        XCTAssertTrue(view.isNew(updatedAtMs: 1, digest: 43))
        XCTAssertTrue(view.isNew(updatedAtMs: 0, digest: 43))
        // Same content, whatever the stamp.
        XCTAssertFalse(view.isNew(updatedAtMs: 1_000, digest: 42))
        XCTAssertFalse(view.isNew(updatedAtMs: 9_999_999, digest: 42))
        XCTAssertFalse(view.isNew(updatedAtMs: 0, digest: 42))
    }

    func testIsNewWithoutRow() {
        let view = RunClientView.digest(nil)
        XCTAssertTrue(view.isNew(updatedAtMs: 0, digest: 1))
        XCTAssertTrue(view.isNew(updatedAtMs: 1_000, digest: UInt64.max))
    }

    func testIsNewByFloor() {
        let view = RunClientView.floor(1_000)
        XCTAssertTrue(view.isNew(updatedAtMs: 1_001, digest: 1))
        XCTAssertFalse(view.isNew(updatedAtMs: 1_000, digest: 2))
        XCTAssertFalse(view.isNew(updatedAtMs: 999, digest: 3))
        XCTAssertTrue(RunClientView.floor(0).isNew(updatedAtMs: 1, digest: 1))
        XCTAssertFalse(RunClientView.floor(0).isNew(updatedAtMs: 0, digest: 1))
    }
}
