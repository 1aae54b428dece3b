import Metrics
import Prometheus

typealias Counter = Metrics.Counter
typealias Gauge = Metrics.Gauge
typealias Recorder = Metrics.Recorder

/// The worker's metrics, recorded through swift-metrics and exported in Prometheus text format by
/// swift-prometheus (`/metrics` on the worker's status listener).
enum WorkerMetrics {
    static let registry = PrometheusCollectorRegistry()

    /// Call once per process, before any metric is touched.
    static func bootstrap() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultValueHistogramBuckets = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]
        MetricsSystem.bootstrap(factory)
    }

    static func wakes(_ kind: String, _ reason: String) -> Counter {
        Counter(label: "runfeed_wakes_total", dimensions: [("kind", kind), ("reason", reason)])
    }

    static let runNotify = wakes("run", "notify")
    static let runBackstop = wakes("run", "backstop")
    static let runAbort = wakes("run", "abort")
    static let listNotify = wakes("list", "notify")
    static let listBackstop = wakes("list", "backstop")
    static let listAbort = wakes("list", "abort")
    static let runBackstopDelivered = Counter(label: "runfeed_backstop_deliveries_total", dimensions: [("kind", "run")])
    static let listBackstopDelivered = Counter(label: "runfeed_backstop_deliveries_total", dimensions: [("kind", "list")])
    static let coldResolves = Counter(label: "runfeed_cold_resolves_total")
    /// Tag and batch polls whose gap (changes since their previous answer) was served from rows already read.
    static let listGapFromCache = Counter(label: "runfeed_gap_reads_total", dimensions: [("kind", "list"), ("source", "cache")])
    /// Where a list poll's client view came from: this worker's copy, the shared store, or unknown (every
    /// member is re-sent).
    static let listViewLocal = Counter(label: "runfeed_list_views_total", dimensions: [("source", "local")])
    static let listViewShared = Counter(label: "runfeed_list_views_total", dimensions: [("source", "shared")])
    static let listViewUnknown = Counter(label: "runfeed_list_views_total", dimensions: [("source", "unknown")])
    static let listViewStoreFailed = Counter(label: "runfeed_list_view_store_failures_total")
    /// List answers and their body bytes by where the client's view came from (`snapshot`, `local`, `shared`
    /// after a hop, `unknown`): answers after a hop compared with the others.
    private static let viewSources = ["snapshot", "local", "shared", "unknown", "none"]
    private static let answersByView = Dictionary(uniqueKeysWithValues: viewSources.map {
        ($0, Counter(label: "runfeed_list_answers_total", dimensions: [("view", $0)]))
    })
    private static let answerBytesByView = Dictionary(uniqueKeysWithValues: viewSources.map {
        ($0, Counter(label: "runfeed_list_answer_bytes_total", dimensions: [("view", $0)]))
    })
    static func listAnswers(_ view: String) -> Counter { answersByView[view]! }
    static func listAnswerBytes(_ view: String) -> Counter { answerBytesByView[view]! }
    /// Shared working-set store traffic: commands by kind, and bytes sent in save commands.
    private static let viewCommands = Dictionary(uniqueKeysWithValues: ["load", "save", "save_whole", "touch"].map {
        ($0, Counter(label: "runfeed_shared_view_commands_total", dimensions: [("op", $0)]))
    })
    static func sharedViewCommands(_ op: String) -> Counter { viewCommands[op]! }
    static let sharedViewBytesWritten = Counter(label: "runfeed_shared_view_bytes_written_total")
    /// Rows a client does not hold that came from a read older than the client's view (a cache, a read in
    /// flight): confirmed by a fresh read before anything is sent.
    static let confirmingReads = Counter(label: "runfeed_confirming_reads_total")
    static let runsetHit = Counter(label: "runfeed_runset_resolves_total", dimensions: [("result", "hit")])
    static let runsetMiss = Counter(label: "runfeed_runset_resolves_total", dimensions: [("result", "miss")])
    static let runsetCoalesced = Counter(label: "runfeed_runset_resolves_total", dimensions: [("result", "coalesced")])
    static let runsetTruncated = Counter(label: "runfeed_runset_truncated_total")
    static let listHydrates = Counter(label: "runfeed_list_hydrates_total")
    static let runRowReads = Counter(label: "runfeed_run_row_reads_total")
    static let postgresQueries = Counter(label: "runfeed_postgres_queries_total")
    static let postgresErrors = Counter(label: "runfeed_postgres_errors_total")
    static let postgresLatency = Recorder(label: "runfeed_postgres_query_ms", aggregate: true)
    static let clickhouseQueries = Counter(label: "runfeed_clickhouse_queries_total")
    static let clickhouseErrors = Counter(label: "runfeed_clickhouse_errors_total")
    static let clickhouseLatency = Recorder(label: "runfeed_clickhouse_query_ms", aggregate: true)
    static func membershipQueries(_ resolver: String) -> Counter {
        Counter(label: "runfeed_membership_queries_total", dimensions: [("resolver", resolver)])
    }
    static let recordsAccepted = Counter(label: "runfeed_change_records_total", dimensions: [("result", "accepted")])
    static let recordsRejected = Counter(label: "runfeed_change_records_total", dimensions: [("result", "rejected")])
    static let redisReconnects = Counter(label: "runfeed_redis_reconnects_total")
    static let liveRejectedByLimit = Counter(label: "runfeed_live_rejections_total", dimensions: [("reason", "limit")])
    static let liveLimitLookupFailed = Counter(label: "runfeed_live_rejections_total", dimensions: [("reason", "lookup_failed")])
    static let deliveryLag = Recorder(label: "runfeed_delivery_lag_ms", aggregate: true)
    static let heldRun = Gauge(label: "runfeed_held_polls", dimensions: [("kind", "run")])
    static let heldList = Gauge(label: "runfeed_held_polls", dimensions: [("kind", "list")])
    static let subscribedChannels = Gauge(label: "runfeed_redis_subscribed_channels")
}
