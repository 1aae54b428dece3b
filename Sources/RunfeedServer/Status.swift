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
        for (target, pool) in [(DBTarget.primary, Optional(db.primary)), (.replica, db.replica)] {
            let g = m.postgres(target)
            guard let pool else { continue }
            let l = pool.load
            g.queued.set(l.queued)
            g.busy.set(l.running)
            g.stalled.set(LoopDatabase.stalled(pool, stallUs: db.stallUs) ? 1 : 0)
        }
        if db.replica != nil {
            m.replicaLag.set(Double(db.monitor.gate.lagEstimateUs(nowUs: monotonicUs())) / 1e6)
        }
        m.recordProcess(processStats.sample())
        return m.registry.emitToString()
    }

    /// Checks Postgres (and the read replica), Redis and (when configured) ClickHouse; answers on the loop within a
    /// second whatever the databases do: Postgres is probed on the monitor's own connections (never behind request
    /// queries), and a probe not answered in 800 ms reports `"slow"`. `"slow"` also while a pool is not keeping
    /// up (`LoopDatabase.stalled`: its queue at the bound, or a statement waiting or running a second without
    /// progress); `"down"` when the database refuses or is unreachable.
    func health(_ done: @escaping (Bool, String) -> Void) {
        let probe = HealthProbe()
        probe.chOK = clickhouse == nil ? true : nil
        let redisOK = subscriber.isReady
        let hasReplica = db.replica != nil
        func maybeDone() {
            guard let pg = probe.pg, let ch = probe.chOK, !probe.answered else { return }
            probe.answered = true
            var pgState = pg
            // The database requests read from (the replica too, when reads go there) not keeping up.
            if pgState == .ok && db.stalled { pgState = .slow }
            var replicaText = "\"not configured\""
            if hasReplica, let r = probe.replica {
                var state = r.rawValue
                if r == .ok, let rp = db.replica, LoopDatabase.stalled(rp, stallUs: db.stallUs) { state = "slow" }
                if r == .ok && state == "ok" && db.monitor.gate.state == .down { state = "down" }
                replicaText = "\"\(state)\""
            }
            // A replica that is down or slow costs freshness, not answers (reads go to the primary): reported, not
            // failed on.
            let ok = pgState == .ok && ch && redisOK
            let chText = clickhouse == nil ? "\"not configured\"" : (ch ? "\"ok\"" : "\"down\"")
            let lag = hasReplica ? ",\"replica_lag_ms\":\(db.monitor.gate.lagEstimateUs(nowUs: monotonicUs()) / 1000)" : ""
            done(ok, "{\"status\":\"\(ok ? "ok" : "degraded")\",\"postgres\":\"\(pgState.rawValue)\",\"replica\":\(replicaText)\(lag),\"redis\":\"\(redisOK ? "ok" : "down")\",\"clickhouse\":\(chText)}")
        }
        db.monitor.probe(withinMs: 800) { primary, replica in
            probe.pg = primary
            probe.replica = replica
            maybeDone()
        }
        if let ch = clickhouse {
            ch.query("SELECT 1", on: loop) { result in
                if case .success = result { probe.chOK = true } else { probe.chOK = false }
                maybeDone()
            }
            // ClickHouse gets the same second: unanswered by then counts as down.
            loop.schedule(afterMs: 900) {
                if probe.chOK == nil {
                    probe.chOK = false
                    maybeDone()
                }
            }
        }
    }
}

/// Partial results of one health check; touched only on the loop.
final class HealthProbe {
    var pg: ReplicaMonitor.Probe?
    var replica: ReplicaMonitor.Probe?
    var chOK: Bool?
    var answered = false
}
