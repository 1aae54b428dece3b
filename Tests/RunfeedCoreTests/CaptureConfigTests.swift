import XCTest
@testable import RunfeedCore

final class CaptureConfigTests: XCTestCase {
    func testDefaults() throws {
        let c = try CaptureConfig.from(environment: ["DATABASE_URL": "postgresql://u@h/db"])
        XCTAssertEqual(c.databaseURL, "postgresql://u@h/db")
        XCTAssertEqual(c.slot, "runfeed_capture")
        XCTAssertEqual(c.publication, "runfeed_capture")
        XCTAssertNil(c.metricsListen)
        XCTAssertEqual(c.maxBacklog, 100_000)
        XCTAssertEqual(c.publishBatch, 1000)
    }

    func testOverrides() throws {
        let c = try CaptureConfig.from(environment: [
            "DATABASE_URL": "a", "RUNFEED_CAPTURE_DATABASE_URL": "b", "RUNFEED_CAPTURE_SLOT": "s_1",
            "RUNFEED_CAPTURE_PUBLICATION": "p2", "RUNFEED_CAPTURE_METRICS_PORT": "19530", "RUNFEED_CAPTURE_MAX_BACKLOG": "5",
        ])
        XCTAssertEqual(c.databaseURL, "b")
        XCTAssertEqual(c.slot, "s_1")
        XCTAssertEqual(c.publication, "p2")
        XCTAssertEqual(c.metricsListen, "127.0.0.1:19530")
        XCTAssertEqual(c.maxBacklog, 5)
        let l = try CaptureConfig.from(environment: ["DATABASE_URL": "a", "RUNFEED_CAPTURE_METRICS_LISTEN": "0.0.0.0:9190",
                                                     "RUNFEED_CAPTURE_METRICS_PORT": "1"])
        XCTAssertEqual(l.metricsListen, "0.0.0.0:9190")
    }

    func testRejects() {
        XCTAssertThrowsError(try CaptureConfig.from(environment: [:]))
        XCTAssertThrowsError(try CaptureConfig.from(environment: ["DATABASE_URL": ""]))
        for bad in ["Upper", "with-dash", "quo\"te", String(repeating: "a", count: 64)] {
            XCTAssertThrowsError(try CaptureConfig.from(environment: ["DATABASE_URL": "a", "RUNFEED_CAPTURE_SLOT": bad]), bad)
        }
        XCTAssertThrowsError(try CaptureConfig.from(environment: ["DATABASE_URL": "a", "RUNFEED_CAPTURE_PUBLICATION": "a b"]))
        XCTAssertThrowsError(try CaptureConfig.from(environment: ["DATABASE_URL": "a", "RUNFEED_CAPTURE_METRICS_PORT": "70000"]))
        XCTAssertThrowsError(try CaptureConfig.from(environment: ["DATABASE_URL": "a", "RUNFEED_CAPTURE_MAX_BACKLOG": "0"]))
    }

    func testPublicationSQLAndRetry() throws {
        let c = try CaptureConfig.from(environment: ["DATABASE_URL": "a"])
        XCTAssertEqual(c.publicationSQL, #"CREATE PUBLICATION runfeed_capture FOR TABLE "TaskRun" ("id", "runtimeEnvironmentId", "runTags", "batchId", "updatedAt") WITH (publish = 'insert, update, delete');"#)
        XCTAssertEqual((0..<6).map { c.retryDelayMs(attempt: $0) }, [500, 1000, 2000, 4000, 5000, 5000])
        XCTAssertEqual(c.retryDelayMs(attempt: 1000), 5000)
    }
}
