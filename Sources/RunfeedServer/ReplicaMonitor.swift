import RunfeedCore
import RunfeedIO

/// The loop side of the database's own bookkeeping, on connections of its own (never behind request queries):
/// health probes of the primary and the replica, and the replica gate's position samples and waiting reads.
final class ReplicaMonitor {  // loop-confined
    enum Route {
        case replica(ReplicaWatermark?)
        /// The replica, after the read waited for its watermark.
        case replicaAfterWait(ReplicaWatermark?)
        case primary(PrimaryReason)
    }

    private struct Waiter {
        let freshAfterUs: Int64
        let sinceUs: Int64
        let go: (Route) -> Void
    }

    private let loop: EventLoop
    private let log: RunfeedLogger
    /// One connection each, for probes and samples only (statement timeout 1 s).
    let primaryProbe: PostgresPool
    let replicaProbe: PostgresPool?
    private(set) var gate: ReplicaGate
    private var waiting: [UInt64: Waiter] = [:]
    private var nextWaiter: UInt64 = 1
    private var timer: EventLoop.TimerID?
    private var timerAtUs = Int64.max
    private var warnedPositions = false
    private var lastState: ReplicaGate.ReplicaState = .unknown

    static let sampleTimeoutUs: Int64 = 1_000_000

    init(config: ServerConfig, loop: EventLoop, log: RunfeedLogger) {
        self.loop = loop
        self.log = log
        gate = ReplicaGate(settings: config.replicaGate)
        primaryProbe = PostgresPool(conninfo: config.databaseURL, size: 1, statementTimeoutMs: 1_000, queueLimit: 8,
                                    name: "pg-probe")
        replicaProbe = config.replicaURL.map {
            PostgresPool(conninfo: $0, size: 1, statementTimeoutMs: 1_000, queueLimit: 8, name: "pg-rprobe")
        }
        WorkerMetrics.shared.replicaConfigured.set(config.replicaURL == nil ? 0 : 1)
    }

    // MARK: routing

    /// Decides where a read goes, now or once the replica caught up (`go` runs on the loop, maybe at once).
    func route(freshAfterUs: Int64?, _ go: @escaping (Route) -> Void) {
        let now = monotonicUs()
        gate.noteRead(nowUs: now)
        switch gate.route(freshAfterUs: freshAfterUs, waitingSinceUs: now, nowUs: now) {
        case .replica(let w):
            WorkerMetrics.shared.replicaRoute("replica").increment()
            go(.replica(w))
        case .primary(let reason):
            WorkerMetrics.shared.replicaRoute("primary_" + reason.rawValue).increment()
            go(.primary(reason))
        case .wait:
            waiting[nextWaiter] = Waiter(freshAfterUs: freshAfterUs ?? now, sinceUs: now, go: go)
            nextWaiter += 1
            updateWanted(now)
        }
        pump()
    }

    /// A replica read failed at the connection or timed out.
    func replicaFailed() {
        gate.replicaReadFailed()
        noteState()
        pump()
    }

    private func updateWanted(_ now: Int64) {
        gate.setWanted(afterUs: waiting.values.map(\.freshAfterUs).max(), nowUs: now)
    }

    /// Re-routes the waiting reads after a sample or at a deadline.
    private func reroute() {
        guard !waiting.isEmpty else { return }
        let now = monotonicUs()
        var ready: [(Waiter, Route)] = []
        for (id, w) in waiting {
            switch gate.route(freshAfterUs: w.freshAfterUs, waitingSinceUs: w.sinceUs, nowUs: now) {
            case .wait:
                continue
            case .replica(let wm):
                ready.append((w, .replicaAfterWait(wm)))
            case .primary(let reason):
                if reason == .timedOut { gate.waitedInVain(waitedUs: now - w.sinceUs, nowUs: now) }
                ready.append((w, .primary(reason)))
            }
            waiting.removeValue(forKey: id)
        }
        updateWanted(now)
        for (w, route) in ready {
            WorkerMetrics.shared.replicaGateWait.record(Double(now - w.sinceUs) / 1e6)
            switch route {
            case .replicaAfterWait: WorkerMetrics.shared.replicaRoute("replica_after_wait").increment()
            case .primary(let reason): WorkerMetrics.shared.replicaRoute("primary_" + reason.rawValue).increment()
            case .replica: break
            }
            w.go(route)
        }
    }

    // MARK: sampling

    private func pump() {
        guard let replicaProbe else { return }
        let now = monotonicUs()
        let a = gate.actions(nowUs: now)
        if a.samplePrimary {
            gate.primarySampleStarted(nowUs: now)
            let sent = now
            WorkerMetrics.shared.positionSamples(.primary).increment()
            let sql = "SELECT (extract(epoch from statement_timestamp()) * 1000000)::bigint::text, pg_current_wal_insert_lsn()::text"
            let accepted = primaryProbe.submit(sql, [], deadlineUs: now + Self.sampleTimeoutUs, demands: nil, on: loop) { [self] result in
                switch result {
                case .success(let rows):
                    if let r = rows.rows.first, let db = r[0].flatMap({ Int64($0) }), let lsn = r[1].flatMap({ WALPosition(text: $0) }) {
                        gate.primarySampled(sentUs: sent, dbUs: db, lsn: lsn, nowUs: monotonicUs())
                    } else {
                        gate.primarySampleFailed(unavailable: true)
                    }
                case .failure(let e):
                    gate.primarySampleFailed(unavailable: e.isUnavailableFunction)
                    if e.isUnavailableFunction { warnPositions(e.description) }
                }
                reroute()
                pump()
            }
            if !accepted { gate.primarySampleFailed(unavailable: false) }
        }
        if a.sampleReplica {
            gate.replicaCheckStarted(nowUs: now)
            WorkerMetrics.shared.positionSamples(.replica).increment()
            let sql = "SELECT pg_is_in_recovery()::text, pg_last_wal_replay_lsn()::text"
            let accepted = replicaProbe.submit(sql, [], deadlineUs: now + Self.sampleTimeoutUs, demands: nil, on: loop) { [self] result in
                let done = monotonicUs()
                switch result {
                case .success(let rows):
                    let r = rows.rows.first
                    let inRecovery = r?[0] == "true"
                    let replay = r?[1].flatMap { WALPosition(text: $0) }
                    gate.replicaChecked(replay: replay, inRecovery: inRecovery, doneUs: done)
                    if inRecovery && replay == nil { warnPositions("pg_last_wal_replay_lsn() returned NULL") }
                case .failure(let e):
                    if e.isUnavailableFunction {
                        gate.replicaChecked(replay: nil, inRecovery: true, doneUs: done)
                        warnPositions(e.description)
                    } else {
                        gate.replicaCheckFailed()
                    }
                }
                WorkerMetrics.shared.replicaLag.set(Double(gate.lagEstimateUs(nowUs: done)) / 1e6)
                noteState()
                reroute()
                pump()
            }
            if !accepted { gate.replicaCheckFailed() }
        }
        // Wake for the gate's next sample and for the earliest waiting read's longest wait.
        var wake = a.wakeAtUs ?? Int64.max
        for w in waiting.values { wake = min(wake, w.sinceUs + gate.settings.maxDelayMs * 1000) }
        schedule(at: wake)
    }

    private func schedule(at us: Int64) {
        guard us != Int64.max else { return }
        if timer != nil && timerAtUs <= us { return }
        if let t = timer { loop.cancel(t) }
        timerAtUs = us
        timer = loop.schedule(afterMs: max(0, (us - monotonicUs() + 999) / 1000)) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.timerAtUs = Int64.max
            self.reroute()
            self.pump()
        }
    }

    private func noteState() {
        let s = gate.state
        WorkerMetrics.shared.replicaUp.set(s == .down ? 0 : 1)
        guard s != lastState else { return }
        switch s {
        case .down: log.warning("read replica unavailable: reads go to the primary until it answers again")
        case .up: log.info("read replica up (lag estimate \(gate.lagEstimateUs(nowUs: monotonicUs()) / 1000) ms)")
        case .notInRecovery: log.warning("DATABASE_READ_REPLICA_URL names a server that is not in recovery: its reads are taken as current")
        case .unknown: break
        }
        lastState = s
    }

    private func warnPositions(_ why: String) {
        guard !warnedPositions else { return }
        warnedPositions = true
        log.warning("replica gate: WAL positions cannot be read (\(why)); reads that must be fresh go to the primary, lookups still use the replica")
    }

    // MARK: health

    enum Probe: String {
        case ok
        case down
        /// No answer within the probe's time.
        case slow
    }

    /// `SELECT 1` on each database on the probe connections, answered within `withinMs` (an unanswered probe is
    /// `slow`). `done` runs on the loop.
    func probe(withinMs: Int64, _ done: @escaping (_ primary: Probe, _ replica: Probe?) -> Void) {
        final class Pending {
            var primary: Probe?
            var replica: Probe?
            var finished = false
        }
        let p = Pending()
        let hasReplica = replicaProbe != nil
        func finish() {
            guard !p.finished else { return }
            p.finished = true
            done(p.primary ?? .slow, hasReplica ? (p.replica ?? .slow) : nil)
        }
        func check() {
            if p.primary != nil && (!hasReplica || p.replica != nil) { finish() }
        }
        let deadline = monotonicUs() + withinMs * 1000
        func run(_ pool: PostgresPool, _ set: @escaping (Probe) -> Void) {
            let ok = pool.submit("SELECT 1", [], deadlineUs: deadline, demands: nil, on: loop) { result in
                switch result {
                case .success: set(.ok)
                case .failure(let e): set((e.kind == .timeout || e.neverSent) ? .slow : .down)
                }
                check()
            }
            if !ok { set(.slow) }
        }
        run(primaryProbe) { p.primary = $0 }
        if let rp = replicaProbe { run(rp) { p.replica = $0 } }
        check()
        loop.schedule(afterMs: withinMs) { finish() }
    }
}
