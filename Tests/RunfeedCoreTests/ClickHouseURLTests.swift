import XCTest
@testable import RunfeedCore

final class ClickHouseURLTests: XCTestCase {
    func testDockerComposeForm() throws {
        let u = try ClickHouseURL.parse("http://default:password@clickhouse:8123?secure=false")
        XCTAssertEqual(u.url, "http://clickhouse:8123")
        XCTAssertEqual(u.user, "default")
        XCTAssertEqual(u.password, "password")
        XCTAssertEqual(u.warnings, [])
        XCTAssertFalse(u.isTLS)
    }

    func testHelmForms() throws {
        let tls = try ClickHouseURL.parse("https://user:pass@ch.example.com:8443?secure=true")
        XCTAssertEqual(tls.url, "https://ch.example.com:8443")
        XCTAssertEqual(tls.user, "user")
        XCTAssertEqual(tls.password, "pass")
        XCTAssertEqual(tls.warnings, [])
        XCTAssertTrue(tls.isTLS)

        let plain = try ClickHouseURL.parse("http://user:pass@ch:8123?secure=false")
        XCTAssertEqual(plain.url, "http://ch:8123")
        XCTAssertEqual(plain.warnings, [])
    }

    func testSecureTrueWithHttpWarnsAndStaysPlain() throws {
        let u = try ClickHouseURL.parse("http://u:p@ch:8123?secure=true")
        XCTAssertEqual(u.url, "http://ch:8123")
        XCTAssertFalse(u.isTLS)
        XCTAssertEqual(u.warnings.count, 1)
        XCTAssertTrue(u.warnings[0].contains("secure=true"))
        XCTAssertFalse(u.warnings[0].contains("p@"), "no credentials in warnings")

        let https = try ClickHouseURL.parse("https://ch:8443?secure=false")
        XCTAssertEqual(https.url, "https://ch:8443")
        XCTAssertEqual(https.warnings.count, 1)
    }

    func testOtherParametersAreKeptAsSettings() throws {
        let u = try ClickHouseURL.parse("http://ch:8123/?database=trigger_dev&secure=false&max_execution_time=5")
        XCTAssertEqual(u.url, "http://ch:8123/?database=trigger_dev&max_execution_time=5")
        XCTAssertNil(u.user)
        XCTAssertNil(u.password)

        let prefixed = try ClickHouseURL.parse(
            "http://ch:8123?clickhouse_setting_max_threads=2&ch_readonly=1&secure=false&request_timeout=30000")
        XCTAssertEqual(prefixed.url, "http://ch:8123?max_threads=2&readonly=1")
        XCTAssertEqual(prefixed.warnings.count, 1)
        XCTAssertTrue(prefixed.warnings[0].contains("request_timeout"))

        XCTAssertEqual(try ClickHouseURL.parse("http://ch:8123?").url, "http://ch:8123")
        XCTAssertEqual(try ClickHouseURL.parse("http://ch:8123?secure=false#frag").url, "http://ch:8123")
        XCTAssertEqual(try ClickHouseURL.parse("http://ch:8123").url, "http://ch:8123")
        XCTAssertEqual(try ClickHouseURL.parse("  HTTP://ch:8123/\n").url, "http://ch:8123/")
    }

    func testCredentialsArePercentDecoded() throws {
        let u = try ClickHouseURL.parse("http://my%40user:p%40ss%3Aw%2Fo%25rd+x@[::1]:8123?secure=false")
        XCTAssertEqual(u.url, "http://[::1]:8123")
        XCTAssertEqual(u.user, "my@user")
        XCTAssertEqual(u.password, "p@ss:w/o%rd+x")

        let userOnly = try ClickHouseURL.parse("http://reader@ch:8123")
        XCTAssertEqual(userOnly.user, "reader")
        XCTAssertNil(userOnly.password)

        let emptyPassword = try ClickHouseURL.parse("http://default:@ch:8123")
        XCTAssertEqual(emptyPassword.user, "default")
        XCTAssertEqual(emptyPassword.password, "")

        // An unencoded '@' in the password: the last '@' ends the userinfo.
        let rawAt = try ClickHouseURL.parse("http://u:a@b@ch:8123")
        XCTAssertEqual(rawAt.url, "http://ch:8123")
        XCTAssertEqual(rawAt.password, "a@b")
    }

    func testRejectsWhatIsNotAnHTTPURL() {
        XCTAssertThrowsError(try ClickHouseURL.parse("clickhouse:8123"))
        XCTAssertThrowsError(try ClickHouseURL.parse("tcp://ch:9000"))
        XCTAssertThrowsError(try ClickHouseURL.parse("http://?secure=false"))
        XCTAssertThrowsError(try ClickHouseURL.parse("http://u:%zz@ch:8123"))
    }
}
