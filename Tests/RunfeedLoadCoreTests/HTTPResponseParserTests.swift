import XCTest
@testable import RunfeedLoadCore

final class HTTPResponseParserTests: XCTestCase {
    /// Feeds `text` in pieces of `chunk` bytes; returns the responses completed.
    private func parse(_ text: String, chunk: Int = 1 << 20, prefixLimit: Int = 64) throws -> [HTTPResponse] {
        var p = HTTPResponseParser(prefixLimit: prefixLimit)
        var out: [HTTPResponse] = []
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + chunk)
            try bytes[i..<end].withUnsafeBytes { try p.feed($0) { out.append($0) } }
            i = end
        }
        return out
    }

    func testContentLengthResponseWithTheHeadersTheGeneratorReads() throws {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nElectric-Offset:  17_42 \r\nX-Other: y\r\nETag: \"0\"\r\n\r\nhello"
        for chunk in [1, 2, 7, 1 << 20] {
            let r = try parse(text, chunk: chunk)
            XCTAssertEqual(r.count, 1, "chunk \(chunk)")
            XCTAssertEqual(r[0].status, 200)
            XCTAssertEqual(r[0].headers["electric-offset"], "17_42")
            XCTAssertEqual(r[0].headers["etag"], "\"0\"")
            XCTAssertNil(r[0].headers["x-other"], "headers the generator does not read are skipped")
            XCTAssertEqual(r[0].bodyBytes, 5)
            XCTAssertEqual(r[0].bodyPrefix, Array("hello".utf8))
            XCTAssertTrue(r[0].keepAlive)
        }
    }

    func testChunkedBodyAcrossReadsAndTwoResponsesInOneRead() throws {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nA;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"
        let second = "HTTP/1.1 204 No Content\r\n\r\n"
        for chunk in [1, 3, 1 << 20] {
            let r = try parse(chunked + second, chunk: chunk, prefixLimit: 6)
            XCTAssertEqual(r.map(\.status), [200, 204], "chunk \(chunk)")
            XCTAssertEqual(r[0].bodyBytes, 14)
            XCTAssertEqual(r[0].bodyPrefix, Array("abcd01".utf8))
            XCTAssertEqual(r[1].bodyBytes, 0)
        }
    }

    func testStatusesWithoutBodyAndConnectionClose() throws {
        let r = try parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nHTTP/1.0 408 Request Timeout\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx")
        XCTAssertEqual(r.map(\.status), [304, 408, 200])
        XCTAssertEqual(r.map(\.keepAlive), [true, false, false])
    }

    func testMalformedResponsesAreErrors() {
        XCTAssertThrowsError(try parse("HTTP/2 200 OK\r\n\r\n"))
        XCTAssertThrowsError(try parse("HTTP/1.1 2x0 OK\r\n\r\n"))
        XCTAssertThrowsError(try parse("HTTP/1.1 200 OK\r\n\r\n"), "a 200 without framing")
        XCTAssertThrowsError(try parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
        XCTAssertThrowsError(try parse("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: HTTPResponseParser.headLimit) + "\r\n\r\n"))
    }
}

final class StatsTests: XCTestCase {
    func testPercentilesAreNearestRank() {
        var s = Samples()
        XCTAssertEqual(s.percentile(50), 0)
        for v in (1...100).reversed() { s.add(Int64(v)) }
        XCTAssertEqual(s.count, 100)
        XCTAssertEqual(s.percentile(50), 50)
        XCTAssertEqual(s.percentile(99), 99)
        XCTAssertEqual(s.percentile(100), 100)
        XCTAssertEqual(s.percentile(0), 1)
    }

    func testFixedDecimals() {
        XCTAssertEqual(fixed(3.14159, 3), "3.142")
        XCTAssertEqual(fixed(0.05, 1), "0.1")
        XCTAssertEqual(fixed(-2.5, 2), "-2.50")
        XCTAssertEqual(fixed(7, 0), "7")
        XCTAssertEqual(fixed(0.001, 2), "0.00")
    }
}
