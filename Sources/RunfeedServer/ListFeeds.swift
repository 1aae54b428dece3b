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
    /// The request's database deadline until it is held (then dropped: a held poll has its own).
    var demand: Demand?

    init(conn: FastCGIConnection, ctx: AuthContext, filter: ListFilter, handle: String, columns: ColumnSet,
         legacyHeaderNames: Bool, apiVersion: String?, extraHeaders: [(String, String)], demand: Demand? = nil) {
        self.demand = demand
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
    var workingSetKey: WorkingSetKey { WorkingSetKey(envId: ctx.envId, handle: handle) }

    /// The answer with `rows` (then `up-to-date`) at `offset`.
    func reply(rows: [(RunRow, ChangeOperation)], offset: Offset, live: Bool, memo: RunsetMemo? = nil) -> FeedReply {
        FeedReply(conn: conn, handle: handle, offset: offset, columns: columns, legacyHeaderNames: legacyHeaderNames,
                  apiVersion: apiVersion, rows: rows, live: live, extraHeaders: extraHeaders, memo: memo)
    }
}

/// A list connection of an environment: the key of its client's working set (view).
struct WorkingSetKey: Hashable {
    let envId: String
    let handle: String
}

/// Where the view of a list client came from, for the metrics.
enum ViewSource: String {
    /// A snapshot: the client holds nothing yet.
    case snapshot
    /// This worker's copy (the previous poll was answered here).
    case local
    /// The shared store (the previous poll was answered by another worker or host).
    case shared
    /// Unknown (no token, the stored view expired or could not be read): every member is re-sent.
    case unknown
    /// Not looked up (a drain answering at once).
    case none
}

/// A parked live poll of a list feed: the decision machine plus what the loop needs to carry out its actions.
final class LiveListFeed {
    let id: UInt64
    let request: ListFeedRequest
    /// The client's offset.
    let offset: Offset
    /// The view the client holds (as loaded for its offset), the base of the next stored view.
    let baseView: ListView?
    let source: ViewSource
    var machine: ListFeedPoll
    let parking: PollParking
    /// The rows of the last resolve or hydrate fed to the machine (its emits index into them).
    var lastRows: [RunRow] = []
    /// When the read behind `lastRows` started (wall ms): the basis of the next offset if it is answered.
    var lastReadBasisMs: Int64
    /// The next full resolve must have started at or after this (wall µs), besides `notBefore`.
    var resolveNotBeforeUs: Int64 = 0

    init(id: UInt64, request: ListFeedRequest, offset: Offset, baseView: ListView?, source: ViewSource, parking: PollParking) {
        self.id = id
        self.request = request
        self.offset = offset
        self.baseView = baseView
        self.source = source
        self.machine = ListFeedPoll(view: baseView, floorMs: offset.floorMs)
        self.parking = parking
        self.lastReadBasisMs = offset.basisMs
    }
}

/// A connection's view as this worker last stored it, under the token its offset carries.
struct LocalView {
    var token: UInt64
    var view: ListView
    /// When it was last written to the shared store (monotonic ms).
    var savedAtMs: Int64
}

/// Held list feeds of this worker, the wake index over them, the connections' views (what each client
/// holds: local copies of the shared working sets) and the per-environment leading-edge coalescing of
/// change records.
///
/// Each held poll is a `ListFeedPoll`. For each delivered batch of records the registry finds the feeds a
/// record can match (by batch, by tag, or every tag feed for a partial record), hydrates the union of their
/// runs from Postgres once, re-checks each row against each feed's filter and lets each feed's machine diff
/// its rows against the client's view. Before an answer that changes the client's view goes out, the view
/// is stored in the shared store under a fresh token carried by the offset, so the next poll can land on any
/// worker or host.
final class ListFeedRegistry {
    private let loop: EventLoop
    private let channels: EnvChannels
    private let runsets: RunsetSource
    private let views: ListViewStore
    private let runRows: RunRowSource
    private let answering: FeedAnswering
    /// Whether the database is not keeping up (a backstop then answers on what the client holds).
    private let databaseStalled: () -> Bool
    private let config: ServerConfig

    private var feeds: [UInt64: LiveListFeed] = [:]
    /// Live requests whose client view is being loaded from the shared store.
    private var loading: [UInt64: (request: ListFeedRequest, offset: Offset)] = [:]
    private var index = WakeIndex<UInt64>()
    private var localViews: BoundedTTLCache<WorkingSetKey, LocalView>
    private var coalescers: [String: LeadingEdgeCoalescer] = [:]
    private var coalesceTimers: [String: EventLoop.TimerID] = [:]
    /// Hydrates asked by feeds' machines this loop turn, per environment (see `act(.hydrate)`).
    private var pendingHydrates: [String: [UInt64: Set<String>]] = [:]
    private var nextId: UInt64 = 1

    init(loop: EventLoop, channels: EnvChannels, runsets: RunsetSource, views: ListViewStore, rows: RunRowSource,
         answering: FeedAnswering, databaseStalled: @escaping () -> Bool, config: ServerConfig) {
        self.loop = loop
        self.channels = channels
        self.runsets = runsets
        self.views = views
        self.runRows = rows
        self.answering = answering
        self.databaseStalled = databaseStalled
        self.config = config
        localViews = BoundedTTLCache(ttlMs: config.workingSetTtlMs, maxEntries: config.workingSetMaxEntries)
        channels.onRecord.append { [weak self] env, record in self?.offer(env: env, record: record) }
        channels.onResubscribed.append { [weak self] env in self?.resubscribed(env: env) }
    }

    var count: Int { feeds.count }

    func purgeExpired(nowMs: Int64) { localViews.purgeExpired(nowMs: nowMs) }

    // MARK: client views

    /// What the client of `request` holds, for its offset: this worker's copy if it stored the view the
    /// offset names, else the shared store's; nil when unknown (no token, expired, Redis unavailable).
    private func clientView(_ request: ListFeedRequest, offset: Offset, _ done: @escaping (ListView?, ViewSource) -> Void) {
        guard let token = offset.token, token != 0 else {
            WorkerMetrics.shared.listViewUnknown.increment()
            done(nil, .unknown)
            return
        }
        if let local = localViews.get(request.workingSetKey, nowMs: monotonicMs()), local.token == token {
            WorkerMetrics.shared.listViewLocal.increment()
            done(local.view, .local)
            return
        }
        views.load(envId: request.envId, handle: request.handle, token: token) { [self] view in
            guard let view else {
                WorkerMetrics.shared.listViewUnknown.increment()
                done(nil, .unknown)
                return
            }
            WorkerMetrics.shared.listViewShared.increment()
            // Kept here from now on; its expiry in Redis is refreshed by the next answer that keeps it.
            localViews.set(request.workingSetKey, LocalView(token: token, view: view, savedAtMs: 0), nowMs: monotonicMs())
            done(view, .shared)
        }
    }

    /// Stores `view` (when it changed) before the answer carrying its token goes out, then answers.
    private func answer(_ request: ListFeedRequest, rows: [(RunRow, ChangeOperation)], offsetMs: Int64, basisMs: Int64,
                        from previous: Offset?, baseView: ListView?, view: ListView?, changed: Bool, live: Bool,
                        source: ViewSource, viewText: String? = nil, memo: RunsetMemo? = nil) {
        let now = monotonicMs()
        guard changed, let view else {
            // The client's view is unchanged: its offset keeps the same token.
            let token = previous?.token
            if let token, token != 0, var local = localViews.get(request.workingSetKey, nowMs: now), local.token == token,
               now - local.savedAtMs > config.workingSetTtlMs / 2 {
                local.savedAtMs = now
                localViews.set(request.workingSetKey, local, nowMs: now)
                views.touch(envId: request.envId, handle: request.handle)
            }
            send(request.reply(rows: rows, offset: Offset(updatedAtMs: offsetMs, tail: basisMs, token: token), live: live,
                               memo: memo), view: source)
            return
        }
        // Never 0 (no view) and never the previous token (a wrap-around of `&+ 1` could give 0).
        var token = UInt64.random(in: 1...UInt64.max)
        while token == previous?.token { token = UInt64.random(in: 1...UInt64.max) }
        localViews.set(request.workingSetKey, LocalView(token: token, view: view, savedAtMs: now), nowMs: now)
        let base = previous?.token.flatMap { $0 == 0 ? nil : $0 }
        views.save(envId: request.envId, handle: request.handle, base: base, baseView: base == nil ? nil : baseView,
                   token: token, view: view, viewText: viewText) { [weak self] stored in
            if !stored { WorkerMetrics.shared.listViewStoreFailed.increment() }
            self?.send(request.reply(rows: rows, offset: Offset(updatedAtMs: offsetMs, tail: basisMs, token: token),
                                     live: live, memo: memo), view: source)
        }
    }

    /// Sends a list answer, counted by where the client's view came from.
    func send(_ reply: FeedReply, view: ViewSource) {
        WorkerMetrics.shared.listAnswers(view.rawValue).increment()
        let bytes = answering.answer(reply)
        WorkerMetrics.shared.listAnswerBytes(view.rawValue).increment(by: Int64(bytes))
    }

    // MARK: non-live

    /// Snapshot (`offset=-1`): every row as an insert. Catch-up (an offset with a known handle): the rows
    /// the client does not hold, against its view (all rows when the view is unknown).
    func snapshot(_ request: ListFeedRequest, offset: OffsetParam) {
        switch offset {
        case .snapshot:
            resolveAndAnswer(request, previous: nil, view: nil, source: .snapshot)
        case .at(let o):
            clientView(request, offset: o) { [self] view, source in
                resolveAndAnswer(request, previous: o, view: view, source: source)
            }
        }
    }

    private func resolveAndAnswer(_ request: ListFeedRequest, previous: Offset?, view: ListView?, source: ViewSource) {
        resolveForClient(request, notBeforeUs: notBefore(previous), offset: previous, view: view, demand: request.demand) { [self] result in
            guard case .success(let set) = result else {
                answering.fail(request.conn, .unavailable)
                return
            }
            let versions = set.rows.map(RunVersion.init)
            let emits: [ListEmit]
            let next: ListView
            let viewText: String?
            var memo: RunsetMemo?
            if source == .snapshot {
                memo = set.memo
                // Every row as an insert; every snapshot of this resolve stores the same view: work it out once.
                emits = ListDiff.diff(versions, view: nil).map { ListEmit(index: $0.index, operation: .insert) }
                if set.memo.snapshotView == nil {
                    set.memo.snapshotView = ListDiff.replace(nil, versions, emits: emits, membersReadAtUs: membersReadAtUs(set))
                    set.memo.snapshotBase = ListViewCodec.encodeBase(set.memo.snapshotView!)
                }
                next = set.memo.snapshotView!
                viewText = set.memo.snapshotBase
            } else {
                emits = ListDiff.diff(versions, view: view)
                next = ListDiff.replace(view, versions, emits: emits, membersReadAtUs: membersReadAtUs(set))
                viewText = nil
            }
            answer(request, rows: emits.map { (set.rows[$0.index], $0.operation) },
                   offsetMs: ListDiff.offsetMs(versions, floorMs: previous?.floorMs ?? 0),
                   basisMs: set.resolvedAtUs / 1000, from: previous, baseView: view, view: next,
                   changed: view != next || previous?.token == nil || previous?.token == 0, live: false, source: source,
                   viewText: viewText, memo: memo)
        }
    }

    /// The earliest start (wall µs) of a resolve that answers a client whose gap this worker did not hear
    /// (a hop, a cold start, a catch-up): after the client's basis, allowing for other hosts' clocks, capped at
    /// now. A runset cached or in flight from before could miss changes made since, which would then wait
    /// for the backstop.
    private func notBefore(_ offset: Offset?) -> Int64 {
        guard let offset, offset.basisMs > 0 else { return 0 }
        return min(wallUs(), (offset.basisMs + config.clockSkewMs) * 1000)
    }

    /// When a resolve's membership was read, on the database clock: its rows' hydrate (membership is
    /// re-checked on those rows); for an empty set, the membership query's start on this worker's clock plus
    /// the skew allowance.
    private func membersReadAtUs(_ set: Runset) -> Int64 {
        set.rows.map(\.readAtUs).min() ?? (set.resolvedAtUs + config.clockSkewMs * 1000)
    }

    /// Whether rows read for a client would send it something read before its view (`ListDiff.needsFresherRead`).
    private func needsFresherRead(_ rows: [RunRow], offset: Offset?, view: ListView?, askedAtMs: Int64) -> Bool {
        let stale = ListDiff.needsFresherRead(rows.map(RunVersion.init), view: view,
                                              floorUs: ListDiff.sendFloorUs(offset: offset, view: view, skewMs: config.clockSkewMs,
                                                                               askedAtMs: askedAtMs))
        if stale { WorkerMetrics.shared.confirmingReads.increment() }
        return stale
    }

    /// A resolve whose rows may be sent to a client holding `view`: re-resolved afresh when the first one
    /// (cached or shared) would send something read before the client's view.
    private func resolveForClient(_ request: ListFeedRequest, notBeforeUs: Int64, offset: Offset?, view: ListView?,
                                  demand: Demand?, _ done: @escaping (Result<Runset, RunsetFailure>) -> Void) {
        let askedAtMs = wallMs()
        runsets.runset(request.ctx, request.filter, notBeforeUs: notBeforeUs, demand: demand) { [self] result in
            if case .success(let set) = result, needsFresherRead(set.rows, offset: offset, view: view, askedAtMs: askedAtMs) {
                runsets.runset(request.ctx, request.filter, notBeforeUs: wallUs(), demand: demand, done)
                return
            }
            done(result)
        }
    }

    // MARK: live

    func startLive(_ request: ListFeedRequest, offset: Offset) {
        let id = nextId
        nextId += 1
        // Keep the environment subscribed while the view loads, so the gap rule below can hold.
        channels.retain(request.envId)
        loading[id] = (request, offset)
        clientView(request, offset: offset) { [self] view, source in
            defer { channels.release(request.envId) }
            guard loading.removeValue(forKey: id) != nil else { return }  // answered by a drain meanwhile
            park(id: id, request, offset: offset, view: view, source: source)
        }
    }

    private func park(id: UInt64, _ request: ListFeedRequest, offset: Offset, view: ListView?, source: ViewSource) {
        // Answered meanwhile (its deadline passed, its client left): its socket is no longer ours.
        guard !request.conn.isAnswered else { return }
        answering.parked(request.conn)
        request.demand = nil
        let env = request.envId
        let parking = PollParking(loop: loop, channels: channels, envId: env, fd: request.conn.fd)
        parking.retainChannel()
        let feed = LiveListFeed(id: id, request: request, offset: offset, baseView: view, source: source, parking: parking)
        feeds[id] = feed
        index.add(id, envId: env, filter: request.filter)
        parking.arm(config, onDeadline: { [weak self] in
            guard let self, self.feeds[id] != nil else { return }
            WorkerMetrics.shared.listBackstop.increment()
            self.act(feed, feed.machine.handle(.deadline))
        }, onGone: { [weak self] in
            guard let self, self.feeds[id] != nil else { return }
            request.conn.clientGone = true
            WorkerMetrics.shared.listAbort.increment()
            self.act(feed, feed.machine.handle(.aborted))
        })
        let basis = offset.basisMs
        guard view != nil, channels.covers(env, sinceMs: basis) else {
            // This worker was not listening during the client's gap (cold start, a hop, a long gap), or
            // what the client holds is unknown: resolve once before holding.
            WorkerMetrics.shared.coldResolves.increment()
            feed.resolveNotBeforeUs = notBefore(offset)
            act(feed, feed.machine.start(.resolve))
            return
        }
        let missed = channels.replayed(env, sinceMs: basis).filter { request.filter.mayMatch($0) }
        let action = feed.machine.start(.replay(Set(missed.map(\.runId))))
        guard case .hydrate = action else {
            act(feed, action)
            return
        }
        // Rows read after their record arrived here (by the hydrate that woke the other feeds of this
        // change) already show it: a client re-arming after such a change costs no new read.
        let now = monotonicUs()
        var cached: [RunRow] = []
        for r in missed {
            guard let freshAfter = channels.gapReadFreshAfter(env, runId: r.runId, sinceMs: basis, covered: true, nowUs: now),
                  let row = runRows.cachedRow(envId: env, runId: r.runId, freshAfter: freshAfter) else { break }
            cached.append(row)
        }
        if cached.count == missed.count,
           !needsFresherRead(cached.filter { request.filter.contains($0) }, offset: offset, view: view, askedAtMs: wallMs()) {
            WorkerMetrics.shared.listGapFromCache.increment()
            feed.lastReadBasisMs = (cached.map(\.readAtUs).min() ?? wallUs()) / 1000
            deliverHydrated(feed, rows: cached.filter { request.filter.contains($0) })
        } else {
            act(feed, action)
        }
    }

    /// Carries out one action of a feed's machine.
    private func act(_ feed: LiveListFeed, _ action: ListPollAction) {
        switch action {
        case .hold, .finishSilently:
            return
        case .resolve:
            let notBeforeUs = feed.resolveNotBeforeUs
            feed.resolveNotBeforeUs = 0
            if !feed.parking.deadlinePending, databaseStalled() {
                // The backstop while the database is not keeping up: answered on what the client holds.
                act(feed, feed.machine.handle(.resolved(nil)))
                return
            }
            resolveForClient(feed.request, notBeforeUs: notBeforeUs, offset: feed.offset, view: feed.machine.view,
                             demand: feed.parking.demand) { [self] result in
                guard feeds[feed.id] != nil else { return }
                switch result {
                case .success(let set):
                    feed.lastRows = set.rows
                    feed.lastReadBasisMs = set.resolvedAtUs / 1000
                    act(feed, feed.machine.handle(.resolved(set.rows.map(RunVersion.init),
                                                            membersReadAtUs: membersReadAtUs(set))))
                case .failure:
                    act(feed, feed.machine.handle(.resolved(nil)))
                }
            }
        case .hydrate(let runs):
            // Gathered until the loop's next turn: the feeds whose machines ask for the runs they kept while a read
            // was in flight (every feed of a tag, when a read ends) share one hydrate.
            let env = feed.request.envId
            let first = pendingHydrates.isEmpty
            pendingHydrates[env, default: [:]][feed.id, default: []].formUnion(runs)
            if first {
                loop.schedule(afterMs: 0) { [weak self] in
                    guard let self else { return }
                    let batches = self.pendingHydrates
                    self.pendingHydrates = [:]
                    for (env, wanted) in batches { self.hydrateAndDeliver(wanted, env: env, records: [:]) }
                }
            }
        case .answer(let emits):
            if !feed.parking.deadlinePending { WorkerMetrics.shared.listBackstopDelivered.increment() } else { WorkerMetrics.shared.listNotify.increment() }
            finish(feed, rows: emits.map { (feed.lastRows[$0.index], $0.operation) }, basisMs: answerBasis(feed, feed.lastReadBasisMs))
        case .upToDate(let fromRead):
            finish(feed, rows: [], basisMs: fromRead ? answerBasis(feed, feed.lastReadBasisMs) : feed.offset.basisMs)
        }
    }

    /// The basis of an answer built from a read that started at `readMs`: records still waiting in the
    /// environment's coalescing window may predate it and were not read for this feed, so the basis
    /// reaches back before them.
    private func answerBasis(_ feed: LiveListFeed, _ readMs: Int64) -> Int64 {
        guard let c = coalescers[feed.request.envId], c.pendingCount > 0 else { return readMs }
        return min(readMs, wallMs() - config.coalesceWindowMs - 1)
    }

    /// Hydrates the union of the runs once and hands each feed the rows that match its filter. `records`: the
    /// newest `updatedAtMs` of the change records behind the runs — a replica row older than that is read again on
    /// the primary (`ReplicaStaleness`).
    private func hydrateAndDeliver(_ wanted: [UInt64: Set<String>], env: String, records: [String: Int64]) {
        let ids = Array(wanted.values.reduce(into: Set<String>()) { $0.formUnion($1) }).sorted()
        guard !ids.isEmpty else { return }
        let startedMs = wallMs()
        let demands = QueryDemands(wanted.keys.compactMap { feeds[$0]?.parking.demand })
        runsets.hydrate(envId: env, ids: ids, freshAfter: monotonicUs(), demands: demands, fromPrimary: false) { [self] result in
            guard case .success(let rows) = result, config.staleRowRereads else {
                deliverHydrate(wanted, result: result, startedMs: startedMs)
                return
            }
            let stale = rows.filter {
                ReplicaStaleness.needsPrimaryRead(fromReplica: $0.fromReplica, rowUpdatedAtMs: $0.updatedAtMs,
                                                  recordUpdatedAtMs: records[$0.id])
            }.map(\.id)
            guard !stale.isEmpty else {
                deliverHydrate(wanted, result: result, startedMs: startedMs)
                return
            }
            WorkerMetrics.shared.replicaFallback(.stale).increment(by: stale.count)
            runsets.hydrate(envId: env, ids: stale, freshAfter: monotonicUs(), demands: demands, fromPrimary: true) { [self] again in
                guard case .success(let fresh) = again else {
                    deliverHydrate(wanted, result: again, startedMs: startedMs)
                    return
                }
                let byId = Dictionary(fresh.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                deliverHydrate(wanted, result: .success(rows.map { byId[$0.id] ?? $0 }), startedMs: startedMs)
            }
        }
    }

    private func deliverHydrate(_ wanted: [UInt64: Set<String>], result: Result<[RunRow], RunsetFailure>, startedMs: Int64) {
        let byId: [String: RunRow]?
        switch result {
        case .success(let rows): byId = Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        case .failure: byId = nil  // the machine falls back to the backstop
        }
        for (id, runs) in wanted {
            guard let feed = feeds[id] else { continue }
            feed.lastReadBasisMs = startedMs
            guard let byId else {
                act(feed, feed.machine.handle(.hydrated(nil)))
                continue
            }
            deliverHydrated(feed, rows: runs.compactMap { byId[$0] }.filter { feed.request.filter.contains($0) })
        }
    }

    private func deliverHydrated(_ feed: LiveListFeed, rows: [RunRow]) {
        let sorted = rows.sorted { ($0.createdAtMs, $0.id) > ($1.createdAtMs, $1.id) }
        feed.lastRows = sorted
        act(feed, feed.machine.handle(.hydrated(sorted.map(RunVersion.init))))
    }

    private func finish(_ feed: LiveListFeed, rows: [(RunRow, ChangeOperation)], basisMs: Int64) {
        guard feeds.removeValue(forKey: feed.id) != nil else { return }
        feed.parking.unpark()
        index.remove(feed.id)
        let m = feed.machine
        answer(feed.request, rows: rows, offsetMs: m.offsetMs, basisMs: basisMs, from: feed.offset, baseView: feed.baseView,
               view: m.view, changed: m.viewChanged, live: true, source: feed.source)
    }

    /// Answers every held poll with `up-to-date` now (drain).
    func answerAll() {
        for (_, l) in loading {
            send(l.request.reply(rows: [], offset: l.offset, live: true), view: .none)
        }
        loading = [:]
        for feed in Array(feeds.values) { act(feed, feed.machine.handle(.aborted)) }
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
        // Feeds holding now read together; feeds busy with a read keep the runs for later.
        var reads: [UInt64: Set<String>] = [:]
        for (id, runs) in wanted {
            guard let feed = feeds[id] else { continue }
            switch feed.machine.handle(.records(runs)) {
            case .hydrate(let r): reads[id] = r
            case let other: act(feed, other)
            }
        }
        if !reads.isEmpty {
            var newest: [String: Int64] = [:]
            for r in records { if let u = r.updatedAtMs { newest[r.runId] = max(newest[r.runId] ?? u, u) } }
            hydrateAndDeliver(reads, env: env, records: newest)
        }
    }

    /// Records published while the subscription was down are lost: re-resolve every held feed of the env.
    private func resubscribed(env: String) {
        for feed in feeds.values where feed.request.envId == env {
            WorkerMetrics.shared.coldResolves.increment()
            feed.resolveNotBeforeUs = wallUs()
            act(feed, feed.machine.handle(.resync))
        }
    }
}
