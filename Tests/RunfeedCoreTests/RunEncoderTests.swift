import Foundation
import XCTest
@testable import RunfeedCore

/// A fully populated raw row (28 libpq text values) for encoder tests.
func sampleRaw(_ overrides: [RunColumn: String?] = [:], envId: String? = "env_1", batchId: String? = nil) -> [String?] {
    var values: [RunColumn: String?] = [
        .id: "cm5q0x1y20003", .taskIdentifier: "my-task",
        .createdAt: "2026-06-11 08:15:02.12", .updatedAt: "2026-06-11 08:15:03",
        .startedAt: nil, .delayUntil: nil, .queuedAt: "2026-06-11 08:15:02.123456", .expiredAt: nil, .completedAt: nil,
        .friendlyId: "run_abc", .number: "7", .isTest: "f", .status: "PENDING", .usageDurationMs: "0",
        .costInCents: "0", .baseCostInCents: "0.55", .ttl: "1h", .payload: "{\"a\":1}", .payloadType: "application/json",
        .metadata: nil, .metadataType: "application/json", .output: nil, .outputType: "application/json",
        .runTags: "{user:42,\"a b\"}", .error: nil, .realtimeStreams: "{}",
    ]
    for (k, v) in overrides { values[k] = v }
    return RunColumn.allCases.map { values[$0] ?? nil } + [envId, batchId]
}

final class RunRowTests: XCTestCase {
    func testParsesRow() {
        let row = RunRow(raw: sampleRaw(batchId: "batch_internal"))!
        XCTAssertEqual(row.id, "cm5q0x1y20003")
        XCTAssertEqual(row.friendlyId, "run_abc")
        XCTAssertEqual(row.envId, "env_1")
        XCTAssertEqual(row.batchId, "batch_internal")
        XCTAssertEqual(row.status, "PENDING")
        XCTAssertEqual(row.createdAtMs, 1_781_165_702_120)
        XCTAssertEqual(row.updatedAtMs, 1_781_165_703_000)
        XCTAssertEqual(row.runTags, ["user:42", "a b"])
        XCTAssertEqual(row.raw.count, 28)
        XCTAssertEqual(row[.taskIdentifier], "my-task")
        XCTAssertFalse(row.isCompleted)
    }

    func testNullTagsAndNilIds() {
        let row = RunRow(raw: sampleRaw([.runTags: nil], envId: nil, batchId: nil))!
        XCTAssertEqual(row.runTags, [])
        XCTAssertEqual(row.envId, "")
        XCTAssertNil(row.batchId)
    }

    func testRejectsBadInput() {
        XCTAssertNil(RunRow(raw: Array(sampleRaw().prefix(27))))
        XCTAssertNil(RunRow(raw: sampleRaw() + [nil]))
        XCTAssertNil(RunRow(raw: sampleRaw([.id: nil])))
        XCTAssertNil(RunRow(raw: sampleRaw([.updatedAt: "not a time"])))
        XCTAssertNil(RunRow(raw: sampleRaw([.createdAt: nil])))
        XCTAssertNil(RunRow(raw: sampleRaw([.status: nil])))
    }

    func testAccepts26Values() {
        let row = RunRow(raw: Array(sampleRaw().prefix(26)))
        XCTAssertNotNil(row)
        XCTAssertEqual(row?.raw.count, 28)
    }
}

final class RunEncoderTests: XCTestCase {
    func testValueJSONFullRow() {
        let row = RunRow(raw: sampleRaw())!
        let expected = #"{"id":"cm5q0x1y20003","taskIdentifier":"my-task","createdAt":"2026-06-11T08:15:02.120","updatedAt":"2026-06-11T08:15:03.000","startedAt":null,"delayUntil":null,"queuedAt":"2026-06-11T08:15:02.123","expiredAt":null,"completedAt":null,"friendlyId":"run_abc","number":"7","isTest":"f","status":"PENDING","usageDurationMs":"0","costInCents":"0","baseCostInCents":"0.55","ttl":"1h","payload":"{\"a\":1}","payloadType":"application/json","metadata":null,"metadataType":"application/json","output":null,"outputType":"application/json","runTags":"{\"user:42\",\"a b\"}","error":null,"realtimeStreams":"{}"}"#
        XCTAssertEqual(RunEncoder.valueJSON(row, columns: .all), expected)
        XCTAssertNotNil(JSONValue.parse(expected))
    }

    func testValueJSONSkipsColumns() {
        let row = RunRow(raw: sampleRaw())!
        let json = RunEncoder.valueJSON(row, columns: ColumnSet(skipping: [.payload, .runTags]))
        let obj = JSONValue.parse(json)!.objectValue!
        XCTAssertNil(obj["payload"])
        XCTAssertNil(obj["runTags"])
        XCTAssertEqual(obj.count, 24)
        XCTAssertEqual(obj["payloadType"], .string("application/json"))
    }

    func testRunTagsEncoding() {
        XCTAssertNil(RunEncoder.wireValue(.runTags, nil))
        XCTAssertNil(RunEncoder.wireValue(.runTags, "{}"))
        XCTAssertEqual(RunEncoder.wireValue(.runTags, "{a,b}"), #"{"a","b"}"#)
        XCTAssertEqual(RunEncoder.wireValue(.runTags, #"{"x\"y"}"#), #"{"x\"y"}"#)
    }

    func testRealtimeStreamsEncoding() {
        // NULL → the empty-array literal, as upstream's native serializer sends it (not null).
        XCTAssertEqual(RunEncoder.wireValue(.realtimeStreams, nil), "{}")
        XCTAssertEqual(RunEncoder.wireValue(.realtimeStreams, "{}"), "{}")
        XCTAssertEqual(RunEncoder.wireValue(.realtimeStreams, "{default,logs}"), #"{"default","logs"}"#)
    }

    func testNullArraysInValueJSON() {
        let row = RunRow(raw: sampleRaw([.runTags: nil, .realtimeStreams: nil]))!
        let json = RunEncoder.valueJSON(row, columns: ColumnSet(skipping: []))
        XCTAssertTrue(json.contains(#""runTags":null"#), json)
        XCTAssertTrue(json.contains(#""realtimeStreams":"{}""#), json)
    }

    func testFloatEncoding() {
        XCTAssertEqual(RunEncoder.wireValue(.costInCents, "3"), "3")
        XCTAssertEqual(RunEncoder.wireValue(.costInCents, "3.0"), "3")
        XCTAssertEqual(RunEncoder.wireValue(.costInCents, "1e-07"), "1e-7")
        XCTAssertEqual(RunEncoder.wireValue(.costInCents, "0.30000000000000004"), "0.30000000000000004")
        XCTAssertEqual(RunEncoder.wireValue(.costInCents, "1e+21"), "1e+21")
        XCTAssertEqual(RunEncoder.wireValue(.costInCents, "-0"), "0")
        XCTAssertEqual(RunEncoder.wireValue(.costInCents, "NaN"), "NaN")
        XCTAssertEqual(RunEncoder.wireValue(.costInCents, "Infinity"), "Infinity")
        XCTAssertEqual(RunEncoder.wireValue(.baseCostInCents, "-Infinity"), "-Infinity")
        XCTAssertEqual(RunEncoder.wireValue(.baseCostInCents, "junk"), "junk")
    }

    func testScalarEncodings() {
        XCTAssertEqual(RunEncoder.wireValue(.isTest, "t"), "t")
        XCTAssertEqual(RunEncoder.wireValue(.number, "42"), "42")
        XCTAssertEqual(RunEncoder.wireValue(.completedAt, "2026-06-11 08:15:02.12"), "2026-06-11T08:15:02.120")
        XCTAssertEqual(RunEncoder.wireValue(.completedAt, "weird"), "weird")
        XCTAssertNil(RunEncoder.wireValue(.ttl, nil))
        XCTAssertEqual(RunEncoder.wireValue(.payload, "line\nbreak"), "line\nbreak")
    }

    func testErrorJSONB() {
        XCTAssertEqual(RunEncoder.wireValue(.error, #"{"type": "STRING_ERROR", "raw": "x"}"#), #"{"type":"STRING_ERROR","raw":"x"}"#)
        XCTAssertEqual(RunEncoder.wireValue(.error, "{not json"), "{not json")
        let row = RunRow(raw: sampleRaw([.error: #"{"type": "STRING_ERROR", "raw": "a\"b"}"#]))!
        let obj = JSONValue.parse(RunEncoder.valueJSON(row, columns: .all))!.objectValue!
        XCTAssertEqual(obj["error"], .string(#"{"type":"STRING_ERROR","raw":"a\"b"}"#))
    }

    func testValueEscapesControlCharacters() {
        let row = RunRow(raw: sampleRaw([.payload: "a\u{01}\"\\"]))!
        XCTAssertTrue(RunEncoder.valueJSON(row, columns: .all).contains(#""payload":"a\u0001\"\\""#))
    }

    func testChangeMessageKeyFormat() {
        let msg = RunEncoder.changeMessage(runId: "cm123", valueJSON: #"{"id":"cm123"}"#, operation: .insert)
        XCTAssertEqual(msg, #"{"key":"\"public\".\"TaskRun\"/\"cm123\"","value":{"id":"cm123"},"headers":{"operation":"insert"}}"#)
        let obj = JSONValue.parse(msg)!.objectValue!
        XCTAssertEqual(obj["key"], .string("\"public\".\"TaskRun\"/\"cm123\""))
        XCTAssertEqual(RunEncoder.key(runId: "x"), #""public"."TaskRun"/"x""#)
    }

    func testBodyAndControls() {
        XCTAssertEqual(RunEncoder.upToDate, #"{"headers":{"control":"up-to-date"}}"#)
        XCTAssertEqual(RunEncoder.body([]), "[]")
        XCTAssertEqual(RunEncoder.body([RunEncoder.upToDate]), #"[{"headers":{"control":"up-to-date"}}]"#)
        XCTAssertEqual(RunEncoder.body(["1", "2"]), "[1,2]")
        XCTAssertEqual(RunEncoder.mustRefetch, #"{"headers":{"control":"must-refetch"}}"#)
    }

    func testLegacyRewrite() {
        let body = #"[{"value":{"status":"DEQUEUED"}},{"value":{"status":"DEQUEUED","x":"\"status\":\"DEQUEUED\""}}]"#
        let rewritten = RunEncoder.rewriteForLegacyApiVersion(body, apiVersion: nil)
        XCTAssertFalse(rewritten.contains(#""status":"DEQUEUED""#))
        XCTAssertEqual(rewritten.components(separatedBy: #""status":"EXECUTING""#).count - 1, 2)
        XCTAssertEqual(RunEncoder.rewriteForLegacyApiVersion(body, apiVersion: "2025-07-16"), body)
        XCTAssertNotEqual(RunEncoder.rewriteForLegacyApiVersion(body, apiVersion: "2025-07-17"), body)
        XCTAssertNotEqual(RunEncoder.rewriteForLegacyApiVersion(body, apiVersion: ""), body)
        XCTAssertEqual(RunEncoder.rewriteForLegacyApiVersion(#"{"status":"EXECUTING"}"#, apiVersion: nil), #"{"status":"EXECUTING"}"#)
    }

    func testLegacyRewriteFullRow() {
        let row = RunRow(raw: sampleRaw([.status: "DEQUEUED"]))!
        let body = RunEncoder.body([RunEncoder.changeMessage(runId: row.id, valueJSON: RunEncoder.valueJSON(row, columns: .all), operation: .insert)])
        XCTAssertTrue(RunEncoder.rewriteForLegacyApiVersion(body, apiVersion: nil).contains(#""status":"EXECUTING""#))
        XCTAssertTrue(RunEncoder.rewriteForLegacyApiVersion(body, apiVersion: "2025-07-16").contains(#""status":"DEQUEUED""#))
    }
}

final class ReplaceAllTests: XCTestCase {
    func testReplacesEveryMatchIncludingAtTheEdgesAndReturnsTheInputWhenThereIsNone() {
        XCTAssertEqual(RunEncoder.replaceAll("abXabXab", "ab", "c"), "cXcXc")
        XCTAssertEqual(RunEncoder.replaceAll("aaa", "aa", "b"), "ba")
        XCTAssertEqual(RunEncoder.replaceAll("no match here", "zz", "y"), "no match here")
        XCTAssertEqual(RunEncoder.replaceAll("ab", "abc", "y"), "ab")
        XCTAssertEqual(RunEncoder.replaceAll("", "a", "y"), "")
        XCTAssertEqual(RunEncoder.replaceAll("x", "", "y"), "x")
        XCTAssertEqual(RunEncoder.replaceAll("é-é", "é", "e"), "e-e")
    }
}

final class ReplaceAllAnchorTests: XCTestCase {
    func testFindsMatchesWhateverTheAnchorPosition() {
        let n = #""status":"DEQUEUED""#
        XCTAssertEqual(RunEncoder.replaceAll(n, n, "x"), "x")
        XCTAssertEqual(RunEncoder.replaceAll("D" + n + "D", n, "x"), "DxD")
        XCTAssertEqual(RunEncoder.replaceAll(#""status":"DEQUEUE"#, n, "x"), #""status":"DEQUEUE"#)
        XCTAssertEqual(RunEncoder.replaceAll(#"DDDD"status":"DEQUEUED"DD"#, n, "x"), "DDDDxDD")
        XCTAssertEqual(RunEncoder.replaceAll("aXbXc", "X", "-"), "a-b-c")
        XCTAssertEqual(RunEncoder.replaceAll("abc", "bc", "-"), "a-")
    }
}
