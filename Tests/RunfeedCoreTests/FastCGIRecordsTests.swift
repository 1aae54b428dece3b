import XCTest
@testable import RunfeedCore

final class FastCGIRecordsTests: XCTestCase {
    func testSmallAnswerIsOneStdoutRecordThenEmptyStdoutThenEndRequest() {
        let r = FastCGIRecords.response(requestId: 1, stdout: Array("Status: 200 OK\r\n\r\n{}".utf8))
        // 20 bytes of content, padded with 4 zeros.
        XCTAssertEqual(Array(r[0..<8]), [1, 6, 0, 1, 0, 20, 4, 0])
        XCTAssertEqual(String(decoding: r[8..<28], as: UTF8.self), "Status: 200 OK\r\n\r\n{}")
        XCTAssertEqual(Array(r[28..<32]), [0, 0, 0, 0])
        XCTAssertEqual(Array(r[32..<40]), [1, 6, 0, 1, 0, 0, 0, 0])
        XCTAssertEqual(Array(r[40..<48]), [1, 3, 0, 1, 0, 8, 0, 0])
        XCTAssertEqual(Array(r[48..<56]), [0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(r.count, 56)
    }

    func testLargeAnswerIsSplitIntoRecordsOfAtMost65535Bytes() {
        let body = [UInt8](repeating: 0x61, count: 65_535 + 10)
        let r = FastCGIRecords.response(requestId: 0x0102, stdout: body)
        XCTAssertEqual(Array(r[0..<8]), [1, 6, 1, 2, 0xff, 0xff, 1, 0])
        let second = 8 + 65_535 + 1
        XCTAssertEqual(Array(r[second..<second + 8]), [1, 6, 1, 2, 0, 10, 6, 0])
        XCTAssertEqual(r.count, second + 8 + 10 + 6 + 8 + 16)
    }

    func testHeadAndBodyGiveTheSameRecordsAsTheirConcatenation() {
        // Record boundaries inside the head, at its end, and inside the body; empty parts; multi-byte text.
        let sizes: [(Int, Int)] = [(0, 0), (5, 0), (0, 7), (20, 2), (65_535, 0), (65_534, 3), (65_536, 131_070),
                                   (100, 65_535 * 3 + 1), (70_000, 1)]
        for (h, b) in sizes {
            let head = String(repeating: "h", count: h)
            let body = String(repeating: "é", count: b / 2) + (b % 2 == 1 ? "x" : "")
            XCTAssertEqual(FastCGIRecords.response(requestId: 7, head: head, body: body),
                           FastCGIRecords.response(requestId: 7, stdout: Array((head + body).utf8)), "head \(h), body \(b)")
        }
    }
}
