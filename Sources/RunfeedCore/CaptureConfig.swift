// `runfeed capture` settings from the process environment (docs/OPERATIONS.md, "Change capture").

public struct CaptureConfig: Sendable, Equatable {
    /// libpq URL of the primary; the role needs REPLICATION (and, to create the publication, table ownership).
    public var databaseURL: String
    public var slot: String
    public var publication: String
    public var metricsListen: String?
    public var maxBacklog: Int
    /// Records per Redis pipeline.
    public var publishBatch: Int
    /// Standby retry interval bounds while another capturer holds the slot (or the database is down).
    public var retryMinMs: Int64
    public var retryMaxMs: Int64

    public static let defaultSlot = "runfeed_capture"
    public static let defaultPublication = "runfeed_capture"

    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// Slot and publication names: what PostgreSQL allows for a slot (lower-case letters, digits, `_`, at most 63),
    /// so they never need quoting tricks in the replication commands.
    public static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 63 && s.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }
    }

    public static func from(environment env: [String: String]) throws -> CaptureConfig {
        func get(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let url = get("RUNFEED_CAPTURE_DATABASE_URL") ?? get("DATABASE_URL") else {
            throw Invalid(description: "DATABASE_URL (or RUNFEED_CAPTURE_DATABASE_URL) is required")
        }
        let slot = get("RUNFEED_CAPTURE_SLOT") ?? defaultSlot
        let publication = get("RUNFEED_CAPTURE_PUBLICATION") ?? defaultPublication
        for (k, v) in [("RUNFEED_CAPTURE_SLOT", slot), ("RUNFEED_CAPTURE_PUBLICATION", publication)] where !isValidName(v) {
            throw Invalid(description: "\(k)=\(v): use lower-case letters, digits and _ (at most 63)")
        }
        var metrics = get("RUNFEED_CAPTURE_METRICS_LISTEN")
        if metrics == nil, let p = get("RUNFEED_CAPTURE_METRICS_PORT") {
            guard let port = Int(p), (1...65535).contains(port) else {
                throw Invalid(description: "RUNFEED_CAPTURE_METRICS_PORT=\(p): not a port")
            }
            metrics = "127.0.0.1:\(port)"
        }
        func int(_ k: String, _ d: Int, _ range: ClosedRange<Int>) throws -> Int {
            guard let s = get(k) else { return d }
            guard let v = Int(s), range.contains(v) else { throw Invalid(description: "\(k)=\(s): expected \(range)") }
            return v
        }
        return CaptureConfig(
            databaseURL: url, slot: slot, publication: publication, metricsListen: metrics,
            maxBacklog: try int("RUNFEED_CAPTURE_MAX_BACKLOG", 100_000, 1...10_000_000),
            publishBatch: try int("RUNFEED_CAPTURE_PUBLISH_BATCH", 1000, 1...100_000),
            retryMinMs: Int64(try int("RUNFEED_CAPTURE_RETRY_MIN_MS", 500, 10...600_000)),
            retryMaxMs: Int64(try int("RUNFEED_CAPTURE_RETRY_MAX_MS", 5000, 10...600_000)))
    }

    /// The SQL an operator runs when the capture role may not create the publication itself.
    public var publicationSQL: String { publicationStatement + ";" }

    /// `publicationSQL` without its terminating semicolon, as the capturer sends it.
    public var publicationStatement: String {
        "CREATE PUBLICATION \(publication) FOR TABLE \"TaskRun\" (\"id\", \"runtimeEnvironmentId\", \"runTags\", \"batchId\", \"updatedAt\") WITH (publish = 'insert, update, delete')"
    }

    /// The next retry delay: doubling from `retryMinMs` up to `retryMaxMs`, attempt 0 first.
    public func retryDelayMs(attempt: Int) -> Int64 {
        let shift = min(attempt, 20)
        return min(retryMaxMs, retryMinMs << Int64(shift))
    }
}
