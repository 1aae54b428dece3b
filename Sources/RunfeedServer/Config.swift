import RunfeedCore
import RunfeedIO

/// Everything a worker needs, resolved from the environment (reference names and fallbacks) and
/// command-line overrides.
public struct ServerConfig: Sendable {
    public var listen: String
    public var databaseURL: String
    /// The pub/sub Redis of the change records.
    public var redis: RedisEndpoint
    /// The subscriber sends PING after this long without a reply, and fails the connection when the PING is not
    /// answered within `redisPingTimeoutMs`: a silent connection is replaced within their sum (+1 s tick).
    public var redisPingIntervalMs: Int64
    public var redisPingTimeoutMs: Int64
    public var holdMs: Int64
    public var jitterRatio: Double
    public var pgPoolSize: Int
    /// `DATABASE_READ_REPLICA_URL`: lookups, hydrates and backstop reads go there (through the replica gate).
    public var replicaURL: String?
    public var replicaPoolSize: Int
    /// `…RUN_READS_FROM_PRIMARY`: every read on the primary even with a replica configured.
    public var runReadsFromPrimary: Bool
    public var replicaGate: ReplicaGateSettings
    /// `…STALE_HYDRATE_RETRIES` > 0: a replica row missing or older than its change record is read again on the
    /// primary (0: never).
    public var staleRowRereads: Bool
    /// Statements are cancelled after this long (`RUNFEED_PG_STATEMENT_TIMEOUT_MS`; 0: only request deadlines).
    public var pgStatementTimeoutMs: Int64
    /// Statements that may wait for a connection, per worker and database (`RUNFEED_PG_QUEUE_LIMIT`).
    public var pgQueueLimit: Int
    /// The longest a request waits for the database before it is answered 503 (`RUNFEED_REQUEST_TIMEOUT_MS`).
    public var requestTimeoutMs: Int64
    /// A client that reads no part of its answer for this long is disconnected.
    public var writeTimeoutMs: Int64
    public var authCacheTtlMs: Int64
    public var authCacheMaxEntries: Int
    /// Additional API keys (`tr_<env>_sk_…`, `"ApiKey"` table) are looked up; off: refused with 401.
    public var additionalApiKeys: Bool
    public var runCacheTtlMs: Int64
    public var runCacheMaxEntries: Int
    public var replayWindowMs: Int64
    public var replayMaxRuns: Int
    public var unsubscribeLingerMs: Int64
    public var clockSkewMs: Int64
    public var drainTimeoutMs: Int64
    public var logLevel: LogLevel
    public var logFormat: LogFormat
    public var maxListResults: Int
    public var createdAtMaxAgeMs: Int64
    public var createdAtBucketMs: Int64
    public var runsetCacheTtlMs: Int64
    public var runsetCacheMaxEntries: Int
    public var resolveAdmissionLimit: Int
    public var workingSetTtlMs: Int64
    public var workingSetMaxEntries: Int
    public var coalesceWindowMs: Int64
    /// nil: no ClickHouse; list feeds resolve membership in Postgres.
    public var clickhouseURL: String?
    /// `clickhouseURL` as the HTTP client takes it (`secure` dropped, credentials taken out and decoded).
    public var clickhouse: ClickHouseURL? { clickhouseURL.flatMap { try? ClickHouseURL.parse($0) } }
    public var clickhouseMaxConnections: Int
    public var clickhouseTimeoutMs: Int
    public var clickhouseKeepAlive: Bool
    /// host:port of this worker's own metrics/health HTTP listener (nil: none).
    public var metricsListen: String?
    /// Per-environment limit on held live polls (nil: limiter off).
    public var concurrencyLimit: Int64?
    public var rateLimitRedis: RedisEndpoint

    static let prefix = "REALTIME_BACKEND_NATIVE_"

    /// Reads the configuration. Early `REALTIME_NOTIFIER_*` names are accepted as aliases.
    public static func from(environment dict: [String: String]) throws -> ServerConfig {
        let env = ProcessEnvironment(dict)
        func names(_ suffix: String) -> [String] { [prefix + suffix, "REALTIME_NOTIFIER_" + suffix] }
        guard let db = env.string(["DATABASE_URL"]) else {
            throw ConfigError("DATABASE_URL is not set")
        }
        let chURL = env.string([prefix + "CLICKHOUSE_URL", "CLICKHOUSE_URL"])
        if let chURL {
            do { _ = try ClickHouseURL.parse(chURL) } catch { throw ConfigError("\(error)") }
        }
        var gate = ReplicaGateSettings()
        func lagSetting(_ suffix: String, _ d: Int64, min lo: Int64 = 0) -> Int64 { max(lo, env.int([prefix + "REPLICA_LAG_" + suffix], default: d)) }
        gate.enabled = env.bool([prefix + "REPLICA_LAG_GATE_ENABLED"], default: true)
        gate.sampleIntervalMs = lagSetting("SAMPLE_INTERVAL_MS", 250, min: 1)
        gate.idleAfterMs = lagSetting("IDLE_AFTER_MS", 30_000)
        gate.windowMs = lagSetting("WINDOW_MS", 5_000, min: 1)
        gate.defaultLagMs = lagSetting("DEFAULT_MS", 30)
        gate.marginMs = lagSetting("MARGIN_MS", 10)
        gate.maxDelayMs = lagSetting("MAX_DELAY_MS", 1_000)
        gate.observedFloorTtlMs = lagSetting("OBSERVED_FLOOR_TTL_MS", 60_000)
        let poolSize = Int(max(1, env.int(["RUNFEED_PG_POOL_SIZE"], default: 4)))
        let tls = RedisTLS.from(env)
        if let key = tls.keyFile, tls.certFile == nil {
            throw ConfigError("RUNFEED_REDIS_TLS_KEY_FILE (\(key)) needs RUNFEED_REDIS_TLS_CERT_FILE")
        }
        return ServerConfig(
            listen: env.string(["RUNFEED_LISTEN"]) ?? "127.0.0.1:9000",
            databaseURL: db,
            redis: RedisEndpoint.pubsub(from: env),
            redisPingIntervalMs: max(100, env.int(["RUNFEED_REDIS_PING_INTERVAL_MS"], default: 5_000)),
            redisPingTimeoutMs: max(100, env.int(["RUNFEED_REDIS_PING_TIMEOUT_MS"], default: 5_000)),
            holdMs: env.int(names("LIVE_POLL_TIMEOUT_MS"), default: 20_000),
            jitterRatio: env.double([prefix + "LIVE_POLL_JITTER_RATIO"], default: 0.15),
            pgPoolSize: poolSize,
            replicaURL: env.string(["DATABASE_READ_REPLICA_URL"]),
            replicaPoolSize: Int(max(1, env.int(["RUNFEED_PG_REPLICA_POOL_SIZE"], default: Int64(poolSize)))),
            runReadsFromPrimary: env.bool([prefix + "RUN_READS_FROM_PRIMARY"], default: false),
            replicaGate: gate,
            staleRowRereads: env.int([prefix + "STALE_HYDRATE_RETRIES"], default: 3) > 0,
            pgStatementTimeoutMs: max(0, env.int(["RUNFEED_PG_STATEMENT_TIMEOUT_MS"], default: 10_000)),
            pgQueueLimit: Int(max(1, env.int(["RUNFEED_PG_QUEUE_LIMIT"], default: 256))),
            requestTimeoutMs: max(100, env.int(["RUNFEED_REQUEST_TIMEOUT_MS"], default: 10_000)),
            writeTimeoutMs: max(100, env.int(["RUNFEED_WRITE_TIMEOUT_MS"], default: 30_000)),
            authCacheTtlMs: env.int(["RUNFEED_AUTH_CACHE_TTL_MS"], default: 10_000),
            authCacheMaxEntries: Int(env.int(["RUNFEED_AUTH_CACHE_MAX_ENTRIES"], default: 10_000)),
            additionalApiKeys: env.bool(["RUNFEED_ADDITIONAL_API_KEYS"], default: true),
            runCacheTtlMs: env.int(names("RUN_CACHE_TTL_MS"), default: 250),
            runCacheMaxEntries: Int(env.int(names("RUN_CACHE_MAX_ENTRIES"), default: 5_000)),
            replayWindowMs: env.int(names("REPLAY_WINDOW_MS"), default: 10_000),
            replayMaxRuns: Int(env.int(names("REPLAY_MAX_RUNS"), default: 512)),
            unsubscribeLingerMs: env.int(names("UNSUBSCRIBE_LINGER_MS"), default: 5_000),
            clockSkewMs: env.int(["RUNFEED_CLOCK_SKEW_MS"], default: 250),
            drainTimeoutMs: env.int(["RUNFEED_DRAIN_TIMEOUT_MS"], default: 10_000),
            logLevel: LogLevel(rawValue: (env.string(["RUNFEED_LOG_LEVEL", "LOG_LEVEL"]) ?? "info").lowercased()) ?? .info,
            logFormat: LogFormat(rawValue: (env.string(["RUNFEED_LOG_FORMAT"]) ?? "text").lowercased()) ?? .text,
            maxListResults: Int(max(1, env.int(names("MAX_LIST_RESULTS"), default: 1_000))),
            createdAtMaxAgeMs: max(1, env.int(["REALTIME_MAXIMUM_CREATED_AT_FILTER_AGE_IN_MS"], default: 86_400_000)),
            createdAtBucketMs: max(0, env.int(names("RUNSET_CREATED_AT_BUCKET_MS"), default: 60_000)),
            runsetCacheTtlMs: max(0, env.int(names("RUNSET_CACHE_TTL_MS"), default: 1_000)),
            runsetCacheMaxEntries: Int(max(1, env.int(names("RUNSET_CACHE_MAX_ENTRIES"), default: 5_000))),
            resolveAdmissionLimit: Int(max(0, env.int(names("RESOLVE_ADMISSION_LIMIT"), default: 16))),
            workingSetTtlMs: max(1, env.int(names("WORKING_SET_TTL_MS"), default: 300_000)),
            workingSetMaxEntries: Int(max(1, env.int(names("WORKING_SET_MAX_ENTRIES"), default: 10_000))),
            coalesceWindowMs: max(0, env.int(names("ENV_WAKE_COALESCE_WINDOW_MS"), default: 250)),
            clickhouseURL: chURL,
            clickhouseMaxConnections: Int(max(1, env.int([prefix + "CLICKHOUSE_MAX_OPEN_CONNECTIONS"], default: 10))),
            clickhouseTimeoutMs: Int(max(100, env.int(["RUNFEED_CLICKHOUSE_TIMEOUT_MS"], default: 5_000))),
            clickhouseKeepAlive: env.bool([prefix + "CLICKHOUSE_KEEP_ALIVE_ENABLED"], default: true),
            metricsListen: env.string(["RUNFEED_METRICS_LISTEN"]),
            concurrencyLimit: env.bool(["RUNFEED_CONCURRENCY_LIMIT_ENABLED"], default: true)
                ? max(0, env.int([prefix + "DEFAULT_CONCURRENCY_LIMIT"], default: 100_000)) : nil,
            rateLimitRedis: RedisEndpoint(
                host: env.string(["RATE_LIMIT_REDIS_HOST", "REDIS_HOST"]) ?? "127.0.0.1",
                port: Int(env.int(["RATE_LIMIT_REDIS_PORT", "REDIS_PORT"], default: 6379)),
                username: env.string(["RATE_LIMIT_REDIS_USERNAME", "REDIS_USERNAME"]),
                password: env.string(["RATE_LIMIT_REDIS_PASSWORD", "REDIS_PASSWORD"]),
                tls: env.bool(["RATE_LIMIT_REDIS_TLS_DISABLED", "REDIS_TLS_DISABLED"], default: false) ? nil : tls,
                cluster: env.bool(["RATE_LIMIT_REDIS_CLUSTER_MODE_ENABLED", "REDIS_CLUSTER_MODE_ENABLED"], default: false))
        )
    }
}

public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
