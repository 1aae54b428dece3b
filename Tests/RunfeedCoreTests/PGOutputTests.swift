import XCTest
@testable import RunfeedCore

final class PGOutputTests: XCTestCase {
    static let taskRun = Relation(id: 16390, namespace: "public", name: "TaskRun", replicaIdentity: UInt8(ascii: "d"), columns: [
        RelationColumn(isKey: true, name: "id", typeOid: 25, typeModifier: -1),
        RelationColumn(isKey: false, name: "updatedAt", typeOid: 1114, typeModifier: 3),
        RelationColumn(isKey: false, name: "runTags", typeOid: 1009, typeModifier: -1),
        RelationColumn(isKey: false, name: "runtimeEnvironmentId", typeOid: 25, typeModifier: -1),
        RelationColumn(isKey: false, name: "batchId", typeOid: 25, typeModifier: -1),
    ])

    func testLSNText() {
        XCTAssertEqual(LSN(0x16_B374_D848).description, "16/B374D848")
        XCTAssertEqual(LSN(0).description, "0/0")
        XCTAssertEqual(LSN(text: "16/B374D848"), LSN(0x16_B374_D848))
        XCTAssertEqual(LSN(text: "0/1"), LSN(1))
        XCTAssertNil(LSN(text: "16B374D848"))
        XCTAssertNil(LSN(text: "/1"))
        XCTAssertNil(LSN(text: "1/123456789"))
        XCTAssertNil(LSN(text: "x/1"))
    }

    func testBeginCommitBytes() throws {
        // Hand-assembled, as the server sends them.
        var begin: [UInt8] = [0x42]  // B
        begin += [0, 0, 0, 0, 0x01, 0x6B, 0x37, 0x48]  // final LSN 0/16B3748
        begin += [0, 0, 0, 0, 0, 0, 0x03, 0xE8]  // commit time 1000 µs
        begin += [0, 0, 0x02, 0xE5]  // xid 741
        XCTAssertEqual(try PGOutputMessage.parse(begin), .begin(finalLSN: LSN(0x16B_3748), commitTimeUs: 1000, xid: 741))
        var commit: [UInt8] = [0x43, 0]
        commit += [0, 0, 0, 0, 0x01, 0x6B, 0x37, 0x48]
        commit += [0, 0, 0, 0, 0x01, 0x6B, 0x37, 0x78]
        commit += [0, 0, 0, 0, 0, 0, 0x03, 0xE8]
        XCTAssertEqual(try PGOutputMessage.parse(commit),
                       .commit(flags: 0, commitLSN: LSN(0x16B_3748), endLSN: LSN(0x16B_3778), commitTimeUs: 1000))
    }

    func testRoundTripsEveryKind() throws {
        let messages: [PGOutputMessage] = [
            .begin(finalLSN: LSN(99), commitTimeUs: 123_456, xid: 7),
            .commit(flags: 0, commitLSN: LSN(99), endLSN: LSN(150), commitTimeUs: 123_456),
            .origin(lsn: LSN(5), name: "node-a"),
            .relation(Self.taskRun),
            .type(oid: 16400, namespace: "public", name: "TaskRunStatus"),
            .insert(relationId: 16390, new: [.text("run_1"), .text("2026-01-02 03:04:05.678"), .text("{a,\"b c\"}"),
                                             .text("env_1"), .null]),
            .update(relationId: 16390, old: nil, new: [.text("run_1"), .text("2026-01-02 03:04:05.678"), .unchangedToast,
                                                       .text("env_1"), .text("batch_1")]),
            .update(relationId: 16390, old: [.text("run_1"), .null, .null, .null, .null], new: [.text("run_1"), .null, .null, .text("e"), .null]),
            .delete(relationId: 16390, old: [.text("run_1"), .null, .null, .null, .null]),
            .truncate(options: 1, relationIds: [16390, 16391]),
            .insert(relationId: 1, new: [.binary([0, 1, 2])]),
            .insert(relationId: 1, new: [.text("ünïcødé")]),
        ]
        for m in messages {
            XCTAssertEqual(try PGOutputMessage.parse(PGOutputEncoder.encode(m)), m, "\(m)")
        }
    }

    func testUnknownKindIsSkipped() throws {
        XCTAssertEqual(try PGOutputMessage.parse([UInt8(ascii: "M"), 1, 2, 3]), .other(kind: UInt8(ascii: "M")))
    }

    func testMalformedIsAnErrorNotATrap() {
        let good = PGOutputEncoder.encode(.relation(Self.taskRun))
        for n in 0..<good.count {
            XCTAssertThrowsError(try PGOutputMessage.parse(Array(good[..<n])), "prefix \(n)")
        }
        XCTAssertThrowsError(try PGOutputMessage.parse(good + [0]))  // trailing byte
        XCTAssertThrowsError(try PGOutputMessage.parse([]))
        // A text column claiming more bytes than there are, or a negative length.
        XCTAssertThrowsError(try PGOutputMessage.parse([0x49, 0, 0, 0, 1, 0x4E, 0, 1, 0x74, 0, 0, 0, 9, 0x61]))
        XCTAssertThrowsError(try PGOutputMessage.parse([0x49, 0, 0, 0, 1, 0x4E, 0, 1, 0x74, 0xFF, 0xFF, 0xFF, 0xFF]))
        XCTAssertThrowsError(try PGOutputMessage.parse([0x49, 0, 0, 0, 1, 0x4E, 0xFF, 0xFF]))  // -1 columns
        XCTAssertThrowsError(try PGOutputMessage.parse([0x49, 0, 0, 0, 1, 0x4E, 0, 1, 0x78]))  // unknown kind x
        XCTAssertThrowsError(try PGOutputMessage.parse([0x54, 0x7F, 0xFF, 0xFF, 0xFF, 0]))  // truncate count too large
    }

    func testFrames() throws {
        let payload = PGOutputEncoder.encode(.begin(finalLSN: LSN(10), commitTimeUs: 1, xid: 2))
        let w = PGOutputEncoder.xlogData(start: LSN(8), end: LSN(300), sendTimeUs: 77, .begin(finalLSN: LSN(10), commitTimeUs: 1, xid: 2))
        XCTAssertEqual(try ReplicationFrame.parse(w), .xlogData(start: LSN(8), end: LSN(300), sendTimeUs: 77, payload: payload))
        let k = PGOutputEncoder.keepalive(end: LSN(0x1_0000_0001), sendTimeUs: -5, replyRequested: true)
        XCTAssertEqual(k.count, 18)
        XCTAssertEqual(try ReplicationFrame.parse(k), .keepalive(end: LSN(0x1_0000_0001), sendTimeUs: -5, replyRequested: true))
        XCTAssertThrowsError(try ReplicationFrame.parse(k + [0]))
        XCTAssertThrowsError(try ReplicationFrame.parse(Array(k.dropLast())))
        XCTAssertThrowsError(try ReplicationFrame.parse([UInt8(ascii: "z")]))
    }

    func testStandbyStatusUpdateLayout() {
        let r = ReplicationFrame.standbyStatusUpdate(written: LSN(1), flushed: LSN(2), applied: LSN(3), clockUs: 4, replyRequested: true)
        XCTAssertEqual(r.count, 34)
        XCTAssertEqual(r[0], UInt8(ascii: "r"))
        XCTAssertEqual(Array(r[1..<9]), [0, 0, 0, 0, 0, 0, 0, 1])
        XCTAssertEqual(Array(r[9..<17]), [0, 0, 0, 0, 0, 0, 0, 2])
        XCTAssertEqual(Array(r[17..<25]), [0, 0, 0, 0, 0, 0, 0, 3])
        XCTAssertEqual(Array(r[25..<33]), [0, 0, 0, 0, 0, 0, 0, 4])
        XCTAssertEqual(r[33], 1)
    }

    func testEpoch() {
        XCTAssertEqual(PGEpoch.toUnixMs(0), 946_684_800_000)
        XCTAssertEqual(PGEpoch.fromUnixUs(946_684_800_000_000), 0)
    }
}
