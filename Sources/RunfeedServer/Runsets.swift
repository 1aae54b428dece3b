import RunfeedCore
import RunfeedIO

/// Why a list feed could not be resolved. Both are retryable for the client (5xx).
enum RunsetFailure: Error {
    case resolver(String)
    case database(String)
}

/// Finds the ids of the runs a list feed covers, newest first.
protocol MembershipResolver: AnyObject {
    var name: String { get }
    /// `demands`: the requests waiting for it (database resolvers drop the query once none wants it).
    func resolve(_ ctx: AuthContext, _ filter: ListFilter, limit: Int, demands: QueryDemands?,
                 _ done: @escaping (Result<[String], RunsetFailure>) -> Void)
}

/// Resolves membership in ClickHouse's `task_runs_v2` (filled by trigger.dev's replication).
final class ClickHouseResolver: MembershipResolver {  // loop-confined
    let name = "clickhouse"
    private let pool: ClickHousePool
    private let loop: EventLoop
    private let log: RunfeedLogger

    init(pool: ClickHousePool, loop: EventLoop, log: RunfeedLogger) {
        self.pool = pool
        self.loop = loop
        self.log = log
    }

    func resolve(_ ctx: AuthContext, _ filter: ListFilter, limit: Int, demands: QueryDemands?,
                 _ done: @escaping (Result<[String], RunsetFailure>) -> Void) {
        let tags: [String]
        let batchId: String?
        let fromMs: Int64?
        switch filter.kind {
        case .tags(let t):
            tags = t
            batchId = nil
            fromMs = filter.floorMs
        case .batch(let b):
            tags = []
            batchId = b
            fromMs = nil
        }
        let sql = ClickHouseSQL.runIdsQuery(organizationId: ctx.organizationId, projectId: ctx.projectId,
                                            environmentId: ctx.envId, tags: tags, fromMs: fromMs,
                                            batchId: batchId, limit: limit)
        WorkerMetrics.shared.membershipQueries(name).increment()
        let started = monotonicUs()
        pool.query(sql, on: loop) { [log] result in
            if case .failure(let e) = result { log.error("clickhouse resolve failed: \(e.description)") }
            WorkerMetrics.shared.clickhouseLatency.record(Double(monotonicUs() - started) / 1e6)
            WorkerMetrics.shared.clickhouseQueries.increment()
            if case .failure = result { WorkerMetrics.shared.clickhouseErrors.increment() }
            done(result.map { ClickHouseSQL.parseTabSeparatedColumn($0) }
                .mapError { RunsetFailure.resolver($0.description) })
        }
    }
}

/// Resolves membership in Postgres with the indexes trigger.dev already has (`"runTags"` GIN,
/// `("runtimeEnvironmentId","batchId")`), for deployments without ClickHouse.
final class PostgresResolver: MembershipResolver {
    let name = "postgres"
    private let db: LoopDatabase
    init(db: LoopDatabase) { self.db = db }

    func resolve(_ ctx: AuthContext, _ filter: ListFilter, limit: Int, demands: QueryDemands?,
                 _ done: @escaping (Result<[String], RunsetFailure>) -> Void) {
        let q: (sql: String, params: [String?])
        switch filter.kind {
        case .tags(let tags):
            q = PostgresListSQL.tags(envId: ctx.envId, tags: tags, fromMs: filter.floorMs, limit: limit)
        case .batch(let batchId):
            q = PostgresListSQL.batch(envId: ctx.envId, batchId: batchId, limit: limit)
        }
        WorkerMetrics.shared.membershipQueries(name).increment()
        // On the replica once it has applied every commit made before now (the resolve's start).
        db.query(q.sql, q.params, db.need(freshAfter: monotonicUs()), demands: demands) { result in
            done(result.map { $0.rows.compactMap { $0.first ?? nil } }.mapError { RunsetFailure.database($0.description) })
        }
    }
}

/// Resolve + hydrate, cached for a second and single-flighted per filter, behind an admission gate, so a
/// burst of identical subscriptions costs one membership query and one hydrate.
/// One resolved set: the member rows and when the membership query started (wall µs). Change records that
/// arrived after that moment may not be reflected in it.
struct Runset {
    var rows: [RunRow]
    var resolvedAtUs: Int64
    /// What is worked out once per resolve and shared by every answer built from it (cached copies too).
    let memo = RunsetMemo()
}

final class RunsetMemo {
    /// The view of a client sent every row (a snapshot), and the same as the shared store's base text.
    var snapshotView: ListView?
    var snapshotBase: String?
    /// Snapshot bodies (every row as an insert, then up-to-date) by `Server.snapshotBodyKey`: the same for every
    /// snapshot answered from this resolve with those columns and that API version.
    var snapshotBodies: [String: String] = [:]
}

final class RunsetService {
    private let resolver: MembershipResolver
    private let db: LoopDatabase
    private let log: RunfeedLogger
    private let limit: Int
    private var cache: BoundedTTLCache<String, Runset>
    private var inflight: [String: Flight] = [:]
    private var gate: AdmissionGate
    private var waiting: [UInt64: () -> Void] = [:]
    private var nextTicket: UInt64 = 1


    var resolverName: String { resolver.name }
    /// Told about every hydrated row and when its read started (the run store keeps them briefly).
    var onHydrated: ((_ envId: String, _ rows: [RunRow], _ startedAt: Int64) -> Void)?

    init(resolver: MembershipResolver, db: LoopDatabase, log: RunfeedLogger, limit: Int, ttlMs: Int64, maxEntries: Int, admissionLimit: Int) {
        self.resolver = resolver
        self.db = db
        self.log = log
        self.limit = limit
        cache = BoundedTTLCache(ttlMs: ttlMs, maxEntries: maxEntries)
        gate = AdmissionGate(limit: admissionLimit)
    }

    func purgeExpired(nowMs: Int64) { cache.purgeExpired(nowMs: nowMs) }

    /// The rows of the runs `filter` covers in `ctx`'s environment, newest first, each re-checked
    /// against the authoritative Postgres row. A cached or in-flight resolve is shared only if it started
    /// at or after `notBeforeUs` (wall µs): a poll whose client already holds a view read at some moment
    /// must not be answered from an older one, or changes in between would wait for the backstop.
    func runset(_ ctx: AuthContext, _ filter: ListFilter, notBeforeUs: Int64 = 0, demand: Demand? = nil,
                _ done: @escaping (Result<Runset, RunsetFailure>) -> Void) {
        // Rows always carry every column (skipping happens at encoding), so the key ignores skipColumns.
        let key = filter.cacheKey(envId: ctx.envId, limit: limit, columns: .all)
        if let set = cache.get(key, nowMs: monotonicMs()), set.resolvedAtUs >= notBeforeUs {
            WorkerMetrics.shared.runsetHit.increment()
            done(.success(set))
            return
        }
        if let flight = inflight[key] {
            WorkerMetrics.shared.runsetCoalesced.increment()
            if flight.startedAtUs.map({ $0 >= notBeforeUs }) ?? true {
                flight.waiters.append(done)
                flight.demands.add(demand)
            } else {
                flight.next.append(done)
                flight.nextDemands.append(demand)
            }
            return
        }
        start(ctx, filter, key: key, waiters: [done], demands: QueryDemands(demand))
    }

    private final class Flight {
        /// When the membership query started (wall µs); nil while waiting for admission (it will start later).
        var startedAtUs: Int64?
        var waiters: [(Result<Runset, RunsetFailure>) -> Void]
        /// Callers that need a resolve started after this one's: a new resolve when this one ends.
        var next: [(Result<Runset, RunsetFailure>) -> Void] = []
        /// Who waits for this resolve (its queries are dropped once none does), and for the next one.
        let demands: QueryDemands
        var nextDemands: [Demand?] = []
        init(_ waiters: [(Result<Runset, RunsetFailure>) -> Void], demands: QueryDemands) {
            self.waiters = waiters
            self.demands = demands
        }
    }

    private func start(_ ctx: AuthContext, _ filter: ListFilter, key: String,
                       waiters: [(Result<Runset, RunsetFailure>) -> Void], demands: QueryDemands) {
        WorkerMetrics.shared.runsetMiss.increment()
        let flight = Flight(waiters, demands: demands)
        inflight[key] = flight
        admit { [self] in
            let resolvedAtUs = wallUs()
            flight.startedAtUs = resolvedAtUs
            resolver.resolve(ctx, filter, limit: limit, demands: demands) { [self] result in
                switch result {
                case .failure(let e):
                    finish(key, ctx, filter, .failure(e))
                case .success(var ids):
                    if ids.count > limit {
                        WorkerMetrics.shared.runsetTruncated.increment()
                        log.warning("list feed matched more than \(limit) runs; serving the newest \(limit) env=\(ctx.envId)")
                        ids.removeLast(ids.count - limit)
                    }
                    hydrate(envId: ctx.envId, ids: ids, freshAfter: monotonicUs(), demands: demands) { [self] hydrated in
                        // Newest first by the authoritative createdAt (ClickHouse 18.16 keeps whole seconds).
                        finish(key, ctx, filter, hydrated.map { rows in
                            Runset(rows: rows.filter { filter.contains($0) }.sorted { ($0.createdAtMs, $0.id) > ($1.createdAtMs, $1.id) },
                                   resolvedAtUs: resolvedAtUs)
                        })
                    }
                }
            }
        }
    }

    private func finish(_ key: String, _ ctx: AuthContext, _ filter: ListFilter, _ result: Result<Runset, RunsetFailure>) {
        if case .success(let set) = result { cache.set(key, set, nowMs: monotonicMs()) }
        let flight = inflight.removeValue(forKey: key)
        if let next = gate.release(), let run = waiting.removeValue(forKey: next) { run() }
        if let flight, !flight.next.isEmpty {
            start(ctx, filter, key: key, waiters: flight.next, demands: QueryDemands(flight.nextDemands.compactMap { $0 }))
        }
        for w in flight?.waiters ?? [] { w(result) }
    }

    private func admit(_ work: @escaping () -> Void) {
        let ticket = nextTicket
        nextTicket += 1
        if gate.acquire(ticket) {
            work()
        } else {
            waiting[ticket] = work
        }
    }

    /// Reads full rows by id (one query per 1,000 ids), keeping the order of `ids`, as of a moment at or after
    /// `freshAfter` (monotonic µs; the replica once it has applied every commit made before then). Runs a replica
    /// answer is missing are read on the primary (`readFromPrimary`: every row there).
    func hydrate(envId: String, ids: [String], freshAfter: Int64, demands: QueryDemands? = nil, fromPrimary: Bool = false,
                 _ done: @escaping (Result<[RunRow], RunsetFailure>) -> Void) {
        guard !ids.isEmpty else {
            done(.success([]))
            return
        }
        let chunks = LoopDatabase.chunks(ids)
        var byId: [String: RunRow] = [:]
        var remaining = chunks.count
        var failed: RunsetFailure?
        // When the read counts as started: the earliest effective start of its queries.
        var startedAt = Int64.max
        let need: ReadNeed = fromPrimary ? .primary : db.need(freshAfter: freshAfter)
        func chunkDone() {
            remaining -= 1
            guard remaining == 0 else { return }
            if let failed { done(.failure(failed)); return }
            let rows = ids.compactMap { byId[$0] }
            self.onHydrated?(envId, rows, startedAt)
            done(.success(rows))
        }
        for chunk in chunks {
            WorkerMetrics.shared.listHydrates.increment()
            db.readRuns(envId: envId, ids: chunk, need, demands: demands) { [self] result, info in
                switch result {
                case .failure(let e):
                    failed = .database(e.description)
                    chunkDone()
                case .success(let rows):
                    byId.merge(rows) { a, _ in a }
                    startedAt = min(startedAt, info.startedAt)
                    let missing = chunk.filter { rows[$0] == nil }
                    guard !missing.isEmpty, info.fromReplica else { return chunkDone() }
                    // Missing on the replica: the primary says whether those runs exist.
                    WorkerMetrics.shared.replicaFallback(.miss).increment()
                    db.readRuns(envId: envId, ids: missing, .primary, demands: demands) { result, info in
                        switch result {
                        case .failure(let e): failed = .database(e.description)
                        case .success(let rows):
                            byId.merge(rows) { a, _ in a }
                            startedAt = min(startedAt, info.startedAt)
                        }
                        chunkDone()
                    }
                }
            }
        }
    }
}
