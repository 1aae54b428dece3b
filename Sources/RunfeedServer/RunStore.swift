import RunfeedCore
import RunfeedIO

/// What the run route needs before streaming: the internal id and the fields the scope check reads.
struct RunLookup {
    var id: String
    var friendlyId: String
    var taskIdentifier: String
    var runTags: [String]
    var batchFriendlyId: String?
}

/// Reads runs from Postgres on behalf of the loop: route lookups (cached briefly), and row reads that
/// are single-flighted per run, so one read serves every feed waiting on that run.
final class RunStore {
    private let db: LoopDatabase
    private var lookups: BoundedTTLCache<LookupKey, RunLookup>
    private var rows: BoundedTTLCache<RunKey, CachedRow>
    /// Row reads in flight, single-flighted per run (the decisions); `readDemands`: who waits for each.
    private var reads: FreshReads<RunKey, ReadWaiter>
    private var readDemands: [RunKey: QueryDemands] = [:]
    private var lookupFlights = SingleFlight<LookupKey, Result<RunLookup?, PGError>>()
    /// Who waits for each lookup in flight.
    private var lookupDemands: [LookupKey: QueryDemands] = [:]
    /// Backstop reads waiting to go out together, per environment (see `readRowBatched`).
    private var batched: [String: [BatchedRead]] = [:]

    private struct BatchedRead {
        let runId: String
        let freshAfter: Int64
        let demand: Demand?
        let done: (Result<RunRow?, PGError>) -> Void
    }
    private var batchTimer: EventLoop.TimerID?
    static let batchWindowMs: Int64 = 50

    struct CachedRow {
        var row: RunRow?
        /// Monotonic time (µs) the read that produced it started.
        var startedAt: Int64
    }

    /// One caller of `readRow`, waiting for a read in flight (`reads`).
    private struct ReadWaiter {
        let demand: Demand?
        let done: (Result<RunRow?, PGError>) -> Void
    }

    static let minimumRowRetentionMs: Int64 = 2_000

    init(db: LoopDatabase, lookupTtlMs: Int64, rowTtlMs: Int64, maxEntries: Int) {
        self.db = db
        reads = FreshReads(readsCountFromSend: db.readsFromPrimary)
        lookups = BoundedTTLCache(ttlMs: lookupTtlMs, maxEntries: maxEntries)
        // Kept for at least 2 s: every reader checks when the read started (`freshAfter`), so keeping a row
        // longer never serves it staler than asked — a snapshot still takes only reads younger than
        // `rowTtlMs` — while the clients of a large fan-out, which re-arm over a second or more, find the
        // read that answered them instead of starting new ones.
        rows = BoundedTTLCache(ttlMs: max(rowTtlMs, Self.minimumRowRetentionMs), maxEntries: maxEntries)
    }

    /// The run with this friendly id in this environment (nil: not there). Misses are never cached:
    /// a run created a moment ago must be found on the next try. Read on the replica when there is one; a miss
    /// there is asked of the primary, so a run that exists is never reported missing.
    func lookup(envId: String, friendlyId: String, demand: Demand? = nil, _ done: @escaping (Result<RunLookup?, PGError>) -> Void) {
        let key = LookupKey(kind: .run, envId: envId, friendlyId: friendlyId)
        if let hit = lookups.get(key, nowMs: monotonicMs()) {
            done(.success(hit))
            return
        }
        guard lookupFlights.join(key, done) else {
            lookupDemands[key]?.add(demand)
            return
        }
        let demands = QueryDemands(demand)
        lookupDemands[key] = demands
        let sql = """
            SELECT r."id", r."friendlyId", r."taskIdentifier", r."runTags", b."friendlyId"
            FROM "TaskRun" r LEFT JOIN "BatchTaskRun" b ON b."id" = r."batchId"
            WHERE r."friendlyId" = $1 AND r."runtimeEnvironmentId" = $2 LIMIT 1
            """
        db.lookup(sql, [friendlyId, envId], demands: demands) { [self] result in
            let found: Result<RunLookup?, PGError> = result.map { rows in
                guard let r = rows.rows.first, let id = r[0] else { return nil }
                let found = RunLookup(id: id, friendlyId: r[1] ?? friendlyId, taskIdentifier: r[2] ?? "",
                                      runTags: r[3].flatMap { PGText.parseArray($0)?.compactMap { $0 } } ?? [],
                                      batchFriendlyId: r[4])
                lookups.set(key, found, nowMs: monotonicMs())
                return found
            }
            lookupDemands.removeValue(forKey: key)
            for w in lookupFlights.complete(key) { w(found) }
        }
    }

    /// Drops expired entries, so cached rows (whose payloads can be large) never outlive their TTL.
    func purgeExpired(nowMs: Int64) {
        lookups.purgeExpired(nowMs: nowMs)
        rows.purgeExpired(nowMs: nowMs)
    }

    /// The internal id of the batch with this friendly id in this environment (nil: not there).
    func lookupBatch(envId: String, friendlyId: String, demand: Demand? = nil, _ done: @escaping (Result<String?, PGError>) -> Void) {
        let key = LookupKey(kind: .batch, envId: envId, friendlyId: friendlyId)
        if let hit = lookups.get(key, nowMs: monotonicMs()) {
            done(.success(hit.id))
            return
        }
        guard lookupFlights.join(key, { done($0.map { $0?.id }) }) else {
            lookupDemands[key]?.add(demand)
            return
        }
        let demands = QueryDemands(demand)
        lookupDemands[key] = demands
        let sql = "SELECT \"id\" FROM \"BatchTaskRun\" WHERE \"friendlyId\" = $1 AND \"runtimeEnvironmentId\" = $2 LIMIT 1"
        db.lookup(sql, [friendlyId, envId], demands: demands) { [self] result in
            let found: Result<RunLookup?, PGError> = result.map { rows in
                guard let id = rows.rows.first?.first ?? nil else { return nil }
                let found = RunLookup(id: id, friendlyId: friendlyId, taskIdentifier: "", runTags: [], batchFriendlyId: nil)
                lookups.set(key, found, nowMs: monotonicMs())
                return found
            }
            lookupDemands.removeValue(forKey: key)
            for w in lookupFlights.complete(key) { w(found) }
        }
    }

    /// A row already read by a read that started at or after `freshAfter` (monotonic µs), if still cached.
    func cachedRow(envId: String, runId: String, freshAfter: Int64) -> RunRow? {
        fresh(Self.rowKey(envId, runId), after: freshAfter)?.row
    }

    private static func rowKey(_ envId: String, _ runId: String) -> RunKey { RunKey(envId: envId, runId: runId) }

    /// The cached read of `key` if it started at or after `after` (monotonic µs).
    private func fresh(_ key: RunKey, after: Int64) -> CachedRow? {
        guard let c = rows.get(key, nowMs: monotonicMs()), c.startedAt >= after else { return nil }
        return c
    }

    /// Keeps rows read elsewhere (a tag or batch feed's hydrate that started at `startedAt`) for the
    /// polls that re-arm after them.
    func remember(envId: String, rows read: [RunRow], startedAt: Int64) {
        let now = monotonicMs()
        for row in read {
            let key = Self.rowKey(envId, row.id)
            if fresh(key, after: startedAt) != nil { continue }
            rows.set(key, CachedRow(row: row, startedAt: startedAt), nowMs: now)
        }
    }

    /// Reads one run's full row. The answer reflects the database at some moment at or after
    /// `freshAfter` (monotonic µs): a cached row or an in-flight read that started late enough is
    /// shared; otherwise a new read starts (after the in-flight one, if any). With a replica, the read goes there
    /// once the replica gate says it has applied every commit made before `freshAfter`.
    func readRow(envId: String, runId: String, freshAfter: Int64, demand: Demand? = nil,
                 _ done: @escaping (Result<RunRow?, PGError>) -> Void) {
        let key = Self.rowKey(envId, runId)
        if let c = fresh(key, after: freshAfter) {
            done(.success(c.row))
            return
        }
        let now = monotonicUs()
        switch reads.want(key, freshAfter: freshAfter, nowUs: now, waiter: ReadWaiter(demand: demand, done: done)) {
        case .start(let fresh, let waiters):
            start(key: key, envId: envId, runId: runId, freshAfter: fresh, sent: now, waiters: waiters)
        case .joinedCurrent:
            readDemands[key]?.add(demand)
        case .queuedNext:
            break
        }
    }

    /// Reads one run's row on the primary, whatever a cache or the replica holds (a replica answer that was
    /// missing the run, or older than its change record).
    func readRowFromPrimary(envId: String, runId: String, demand: Demand? = nil,
                            _ done: @escaping (Result<RunRow?, PGError>) -> Void) {
        let key = Self.rowKey(envId, runId)
        let startedAt = monotonicUs()
        WorkerMetrics.shared.runRowReads.increment()
        let sql = "SELECT \(PostgresListSQL.readColumns) FROM \"TaskRun\" WHERE \"id\" = $1 AND \"runtimeEnvironmentId\" = $2 LIMIT 1"
        db.query(sql, [runId, envId], .primary, demands: QueryDemands(demand)) { [self] result in
            let mapped: Result<RunRow?, PGError> = result.map { got in
                got.rows.first.flatMap { RunRow(read: $0, fallbackReadAtUs: got.startedAtUs, from: got) }
            }
            if case .success(let row) = mapped, fresh(key, after: startedAt) == nil {
                rows.set(key, CachedRow(row: row, startedAt: startedAt), nowMs: monotonicMs())
            }
            done(mapped)
        }
    }

    /// `readRow` for reads that may wait a moment (the backstop re-read at each hold deadline): a read
    /// that started late enough is shared as usual, otherwise the run joins a batch that goes out within
    /// `batchWindowMs` as one `id = ANY(…)` query per environment. Holding thousands of polls then costs a
    /// few queries a second instead of one per poll per hold. While the primary is stalled (and reads go there)
    /// the read fails at once: the poll is answered on what it holds.
    func readRowBatched(envId: String, runId: String, freshAfter: Int64, demand: Demand? = nil,
                        _ done: @escaping (Result<RunRow?, PGError>) -> Void) {
        let key = Self.rowKey(envId, runId)
        if let c = fresh(key, after: freshAfter) {
            done(.success(c.row))
            return
        }
        if reads.joinIfFresh(key, freshAfter: freshAfter, waiter: ReadWaiter(demand: demand, done: done)) {
            readDemands[key]?.add(demand)
            return
        }
        if db.readsFromPrimary && db.primaryStalled {
            done(.failure(PGError(.saturated, "the primary is not keeping up")))
            return
        }
        batched[envId, default: []].append(BatchedRead(runId: runId, freshAfter: freshAfter, demand: demand, done: done))
        if batchTimer == nil {
            batchTimer = db.loop.schedule(afterMs: Self.batchWindowMs) { [weak self] in self?.flushBatched() }
        }
    }

    private func flushBatched() {
        batchTimer = nil
        let pending = batched
        batched = [:]
        for (envId, waiters) in pending {
            let ids = Array(Set(waiters.map(\.runId))).sorted()
            for chunk in LoopDatabase.chunks(ids) {
                let chunkSet = Set(chunk)
                let mine = waiters.filter { chunkSet.contains($0.runId) }
                // Fresh enough for every read it answers.
                let freshAfter = mine.map(\.freshAfter).max() ?? monotonicUs()
                WorkerMetrics.shared.runRowReads.increment()
                db.readRuns(envId: envId, ids: chunk, db.need(freshAfter: freshAfter),
                            demands: QueryDemands(mine.compactMap(\.demand))) { [self] result, info in
                    let startedAt = info.startedAt
                    if case .success(let byId) = result {
                        let now = monotonicMs()
                        for id in chunk where fresh(Self.rowKey(envId, id), after: startedAt) == nil {
                            rows.set(Self.rowKey(envId, id), CachedRow(row: byId[id], startedAt: startedAt), nowMs: now)
                        }
                    }
                    for w in mine {
                        w.done(result.map { $0[w.runId] })
                    }
                }
            }
        }
    }

    /// Sends the read `reads` asked for at `sent` (monotonic µs); `waiters` wait for it (more may join while it
    /// runs). `reads` counts it as started at `sent` on the primary; a replica read is worth the watermark the
    /// gate waits for (≥ freshAfter).
    private func start(key: RunKey, envId: String, runId: String, freshAfter: Int64, sent: Int64, waiters: [ReadWaiter]) {
        WorkerMetrics.shared.runRowReads.increment()
        let sql = "SELECT \(PostgresListSQL.readColumns) FROM \"TaskRun\" WHERE \"id\" = $1 AND \"runtimeEnvironmentId\" = $2 LIMIT 1"
        let demands = QueryDemands(waiters.compactMap(\.demand))
        readDemands[key] = demands
        db.query(sql, [runId, envId], db.need(freshAfter: freshAfter), demands: demands, versioned: true) { [self] result in
            if case .success(let got) = result, got.fromReplica, got.rows.isEmpty {
                // Missing on the replica: the primary says whether the run exists.
                WorkerMetrics.shared.replicaFallback(.miss).increment()
                db.query(sql, [runId, envId], .primary, demands: demands) { [self] result in
                    finishRead(key: key, envId: envId, runId: runId, result: result, startedAt: sent)
                }
                return
            }
            finishRead(key: key, envId: envId, runId: runId, result: result,
                       startedAt: (try? result.get())?.effectiveMonoUs ?? sent)
        }
    }

    private func finishRead(key: RunKey, envId: String, runId: String, result: Result<PGRows, PGError>, startedAt: Int64) {
        let mapped: Result<RunRow?, PGError> = result.map { got in
            // The read time from the database server's clock (one clock for every host); a replica's watermark.
            got.rows.first.flatMap { RunRow(read: $0, fallbackReadAtUs: got.startedAtUs, from: got) }
        }
        if case .success(let row) = mapped, fresh(key, after: startedAt) == nil {
            rows.set(key, CachedRow(row: row, startedAt: startedAt), nowMs: monotonicMs())
        }
        let now = monotonicUs()
        let action = reads.finished(key, nowUs: now)
        readDemands.removeValue(forKey: key)
        if let next = action.start {
            start(key: key, envId: envId, runId: runId, freshAfter: next.freshAfter, sent: now, waiters: next.waiters)
        }
        for w in action.answer { w.done(mapped) }
    }
}

/// A run or batch looked up by its friendly id in an environment.
struct LookupKey: Hashable {
    enum Kind: Hashable { case run, batch }
    let kind: Kind
    let envId: String
    let friendlyId: String
}
