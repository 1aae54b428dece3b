import Prometheus
import RunfeedCore
import RunfeedIO

typealias Counter = Prometheus.Counter
typealias Gauge = Prometheus.Gauge
typealias Histogram = Prometheus.ValueHistogram

/// The worker's metrics, created on a swift-prometheus registry and exported in the Prometheus text
/// format (`/metrics` on the worker's status listener; docs/OPERATIONS.md lists them).
///
/// Every series whose label values are known is created when the worker starts, so a fresh worker
/// exposes each of them at 0 (a rate over a series that appears only with its first event misses that
/// event, and an alert on a series that does not exist never fires). Units are base units: seconds and
/// bytes. Each family has a `# HELP` and a `# TYPE` line.
final class WorkerMetrics: @unchecked Sendable {
    /// The one instance; everything is created when it is first touched (`Server.init`).
    static let shared = WorkerMetrics()

    let registry = PrometheusCollectorRegistry()

    // Requests
    /// `runfeed_requests_total{route,mode,status}` by `RequestLabels` and the status answered.
    private let requests: [String: Counter]
    /// `runfeed_request_duration_seconds{route,mode}`.
    private let durations: [RequestLabels: Histogram]

    // Held polls and how they end
    let heldRun: Gauge
    let heldList: Gauge
    let envHeldMax: Gauge
    let liveLimit: Gauge
    let runNotify: Counter
    let runBackstop: Counter
    let runAbort: Counter
    let listNotify: Counter
    let listBackstop: Counter
    let listAbort: Counter
    let runBackstopDelivered: Counter
    let listBackstopDelivered: Counter
    let liveRejectedByLimit: Counter
    let liveLimitLookupFailed: Counter
    let deliveryLag: Histogram

    // Change records and Redis
    let recordsAccepted: Counter
    let recordsRejected: Counter
    let redisReconnects: Counter
    let redisConnected: Gauge
    let subscribedChannels: Gauge

    // FastCGI connections from the web server
    let fastcgiAccepted: Counter
    let fastcgiReused: Counter
    let fastcgiIdle: Gauge
    let fastcgiBusy: Gauge

    // List feeds
    let coldResolves: Counter
    /// Tag and batch polls whose gap (changes since their previous answer) was served from rows already read.
    let listGapFromCache: Counter
    /// Where a list poll's client view came from: this worker's copy, the shared store, or unknown (every
    /// member is re-sent).
    let listViewLocal: Counter
    let listViewShared: Counter
    let listViewUnknown: Counter
    let listViewStoreFailed: Counter
    private let answersByView: [String: Counter]
    private let answerBytesByView: [String: Counter]
    private let viewCommands: [String: Counter]
    let sharedViewBytesWritten: Counter
    /// Rows a client does not hold that came from a read older than the client's view (a cache, a read in
    /// flight): confirmed by a fresh read before anything is sent.
    let confirmingReads: Counter
    let runsetHit: Counter
    let runsetMiss: Counter
    let runsetCoalesced: Counter
    let runsetTruncated: Counter
    let listHydrates: Counter
    private let membership: [String: Counter]

    // Databases
    let runRowReads: Counter
    /// Per database (`target`: primary, replica).
    private let pg: [DBTarget: PGMetrics]
    let pgQueueLimit: Gauge
    /// Requests answered 503 at their deadline while waiting for the database.
    let requestTimeouts: Counter
    // The read replica and its gate
    let replicaConfigured: Gauge
    let replicaUp: Gauge
    let replicaLag: Gauge
    let replicaGateWait: Histogram
    private let replicaRoutes: [String: Counter]
    private let replicaFallbacks: [ReplicaFallback: Counter]
    private let samples: [DBTarget: Counter]
    let clickhouseQueries: Counter
    let clickhouseErrors: Counter
    let clickhouseLatency: Histogram

    // The process
    let buildInfo: Gauge
    private let cpuSeconds: Counter
    /// CPU seconds already added to `cpuSeconds` (loop thread only).
    private var cpuSecondsReported = 0.0
    private let residentBytes: Gauge
    private let virtualBytes: Gauge
    private let openFds: Gauge
    private let maxFds: Gauge
    private let startTime: Gauge

    /// Request durations: a snapshot takes milliseconds, a live poll is held up to the hold (20 s ± 15 %
    /// by default), so the buckets reach past 23 s with a few around the hold.
    static let requestBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                           10, 15, 17.5, 20, 22.5, 25, 30, 60]
    /// Database round trips, from submitting the statement to its result reaching the loop.
    static let queryBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// From a row's `updatedAt` to the live answer carrying it (includes the writer's commit time and
    /// any clock difference between hosts).
    static let lagBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 25, 30, 60]

    /// Where a read asking for the replica went (`runfeed_replica_routes_total{route}`).
    static let replicaRouteLabels = ["replica", "replica_after_wait"] + PrimaryReason.allCases.map { "primary_" + $0.rawValue }

    static let viewSources = ["snapshot", "local", "shared", "unknown", "none"]
    static let viewOps = ["load", "save", "save_whole", "touch"]
    static let resolvers = ["clickhouse", "postgres"]

    private init() {
        let r = registry
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Counter {
            r.makeCounter(name: name, labels: labels, help: help)
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
            r.makeGauge(name: name, labels: labels, help: help)
        }
        func histogram(_ name: String, _ help: String, _ buckets: [Double], _ labels: [(String, String)] = []) -> Histogram {
            r.makeValueHistogram(name: name, labels: labels, buckets: buckets, help: help)
        }

        let requestsHelp = "Requests answered, by route, mode (snapshot, live, preflight) and HTTP status; 499: a held poll whose client had gone"
        var requests: [String: Counter] = [:]
        for (labels, status) in RequestLabels.startupSeries {
            requests[Self.requestKey(labels, status)] = counter(
                "runfeed_requests_total", requestsHelp,
                [("route", labels.route), ("mode", labels.mode), ("status", String(status))])
        }
        self.requests = requests
        var durations: [RequestLabels: Histogram] = [:]
        for route in RequestLabels.routes {
            for mode in RequestLabels.modes {
                let labels = RequestLabels(route: route, mode: mode)
                durations[labels] = histogram(
                    "runfeed_request_duration_seconds",
                    "Seconds from accepting a request to handing its answer to the writer (a live poll: its hold), by route and mode",
                    Self.requestBuckets, [("route", route), ("mode", mode)])
            }
        }
        self.durations = durations

        let heldHelp = "Live polls held now, by kind (run: single-run feeds; list: tag and batch feeds)"
        heldRun = gauge("runfeed_held_polls", heldHelp, [("kind", "run")])
        heldList = gauge("runfeed_held_polls", heldHelp, [("kind", "list")])
        envHeldMax = gauge("runfeed_env_held_polls_max",
                           "Live polls this worker holds for its busiest environment (the limit counts every worker's)")
        liveLimit = gauge("runfeed_live_limit",
                          "Held live polls allowed per environment across all workers and hosts; 0: no limit")
        let wakesHelp = "Held polls woken, by kind and reason (notify: a change record; backstop: the hold deadline; abort: the client left)"
        runNotify = counter("runfeed_wakes_total", wakesHelp, [("kind", "run"), ("reason", "notify")])
        runBackstop = counter("runfeed_wakes_total", wakesHelp, [("kind", "run"), ("reason", "backstop")])
        runAbort = counter("runfeed_wakes_total", wakesHelp, [("kind", "run"), ("reason", "abort")])
        listNotify = counter("runfeed_wakes_total", wakesHelp, [("kind", "list"), ("reason", "notify")])
        listBackstop = counter("runfeed_wakes_total", wakesHelp, [("kind", "list"), ("reason", "backstop")])
        listAbort = counter("runfeed_wakes_total", wakesHelp, [("kind", "list"), ("reason", "abort")])
        let backstopHelp = "Changes delivered by the hold-deadline re-read instead of a change record, by kind"
        runBackstopDelivered = counter("runfeed_backstop_deliveries_total", backstopHelp, [("kind", "run")])
        listBackstopDelivered = counter("runfeed_backstop_deliveries_total", backstopHelp, [("kind", "list")])
        let rejectionsHelp = "Live polls refused, by reason (limit: 429, the environment is at its limit; lookup_failed: 500, the rate-limit Redis is unreachable)"
        liveRejectedByLimit = counter("runfeed_live_rejections_total", rejectionsHelp, [("reason", "limit")])
        liveLimitLookupFailed = counter("runfeed_live_rejections_total", rejectionsHelp, [("reason", "lookup_failed")])
        deliveryLag = histogram("runfeed_delivery_lag_seconds",
                                "Seconds from a row's updatedAt to the live answer that carries it", Self.lagBuckets)

        let recordsHelp = "Change records received on subscribed channels, by result (rejected: not a record or over 16 KiB)"
        recordsAccepted = counter("runfeed_change_records_total", recordsHelp, [("result", "accepted")])
        recordsRejected = counter("runfeed_change_records_total", recordsHelp, [("result", "rejected")])
        redisReconnects = counter("runfeed_redis_reconnects_total",
                                  "Reconnect attempts of the pub/sub Redis subscriber (one per failed or lost connection)")
        redisConnected = gauge("runfeed_redis_connected", "1 while the pub/sub Redis subscriber is connected, else 0")
        subscribedChannels = gauge("runfeed_redis_subscribed_channels", "Environment channels subscribed now")

        fastcgiAccepted = counter("runfeed_fastcgi_connections_accepted_total",
                                  "FastCGI connections accepted from the web server")
        fastcgiReused = counter("runfeed_fastcgi_kept_connection_requests_total",
                                "Requests that arrived on a connection kept from an earlier request (FCGI_KEEP_CONN)")
        let connectionsHelp = "Open FastCGI connections: idle (kept, waiting for a request) or busy (a request out)"
        fastcgiIdle = gauge("runfeed_fastcgi_connections", connectionsHelp, [("state", "idle")])
        fastcgiBusy = gauge("runfeed_fastcgi_connections", connectionsHelp, [("state", "busy")])

        coldResolves = counter("runfeed_cold_resolves_total",
                               "List polls resolved in full before holding (the gap since their previous answer was not heard here)")
        listGapFromCache = counter("runfeed_gap_reads_total", "List polls whose gap was served from rows already read",
                                   [("kind", "list"), ("source", "cache")])
        let viewsHelp = "Where a list poll found its client's view (local: this worker; shared: the Redis store after a hop; unknown: every member re-sent)"
        listViewLocal = counter("runfeed_list_views_total", viewsHelp, [("source", "local")])
        listViewShared = counter("runfeed_list_views_total", viewsHelp, [("source", "shared")])
        listViewUnknown = counter("runfeed_list_views_total", viewsHelp, [("source", "unknown")])
        listViewStoreFailed = counter("runfeed_list_view_store_failures_total",
                                      "List views that could not be written to the shared store")
        answersByView = Dictionary(uniqueKeysWithValues: Self.viewSources.map {
            ($0, counter("runfeed_list_answers_total", "List answers, by where the client's view came from", [("view", $0)]))
        })
        answerBytesByView = Dictionary(uniqueKeysWithValues: Self.viewSources.map {
            ($0, counter("runfeed_list_answer_bytes_total", "Body bytes of list answers, by where the client's view came from",
                         [("view", $0)]))
        })
        viewCommands = Dictionary(uniqueKeysWithValues: Self.viewOps.map {
            ($0, counter("runfeed_shared_view_commands_total", "Shared view store commands, by operation", [("op", $0)]))
        })
        sharedViewBytesWritten = counter("runfeed_shared_view_bytes_written_total", "Bytes sent in shared view save commands")
        confirmingReads = counter("runfeed_confirming_reads_total",
                                  "Rows read again before sending because the read that found them was older than the client's view")
        let resolvesHelp = "Runset (membership + rows) lookups, by result (hit: cached; coalesced: joined one in flight; miss: resolved)"
        runsetHit = counter("runfeed_runset_resolves_total", resolvesHelp, [("result", "hit")])
        runsetMiss = counter("runfeed_runset_resolves_total", resolvesHelp, [("result", "miss")])
        runsetCoalesced = counter("runfeed_runset_resolves_total", resolvesHelp, [("result", "coalesced")])
        runsetTruncated = counter("runfeed_runset_truncated_total", "Runsets cut to the newest MAX_LIST_RESULTS runs")
        listHydrates = counter("runfeed_list_hydrates_total", "Row reads of list members (one query for up to 1,000 runs)")
        membership = Dictionary(uniqueKeysWithValues: Self.resolvers.map {
            ($0, counter("runfeed_membership_queries_total", "Membership queries of tag and batch feeds, by resolver",
                         [("resolver", $0)]))
        })

        runRowReads = counter("runfeed_run_row_reads_total", "Single-run row reads")
        var pg: [DBTarget: PGMetrics] = [:]
        for t in DBTarget.allCases {
            let l = [("target", t.rawValue)]
            let dropHelp = "PostgreSQL statements never sent, by target and reason (deadline: the request's deadline passed while it waited; client_gone: every request waiting for it had gone; queue_full: the queue was at its bound)"
            let stateHelp = "PostgreSQL statements waiting for a connection (queued) and running (busy), by target"
            pg[t] = PGMetrics(
                queries: counter("runfeed_postgres_queries_total", "PostgreSQL statements run, by target (primary, replica)", l),
                errors: counter("runfeed_postgres_errors_total", "PostgreSQL statements that failed, by target", l),
                timeouts: counter("runfeed_postgres_timeouts_total",
                                  "PostgreSQL statements cancelled at their deadline or the statement timeout, by target", l),
                latency: histogram("runfeed_postgres_query_seconds",
                                   "Seconds from submitting a PostgreSQL statement to its result reaching the event loop, by target",
                                   Self.queryBuckets, l),
                droppedDeadline: counter("runfeed_postgres_dropped_total", dropHelp, l + [("reason", "deadline")]),
                droppedClientGone: counter("runfeed_postgres_dropped_total", dropHelp, l + [("reason", "client_gone")]),
                droppedQueueFull: counter("runfeed_postgres_dropped_total", dropHelp, l + [("reason", "queue_full")]),
                queued: gauge("runfeed_postgres_statements", stateHelp, l + [("state", "queued")]),
                busy: gauge("runfeed_postgres_statements", stateHelp, l + [("state", "busy")]),
                stalled: gauge("runfeed_postgres_stalled",
                               "1 while a database is not keeping up (queue at its bound, a statement waiting or running for a second, or one that ended at its deadline within the last second), by target", l))
        }
        self.pg = pg
        pgQueueLimit = gauge("runfeed_postgres_queue_limit", "PostgreSQL statements that may wait for a connection, per database (RUNFEED_PG_QUEUE_LIMIT)")
        requestTimeouts = counter("runfeed_request_timeouts_total",
                                  "Requests answered 503 at their deadline (RUNFEED_REQUEST_TIMEOUT_MS, shortened while the primary is stalled) before the database answered")
        replicaConfigured = gauge("runfeed_replica_configured", "1 when DATABASE_READ_REPLICA_URL is set")
        replicaUp = gauge("runfeed_replica_up", "1 unless the read replica failed its last check or read (0 also without a replica)")
        replicaLag = gauge("runfeed_replica_lag_seconds",
                           "The replica gate's lag estimate: the largest lag measured in the window (time from a primary WAL position to the replica replaying it)")
        replicaGateWait = histogram("runfeed_replica_gate_wait_seconds",
                                    "Seconds reads waited for the replica to catch up before going to it or to the primary",
                                    Self.queryBuckets)
        replicaRoutes = Dictionary(uniqueKeysWithValues: Self.replicaRouteLabels.map {
            ($0, counter("runfeed_replica_routes_total",
                         "Reads that could use the replica, by where they went (replica; replica_after_wait; primary_<reason>: down, lagging, timed_out, gate_off, positions_unknown)",
                         [("route", $0)]))
        })
        replicaFallbacks = Dictionary(uniqueKeysWithValues: ReplicaFallback.allCases.map {
            ($0, counter("runfeed_replica_fallbacks_total",
                         "Reads answered by the replica and done again on the primary, by reason (miss: not found there; stale: older than its change record; error: the replica failed; moving: replay moved during the statement, so its read time is not exact)",
                         [("reason", $0.rawValue)]))
        })
        samples = Dictionary(uniqueKeysWithValues: DBTarget.allCases.map {
            ($0, counter("runfeed_replica_position_samples_total",
                         "WAL position samples of the replica gate, by target (on their own connections)", [("target", $0.rawValue)]))
        })
        clickhouseQueries = counter("runfeed_clickhouse_queries_total", "ClickHouse membership queries run")
        clickhouseErrors = counter("runfeed_clickhouse_errors_total", "ClickHouse membership queries that failed")
        clickhouseLatency = histogram("runfeed_clickhouse_query_seconds",
                                      "Seconds from submitting a ClickHouse query to its result reaching the event loop",
                                      Self.queryBuckets)

        buildInfo = gauge("runfeed_build_info", "Always 1: the version and source revision of this binary",
                          [("version", BuildInfo.version), ("revision", BuildInfo.revision)])
        buildInfo.set(1)
        cpuSeconds = counter("process_cpu_seconds_total", "User and system CPU time spent in seconds")
        residentBytes = gauge("process_resident_memory_bytes", "Resident memory size in bytes")
        virtualBytes = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes")
        openFds = gauge("process_open_fds", "Open file descriptors")
        maxFds = gauge("process_max_fds", "Maximum number of open file descriptors (soft limit)")
        startTime = gauge("process_start_time_seconds", "Start time of the process since the epoch in seconds")
    }

    private static func requestKey(_ labels: RequestLabels, _ status: Int) -> String {
        "\(labels.route)|\(labels.mode)|\(status)"
    }

    /// Counts and times one answered request. A status outside `RequestLabels.statuses` gets its series
    /// on first use (none is answered today).
    func request(_ labels: RequestLabels, status: Int, seconds: Double) {
        let counter = requests[Self.requestKey(labels, status)] ?? registry.makeCounter(
            name: "runfeed_requests_total",
            labels: [("route", labels.route), ("mode", labels.mode), ("status", String(status))],
            help: "Requests answered, by route, mode (snapshot, live, preflight) and HTTP status; 499: a held poll whose client had gone")
        counter.increment()
        durations[labels]?.record(seconds)
    }

    func postgres(_ target: DBTarget) -> PGMetrics { pg[target]! }
    func replicaRoute(_ route: String) -> Counter { replicaRoutes[route]! }
    func replicaFallback(_ reason: ReplicaFallback) -> Counter { replicaFallbacks[reason]! }
    func positionSamples(_ target: DBTarget) -> Counter { samples[target]! }

    func listAnswers(_ view: String) -> Counter { answersByView[view]! }
    func listAnswerBytes(_ view: String) -> Counter { answerBytesByView[view]! }
    func sharedViewCommands(_ op: String) -> Counter { viewCommands[op]! }
    func membershipQueries(_ resolver: String) -> Counter { membership[resolver]! }

    /// Process metrics at scrape time (`/proc`; nothing when it cannot be read). Loop thread only.
    func recordProcess(_ sample: ProcessSample?) {
        guard let s = sample else { return }
        // A counter only goes up: add what was spent since the last scrape.
        if s.cpuSeconds > cpuSecondsReported {
            cpuSeconds.increment(by: s.cpuSeconds - cpuSecondsReported)
            cpuSecondsReported = s.cpuSeconds
        }
        residentBytes.set(s.residentBytes)
        virtualBytes.set(s.virtualBytes)
        openFds.set(s.openFds)
        maxFds.set(s.maxFds)
        startTime.set(s.startTimeSeconds)
    }
}

extension Counter {
    func increment<T: BinaryInteger>(by amount: T) { increment(by: Int64(amount)) }
}

extension Gauge {
    func set<T: BinaryInteger>(_ value: T) { set(Double(value)) }
}

/// One database's statement metrics.
struct PGMetrics {
    let queries: Counter
    let errors: Counter
    let timeouts: Counter
    let latency: Histogram
    let droppedDeadline: Counter
    let droppedClientGone: Counter
    let droppedQueueFull: Counter
    let queued: Gauge
    let busy: Gauge
    let stalled: Gauge
}

/// Why a replica answer was done again on the primary.
enum ReplicaFallback: String, CaseIterable {
    case miss
    case stale
    case error
    /// The replica replayed a commit during the statement: its snapshot could not be placed exactly.
    case moving
}
