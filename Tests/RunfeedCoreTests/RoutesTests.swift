import XCTest
@testable import RunfeedCore

final class RouteTests: XCTestCase {
    func testMatchesTheThreeRoutes() {
        XCTAssertEqual(Route.match(path: "/realtime/v1/runs/run_123"), .run(friendlyId: "run_123"))
        XCTAssertEqual(Route.match(path: "/realtime/v1/runs/run_123/"), .run(friendlyId: "run_123"))
        XCTAssertEqual(Route.match(path: "/realtime/v1/runs"), .tagFeed)
        XCTAssertEqual(Route.match(path: "/realtime/v1/runs/"), .tagFeed)
        XCTAssertEqual(Route.match(path: "/realtime/v1/batches/batch_9"), .batch(friendlyId: "batch_9"))
    }

    func testRejectsOtherPaths() {
        XCTAssertNil(Route.match(path: "/realtime/v1/batches"))
        XCTAssertNil(Route.match(path: "/realtime/v1/runs/a/b"))
        XCTAssertNil(Route.match(path: "/realtime/v2/runs/run_1"))
        XCTAssertNil(Route.match(path: "/api/v1/runs/run_1"))
        XCTAssertNil(Route.match(path: ""))
        XCTAssertNil(Route.match(path: "/realtime/v1/runs/has space"))
        XCTAssertNil(Route.match(path: "/realtime/v1/runs/quote\"d"))
        XCTAssertNil(Route.match(path: "/realtime/v1/runs/" + String(repeating: "x", count: 129)))
        XCTAssertEqual(Route.match(path: "/realtime/v1/runs/" + String(repeating: "x", count: 128)),
                       .run(friendlyId: String(repeating: "x", count: 128)))
    }
}

final class RequestLabelsTests: XCTestCase {
    func testRoutesAreABoundedSet() {
        XCTAssertEqual(RequestLabels(method: "GET", path: "/realtime/v1/runs/run_1", queryString: "").route, "run")
        XCTAssertEqual(RequestLabels(method: "GET", path: "/realtime/v1/runs", queryString: "tags=a").route, "runs")
        XCTAssertEqual(RequestLabels(method: "GET", path: "/realtime/v1/batches/batch_1", queryString: "").route, "batch")
        for path in ["/", "/realtime/v1/batches", "/realtime/v1/runs/a/b", "/x/" + String(repeating: "y", count: 300)] {
            XCTAssertEqual(RequestLabels(method: "GET", path: path, queryString: "").route, "other", path)
        }
    }

    func testModeFollowsTheLiveParameterAsTheQueryParserReadsIt() {
        func mode(_ q: String, method: String = "GET") -> String {
            RequestLabels(method: method, path: "/realtime/v1/runs/run_1", queryString: q).mode
        }
        XCTAssertEqual(mode("offset=-1"), "snapshot")
        XCTAssertEqual(mode("live=true&offset=1_2&handle=run-x"), "live")
        XCTAssertEqual(mode("offset=1_2&live=true"), "live")
        XCTAssertEqual(mode("live=false"), "snapshot")
        XCTAssertEqual(mode("live=yes"), "snapshot")        // a 400, not a held poll
        XCTAssertEqual(mode("live=false&live=true"), "snapshot")  // the first occurrence wins
        XCTAssertEqual(mode("liv%65=true"), "live")          // percent-decoded like every parameter
        XCTAssertEqual(mode("live=true", method: "OPTIONS"), "preflight")
        XCTAssertEqual(mode("live=true", method: "POST"), "live")
    }

    func testStartupSeriesCoverEveryRouteModeAndStatus() {
        let series = RequestLabels.startupSeries
        XCTAssertEqual(series.count, RequestLabels.routes.count * (2 * RequestLabels.statuses.count + 1))
        XCTAssertEqual(Set(series.map { "\($0.labels.route)|\($0.labels.mode)|\($0.status)" }).count, series.count)
        XCTAssertTrue(RequestLabels.statuses.contains(RequestLabels.clientClosed))
        for route in RequestLabels.routes {
            XCTAssertTrue(series.contains { $0.labels == RequestLabels(route: route, mode: "live") && $0.status == 429 })
            XCTAssertTrue(series.contains { $0.labels == RequestLabels(route: route, mode: "preflight") && $0.status == 200 })
        }
    }
}
