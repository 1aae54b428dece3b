import RunfeedCore
import RunfeedIO

/// One tag-list or batch request after auth, validation and lookup.
final class ListFeedRequest {
    let conn: FastCGIConnection
    let ctx: AuthContext
    let filter: ListFilter
    let handle: String
    let columns: ColumnSet
    let legacyHeaderNames: Bool
    let apiVersion: String?
    let extraHeaders: [(String, String)]

    init(conn: FastCGIConnection, ctx: AuthContext, filter: ListFilter, handle: String, columns: ColumnSet,
         legacyHeaderNames: Bool, apiVersion: String?, extraHeaders: [(String, String)]) {
        self.conn = conn
        self.ctx = ctx
        self.filter = filter
        self.handle = handle
        self.columns = columns
        self.legacyHeaderNames = legacyHeaderNames
        self.apiVersion = apiVersion
        self.extraHeaders = extraHeaders
    }

    var envId: String { ctx.envId }
    /// Working sets are per environment and per connection handle.
    var workingSetKey: String { ctx.envId + "\u{0}" + handle }
}

/// A parked live poll of a list feed.
final class LiveListFeed {
    let id: UInt64
    let request: ListFeedRequest
    let floorMs: Int64
    let parking: PollParking
    var deadlinePassed = false
    /// A resolve or hydrate for this feed is in flight; notifications wait in `pendingRuns`.
    var busy = false
    var pendingRuns: Set<String> = []
    /// What this connection has been sent (`runId → updatedAt`), when this worker knows it; nil means
    /// only the offset floor is known (another worker answered the previous poll).
    var workingSet: [String: Int64]?

    init(id: UInt64, request: ListFeedRequest, floorMs: Int64, workingSet: [String: Int64]?, parking: PollParking) {
        self.id = id
        self.request = request
        self.floorMs = floorMs
        self.workingSet = workingSet
        self.parking = parking
    }
}

/// A connection's working set, with the offset of the response that last updated it. It is valid only
/// for a request that carries that same offset: if the client's previous poll was answered by another
/// worker, this copy is stale and the offset floor decides instead.
struct WorkingSet {
    var versions: [String: Int64]
    var offset: String
}

/// Held list feeds of this worker, the wake index over them, per-connection working sets and the
/// per-environment leading-edge coalescing of change records.
///
/// For each delivered batch of records the registry finds the feeds a record can match (by batch, by
/// tag, or every tag feed for a partial record), hydrates the union of their runs from Postgres once,
/// re-checks each row against each feed's filter (tags and createdAt from the authoritative row) and
/// diffs it against the feed's working set. A feed with nothing new keeps holding; at its deadline it
/// re-resolves in full (the backstop) and replaces its working set.
final class ListFeedRegistry {
    private let loop: EventLoop
    private let channels: EnvChannels
    private let runsets: RunsetService
    private let config: ServerConfig
    weak var server: Server?

    private var feeds: [UInt64: LiveListFeed] = [:]
    private var index = WakeIndex<UInt64>()
    private var workingSets: BoundedTTLCache<String, WorkingSet>
    private var coalescers: [String: LeadingEdgeCoalescer] = [:]
    private var coalesceTimers: [String: EventLoop.TimerID] = [:]
    private var nextId: UInt64 = 1


    init(loop: EventLoop, channels: EnvChannels, runsets: RunsetService, config: ServerConfig) {
        self.loop = loop
        self.channels = channels
        self.runsets = runsets
        self.config = config
        workingSets = BoundedTTLCache(ttlMs: config.workingSetTtlMs, maxEntries: config.workingSetMaxEntries)
        channels.onRecord.append { [weak self] env, record in self?.offer(env: env, record: record) }
        channels.onResubscribed.append { [weak self] env in self?.resubscribed(env: env) }
    }

    var count: Int { feeds.count }

    func purgeExpired(nowMs: Int64) { workingSets.purgeExpired(nowMs: nowMs) }

    // MARK: non-live

    /// Snapshot (`offset=-1`): every row as an insert. Catch-up (an offset with a known handle): the
    /// diff against the connection's working set. Either way the working set is replaced.
    func snapshot(_ request: ListFeedRequest, offset: OffsetParam) {
        runsets.runset(request.ctx, request.filter) { [self] result in
            switch result {
            case .failure:
                server?.fail(request.conn, .unavailable)
            case .success(let rows):
                let versions = rows.map { RunVersion(runId: $0.id, updatedAtMs: $0.updatedAtMs) }
                var emits: [(RunRow, String)]
                var offsetMs: Int64
                var previous: [String: Int64]?
                var floor: Int64 = 0
                switch offset {
                case .snapshot:
                    emits = rows.map { ($0, "insert") }
                    offsetMs = rows.map(\.updatedAtMs).max() ?? 0
                case .at(let o):
                    previous = validWorkingSet(request, offset: o.text)
                    floor = max(0, o.updatedAtMs)
                    let d = ListDiff.diff(versions, workingSet: previous, floorMs: floor)
                    emits = d.emits.map { (rows[$0.index], $0.operation) }
                    offsetMs = d.offsetMs
                }
                let sent = server?.answerList(request, rows: emits, offsetMs: offsetMs, live: false)
                store(request, ListDiff.replace(versions, previous: previous, floorMs: floor), offset: sent)
            }
        }
    }

    private func validWorkingSet(_ request: ListFeedRequest, offset: String) -> [String: Int64]? {
        guard let ws = workingSets.get(request.workingSetKey, nowMs: monotonicMs()), ws.offset == offset else { return nil }
        return ws.versions
    }

    private func store(_ request: ListFeedRequest, _ versions: [String: Int64]?, offset: String?) {
        if let versions, let offset {
            workingSets.set(request.workingSetKey, WorkingSet(versions: versions, offset: offset), nowMs: monotonicMs())
        } else {
            workingSets.remove(request.workingSetKey)
        }
    }

    // MARK: live

    func startLive(_ request: ListFeedRequest, offset: Offset) {
        let env = request.envId
        let parking = PollParking(loop: loop, channels: channels, envId: env, fd: request.conn.fd)
        parking.retainChannel()
        let feed = LiveListFeed(id: nextId, request: request, floorMs: max(0, offset.updatedAtMs),
                                workingSet: validWorkingSet(request, offset: offset.text), parking: parking)
        nextId += 1
        feeds[feed.id] = feed
        index.add(feed.id, envId: env, filter: request.filter)
        parking.arm(config, onDeadline: { [weak self] in self?.deadline(feed) }, onGone: { [weak self] in
            guard let self, self.feeds[feed.id] != nil else { return }
            WorkerMetrics.listAbort.increment()
            self.finish(feed, rows: [], offsetMs: feed.floorMs)
        })
        if !channels.covers(env, sinceMs: offset.tail) {
            // This worker was not listening during the client's gap (cold start, or the previous poll
            // was answered by another worker or host): resolve once before holding.
            WorkerMetrics.coldResolves.increment()
            fullResolve(feed, endsPoll: false)
            return
        }
        let missed = channels.replayed(env, sinceMs: offset.tail).filter { request.filter.mayMatch($0) }
        guard !missed.isEmpty else { return }
        // Rows read after their record arrived here (by the hydrate that woke the other feeds of this
        // change) already show it: a client re-arming after such a change costs no new read.
        let now = monotonicUs()
        var cached: [RunRow] = []
        for r in missed {
            guard let store = server?.store,
                  let freshAfter = channels.gapReadFreshAfter(env, runId: r.runId, sinceMs: offset.tail, covered: true,
                                                              nowUs: now),
                  let row = store.cachedRow(envId: env, runId: r.runId, freshAfter: freshAfter) else { break }
            cached.append(row)
        }
        if cached.count == missed.count {
            WorkerMetrics.listGapFromCache.increment()
            _ = deliver(feed, Self.newestFirst(cached.filter { request.filter.contains($0) }))
        } else {
            hydrateAndDeliver([feed.id: Set(missed.map(\.runId))], env: env)
        }
    }

    private func deadline(_ feed: LiveListFeed) {
        guard feeds[feed.id] != nil else { return }
        feed.deadlinePassed = true
        if !feed.busy { backstop(feed) }
    }

    private func backstop(_ feed: LiveListFeed) {
        WorkerMetrics.listBackstop.increment()
        fullResolve(feed, endsPoll: true)
    }

    /// Resolves the whole set, diffs it against the working set and replaces the working set.
    private func fullResolve(_ feed: LiveListFeed, endsPoll: Bool) {
        feed.busy = true
        runsets.runset(feed.request.ctx, feed.request.filter) { [self] result in
            feed.busy = false
            guard feeds[feed.id] != nil else { return }
            guard case .success(let rows) = result else {
                // Keep the working set; the client re-polls and the next backstop retries.
                if endsPoll { finish(feed, rows: [], offsetMs: feed.floorMs) } else { settle(feed) }
                return
            }
            let versions = rows.map { RunVersion(runId: $0.id, updatedAtMs: $0.updatedAtMs) }
            let d = ListDiff.diff(versions, workingSet: feed.workingSet, floorMs: feed.floorMs)
            feed.workingSet = ListDiff.replace(versions, previous: feed.workingSet, floorMs: feed.floorMs)
            if !d.emits.isEmpty {
                if endsPoll { WorkerMetrics.listBackstopDelivered.increment() }
                finish(feed, rows: d.emits.map { (rows[$0.index], $0.operation) }, offsetMs: d.offsetMs)
            } else if endsPoll {
                finish(feed, rows: [], offsetMs: d.offsetMs)
            } else {
                settle(feed)
            }
        }
    }

    /// After a resolve or hydrate that emitted nothing: run what arrived meanwhile, or hold.
    private func settle(_ feed: LiveListFeed) {
        guard feeds[feed.id] != nil, !feed.busy else { return }
        if feed.deadlinePassed {
            backstop(feed)
        } else if !feed.pendingRuns.isEmpty {
            let runs = feed.pendingRuns
            feed.pendingRuns = []
            hydrateAndDeliver([feed.id: runs], env: feed.request.envId)
        }
    }

    /// Hydrates the union of the runs once and hands each feed its rows.
    private func hydrateAndDeliver(_ wanted: [UInt64: Set<String>], env: String) {
        var targets: [UInt64: Set<String>] = [:]
        for (id, runs) in wanted {
            guard let feed = feeds[id] else { continue }
            if feed.busy {
                feed.pendingRuns.formUnion(runs)
            } else {
                feed.busy = true
                targets[id] = runs
            }
        }
        guard !targets.isEmpty else { return }
        let ids = Array(targets.values.reduce(into: Set<String>()) { $0.formUnion($1) }).sorted()
        runsets.hydrate(envId: env, ids: ids) { [self] result in
            let byId: [String: RunRow]
            switch result {
            case .success(let rows): byId = Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            case .failure: byId = [:]  // fall through to the backstop
            }
            for (id, runs) in targets {
                guard let feed = feeds[id] else { continue }
                feed.busy = false
                let rows = Self.newestFirst(runs.compactMap { byId[$0] }.filter { feed.request.filter.contains($0) })
                if !deliver(feed, rows) { settle(feed) }
            }
        }
    }

    private static func newestFirst(_ rows: [RunRow]) -> [RunRow] {
        rows.sorted { ($0.createdAtMs, $0.id) > ($1.createdAtMs, $1.id) }
    }

    /// The notify fast path: diff the rows against the working set and merge; emit if anything is new.
    private func deliver(_ feed: LiveListFeed, _ rows: [RunRow]) -> Bool {
        guard !rows.isEmpty else { return false }
        let versions = rows.map { RunVersion(runId: $0.id, updatedAtMs: $0.updatedAtMs) }
        let d = ListDiff.diff(versions, workingSet: feed.workingSet, floorMs: feed.floorMs)
        guard !d.emits.isEmpty else { return false }
        // Without a working set only the floor is known: it advances with this answer's offset, and no
        // partial working set is made up (it would turn every other member into an "insert").
        if feed.workingSet != nil { ListDiff.merge(&feed.workingSet!, versions) }
        WorkerMetrics.listNotify.increment()
        finish(feed, rows: d.emits.map { (rows[$0.index], $0.operation) }, offsetMs: max(d.offsetMs, feed.floorMs))
        return true
    }

    private func finish(_ feed: LiveListFeed, rows: [(RunRow, String)], offsetMs: Int64) {
        guard feeds.removeValue(forKey: feed.id) != nil else { return }
        feed.parking.unpark()
        index.remove(feed.id)
        let sent = server?.answerList(feed.request, rows: rows, offsetMs: offsetMs, live: true)
        store(feed.request, feed.workingSet, offset: sent)
    }

    /// Answers every held poll with `up-to-date` now (drain).
    func answerAll() {
        for feed in Array(feeds.values) { finish(feed, rows: [], offsetMs: feed.floorMs) }
    }

    // MARK: change records

    private func offer(env: String, record: ChangeRecord) {
        guard index.count(envId: env) > 0 else { return }
        var c = coalescers[env] ?? LeadingEdgeCoalescer(windowMs: config.coalesceWindowMs)
        let step = c.offer(record, nowMs: monotonicMs())
        coalescers[env] = c
        if case .deliverNow(let records, let endsAt) = step {
            route(env: env, records: records)
            armWindow(env: env, endsAt: endsAt)
        }
    }

    private func armWindow(env: String, endsAt: Int64) {
        guard coalesceTimers[env] == nil, config.coalesceWindowMs > 0 else { return }
        coalesceTimers[env] = loop.schedule(afterMs: endsAt - monotonicMs()) { [weak self] in
            guard let self else { return }
            self.coalesceTimers.removeValue(forKey: env)
            guard var c = self.coalescers[env] else { return }
            let (records, next) = c.windowEnded(nowMs: monotonicMs())
            if next == nil && records.isEmpty {
                self.coalescers.removeValue(forKey: env)
            } else {
                self.coalescers[env] = c
            }
            if !records.isEmpty { self.route(env: env, records: records) }
            if let next { self.armWindow(env: env, endsAt: next) }
        }
    }

    private func route(env: String, records: [ChangeRecord]) {
        var wanted: [UInt64: Set<String>] = [:]
        for r in records {
            for id in index.candidates(envId: env, record: r) { wanted[id, default: []].insert(r.runId) }
        }
        if !wanted.isEmpty { hydrateAndDeliver(wanted, env: env) }
    }

    /// Records published while the subscription was down are lost: re-resolve every held feed of the env.
    private func resubscribed(env: String) {
        for feed in feeds.values where feed.request.envId == env && !feed.busy {
            WorkerMetrics.coldResolves.increment()
            fullResolve(feed, endsPoll: false)
        }
    }
}
