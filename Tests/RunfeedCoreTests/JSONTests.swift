import XCTest
@testable import RunfeedCore

final class JSONTextTests: XCTestCase {
    func testQuotePlain() {
        XCTAssertEqual(JSONText.quote(""), "\"\"")
        XCTAssertEqual(JSONText.quote("abc"), "\"abc\"")
    }

    func testQuoteEscapes() {
        XCTAssertEqual(JSONText.quote("a\"b"), #""a\"b""#)
        XCTAssertEqual(JSONText.quote("a\\b"), #""a\\b""#)
        XCTAssertEqual(JSONText.quote("\u{08}\u{0C}\n\r\t"), #""\b\f\n\r\t""#)
        XCTAssertEqual(JSONText.quote("\u{00}"), #""\u0000""#)
        XCTAssertEqual(JSONText.quote("\u{1F}"), #""\u001f""#)
        XCTAssertEqual(JSONText.quote("\u{0B}"), #""\u000b""#)
    }

    func testQuoteLeavesOthersRaw() {
        XCTAssertEqual(JSONText.quote("a/b"), "\"a/b\"")
        XCTAssertEqual(JSONText.quote("é✓😀"), "\"é✓😀\"")
        XCTAssertEqual(JSONText.quote("\u{7F}"), "\"\u{7F}\"")
        XCTAssertEqual(JSONText.quote("\u{2028}"), "\"\u{2028}\"")
    }

    func testQuoteAllControlCharactersMatchesJSONStringify() {
        // JSON.stringify output for U+0000…U+001F.
        let named: [UInt32: String] = [8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"]
        for c in UInt32(0)..<0x20 {
            let s = String(Character(Unicode.Scalar(c)!))
            let hex = String(c, radix: 16)
            let expected = named[c] ?? "\\u00" + (hex.count == 1 ? "0" + hex : hex)
            XCTAssertEqual(JSONText.quote(s), "\"" + expected + "\"")
        }
    }

    func testArray() {
        XCTAssertEqual(JSONText.array([]), "[]")
        XCTAssertEqual(JSONText.array(["a", "b\"c"]), #"["a","b\"c"]"#)
    }
}

final class JSONValueTests: XCTestCase {
    func testParseScalars() {
        XCTAssertEqual(JSONValue.parse("true"), .bool(true))
        XCTAssertEqual(JSONValue.parse(" null "), .null)
        XCTAssertEqual(JSONValue.parse("-1.5e2"), .number(-150))
        XCTAssertEqual(JSONValue.parse(#""a\nb\u00e9\ud83d\ude00""#), .string("a\nbé😀"))
    }

    func testParseNested() {
        let v = JSONValue.parse(#"{"a":[1,{"b":false}],"c":"x"}"#)
        XCTAssertEqual(v, .object(["a": .array([.number(1), .object(["b": .bool(false)])]), "c": .string("x")]))
    }

    func testBoolIsNotNumber() {
        XCTAssertEqual(JSONValue.parse(#"{"pub":1}"#)?.objectValue?["pub"], .number(1))
        XCTAssertNotEqual(JSONValue.parse(#"{"pub":1}"#)?.objectValue?["pub"], .bool(true))
    }

    func testRejectsMalformed() {
        for bad in ["", "{", "[1,]", "{\"a\":}", "tru", "01", "1.", ".5", "+1", "\"a", "{\"a\" 1}", "[1] x", "\"\u{01}\"",
                    "\"\\x\"", "\"\\u12\"", "{a:1}", "NaN"] {
            XCTAssertNil(JSONValue.parse(bad), bad)
        }
    }

    func testDepthLimit() {
        XCTAssertNotNil(JSONValue.parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)))
        XCTAssertNil(JSONValue.parse(String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)))
    }

    func testAccessors() {
        XCTAssertEqual(JSONValue.number(12.9).int64Value, 12)
        XCTAssertEqual(JSONValue.number(1760000000123).int64Value, 1760000000123)
        XCTAssertNil(JSONValue.number(1e300).int64Value)
        XCTAssertEqual(JSONValue.array([.string("a")]).stringArrayValue, ["a"])
        XCTAssertNil(JSONValue.array([.string("a"), .number(1)]).stringArrayValue)
    }
}

final class CompactJSONTests: XCTestCase {
    func testPostgresSpacing() {
        XCTAssertEqual(PGText.compactJSON(#"{"a": 1, "b": [1, 2.50, "x y"]}"#), #"{"a":1,"b":[1,2.5,"x y"]}"#)
    }

    func testNumberNormalization() {
        XCTAssertEqual(PGText.compactJSON("[1.0, 1e2, 2.50, -0, 0.000001, 1e-7, 1E21, 123456789012345678901234]"),
                       "[1,100,2.5,0,0.000001,1e-7,1e+21,1.2345678901234569e+23]")
        XCTAssertEqual(PGText.compactJSON("1e400"), "null")
    }

    func testStringsKeptByteForByte() {
        XCTAssertEqual(PGText.compactJSON(#"{"m": "a \"q\" \\ \n \u00e9 é / \/"}"#), #"{"m":"a \"q\" \\ \n \u00e9 é / \/"}"#)
        XCTAssertEqual(PGText.compactJSON(#"{ "k y" : " v " }"#), #"{"k y":" v "}"#)
    }

    func testKeyOrderAndLiterals() {
        XCTAssertEqual(PGText.compactJSON(#"{"z": true, "a": false, "m": null, "e": {}, "l": []}"#),
                       #"{"z":true,"a":false,"m":null,"e":{},"l":[]}"#)
    }

    func testTaskRunErrorShape() {
        let pg = #"{"name": "Error", "type": "BUILT_IN_ERROR", "message": "boom", "stackTrace": "Error: boom\n    at x"}"#
        XCTAssertEqual(PGText.compactJSON(pg), #"{"name":"Error","type":"BUILT_IN_ERROR","message":"boom","stackTrace":"Error: boom\n    at x"}"#)
    }

    func testWhitespaceVariants() {
        XCTAssertEqual(PGText.compactJSON(" \n\t[ 1 ,\r\n 2 ] \n"), "[1,2]")
    }

    func testMalformed() {
        for bad in ["", "{", #"{"a": 1,}"#, "[1 2]", "{'a':1}", "[1] [2]", "nul", "[01]", #"{"a" 1}"#] {
            XCTAssertNil(PGText.compactJSON(bad), bad)
        }
    }
}
