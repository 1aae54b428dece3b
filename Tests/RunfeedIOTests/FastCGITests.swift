import XCTest
@testable import RunfeedIO
import RunfeedCore

final class FastCGITests: XCTestCase {
    private let nginxParams: [String: String] = [
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": "/realtime/v1/runs/run_1?live=true&offset=1_2",
        "DOCUMENT_URI": "/realtime/v1/runs/run_1",
        "QUERY_STRING": "live=true&offset=1_2",
        "CONTENT_TYPE": "",
        "HTTP_HOST": "api.example.com",
        "HTTP_USER_AGENT": "node",
        "HTTP_COOKIE": "session=secret",
        "HTTP_ACCEPT": "*/*",
        "HTTP_AUTHORIZATION": "Bearer tr_dev_abc",
        "HTTP_ORIGIN": "https://app.example.com",
        "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "authorization",
        "HTTP_X_TRIGGER_BRANCH": "feature-1",
        "HTTP_X_TRIGGER_ELECTRIC_VERSION": "1.0.14",
        "HTTP_X_TRIGGER_API_VERSION": "2025-07-16",
    ]

    func testKeepsOnlyTheHeadersTheServerReads() {
        let info = FastCGIRequestInfo.fromParams(nginxParams)
        XCTAssertEqual(info.method, "GET")
        XCTAssertEqual(info.path, "/realtime/v1/runs/run_1")
        XCTAssertEqual(info.queryString, "live=true&offset=1_2")
        // Exactly the six headers the server reads; host, user agent, cookie and accept have no place to go.
        XCTAssertEqual(info.headers, RequestHeaders(
            authorization: "Bearer tr_dev_abc", origin: "https://app.example.com",
            accessControlRequestHeaders: "authorization", triggerBranch: "feature-1",
            triggerElectricVersion: "1.0.14", triggerApiVersion: "2025-07-16"))
    }

    func testPathAndQueryFallBackToTheRequestURI() {
        let info = FastCGIRequestInfo.fromParams(["REQUEST_URI": "/realtime/v1/runs?tags=a,b&createdAt=1h"])
        XCTAssertEqual(info.method, "GET")
        XCTAssertEqual(info.path, "/realtime/v1/runs")
        XCTAssertEqual(info.queryString, "tags=a,b&createdAt=1h")
        XCTAssertEqual(info.headers, RequestHeaders())
    }

    func testRoutedRequestKeepsOnlyWhatItsAnswerNeeds() {
        let conn = FastCGIConnection(fd: -1, requestId: 1, keepConnection: true, info: FastCGIRequestInfo.fromParams(nginxParams))
        XCTAssertEqual(conn.info.headers.authorization, "Bearer tr_dev_abc")
        XCTAssertEqual(conn.labels, RequestLabels(route: "run", mode: "live"), "classified when read")
        conn.routed()
        XCTAssertNil(conn.info.headers.authorization)
        XCTAssertEqual(conn.info.path, "")
        XCTAssertEqual(conn.info.queryString, "")
        XCTAssertEqual(conn.info.method, "GET")
        XCTAssertEqual(conn.info.headers.origin, "https://app.example.com", "what answers still need stays")
        XCTAssertEqual(conn.info.headers.triggerApiVersion, "2025-07-16")
        XCTAssertEqual(conn.labels, RequestLabels(route: "run", mode: "live"))
    }
}
