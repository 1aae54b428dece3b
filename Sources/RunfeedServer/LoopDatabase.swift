import RunfeedCore
import RunfeedIO

/// Which database a statement may go to.
enum ReadNeed: Equatable {
    /// The primary only (writes, reads that must be current, `RUN_READS_FROM_PRIMARY`).
    case primary
    /// Any answer will do (run, batch and credential lookups): the replica when it is up. The caller falls back
    /// to the primary on a miss.
    case lookup
    /// The answer must reflect every commit made visible before this moment (monotonic µs): the replica once
    /// its watermark has reached it (waiting at most the gate's longest wait), else the primary.
    case fresh(afterUs: Int64)
}

/// The Postgres pools as seen from the event loop: queries run on the pools' threads, completions come back
/// on the loop thread. With a read replica, reads are routed by the replica gate (`ReplicaGate`).
final class LoopDatabase {
    let primary: PostgresPool
    let replica: PostgresPool?
    let monitor: ReplicaMonitor
    let loop: EventLoop
    let log: RunfeedLogger
    /// Every read on the primary (`…RUN_READS_FROM_PRIMARY=1`, or no replica).
    let readsFromPrimary: Bool
    private let statementTimeoutUs: Int64
    /// A pool counts as stalled when a statement has waited or run this long (1 s), or one ended at its deadline
    /// without an answer within this long.
    let stallUs: Int64

    init(config: ServerConfig, loop: EventLoop, log: RunfeedLogger) {
        self.loop = loop
        self.log = log
        statementTimeoutUs = config.pgStatementTimeoutMs * 1000
        stallUs = 1_000_000
        primary = PostgresPool(conninfo: config.databaseURL, size: config.pgPoolSize,
                               statementTimeoutMs: Int(config.pgStatementTimeoutMs), queueLimit: config.pgQueueLimit, name: "pg")
        if let url = config.replicaURL {
            replica = PostgresPool(conninfo: url, size: config.replicaPoolSize,
                                   statementTimeoutMs: Int(config.pgStatementTimeoutMs), queueLimit: config.pgQueueLimit,
                                   name: "pg-replica")
        } else {
            replica = nil
        }
        readsFromPrimary = replica == nil || config.runReadsFromPrimary
        monitor = ReplicaMonitor(config: config, loop: loop, log: log)
    }

    /// Whether the primary pool is not keeping up: its queue is full, a statement has waited or run for `stallUs`,
    /// or one ended at its deadline without an answer within the last `stallUs`.
    var primaryStalled: Bool { Self.stalled(primary, stallUs: stallUs) }

    /// The primary, or the replica when reads go there, is not keeping up.
    var stalled: Bool {
        primaryStalled || (!readsFromPrimary && replica.map { Self.stalled($0, stallUs: stallUs) } ?? false)
    }

    static func stalled(_ pool: PostgresPool, stallUs: Int64) -> Bool {
        let l = pool.load
        // A statement waiting or running for `stallUs`, or one that ended at its deadline within the last `stallUs`
        // (the state holds between such statements; statements of other tables answering do not clear it).
        return l.queued >= pool.queueLimit || l.oldestWaitUs >= stallUs || l.longestRunningUs >= stallUs
            || l.sinceTimedOutUs < stallUs
    }

    /// Runs one statement. `demands`: the requests (or held polls) waiting for it — it is dropped unsent once
    /// none of them wants it any more, and cancelled at the latest of their deadlines; without any, its deadline
    /// is the statement timeout.
    /// `versioned`: the rows carry read times that order versions (`RunRow.readAtUs`): a replica answer gets its
    /// exact read time (`ReplicaLabel`), or is done again on the primary when it cannot be pinned down.
    func query(_ sql: String, _ params: [String?], _ need: ReadNeed = .primary, demands: QueryDemands? = nil,
               versioned: Bool = false, _ done: @escaping (Result<PGRows, PGError>) -> Void) {
        guard !readsFromPrimary, need != .primary, let replica else {
            submit(primary, target: .primary, sql, params, demands: demands, watermark: nil, done)
            return
        }
        var freshAfter: Int64?
        if case .fresh(let x) = need { freshAfter = x }
        monitor.route(freshAfterUs: freshAfter) { [self] route in
            switch route {
            case .replica(let w), .replicaAfterWait(let w):
                // A watermark: a standby whose snapshot must be pinned down (nil: a lookup, or a server not in recovery).
                let bracket = versioned && w != nil
                submit(replica, target: .replica, sql, params, demands: demands, watermark: w, bracket: bracket) { [self] result in
                    if case .failure(let e) = result, e.kind == .connection || e.kind == .timeout {
                        // The replica failed this read: the primary answers it (the gate marks the replica down).
                        monitor.replicaFailed()
                        WorkerMetrics.shared.replicaFallback(.error).increment()
                        submit(primary, target: .primary, sql, params, demands: demands, watermark: nil, done)
                        return
                    }
                    if bracket, case .success(var rows) = result, let w {
                        guard let label = ReplicaLabel.readAtUs(watermarkDbUs: w.dbUs, replayedBeforeUs: rows.replayedBeforeUs,
                                                                replayedAfterUs: rows.replayedAfterUs) else {
                            // Replay moved during the statement: its snapshot cannot be placed exactly.
                            WorkerMetrics.shared.replicaFallback(.moving).increment()
                            submit(primary, target: .primary, sql, params, demands: demands, watermark: nil, done)
                            return
                        }
                        rows.readAtOverrideUs = label
                        done(.success(rows))
                        return
                    }
                    done(result)
                }
            case .primary:
                submit(primary, target: .primary, sql, params, demands: demands, watermark: nil, done)
            }
        }
    }

    /// What a read that must reflect every commit made before `freshAfter` (monotonic µs) asks for.
    func need(freshAfter: Int64) -> ReadNeed { readsFromPrimary ? .primary : .fresh(afterUs: freshAfter) }

    /// A lookup (run, batch, credentials): on the replica when there is one; when the replica's answer has
    /// nothing `found` accepts, the primary is asked (a run or key created a moment ago is never reported
    /// missing because the replica has not applied it yet).
    func lookup(_ sql: String, _ params: [String?], demands: QueryDemands? = nil, found: @escaping (PGRows) -> Bool = { !$0.rows.isEmpty },
                _ done: @escaping (Result<PGRows, PGError>) -> Void) {
        query(sql, params, readsFromPrimary ? .primary : .lookup, demands: demands) { [self] result in
            if case .success(let rows) = result, rows.fromReplica, !found(rows) {
                WorkerMetrics.shared.replicaFallback(.miss).increment()
                query(sql, params, .primary, demands: demands, done)
                return
            }
            done(result)
        }
    }

    private func submit(_ pool: PostgresPool, target: DBTarget, _ sql: String, _ params: [String?], demands: QueryDemands?,
                        watermark: ReplicaWatermark?, bracket: Bool = false, _ done: @escaping (Result<PGRows, PGError>) -> Void) {
        let started = monotonicUs()
        let metrics = WorkerMetrics.shared.postgres(target)
        let deadline = statementTimeoutUs > 0 ? started + statementTimeoutUs : Int64.max
        let accepted = pool.submit(sql, params, deadlineUs: deadline, demands: demands, bracket: bracket, on: loop) { [log] result in
            if case .failure(let e) = result, !e.neverSent { log.error("postgres (\(target.rawValue)) query failed: \(e.description)") }
            var result = result
            switch result {
            case .success(var rows):
                metrics.latency.record(Double(monotonicUs() - started) / 1e6)
                // A bracketed read is three statements (replay time, the read, replay time).
                metrics.queries.increment(by: bracket ? 3 : 1)
                if target == .replica {
                    rows.fromReplica = true
                    rows.readAtOverrideUs = watermark?.dbUs
                    rows.effectiveMonoUs = watermark?.monoUs
                }
                result = .success(rows)
            case .failure(let e):
                switch e.kind {
                case .dropped(let gone): (gone ? metrics.droppedClientGone : metrics.droppedDeadline).increment()
                case .saturated: metrics.droppedQueueFull.increment()
                case .timeout:
                    metrics.queries.increment()
                    metrics.errors.increment()
                    metrics.timeouts.increment()
                default:
                    metrics.queries.increment()
                    metrics.errors.increment()
                }
            }
            done(result)
        }
        if !accepted {
            metrics.droppedQueueFull.increment()
            // Answered after the caller's turn, as an accepted statement's would be.
            let box = LoopBox(done, loop: loop)
            loop.execute { box.value(.failure(PGError(.saturated, "the \(target.rawValue) query queue is full"))) }
        }
    }
}

/// A database role in metrics and logs.
enum DBTarget: String, CaseIterable {
    case primary
    case replica
}

extension LoopDatabase {
    /// Full rows of up to 1,000 runs of one environment by id, in one `id = ANY(…)` query (tag and
    /// batch hydrates, batched backstop reads). `done` also gets when the read counts as started (monotonic µs).
    func readRuns(envId: String, ids: [String], _ need: ReadNeed = .primary, demands: QueryDemands? = nil,
                  _ done: @escaping (Result<[String: RunRow], PGError>, ReadInfo) -> Void) {
        let q = PostgresListSQL.hydrate(envId: envId, runIds: ids, columns: .all)
        let submitted = monotonicUs()
        query(q.sql, q.params, need, demands: demands, versioned: true) { result in
            var info = ReadInfo(startedAt: submitted, fromReplica: false)
            done(result.map { got in
                info = ReadInfo(startedAt: got.effectiveMonoUs ?? submitted, fromReplica: got.fromReplica)
                var byId: [String: RunRow] = [:]
                // Read times from the database server's clock (one clock for every host); a replica read's is its
                // watermark.
                for values in got.rows {
                    if let r = RunRow(read: values, fallbackReadAtUs: got.startedAtUs, from: got) { byId[r.id] = r }
                }
                return byId
            }, info)
        }
    }

    /// When a read counts as started (monotonic µs: its submission on the primary, the watermark on the replica)
    /// and who served it.
    struct ReadInfo {
        var startedAt: Int64
        var fromReplica: Bool
    }

    /// `ids` in slices of at most 1,000, the most one `readRuns` query takes.
    static func chunks(_ ids: [String]) -> [[String]] {
        stride(from: 0, to: ids.count, by: 1000).map { Array(ids[$0..<min($0 + 1000, ids.count)]) }
    }
}

extension RunRow {
    /// A row of `rows`: its read time is the replica's watermark when the replica served it.
    init?(read values: [String?], fallbackReadAtUs: Int64, from rows: PGRows) {
        self.init(read: values, fallbackReadAtUs: fallbackReadAtUs)
        if rows.fromReplica {
            fromReplica = true
            if let w = rows.readAtOverrideUs { readAtUs = w }
        }
    }
}
