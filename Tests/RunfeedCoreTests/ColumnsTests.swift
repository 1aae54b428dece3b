import XCTest
@testable import RunfeedCore

final class ColumnTests: XCTestCase {
    static let referenceSchema = #"{"id":{"type":"text"},"taskIdentifier":{"type":"text"},"createdAt":{"type":"timestamp"},"updatedAt":{"type":"timestamp"},"startedAt":{"type":"timestamp"},"delayUntil":{"type":"timestamp"},"queuedAt":{"type":"timestamp"},"expiredAt":{"type":"timestamp"},"completedAt":{"type":"timestamp"},"friendlyId":{"type":"text"},"number":{"type":"int4"},"isTest":{"type":"bool"},"status":{"type":"text"},"usageDurationMs":{"type":"int4"},"costInCents":{"type":"float8"},"baseCostInCents":{"type":"float8"},"ttl":{"type":"text"},"payload":{"type":"text"},"payloadType":{"type":"text"},"metadata":{"type":"text"},"metadataType":{"type":"text"},"output":{"type":"text"},"outputType":{"type":"text"},"runTags":{"type":"text","dims":1},"error":{"type":"jsonb"},"realtimeStreams":{"type":"text","dims":1}}"#

    func testColumnOrder() {
        XCTAssertEqual(RunColumn.allCases.count, 26)
        XCTAssertEqual(RunColumn.allCases.map(\.rawValue), [
            "id", "taskIdentifier", "createdAt", "updatedAt", "startedAt", "delayUntil", "queuedAt", "expiredAt",
            "completedAt", "friendlyId", "number", "isTest", "status", "usageDurationMs", "costInCents",
            "baseCostInCents", "ttl", "payload", "payloadType", "metadata", "metadataType", "output", "outputType",
            "runTags", "error", "realtimeStreams",
        ])
        XCTAssertEqual(RunColumn.runTags.index, 23)
        XCTAssertEqual(RunColumn.id.index, 0)
    }

    func testSchemaHeaderMatchesReference() {
        XCTAssertEqual(RunEncoder.schemaHeader(.all), ColumnTests.referenceSchema)
        XCTAssertNotNil(JSONValue.parse(RunEncoder.schemaHeader(.all))?.objectValue)
    }

    func testSchemaHeaderWithSkips() {
        let cols = ColumnSet(skipping: [.payload, .output, .runTags])
        let header = RunEncoder.schemaHeader(cols)
        XCTAssertFalse(header.contains("\"payload\""))
        XCTAssertFalse(header.contains("\"runTags\""))
        XCTAssertTrue(header.contains(#""payloadType":{"type":"text"}"#))
        XCTAssertEqual(JSONValue.parse(header)?.objectValue?.count, 23)
    }

    func testSchemaAndSQLNames() {
        XCTAssertEqual(RunColumn.createdAt.schemaJSON, #"{"type":"timestamp"}"#)
        XCTAssertEqual(RunColumn.runTags.schemaJSON, #"{"type":"text","dims":1}"#)
        XCTAssertEqual(RunColumn.costInCents.schemaJSON, #"{"type":"float8"}"#)
        XCTAssertEqual(RunColumn.createdAt.sqlName, "\"createdAt\"")
        XCTAssertTrue(ColumnSet.all.sqlSelectList.hasPrefix(#""id","taskIdentifier","createdAt""#))
    }

    func testColumnSetSkippedAndSignature() {
        XCTAssertEqual(ColumnSet.all.skipped, [])
        XCTAssertEqual(ColumnSet.all.signature, "")
        let cols = ColumnSet(skipping: [.payload, .error, .costInCents])
        XCTAssertEqual(cols.skipped, [.costInCents, .payload, .error])
        XCTAssertEqual(cols.signature, "costInCents,error,payload")
        XCTAssertEqual(cols.columns.count, 23)
        XCTAssertFalse(cols.contains(.payload))
        XCTAssertEqual(cols, ColumnSet(skipping: [.error, .costInCents, .payload]))
    }
}

final class SkipColumnsTests: XCTestCase {
    func testReserved() {
        XCTAssertEqual(SkipColumns.reserved, [.id, .taskIdentifier, .friendlyId, .status, .createdAt, .updatedAt])
    }

    func testQuerySplitTrimAndFilter() {
        let cols = SkipColumns.resolve(jwtClaim: nil, query: " payload , output,,id,nope,status,updatedAt,")
        XCTAssertEqual(cols.skipped, [.payload, .output])
    }

    func testNothing() {
        XCTAssertEqual(SkipColumns.resolve(jwtClaim: nil, query: nil), .all)
        XCTAssertEqual(SkipColumns.resolve(jwtClaim: nil, query: ""), .all)
    }

    func testClaimWinsEvenWhenEmpty() {
        XCTAssertEqual(SkipColumns.resolve(jwtClaim: [], query: "payload"), .all)
        XCTAssertEqual(SkipColumns.resolve(jwtClaim: ["metadata", " error "], query: "payload").skipped, [.metadata, .error])
    }

    func testCaseSensitiveNames() {
        XCTAssertEqual(SkipColumns.resolve(jwtClaim: nil, query: "Payload,PAYLOAD"), .all)
    }

    func testRealtimeStreamsMaySkip() {
        XCTAssertEqual(SkipColumns.resolve(jwtClaim: nil, query: "realtimeStreams").skipped, [.realtimeStreams])
    }
}
