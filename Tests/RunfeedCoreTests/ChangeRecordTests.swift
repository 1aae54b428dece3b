import XCTest
@testable import RunfeedCore

final class ChangeRecordTests: XCTestCase {
    func testParseFullRecord() {
        let r = ChangeRecord.parse(#"{"v":1,"runId":"cm5q0x1y20003","envId":"clx9k2abc0001","tags":["user:42"],"batchId":null,"updatedAtMs":1760000000123}"#)
        XCTAssertEqual(r, ChangeRecord(v: 1, runId: "cm5q0x1y20003", envId: "clx9k2abc0001", tags: ["user:42"], batchId: nil, updatedAtMs: 1_760_000_000_123))
        XCTAssertTrue(r!.isFull)
    }

    func testPartialRecord() {
        let r = ChangeRecord.parse(#"{"runId":"r1","envId":"e1","batchId":"b1"}"#)!
        XCTAssertEqual(r.v, 0)
        XCTAssertNil(r.tags)
        XCTAssertFalse(r.isFull)
        XCTAssertEqual(r.batchId, "b1")
        XCTAssertNil(r.updatedAtMs)
    }

    func testEmptyTagsIsFull() {
        XCTAssertTrue(ChangeRecord.parse(#"{"v":1,"runId":"r","envId":"e","tags":[]}"#)!.isFull)
        XCTAssertFalse(ChangeRecord.parse(#"{"v":1,"runId":"r","envId":"e","tags":null}"#)!.isFull)
    }

    func testMissingRunIdIsNil() {
        XCTAssertNil(ChangeRecord.parse(#"{"v":1,"envId":"e"}"#))
        XCTAssertNil(ChangeRecord.parse(#"{"v":1,"runId":"","envId":"e"}"#))
        XCTAssertNil(ChangeRecord.parse(#"{"v":1,"runId":5}"#))
    }

    func testBareFrames() {
        XCTAssertEqual(ChangeRecord.parse("cm123"), ChangeRecord(v: 0, runId: "cm123", envId: ""))
        XCTAssertEqual(ChangeRecord.parse("  cm123\n"), ChangeRecord(v: 0, runId: "cm123", envId: ""))
        XCTAssertEqual(ChangeRecord.parse("{not json")?.runId, "{not json")
        XCTAssertEqual(ChangeRecord.parse("[1]")?.runId, "[1]")
        XCTAssertNil(ChangeRecord.parse(""))
        XCTAssertNil(ChangeRecord.parse("   "))
    }

    func testJSON() {
        let full = ChangeRecord(v: 1, runId: "r", envId: "e", tags: ["a", "b\""], batchId: "b", updatedAtMs: 5)
        XCTAssertEqual(full.json(), #"{"v":1,"runId":"r","envId":"e","tags":["a","b\""],"batchId":"b","updatedAtMs":5}"#)
        let partial = ChangeRecord(v: 1, runId: "r", envId: "e")
        XCTAssertEqual(partial.json(), #"{"v":1,"runId":"r","envId":"e","batchId":null}"#)
    }

    func testJSONRoundTrip() {
        let records = [ChangeRecord(v: 1, runId: "r", envId: "e", tags: [], batchId: nil, updatedAtMs: 1_760_000_000_123),
                       ChangeRecord(v: 2, runId: "r\u{1}", envId: "é", tags: nil, batchId: "b", updatedAtMs: nil)]
        for r in records { XCTAssertEqual(ChangeRecord.parse(r.json()), r) }
    }

    func testChannels() {
        XCTAssertEqual(Channels.env("clx9"), "realtime:env:{clx9}")
        XCTAssertEqual(Channels.envId(fromChannel: "realtime:env:{clx9}"), "clx9")
        XCTAssertNil(Channels.envId(fromChannel: "realtime:env:{}"))
        XCTAssertNil(Channels.envId(fromChannel: "realtime:run:{x}"))
        XCTAssertNil(Channels.envId(fromChannel: "realtime:env:clx9"))
    }

    func testLSNFieldRoundTripsAndIsOptional() {
        let r = ChangeRecord(v: 1, runId: "r", envId: "e", tags: [], batchId: nil, updatedAtMs: 5, lsn: "16/B374D848")
        XCTAssertEqual(r.json(), #"{"v":1,"runId":"r","envId":"e","tags":[],"batchId":null,"updatedAtMs":5,"lsn":"16/B374D848"}"#)
        XCTAssertEqual(ChangeRecord.parse(r.json()), r)
        XCTAssertFalse(ChangeRecord(runId: "r", envId: "e").json().contains("lsn"))
    }
}
