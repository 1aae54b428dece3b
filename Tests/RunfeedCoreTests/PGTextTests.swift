import XCTest
@testable import RunfeedCore

final class PGTimestampTests: XCTestCase {
    func testWireFractions() {
        XCTAssertEqual(PGText.timestampToWire("2026-06-11 08:15:02.12"), "2026-06-11T08:15:02.120")
        XCTAssertEqual(PGText.timestampToWire("2026-06-11 08:15:02"), "2026-06-11T08:15:02.000")
        XCTAssertEqual(PGText.timestampToWire("2026-06-11 08:15:02.123456"), "2026-06-11T08:15:02.123")
        XCTAssertEqual(PGText.timestampToWire("2026-06-11 08:15:02.1"), "2026-06-11T08:15:02.100")
        XCTAssertEqual(PGText.timestampToWire("2026-06-11 08:15:02.999999"), "2026-06-11T08:15:02.999")
        XCTAssertEqual(PGText.timestampToWire("2026-06-11 08:15:02.1239999"), "2026-06-11T08:15:02.123")
    }

    func testWireAcceptsTSeparatorAndInfinity() {
        XCTAssertEqual(PGText.timestampToWire("2026-06-11T08:15:02.5"), "2026-06-11T08:15:02.500")
        XCTAssertEqual(PGText.timestampToWire("infinity"), "infinity")
        XCTAssertEqual(PGText.timestampToWire("-infinity"), "-infinity")
    }

    func testWireExpandedYears() {
        XCTAssertEqual(PGText.timestampToWire("0001-01-01 00:00:00 BC"), "0000-01-01T00:00:00.000")
        XCTAssertEqual(PGText.timestampToWire("0044-03-15 12:00:00 BC"), "-000043-03-15T12:00:00.000")
        XCTAssertEqual(PGText.timestampToWire("10000-01-01 00:00:00"), "+010000-01-01T00:00:00.000")
    }

    func testWireRejectsMalformed() {
        for bad in ["", "2026-06-11", "2026-6-11 08:15:02", "2026-06-11 8:15:02", "2026-13-01 00:00:00",
                    "2026-02-30 00:00:00", "2026-06-11 24:00:00", "2026-06-11 08:60:00", "2026-06-11 08:15:60",
                    "2026-06-11 08:15:02.", "2026-06-11 08:15:02+00", "2026-06-11 08:15:02.12Z", "abc",
                    "2026-06-11  08:15:02", "2026-06-11 08:15:02 AD", "Infinity"] {
            XCTAssertNil(PGText.timestampToWire(bad), bad)
        }
    }

    func testLeapDays() {
        XCTAssertNotNil(PGText.timestampToWire("2024-02-29 00:00:00"))
        XCTAssertNotNil(PGText.timestampToWire("2000-02-29 00:00:00"))
        XCTAssertNil(PGText.timestampToWire("1900-02-29 00:00:00"))
        XCTAssertNil(PGText.timestampToWire("2026-02-29 00:00:00"))
    }

    func testEpochMs() {
        XCTAssertEqual(PGText.timestampToEpochMs("1970-01-01 00:00:00"), 0)
        XCTAssertEqual(PGText.timestampToEpochMs("1970-01-01 00:00:00.001"), 1)
        XCTAssertEqual(PGText.timestampToEpochMs("1969-12-31 23:59:59.999"), -1)
        XCTAssertEqual(PGText.timestampToEpochMs("2000-01-01 00:00:00"), 946_684_800_000)
        XCTAssertEqual(PGText.timestampToEpochMs("2026-06-11 08:15:02.12"), 1_781_165_702_120)
        XCTAssertEqual(PGText.timestampToEpochMs("2025-10-09 08:53:20.123"), 1_760_000_000_123)
        XCTAssertEqual(PGText.timestampToEpochMs("2024-02-29 12:00:00"), 1_709_208_000_000)
        XCTAssertEqual(PGText.timestampToEpochMs("1900-03-01 00:00:00"), -2_203_891_200_000)
        XCTAssertEqual(PGText.timestampToEpochMs("0001-01-01 00:00:00"), -62_135_596_800_000)
        XCTAssertEqual(PGText.timestampToEpochMs("0044-03-15 12:00:00 BC"), -63_517_780_800_000)
        XCTAssertEqual(PGText.timestampToEpochMs("10000-01-01 00:00:00"), 253_402_300_800_000)
        XCTAssertNil(PGText.timestampToEpochMs("infinity"))
        XCTAssertNil(PGText.timestampToEpochMs("garbage"))
    }

    func testEpochMsToTimestamp() {
        XCTAssertEqual(PGText.epochMsToTimestamp(0), "1970-01-01 00:00:00.000")
        XCTAssertEqual(PGText.epochMsToTimestamp(1_781_165_702_120), "2026-06-11 08:15:02.120")
        XCTAssertEqual(PGText.epochMsToTimestamp(-1), "1969-12-31 23:59:59.999")
        XCTAssertEqual(PGText.epochMsToTimestamp(951_782_400_000), "2000-02-29 00:00:00.000")
        XCTAssertEqual(PGText.epochMsToTimestamp(-62_135_596_800_001), "0001-12-31 23:59:59.999 BC")
    }

    func testEpochMsToISO8601() {
        XCTAssertEqual(PGText.epochMsToISO8601(0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(PGText.epochMsToISO8601(1_781_165_702_120), "2026-06-11T08:15:02.120Z")
        XCTAssertEqual(PGText.epochMsToISO8601(951_782_400_999), "2000-02-29T00:00:00.999Z")
    }

    func testRoundTripAcrossManyDays() {
        var ms: Int64 = -80_000_000_000_000
        while ms < 260_000_000_000_000 {
            let text = PGText.epochMsToTimestamp(ms)
            XCTAssertEqual(PGText.timestampToEpochMs(text), ms, text)
            ms += 86_400_000 * 997 + 12_345_678
        }
    }

    func testCivilDaysInverse() {
        for days in stride(from: Int64(-1_000_000), through: 1_000_000, by: 331) {
            let c = PGText.civilFromDays(days)
            XCTAssertEqual(PGText.daysFromCivil(year: c.year, month: c.month, day: c.day), days)
        }
    }
}

final class PGArrayTests: XCTestCase {
    func testParseBasics() {
        XCTAssertEqual(PGText.parseArray("{}")!, [])
        XCTAssertEqual(PGText.parseArray("{a,b}")!, ["a", "b"])
        XCTAssertEqual(PGText.parseArray("{a}")!, ["a"])
    }

    func testParseQuotedAndEscapes() {
        let parsed = PGText.parseArray(#"{"a b","c\"d","e\\f",NULL,"NULL"}"#)
        XCTAssertEqual(parsed!, ["a b", "c\"d", "e\\f", nil, "NULL"])
        XCTAssertEqual(PGText.parseArray(#"{""}"#)!, [""])
        XCTAssertEqual(PGText.parseArray(#"{"a,b","{x}"}"#)!, ["a,b", "{x}"])
    }

    func testParseNullVariants() {
        XCTAssertEqual(PGText.parseArray("{null,Null}")!, [nil, nil])
        XCTAssertEqual(PGText.parseArray(#"{N\ULL}"#)!, ["NULL"])
        XCTAssertEqual(PGText.parseArray("{NULLx}")!, ["NULLx"])
    }

    func testParseWhitespaceAndUnicode() {
        XCTAssertEqual(PGText.parseArray("{ a , b }")!, ["a", "b"])
        XCTAssertEqual(PGText.parseArray(#"{ "x" , y z }"#)!, ["x", "y z"])
        XCTAssertEqual(PGText.parseArray("{user:42,tag-é,😀}")!, ["user:42", "tag-é", "😀"])
        XCTAssertEqual(PGText.parseArray("[1:2]={a,b}")!, ["a", "b"])
    }

    func testParseMalformed() {
        for bad in ["", "a,b", "{", "{a", "{a,}", "{,a}", "{a}}", "{\"a}", "{a\"b}", "{{a},{b}}", "{a} x", "{\"a\"b}", "{a\\}"] {
            XCTAssertNil(PGText.parseArray(bad), bad)
        }
    }

    func testEncode() {
        XCTAssertEqual(PGText.encodeArray([]), "{}")
        XCTAssertEqual(PGText.encodeArray(["a", "b"]), #"{"a","b"}"#)
        XCTAssertEqual(PGText.encodeArray(["a\"b", "c\\d", nil, "NULL", "x y,z"]), #"{"a\"b","c\\d",NULL,"NULL","x y,z"}"#)
        XCTAssertEqual(PGText.arrayLiteralParam(["t1", "t,2"]), #"{"t1","t,2"}"#)
    }

    func testEncodeParseRoundTrip() {
        let samples: [[String?]] = [[], [""], ["a"], [nil], ["NULL", nil], ["\"", "\\", "{}", ",", " lead", "trail "], ["é", "😀 x"]]
        for s in samples {
            XCTAssertEqual(PGText.parseArray(PGText.encodeArray(s))!, s)
        }
    }

    func testQuotingForReplicationCommands() {
        XCTAssertEqual(PGText.quoteIdentifier("runfeed_capture"), "\"runfeed_capture\"")
        XCTAssertEqual(PGText.quoteIdentifier("a\"b"), "\"a\"\"b\"")
        XCTAssertEqual(PGText.quoteIdentifier(""), "\"\"")
        XCTAssertEqual(PGText.quoteLiteralBody("it's"), "it''s")
        XCTAssertEqual(PGText.quoteLiteralBody("''"), "''''")
        XCTAssertEqual(PGText.quoteLiteralBody("plain"), "plain")
    }
}
