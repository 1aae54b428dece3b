import RunfeedCore
import RunfeedIO

/// The worker's counters in Prometheus text format, and its health.
extension Server {
    func metricsText() -> String {
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, Int)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, v) in samples { out += "\(name)\(labels.isEmpty ? "" : "{\(labels)}") \(v)\n" }
        }
        metric("runfeed_held_polls", "gauge", "Live polls parked in this worker.",
               [("kind=\"run\"", feeds.count), ("kind=\"list\"", lists.count)])
        metric("runfeed_wakes_total", "counter", "Live polls woken, by reason.",
               [("kind=\"run\",reason=\"notify\"", feeds.wakes), ("kind=\"run\",reason=\"backstop\"", feeds.backstops),
                ("kind=\"run\",reason=\"abort\"", feeds.aborts), ("kind=\"list\",reason=\"notify\"", lists.wakes),
                ("kind=\"list\",reason=\"backstop\"", lists.backstops), ("kind=\"list\",reason=\"abort\"", lists.aborts)])
        metric("runfeed_backstop_deliveries_total", "counter",
               "Backstops that delivered a change (a rising share means a missing publisher).",
               [("kind=\"run\"", feeds.backstopDeliveries), ("kind=\"list\"", lists.backstopDeliveries)])
        metric("runfeed_cold_resolves_total", "counter", "List feeds resolved before holding (gap not covered).",
               [("", lists.coldResolves)])
        metric("runfeed_runset_resolves_total", "counter", "Runset lookups by outcome.",
               [("result=\"hit\"", runsets.hits), ("result=\"miss\"", runsets.misses), ("result=\"coalesced\"", runsets.coalesced)])
        metric("runfeed_membership_queries_total", "counter", "Membership queries sent, by resolver.",
               [("resolver=\"\(runsets.resolverName)\"", runsets.resolverQueries)])
        metric("runfeed_list_hydrates_total", "counter", "Postgres hydrate queries for list feeds.", [("", runsets.hydrates)])
        metric("runfeed_run_row_reads_total", "counter", "Postgres row reads for single-run feeds.", [("", store.rowReads)])
        metric("runfeed_postgres_queries_total", "counter", "Postgres statements run.", [("", db.pool.queryCount)])
        metric("runfeed_postgres_errors_total", "counter", "Postgres statements that failed.", [("", db.pool.errorCount)])
        metric("runfeed_clickhouse_queries_total", "counter", "ClickHouse queries run.", [("", clickhouse?.queryCount ?? 0)])
        metric("runfeed_clickhouse_errors_total", "counter", "ClickHouse queries that failed.", [("", clickhouse?.errorCount ?? 0)])
        metric("runfeed_change_records_total", "counter", "Change records received from Redis.",
               [("result=\"accepted\"", channels.recordsReceived), ("result=\"rejected\"", channels.recordsRejected)])
        metric("runfeed_redis_reconnects_total", "counter", "Redis subscriber reconnect attempts.", [("", subscriber.reconnects)])
        metric("runfeed_live_rejections_total", "counter", "Live polls refused by the concurrency limit (429) or its lookup (500).",
               [("reason=\"limit\"", limiter?.rejections ?? 0), ("reason=\"lookup_failed\"", limiter?.failures ?? 0)])
        metric("runfeed_redis_subscribed_channels", "gauge", "Environment channels subscribed.", [("", channels.subscribedCount)])
        out += "# HELP runfeed_postgres_query_ms Postgres statement latency seen by the worker (queue + query).\n# TYPE runfeed_postgres_query_ms histogram\n"
        out += db.latency.render(name: "runfeed_postgres_query_ms")
        out += "# HELP runfeed_clickhouse_query_ms ClickHouse membership query latency seen by the worker.\n# TYPE runfeed_clickhouse_query_ms histogram\n"
        out += (runsets.clickhouseLatency ?? Histogram()).render(name: "runfeed_clickhouse_query_ms")
        out += "# HELP runfeed_delivery_lag_ms Now minus the emitted row's updatedAt, per row sent on a live poll.\n# TYPE runfeed_delivery_lag_ms histogram\n"
        out += deliveryLag.render(name: "runfeed_delivery_lag_ms")
        return out
    }

    /// Checks Postgres, Redis and (when configured) ClickHouse; answers on the loop.
    func health(_ done: @escaping (Bool, String) -> Void) {
        let probe = HealthProbe()
        probe.chOK = clickhouse == nil ? true : nil
        let redisOK = subscriber.state == .ready
        func maybeDone() {
            guard let pg = probe.pgOK, let ch = probe.chOK else { return }
            let ok = pg && ch && redisOK
            let chText = clickhouse == nil ? "\"not configured\"" : (ch ? "\"ok\"" : "\"down\"")
            done(ok, "{\"status\":\"\(ok ? "ok" : "degraded")\",\"postgres\":\"\(pg ? "ok" : "down")\",\"redis\":\"\(redisOK ? "ok" : "down")\",\"clickhouse\":\(chText)}")
        }
        db.query("SELECT 1", []) { result in
            if case .success = result { probe.pgOK = true } else { probe.pgOK = false }
            maybeDone()
        }
        if let ch = clickhouse {
            let finish = LoopBox(maybeDone)
            ch.query("SELECT 1") { [loop] result in
                let ok: Bool
                if case .success = result { ok = true } else { ok = false }
                loop.execute {
                    probe.chOK = ok
                    finish.value()
                }
            }
        }
    }
}

/// Partial results of one health check; touched only on the loop.
final class HealthProbe: @unchecked Sendable {
    var pgOK: Bool?
    var chOK: Bool?
}
