import XCTest
@testable import RunfeedCore

final class OffsetTests: XCTestCase {
    func testParseValid() {
        XCTAssertEqual(Offset.parse("0_0"), Offset(updatedAtMs: 0, tail: 0))
        XCTAssertEqual(Offset.parse("1760000000123_42"), Offset(updatedAtMs: 1_760_000_000_123, tail: 42))
        XCTAssertEqual(Offset.parse("9223372036854775807_1")?.updatedAtMs, Int64.max)
        XCTAssertEqual(Offset.parse("007_1")?.text, "7_1")
    }

    func testParseInvalid() {
        for bad in ["", "-1", "_", "1_", "_1", "1_2_3", "-5_0", "5_-1", "+5_0", "a_1", "1_b", " 1_1", "1_1 ",
                    "9223372036854775808_0", "12345678901234567890_0", "0_inf", "1.5_0", "１_1"] {
            XCTAssertNil(Offset.parse(bad), bad)
        }
    }

    func testTextAndFloor() {
        let o = Offset(updatedAtMs: 123, tail: 9)
        XCTAssertEqual(o.text, "123_9")
        XCTAssertEqual(o.floorMs, 123)
        XCTAssertEqual(Offset(updatedAtMs: -4, tail: 0).floorMs, 0)
        XCTAssertEqual(OffsetParam.snapshot.floorMs, 0)
        XCTAssertEqual(OffsetParam.at(o).floorMs, 123)
    }

    // MARK: Version tokens

    private func pad20(_ t: UInt64) -> String {
        let s = String(t)
        return String(repeating: "0", count: 20 - s.count) + s
    }

    func testOffsetsWithoutTokenHaveNone() {
        XCTAssertNil(Offset.parse("1_2")?.token)
        XCTAssertEqual(Offset.parse("5_1"), Offset(updatedAtMs: 5, tail: 1))
        XCTAssertEqual(Offset.parse("5_9223372036854775807"), Offset(updatedAtMs: 5, tail: Int64.max))
        XCTAssertNil(Offset.parse("5_9223372036854775807")?.token)
        XCTAssertEqual(Offset(updatedAtMs: 5, tail: 7).text, "5_7")
        XCTAssertEqual(Offset(updatedAtMs: 5, tail: 7).basisMs, 7)
    }

    func testTokenText() {
        XCTAssertEqual(Offset(updatedAtMs: 5, tail: 7, token: 1).text, "5_700000000000000000001")
        XCTAssertEqual(Offset(updatedAtMs: 5, tail: 7, token: 0).text, "5_700000000000000000000")
        XCTAssertEqual(Offset(updatedAtMs: 5, tail: 0, token: 0).text, "5_000000000000000000000")
        XCTAssertEqual(Offset(updatedAtMs: 5, tail: 7, token: UInt64.max).text, "5_718446744073709551615")
        XCTAssertEqual(Offset.parse("5_700000000000000000001"), Offset(updatedAtMs: 5, tail: 7, token: 1))
        XCTAssertEqual(Offset(updatedAtMs: 5, tail: 7, token: 1).description, "5_700000000000000000001")
        // Still `<number>_<number>` to the client.
        XCTAssertTrue(Offset(updatedAtMs: 5, tail: 7, token: UInt64.max).text.utf8.allSatisfy {
            $0 == UInt8(ascii: "_") || ($0 >= 0x30 && $0 <= 0x39)
        })
    }

    func testTokenRoundTrips() {
        let tails: [Int64] = [0, 7, 1_760_000_000_123, Int64.max]  // 1…19 digits
        for token in [UInt64(0), 1, 42, 1 << 63, UInt64.max] {
            for tail in tails {
                for u in [Int64(0), 1_760_000_000_123, Int64.max] {
                    let o = Offset(updatedAtMs: u, tail: tail, token: token)
                    let text = o.text
                    let tailDigits = text.split(separator: "_")[1].count
                    XCTAssertEqual(tailDigits, String(tail).count + 20, text)
                    XCTAssertEqual(Offset.parse(text), o, text)
                    XCTAssertEqual(Offset.parse(text)?.text, text)
                    XCTAssertEqual(Offset.parse(text)?.token, token)
                }
            }
        }
        // Parsing text with a token and printing it again.
        for s in ["0_1" + pad20(0), "0_1" + pad20(1), "0_1" + pad20(UInt64.max),
                  "1760000000123_9223372036854775807" + pad20(UInt64.max),
                  "1760000000123_1760000000000" + pad20(0xDEAD_BEEF)] {
            XCTAssertEqual(Offset.parse(s)?.text, s, s)
        }
        XCTAssertEqual(Offset.parse("3_9223372036854775807" + pad20(9)),
                       Offset(updatedAtMs: 3, tail: Int64.max, token: 9))
        // Leading zeros in the basis are accepted (and printed without them).
        XCTAssertEqual(Offset.parse("3_007" + pad20(9)), Offset(updatedAtMs: 3, tail: 7, token: 9))
    }

    func testTokenRejections() {
        let bad: [String] = [
            // A tail of exactly 20 digits is ambiguous and rejected.
            "5_" + "00000000000000000001", "5_" + "12345678901234567890", "5_" + String(repeating: "0", count: 20),
            // More than 39 digits.
            "5_" + String(repeating: "1", count: 40), "5_0" + pad20(1) + "0000000000000000000",
            "5_" + String(repeating: "0", count: 41),
            // Token overflow (20 digits above UInt64.max).
            "5_7" + "18446744073709551616", "5_7" + "99999999999999999999", "5_9223372036854775807" + "18446744073709551616",
            // Basis overflow (19 digits above Int64.max).
            "5_9223372036854775808" + pad20(1), "5_9999999999999999999" + pad20(1),
            // Non-digits anywhere in the tail or token.
            "5_7" + "0000000000000000000a", "5_7a" + "0000000000000000000", "5_a" + pad20(1), "5_-7" + pad20(1),
            "5_+7" + pad20(1), "5_ 7" + pad20(1), "5_7" + pad20(1) + " ", "5_7 " + "0000000000000000001",
            "5_7" + "+0000000000000000001", "5_7" + "-0000000000000000001", "5_7_" + pad20(1),
            // The first segment keeps its rules.
            "-5_7" + pad20(1), "12345678901234567890_7" + pad20(1), "_7" + pad20(1),
        ]
        for s in bad { XCTAssertNil(Offset.parse(s), s) }
        // The boundaries that are accepted.
        XCTAssertNotNil(Offset.parse("5_7" + "18446744073709551615"))
        XCTAssertNotNil(Offset.parse("5_" + "1234567890123456789"))  // 19 digits
        XCTAssertEqual(Offset.parse("5_" + "100000000000000000001"), Offset(updatedAtMs: 5, tail: 1, token: 1))  // 21 digits
        XCTAssertNil(Offset.parse("5_" + "123456789012345678901"))  // 21 digits, token 2345…8901 > UInt64.max
        XCTAssertNotNil(Offset.parse("5_" + "123456789012345678901234567890123456789"))  // 39 digits
        XCTAssertNil(Offset.parse("5_" + "923456789012345678901234567890123456789"))  // 39 digits, basis too big
    }

    func testQueryAcceptsTokenOffsets() {
        let q = try? FeedQuery.parse(queryString: "handle=run-cm1&live=true&offset=1760000000123_1760000000000" + pad20(77)).get()
        XCTAssertEqual(q?.offset, .at(Offset(updatedAtMs: 1_760_000_000_123, tail: 1_760_000_000_000, token: 77)))
        XCTAssertEqual(q?.offset.floorMs, 1_760_000_000_123)
        if case .success = FeedQuery.parse(queryString: "offset=1_" + String(repeating: "1", count: 20)) {
            XCTFail("a 20-digit tail was accepted")
        }
    }
}

final class FeedQueryTests: XCTestCase {
    private func parse(_ q: String) -> FeedQuery? { try? FeedQuery.parse(queryString: q).get() }
    private func error(_ q: String) -> RequestError? {
        if case .failure(let e) = FeedQuery.parse(queryString: q) { return e }
        return nil
    }

    func testInitialRequest() {
        let q = parse("log=full&offset=-1")!
        XCTAssertEqual(q.offset, .snapshot)
        XCTAssertNil(q.handle)
        XCTAssertFalse(q.live)
        XCTAssertEqual(parse("")!.offset, .snapshot)
    }

    func testLiveRequest() {
        let q = parse("cursor=17&handle=run-cm1&live=true&log=full&offset=1760000000123_5&skipColumns=payload%2Coutput")!
        XCTAssertTrue(q.live)
        XCTAssertEqual(q.handle, "run-cm1")
        XCTAssertEqual(q.offset, .at(Offset(updatedAtMs: 1_760_000_000_123, tail: 5)))
        XCTAssertEqual(q.cursor, "17")
        XCTAssertEqual(q.skipColumns, "payload,output")
    }

    func testLegacyShapeId() {
        XCTAssertEqual(parse("shape_id=abc&offset=1_1")!.handle, "abc")
        XCTAssertEqual(parse("handle=h1&shape_id=abc&offset=1_1")!.handle, "h1")
        XCTAssertEqual(parse("handle=&shape_id=abc&offset=1_1")!.handle, "abc")
    }

    func testPercentDecodingAndPlus() {
        let q = parse("tags=user%3A42,a+b&createdAt=1h&offset=-1")!
        XCTAssertEqual(q.tags, "user:42,a b")
        XCTAssertEqual(q.createdAt, "1h")
        XCTAssertEqual(parse("tags=%zz%4")!.tags, "%zz%4")
        XCTAssertEqual(parse("ta%67s=%C3%A9")!.tags, "é")
    }

    func testLiveValues() {
        XCTAssertFalse(parse("live=false")!.live)
        XCTAssertFalse(parse("live=")!.live)
        XCTAssertFalse(parse("live")!.live)
        XCTAssertEqual(error("live=1")?.status, 400)
        XCTAssertEqual(error("live=TRUE")?.status, 400)
    }

    func testInvalidOffset() {
        let e = error("offset=abc")!
        XCTAssertEqual(e.status, 400)
        XCTAssertEqual(e.body, #"{"error":"Query Error","details":[{"message":"Invalid offset","path":["offset"]}]}"#)
    }

    func testInvalidHandle() {
        XCTAssertEqual(error("offset=1_1&handle=a%20b")?.status, 400)
        XCTAssertEqual(error("offset=1_1&handle=" + String(repeating: "a", count: 201))?.status, 400)
        XCTAssertNotNil(parse("offset=1_1&handle=" + String(repeating: "a", count: 200)))
        XCTAssertNotNil(parse("offset=1_1&handle=runs_1_2_ab12cd34-next"))
    }

    func testLiveRequiresHandleAndOffset() {
        XCTAssertEqual(error("live=true&offset=1_1")?.status, 400)
        XCTAssertEqual(error("live=true&handle=h")?.status, 400)
        XCTAssertEqual(error("live=true&offset=-1&handle=h")?.status, 400)
    }

    func testMultipleIssuesReported() {
        let e = error("offset=x&live=maybe&handle=!")!
        let details = JSONValue.parse(e.body)!.objectValue!["details"]!.arrayValue!
        XCTAssertEqual(details.count, 3)
    }

    func testUnknownParamsIgnored() {
        let q = parse("offset=-1&table=secrets&where=1%3D1&expired_handle=x&columns=a&replica=full")
        XCTAssertNotNil(q)
    }

    func testFirstOccurrenceWins() {
        XCTAssertEqual(parse("offset=1_1&offset=bad")!.offset, .at(Offset(updatedAtMs: 1, tail: 1)))
    }

    func testQueryStringDecode() {
        let pairs = QueryString.decode("a=1&&b&c=x=y")
        XCTAssertEqual(pairs.map(\.0), ["a", "b", "c"])
        XCTAssertEqual(pairs.map(\.1), ["1", "", "x=y"])
    }
}

final class RequestErrorTests: XCTestCase {
    func testBodies() {
        XCTAssertEqual(RequestError.missingKey.body, #"{"error":"Invalid or Missing API key"}"#)
        XCTAssertEqual(RequestError.invalidKey.body, #"{"error":"Invalid API key"}"#)
        XCTAssertEqual(RequestError.branchRequired.body, #"{"error":"x-trigger-branch header required for preview env"}"#)
        XCTAssertEqual(RequestError.noBranchEnv.body, #"{"error":"No matching branch env"}"#)
        XCTAssertEqual(RequestError.invalidPublicToken.body, #"{"error":"Invalid Public Access Token"}"#)
        XCTAssertEqual(RequestError.publicTokenInvalid.body, #"{"error":"Public Access Token is invalid"}"#)
        XCTAssertEqual(RequestError.notFound(shouldRetry: false).body, #"{"error":"Not found"}"#)
        XCTAssertEqual(RequestError.unauthorized.body, #"{"error":"Unauthorized","code":"unauthorized","param":"access_token","type":"authorization"}"#)
        XCTAssertEqual(RequestError.tooMany.body, #"{"error":"Too many concurrent requests"}"#)
        XCTAssertEqual(RequestError.internal.body, #"{"error":"Internal Server Error"}"#)
        XCTAssertEqual(RequestError.limitLookupFailed.body, #"{"error":"Failed to get concurrency limit"}"#)
    }

    func testStatuses() {
        XCTAssertEqual([RequestError.missingKey, .invalidKey, .branchRequired, .noBranchEnv, .invalidPublicToken,
                        .publicTokenInvalid].map(\.status), [401, 401, 401, 401, 401, 401])
        XCTAssertEqual(RequestError.notFound(shouldRetry: true).status, 404)
        XCTAssertEqual(RequestError.unauthorized.status, 403)
        XCTAssertEqual(RequestError.tooMany.status, 429)
        XCTAssertEqual(RequestError.internal.status, 500)
        XCTAssertEqual(RequestError.queryError(details: []).status, 400)
    }

    func testNotFoundRetryHeader() {
        XCTAssertEqual(RequestError.notFound(shouldRetry: false).extraHeaders.map { "\($0.0)=\($0.1)" }, ["x-should-retry=false"])
        XCTAssertEqual(RequestError.notFound(shouldRetry: true).extraHeaders.map { "\($0.0)=\($0.1)" }, ["x-should-retry=true"])
        XCTAssertTrue(RequestError.missingKey.extraHeaders.isEmpty)
    }

    func testValidationBodies() {
        XCTAssertEqual(RequestError.queryError(details: [#"Invalid tag: "a\"b""#]).body,
                       #"{"error":"Query Error","details":[{"message":"Invalid tag: \"a\\\"b\"","path":[]}]}"#)
        XCTAssertEqual(RequestError.paramsError(details: ["bad"]).body, #"{"error":"Params Error","details":[{"message":"bad","path":[]}]}"#)
        XCTAssertEqual(RequestError.queryError(issues: [ValidationIssue("x", path: ["tags"])]).body,
                       #"{"error":"Query Error","details":[{"message":"x","path":["tags"]}]}"#)
    }
}

final class HTTPResponseTests: XCTestCase {
    func testFastCGIText() {
        let r = HTTPResponse(status: 200, headers: [("content-type", "application/json"), ("electric-up-to-date", "")], body: "[é]")
        XCTAssertEqual(r.fastCGIText(), "Status: 200 OK\r\ncontent-type: application/json\r\nelectric-up-to-date:\r\nContent-Length: 4\r\n\r\n[é]")
    }

    func testNoDuplicateContentLengthAndLineBreakStripping() {
        let r = HTTPResponse(status: 404, headers: [("Content-Length", "0"), ("x-a", "evil\r\nset-cookie: y")], body: "")
        XCTAssertEqual(r.fastCGIText(), "Status: 404 Not Found\r\nContent-Length: 0\r\nx-a: evilset-cookie: y\r\n\r\n")
    }

    func testReasonPhrases() {
        let expected = [200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                        404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 429: "Too Many Requests",
                        500: "Internal Server Error", 503: "Service Unavailable"]
        for (code, phrase) in expected { XCTAssertEqual(HTTPResponse.reasonPhrase(code), phrase) }
    }

    func testHeaderLookup() {
        let r = HTTPResponse(status: 200, headers: [("Electric-Handle", "h")])
        XCTAssertEqual(r.header("electric-handle"), "h")
        XCTAssertNil(r.header("electric-offset"))
    }
}

final class ElectricResponseTests: XCTestCase {
    private func names(_ r: HTTPResponse) -> [String] { r.headers.map(\.0) }

    func testSnapshotResponse() {
        let r = ElectricResponse.feed(handle: "run-cm1", offset: "5_1", cursor: nil, live: false,
                                      schema: RunEncoder.schemaHeader(.all), body: "[]", upToDate: true, legacyHeaderNames: false)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(names(r), ["content-type", "cache-control", "access-control-allow-origin", "access-control-expose-headers",
                                  "electric-handle", "electric-offset", "electric-schema", "electric-up-to-date"])
        XCTAssertEqual(r.header("access-control-allow-origin"), "*")
        XCTAssertEqual(r.header("access-control-expose-headers"), "*")
        XCTAssertEqual(r.header("cache-control"), "no-store")
        XCTAssertEqual(r.header("electric-up-to-date"), "")
        XCTAssertEqual(r.body, "[]")
    }

    func testLiveResponse() {
        let r = ElectricResponse.feed(handle: "h", offset: "5_1", cursor: "9", live: true, schema: nil, body: "[]",
                                      upToDate: false, legacyHeaderNames: false)
        XCTAssertEqual(r.header("electric-cursor"), "9")
        XCTAssertNil(r.header("electric-schema"))
        XCTAssertNil(r.header("electric-up-to-date"))
    }

    func testLegacyNames() {
        let r = ElectricResponse.feed(handle: "h", offset: "5_1", cursor: nil, live: false, schema: "{}", body: "[]",
                                      upToDate: true, legacyHeaderNames: true)
        XCTAssertEqual(r.header("electric-shape-id"), "h")
        XCTAssertEqual(r.header("electric-chunk-last-offset"), "5_1")
        XCTAssertEqual(r.header("electric-handle"), "h")
        XCTAssertEqual(r.header("electric-offset"), "5_1")
    }

    func testErrorWithOrigin() {
        let r = ElectricResponse.error(.notFound(shouldRetry: false), origin: "https://app.example")
        XCTAssertEqual(r.status, 404)
        XCTAssertEqual(r.body, #"{"error":"Not found"}"#)
        XCTAssertEqual(r.header("content-type"), "application/json")
        XCTAssertEqual(r.header("x-should-retry"), "false")
        XCTAssertEqual(r.header("access-control-allow-origin"), "https://app.example")
        XCTAssertEqual(r.header("vary"), "Origin")
        XCTAssertEqual(r.header("access-control-expose-headers"), "x-trigger-jwt,x-trigger-jwt-claims")
    }

    func testErrorWithoutOrigin() {
        let r = ElectricResponse.error(.missingKey, origin: nil)
        XCTAssertEqual(r.status, 401)
        XCTAssertEqual(names(r), ["content-type"])
    }

    func testOptions() {
        let r = ElectricResponse.options(origin: "https://a.b", requestHeaders: "authorization,x-trigger-branch")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "{}")
        XCTAssertEqual(r.header("access-control-allow-methods"), "GET,HEAD,PUT,PATCH,POST,DELETE")
        XCTAssertEqual(r.header("access-control-allow-headers"), "authorization,x-trigger-branch")
        XCTAssertEqual(r.header("access-control-max-age"), "300")
        XCTAssertEqual(r.header("access-control-allow-origin"), "https://a.b")
        XCTAssertEqual(r.header("vary"), "Origin")
    }

    func testOptionsWithoutOrigin() {
        let r = ElectricResponse.options(origin: nil, requestHeaders: "authorization")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "{}")
        XCTAssertNil(r.header("access-control-allow-origin"))
        XCTAssertNil(r.header("access-control-allow-methods"))
        XCTAssertNil(r.header("vary"))
        XCTAssertNil(r.header("access-control-allow-headers"))
    }

    func testOriginValidation() {
        for ok in ["https://app.example", "http://localhost:3000", "https://a.b", "null", "http://127.0.0.1:8080",
                   "http://[::1]:3000", "https://xn--bcher-kva.example", "chrome-extension://abcdef", "HTTPS://App.Example"] {
            XCTAssertTrue(ElectricResponse.isValidOrigin(ok), ok)
        }
        for bad in ["", "\u{0B}", "https://app.example\u{0B}", "https://a\u{0B}b", "https://app.example\r\nx-evil: 1",
                    "https://app.example/", "https://app.example/path", "https://app.example?q", "https://u@app.example",
                    "https://", "app.example", "//app.example", "https://a.b:", "https://a.b:123456", "https://a.b:8x",
                    "https://a b", "https://a.b, https://c.d", "https://[::1", "https://[]", "https://\u{7F}",
                    "https://bücher.example", "Null", "null ", " https://a.b", "1http://a.b", "*"] {
            XCTAssertFalse(ElectricResponse.isValidOrigin(bad), bad.debugDescription)
        }
    }

    func testInvalidOriginGetsNoCORSHeaders() {
        let e = ElectricResponse.error(.notFound(shouldRetry: false), origin: "https://app.example\u{0B}")
        XCTAssertEqual(e.status, 404)
        XCTAssertNil(e.header("access-control-allow-origin"))
        XCTAssertNil(e.header("vary"))
        XCTAssertNil(e.header("access-control-expose-headers"))

        let o = ElectricResponse.options(origin: "\u{0B}", requestHeaders: "authorization")
        XCTAssertEqual(o.status, 200)
        XCTAssertNil(o.header("access-control-allow-origin"))
        XCTAssertNil(o.header("access-control-allow-methods"))

        let n = ElectricResponse.error(.missingKey, origin: "null")
        XCTAssertEqual(n.header("access-control-allow-origin"), "null")

        let h = ElectricResponse.options(origin: "https://a.b", requestHeaders: "authorization\u{0B}")
        XCTAssertEqual(h.header("access-control-allow-origin"), "https://a.b")
        XCTAssertNil(h.header("access-control-allow-headers"))
    }

    func testModernClientDetection() {
        XCTAssertTrue(ElectricResponse.isModernClient(electricVersionHeader: "1.0.0-beta.1"))
        XCTAssertTrue(ElectricResponse.isModernClient(electricVersionHeader: "0.8.1"))
        XCTAssertFalse(ElectricResponse.isModernClient(electricVersionHeader: ""))
        XCTAssertFalse(ElectricResponse.isModernClient(electricVersionHeader: nil))
    }
}
