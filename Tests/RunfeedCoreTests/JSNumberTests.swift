import XCTest
@testable import RunfeedCore

final class JSNumberTests: XCTestCase {
    func testIntegers() {
        XCTAssertEqual(JSNumber.format(3), "3")
        XCTAssertEqual(JSNumber.format(100), "100")
        XCTAssertEqual(JSNumber.format(-42), "-42")
        XCTAssertEqual(JSNumber.format(9007199254740992), "9007199254740992")
        XCTAssertEqual(JSNumber.format(1e20), "100000000000000000000")
        XCTAssertEqual(JSNumber.format(Double("123456789012345680000")!), "123456789012345680000")
    }

    func testZeroAndSpecials() {
        XCTAssertEqual(JSNumber.format(0), "0")
        XCTAssertEqual(JSNumber.format(-0.0), "0")
        XCTAssertEqual(JSNumber.format(.nan), "NaN")
        XCTAssertEqual(JSNumber.format(.infinity), "Infinity")
        XCTAssertEqual(JSNumber.format(-.infinity), "-Infinity")
    }

    func testShortestRoundTripFractions() {
        XCTAssertEqual(JSNumber.format(0.1 + 0.2), "0.30000000000000004")
        XCTAssertEqual(JSNumber.format(0.55), "0.55")
        XCTAssertEqual(JSNumber.format(1.5), "1.5")
        XCTAssertEqual(JSNumber.format(-0.5), "-0.5")
        XCTAssertEqual(JSNumber.format(1.0 / 3.0), "0.3333333333333333")
        XCTAssertEqual(JSNumber.format(0.000001), "0.000001")
        XCTAssertEqual(JSNumber.format(0.0000015), "0.0000015")
    }

    func testExponentThresholds() {
        XCTAssertEqual(JSNumber.format(1e21), "1e+21")
        XCTAssertEqual(JSNumber.format(1.5e21), "1.5e+21")
        XCTAssertEqual(JSNumber.format(-1.5e21), "-1.5e+21")
        XCTAssertEqual(JSNumber.format(1e-7), "1e-7")
        XCTAssertEqual(JSNumber.format(1.2e-7), "1.2e-7")
        XCTAssertEqual(JSNumber.format(123e-20), "1.23e-18")
        XCTAssertEqual(JSNumber.format(9.999999999999999e20), "999999999999999900000")
    }

    func testExtremes() {
        XCTAssertEqual(JSNumber.format(Double.leastNonzeroMagnitude), "5e-324")
        XCTAssertEqual(JSNumber.format(1.7976931348623157e308), "1.7976931348623157e+308")
        XCTAssertEqual(JSNumber.format(-1.7976931348623157e308), "-1.7976931348623157e+308")
        XCTAssertEqual(JSNumber.format(2.2250738585072014e-308), "2.2250738585072014e-308")
    }

    func testNodeFixture() {
        XCTAssertGreaterThan(jsNumberFixture.count, 300)
        for (bits, expected) in jsNumberFixture {
            let d = Double(bitPattern: bits)
            XCTAssertEqual(JSNumber.format(d), expected, "bits 0x\(String(bits, radix: 16))")
        }
    }

    func testOutputRoundTrips() {
        for (bits, _) in jsNumberFixture {
            let d = Double(bitPattern: bits)
            guard d.isFinite else { continue }
            XCTAssertEqual(Double(JSNumber.format(d)), d)
        }
    }
}
