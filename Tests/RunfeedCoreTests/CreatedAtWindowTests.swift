import XCTest
@testable import RunfeedCore

final class DurationGrammarTests: XCTestCase {
    private let h: Int64 = 3_600_000

    func testSingleUnits() {
        XCTAssertEqual(CreatedAtWindow.parseDuration("1w"), 604_800_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration("2d"), 172_800_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration("1h"), h)
        XCTAssertEqual(CreatedAtWindow.parseDuration("1hr"), h)
        XCTAssertEqual(CreatedAtWindow.parseDuration("5m"), 300_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration("7s"), 7_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration("24h"), 86_400_000)
    }

    func testZeroAndLeadingZeros() {
        XCTAssertEqual(CreatedAtWindow.parseDuration("0s"), 0)
        XCTAssertEqual(CreatedAtWindow.parseDuration("0w0d0h0m0s"), 0)
        XCTAssertEqual(CreatedAtWindow.parseDuration("007m"), 420_000)
    }

    func testConcatenation() {
        XCTAssertEqual(CreatedAtWindow.parseDuration("1h30m"), 90 * 60_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration("30m1h"), 90 * 60_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration("1w1d1h1m1s"), 694_861_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration("1d1hr30m"), 86_400_000 + h + 1_800_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration("10s2m"), 130_000)
    }

    func testOnlyFirstOccurrenceOfEachUnitCounts() {
        XCTAssertEqual(CreatedAtWindow.parseDuration("1h2h"), h)
        XCTAssertEqual(CreatedAtWindow.parseDuration("1hr2h"), h)
        XCTAssertEqual(CreatedAtWindow.parseDuration("2h1hr"), 2 * h)
        XCTAssertEqual(CreatedAtWindow.parseDuration("1s1m5s"), 61_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration("3m1h9m"), h + 180_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration("0h5h"), 0)
    }

    func testRejectsNonGrammar() {
        for bad in ["", "w", "h", "hr", "1", "12", "1x", "1H", "1W", "1hrr", "1rh", "1h ", " 1h", "1 h", "-1h", "+1h",
                    "1.5h", "1h-", "1ms", "1mr", "h1", "1h1", "1e3s", "１h", "1h\n", "1\u{0}h", "1h,2m", "1hr1"] {
            XCTAssertNil(CreatedAtWindow.parseDuration(bad), bad.debugDescription)
        }
    }

    func testLengthLimit() {
        let hundred = String(repeating: "1s", count: 50)
        XCTAssertEqual(hundred.count, 100)
        XCTAssertEqual(CreatedAtWindow.parseDuration(hundred), 1_000)
        XCTAssertEqual(CreatedAtWindow.parseDuration(String(repeating: "0", count: 98) + "1h"), h)
        XCTAssertNil(CreatedAtWindow.parseDuration(String(repeating: "0", count: 99) + "1h"))
        XCTAssertNil(CreatedAtWindow.parseDuration("0" + hundred))
        XCTAssertNil(CreatedAtWindow.parseDuration(String(repeating: "1s", count: 5000)))
    }

    func testHugeNumbersSaturate() {
        XCTAssertEqual(CreatedAtWindow.parseDuration("9223372036854775807s"), Int64.max)
        XCTAssertEqual(CreatedAtWindow.parseDuration("9223372036854775808s"), Int64.max)
        XCTAssertEqual(CreatedAtWindow.parseDuration(String(repeating: "9", count: 90) + "w"), Int64.max)
        XCTAssertEqual(CreatedAtWindow.parseDuration("9223372036854775w9223372036854775d"), Int64.max)
        XCTAssertEqual(CreatedAtWindow.parseDuration("9223372036854775807m1s"), Int64.max)
        // Just below the saturation point stays exact.
        XCTAssertEqual(CreatedAtWindow.parseDuration("9223372036854775s"), 9_223_372_036_854_775_000)
    }
}

final class CreatedAtFloorTests: XCTestCase {
    let now: Int64 = 1_760_000_123_456
    let day: Int64 = 86_400_000

    func testDefaultIs24hAndNotClamped() {
        let r = CreatedAtWindow.floor(createdAt: nil, nowMs: now, maxAgeMs: day, bucketMs: 0)
        XCTAssertEqual(r.floorMs, now - day)
        XCTAssertFalse(r.clamped)
    }

    func testWithinMax() {
        let r = CreatedAtWindow.floor(createdAt: "1h", nowMs: now, maxAgeMs: day, bucketMs: 0)
        XCTAssertEqual(r.floorMs, now - 3_600_000)
        XCTAssertFalse(r.clamped)
        XCTAssertEqual(CreatedAtWindow.floor(createdAt: "24h", nowMs: now, maxAgeMs: day, bucketMs: 0).clamped, false)
        XCTAssertEqual(CreatedAtWindow.floor(createdAt: "1d", nowMs: now, maxAgeMs: day, bucketMs: 0).clamped, false)
    }

    func testZeroDurationIsNow() {
        let r = CreatedAtWindow.floor(createdAt: "0s", nowMs: now, maxAgeMs: day, bucketMs: 0)
        XCTAssertEqual(r.floorMs, now)
        XCTAssertFalse(r.clamped)
    }

    func testClampsOlderThanMax() {
        for text in ["1w", "24h1s", "25h", "2d", "9223372036854775807s", String(repeating: "9", count: 60) + "w"] {
            let r = CreatedAtWindow.floor(createdAt: text, nowMs: now, maxAgeMs: day, bucketMs: 0)
            XCTAssertEqual(r.floorMs, now - day, text)
            XCTAssertTrue(r.clamped, text)
        }
    }

    func testUnparseableClamps() {
        for text in ["", "bogus", "1x", "-1h", "1h ", String(repeating: "1s", count: 51)] {
            let r = CreatedAtWindow.floor(createdAt: text, nowMs: now, maxAgeMs: day, bucketMs: 0)
            XCTAssertEqual(r.floorMs, now - day, text)
            XCTAssertTrue(r.clamped, text)
        }
    }

    func testConfigurableMax() {
        let week: Int64 = 7 * day
        let r = CreatedAtWindow.floor(createdAt: "1w", nowMs: now, maxAgeMs: week, bucketMs: 0)
        XCTAssertEqual(r.floorMs, now - week)
        XCTAssertFalse(r.clamped)
        let z = CreatedAtWindow.floor(createdAt: "1s", nowMs: now, maxAgeMs: 0, bucketMs: 0)
        XCTAssertEqual(z.floorMs, now)
        XCTAssertTrue(z.clamped)
        let neg = CreatedAtWindow.floor(createdAt: "0s", nowMs: now, maxAgeMs: -5, bucketMs: 0)
        XCTAssertEqual(neg.floorMs, now)
        XCTAssertFalse(neg.clamped)
    }

    func testBucketing() {
        XCTAssertEqual(CreatedAtWindow.floor(createdAt: "1h", nowMs: now, maxAgeMs: day, bucketMs: 60_000).floorMs,
                       1_759_996_500_000)
        XCTAssertEqual(CreatedAtWindow.floor(createdAt: nil, nowMs: now, maxAgeMs: day, bucketMs: 60_000).floorMs,
                       1_759_913_700_000)
        XCTAssertEqual(CreatedAtWindow.floor(createdAt: "0s", nowMs: now, maxAgeMs: day, bucketMs: 60_000).floorMs,
                       1_760_000_100_000)
        // Clamped values are bucketed too (the window widens by less than one bucket).
        let c = CreatedAtWindow.floor(createdAt: "1w", nowMs: now, maxAgeMs: day, bucketMs: 60_000)
        XCTAssertEqual(c.floorMs, 1_759_913_700_000)
        XCTAssertTrue(c.clamped)
        XCTAssertLessThan(now - day - c.floorMs, 60_000)
    }

    func testSameBucketForNearbyRequests() {
        let a = CreatedAtWindow.floor(createdAt: "1h", nowMs: 1_760_000_100_000, maxAgeMs: day, bucketMs: 60_000)
        let b = CreatedAtWindow.floor(createdAt: "1h", nowMs: 1_760_000_159_999, maxAgeMs: day, bucketMs: 60_000)
        XCTAssertEqual(a.floorMs, b.floorMs)
    }

    func testBucketHelper() {
        XCTAssertEqual(CreatedAtWindow.bucket(123_456, 0), 123_456)
        XCTAssertEqual(CreatedAtWindow.bucket(123_456, -1), 123_456)
        XCTAssertEqual(CreatedAtWindow.bucket(120_000, 60_000), 120_000)
        XCTAssertEqual(CreatedAtWindow.bucket(179_999, 60_000), 120_000)
        XCTAssertEqual(CreatedAtWindow.bucket(-1_000, 60_000), -60_000)
        XCTAssertEqual(CreatedAtWindow.bucket(0, 60_000), 0)
        XCTAssertEqual(CreatedAtWindow.bucket(Int64.max, 60_000) % 60_000, 0)
        XCTAssertEqual(CreatedAtWindow.bucket(Int64.min, 60_000) % 60_000, 0)
        XCTAssertEqual(CreatedAtWindow.bucket(Int64.min, 1), Int64.min)
    }

    func testExtremeClocksNeverTrap() {
        _ = CreatedAtWindow.floor(createdAt: "1s", nowMs: Int64.min, maxAgeMs: day, bucketMs: 60_000)
        _ = CreatedAtWindow.floor(createdAt: "99999999999999999999w", nowMs: Int64.min, maxAgeMs: Int64.max, bucketMs: 60_000)
        _ = CreatedAtWindow.floor(createdAt: "1s", nowMs: Int64.max, maxAgeMs: Int64.max, bucketMs: 60_000)
        _ = CreatedAtWindow.repin(floorMs: Int64.min, nowMs: Int64.max, maxAgeMs: Int64.max, bucketMs: 60_000)
        _ = CreatedAtWindow.repin(floorMs: Int64.max, nowMs: Int64.min, maxAgeMs: Int64.max, bucketMs: 7)
        let r = CreatedAtWindow.floor(createdAt: "1s", nowMs: Int64.min, maxAgeMs: day, bucketMs: 60_000)
        XCTAssertEqual(r.floorMs % 60_000, 0)
    }
}

final class RepinTests: XCTestCase {
    let now: Int64 = 1_760_000_123_456
    let day: Int64 = 86_400_000

    func testInRangeFloorIsKept() {
        let f = CreatedAtWindow.floor(createdAt: "1h", nowMs: now, maxAgeMs: day, bucketMs: 60_000).floorMs
        // Later requests on the same handle keep the pinned floor.
        XCTAssertEqual(CreatedAtWindow.repin(floorMs: f, nowMs: now + 30_000, maxAgeMs: day, bucketMs: 60_000), f)
        XCTAssertEqual(CreatedAtWindow.repin(floorMs: f, nowMs: now + 20 * 3_600_000, maxAgeMs: day, bucketMs: 60_000), f)
        XCTAssertEqual(CreatedAtWindow.repin(floorMs: now - 5_000, nowMs: now, maxAgeMs: day, bucketMs: 0), now - 5_000)
    }

    func testCraftedOldFloorIsRaised() {
        XCTAssertEqual(CreatedAtWindow.repin(floorMs: 0, nowMs: now, maxAgeMs: day, bucketMs: 0), now - day)
        XCTAssertEqual(CreatedAtWindow.repin(floorMs: 0, nowMs: now, maxAgeMs: day, bucketMs: 60_000), 1_759_913_700_000)
        XCTAssertEqual(CreatedAtWindow.repin(floorMs: Int64.min, nowMs: now, maxAgeMs: day, bucketMs: 60_000), 1_759_913_700_000)
    }

    func testStaleFloorSlidesWithTime() {
        let f = CreatedAtWindow.floor(createdAt: "24h", nowMs: now, maxAgeMs: day, bucketMs: 60_000).floorMs
        let later = now + 3_600_000
        XCTAssertEqual(CreatedAtWindow.repin(floorMs: f, nowMs: later, maxAgeMs: day, bucketMs: 60_000),
                       CreatedAtWindow.bucket(later - day, 60_000))
    }

    func testFutureFloorIsCappedAtNow() {
        XCTAssertEqual(CreatedAtWindow.repin(floorMs: now + 1_000_000_000, nowMs: now, maxAgeMs: day, bucketMs: 0), now)
        XCTAssertEqual(CreatedAtWindow.repin(floorMs: Int64.max, nowMs: now, maxAgeMs: day, bucketMs: 60_000), 1_760_000_100_000)
    }

    func testNeverWiderThanAFreshRequest() {
        let freshest = CreatedAtWindow.floor(createdAt: nil, nowMs: now, maxAgeMs: day, bucketMs: 60_000).floorMs
        for crafted: Int64 in [Int64.min, -1, 0, 1, now - 2 * day, now - day - 1, now - day, now, now + 1, Int64.max] {
            let r = CreatedAtWindow.repin(floorMs: crafted, nowMs: now, maxAgeMs: day, bucketMs: 60_000)
            XCTAssertGreaterThanOrEqual(r, freshest, "\(crafted)")
            XCTAssertLessThanOrEqual(r, now, "\(crafted)")
            XCTAssertEqual(r % 60_000, 0)
        }
    }

    func testIdempotent() {
        for f: Int64 in [0, now - 3_600_000, now - day + 17, now + 99] {
            let once = CreatedAtWindow.repin(floorMs: f, nowMs: now, maxAgeMs: day, bucketMs: 60_000)
            XCTAssertEqual(CreatedAtWindow.repin(floorMs: once, nowMs: now, maxAgeMs: day, bucketMs: 60_000), once)
        }
    }
}
