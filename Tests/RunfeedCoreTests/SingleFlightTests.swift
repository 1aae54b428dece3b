import XCTest
@testable import RunfeedCore

final class SingleFlightTests: XCTestCase {
    func testOnlyTheFirstCallerStartsTheLookupAndEveryoneGetsItsResult() {
        var flights = SingleFlight<String, Int>()
        var got: [String] = []
        XCTAssertTrue(flights.join("k") { got.append("a\($0)") })
        XCTAssertFalse(flights.join("k") { got.append("b\($0)") })
        XCTAssertTrue(flights.join("other") { got.append("c\($0)") })
        XCTAssertEqual(flights.inFlight, 2)
        for w in flights.complete("k") { w(7) }
        XCTAssertEqual(got, ["a7", "b7"])
        // The key is free again: the next caller starts a new lookup.
        XCTAssertTrue(flights.join("k") { got.append("d\($0)") })
        for w in flights.complete("other") { w(1) }
        XCTAssertEqual(got, ["a7", "b7", "c1"])
        XCTAssertTrue(flights.complete("missing").isEmpty)
    }
}
