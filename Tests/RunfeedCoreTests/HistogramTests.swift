import XCTest
@testable import RunfeedCore

final class HistogramTests: XCTestCase {
    func testCumulativeBucketsSumAndCount() {
        var h = Histogram(bounds: [1, 10])
        h.observe(0.5)
        h.observe(1)
        h.observe(5)
        h.observe(50)
        h.observe(.nan)
        XCTAssertEqual(h.count, 4)
        XCTAssertEqual(h.sum, 56.5)
        XCTAssertEqual(h.render(name: "x_ms", labels: "db=\"pg\""), """
            x_ms_bucket{db="pg",le="1"} 2
            x_ms_bucket{db="pg",le="10"} 3
            x_ms_bucket{db="pg",le="+Inf"} 4
            x_ms_sum{db="pg"} 56.5
            x_ms_count{db="pg"} 4

            """)
    }

    func testEmptyHistogramWithoutLabels() {
        let h = Histogram(bounds: [2.5])
        XCTAssertEqual(h.render(name: "y"), "y_bucket{le=\"2.5\"} 0\ny_bucket{le=\"+Inf\"} 0\ny_sum 0\ny_count 0\n")
    }
}
