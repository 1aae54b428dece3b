import XCTest
@testable import RunfeedCore

final class FastCGIRequestParserTests: XCTestCase {
    typealias E = FastCGIRequestParser.Event

    private func record(_ type: UInt8, _ id: UInt16, _ content: [UInt8], padding: UInt8 = 0) -> [UInt8] {
        [1, type, UInt8(id >> 8), UInt8(id & 0xff), UInt8(content.count >> 8), UInt8(content.count & 0xff), padding, 0]
            + content + [UInt8](repeating: 0, count: Int(padding))
    }

    private func pairs(_ d: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (k, v) in d {
            for part in [k, v] {
                let n = part.utf8.count
                out += n < 128 ? [UInt8(n)] : [UInt8(n >> 24) | 0x80, UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)]
            }
            out += Array(k.utf8) + Array(v.utf8)
        }
        return out
    }

    private func request(id: UInt16 = 1, keep: Bool = true, params: [(String, String)], stdin: [UInt8] = []) -> [UInt8] {
        var b = record(1, id, [0, 1, keep ? 1 : 0, 0, 0, 0, 0, 0])
        b += record(4, id, pairs(params), padding: 5) + record(4, id, [])
        if !stdin.isEmpty { b += record(5, id, stdin) }
        return b + record(5, id, [])
    }

    let get: [(String, String)] = [("REQUEST_METHOD", "GET"), ("DOCUMENT_URI", "/realtime/v1/runs/run_1"),
                                   ("HTTP_X_LONG", String(repeating: "v", count: 300))]

    func testOneRequestWithKeepConnection() throws {
        var p = FastCGIRequestParser()
        let events = try p.feed(request(params: get))
        XCTAssertEqual(events, [.request(id: 1, keepConnection: true, params: Dictionary(uniqueKeysWithValues: get))])
        XCTAssertTrue(p.isIdle)
    }

    func testByteByByteGivesTheSameRequest() throws {
        var p = FastCGIRequestParser()
        var events: [E] = []
        for b in request(id: 7, keep: false, params: get, stdin: Array("ignored body".utf8)) {
            events += try p.feed([b])
        }
        XCTAssertEqual(events, [.request(id: 7, keepConnection: false, params: Dictionary(uniqueKeysWithValues: get))])
    }

    func testKeptConnectionCarriesRequestsOneAfterAnother() throws {
        var p = FastCGIRequestParser()
        let bytes = request(id: 1, params: [("A", "1")]) + request(id: 1, params: [("A", "2")])
        XCTAssertEqual(try p.feed(bytes), [.request(id: 1, keepConnection: true, params: ["A": "1"]),
                                           .request(id: 1, keepConnection: true, params: ["A": "2"])])
    }

    func testNoRequestUntilStdinEnds() throws {
        var p = FastCGIRequestParser()
        let full = request(params: [("A", "1")])
        XCTAssertEqual(try p.feed(full.dropLast(8)), [])
        XCTAssertTrue(p.inRequest)
        XCTAssertEqual(try p.feed(full.suffix(8)), [.request(id: 1, keepConnection: true, params: ["A": "1"])])
    }

    func testAbortOfTheOpenRequest() throws {
        var p = FastCGIRequestParser()
        var b = record(1, 3, [0, 1, 1, 0, 0, 0, 0, 0]) + record(4, 3, pairs([("A", "1")]))
        b += record(2, 3, [])
        XCTAssertEqual(try p.feed(b), [.abort(id: 3)])
        XCTAssertFalse(p.inRequest)
        XCTAssertEqual(try p.feed(record(2, 3, [])), [], "an abort after the request is done is moot")
    }

    func testManagementRecords() throws {
        var p = FastCGIRequestParser()
        XCTAssertEqual(try p.feed(record(9, 0, pairs([("FCGI_MPXS_CONNS", ""), ("FCGI_MAX_CONNS", "")]))),
                       [.getValues(["FCGI_MPXS_CONNS", "FCGI_MAX_CONNS"])])
        XCTAssertEqual(try p.feed(record(42, 0, [])), [.unknownManagementType(42)])
        let answer = FastCGIRecords.getValuesResult([("FCGI_MPXS_CONNS", "0")])
        XCTAssertEqual(Array(answer[0..<8]), [1, 10, 0, 0, 0, 18, 6, 0], "2 lengths + 15 + 1 bytes, padded to 24")
        XCTAssertEqual(FastCGIRecords.unknownType(42), [1, 11, 0, 0, 0, 8, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0])
    }

    func testFourByteLengths() throws {
        var p = FastCGIRequestParser()
        let long = String(repeating: "x", count: 200)
        XCTAssertEqual(try p.feed(request(params: [(long, long)])), [.request(id: 1, keepConnection: true, params: [long: long])])
    }

    func testProtocolViolationsFail() {
        func fails(_ bytes: [UInt8], _ expected: FastCGIRequestParser.Failure, line: UInt = #line) {
            var p = FastCGIRequestParser()
            XCTAssertThrowsError(try p.feed(bytes), line: line) { XCTAssertEqual($0 as? FastCGIRequestParser.Failure, expected, line: line) }
        }
        fails([2, 1, 0, 1, 0, 0, 0, 0], .badVersion(2))
        fails(record(1, 1, [0, 2, 0, 0, 0, 0, 0, 0]), .unsupportedRole(2))
        fails(record(4, 1, pairs([("A", "1")])), .unexpectedRecord(type: 4, id: 1))
        fails(record(1, 1, [0, 1, 1, 0, 0, 0, 0, 0]) + record(1, 2, [0, 1, 1, 0, 0, 0, 0, 0]), .unexpectedRecord(type: 1, id: 2))
        fails(record(1, 1, [0, 1, 1, 0, 0, 0, 0, 0]) + record(4, 1, [5, 1, 65]) + record(4, 1, []) + record(5, 1, []),
              .malformedParams)
        var big = record(1, 1, [0, 1, 1, 0, 0, 0, 0, 0])
        for _ in 0..<17 { big += record(4, 1, [UInt8](repeating: 0, count: 65_000)) }
        fails(big, .paramsTooLarge)
        fails(record(1, 1, [0, 1, 1, 0, 0, 0, 0, 0]) + record(6, 1, []), .unexpectedRecord(type: 6, id: 1))
    }
}
