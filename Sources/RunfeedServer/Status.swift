import RunfeedCore
import RunfeedIO

/// The worker's counters in Prometheus text format, and its health.
extension Server {
    /// Gauges and the values kept elsewhere are brought up to date at scrape time (on the loop).
    func metricsText() -> String {
        let m = WorkerMetrics.shared
        m.heldRun.set(feeds.count)
        m.heldList.set(lists.count)
        m.envHeldMax.set(channels.busiestEnvironmentHeld)
        m.subscribedChannels.set(channels.subscribedCount)
        m.redisConnected.set(subscriber.isReady ? 1 : 0)
        let reconnects = subscriber.reconnects
        if reconnects > reportedReconnects {
            m.redisReconnects.increment(by: reconnects - reportedReconnects)
            reportedReconnects = reconnects
        }
        if let f = fastcgi {
            let idle = f.idleConnections
            m.fastcgiIdle.set(idle)
            m.fastcgiBusy.set(f.openConnections - idle)
            if f.acceptedConnections > reportedAccepted {
                m.fastcgiAccepted.increment(by: f.acceptedConnections - reportedAccepted)
                reportedAccepted = f.acceptedConnections
            }
            if f.reusedRequests > reportedReused {
                m.fastcgiReused.increment(by: f.reusedRequests - reportedReused)
                reportedReused = f.reusedRequests
            }
        }
        m.recordProcess(processStats.sample())
        return m.registry.emitToString()
    }

    /// Checks Postgres, Redis and (when configured) ClickHouse; answers on the loop.
    func health(_ done: @escaping (Bool, String) -> Void) {
        let probe = HealthProbe()
        probe.chOK = clickhouse == nil ? true : nil
        let redisOK = subscriber.isReady
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
