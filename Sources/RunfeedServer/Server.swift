import RunfeedCore
import RunfeedIO
#if canImport(Glibc)
import Glibc
#endif

/// One worker: a FastCGI listener, an event loop that owns every parked live poll, the Redis
/// subscription, and the Postgres pool. All mutable state below is confined to the loop thread.
public final class Server {
    let config: ServerConfig
    let log: Logger
    let loop = EventLoop()
    let writer: ResponseWriter
    let db: LoopDatabase
    let subscriber: PubSubClient
    let auth: Authenticator
    let store: RunStore
    let channels: EnvChannels
    let feeds: RunFeedRegistry
    let lists: ListFeedRegistry
    let runsets: RunsetService
    let views: SharedViews
    let clickhouse: ClickHousePool?
    let limiter: ConcurrencyLimiter?
    /// Live polls holding a concurrency slot, by connection: released when the poll is answered.
    private var slots: [ObjectIdentifier: (envId: String, member: String)] = [:]
    private var seq: UInt64 = 0
    /// Redis reconnects already added to the reconnect counter.
    var reportedReconnects = 0
    let processStats = ProcessStatsReader()
    private var listener: FastCGIListener?
    var fastcgi: FastCGIServer?
    var reportedAccepted = 0
    var reportedReused = 0
    private var status: StatusHTTPServer?
    private var inFlight = 0
    private var draining = false
    private var encoded: BoundedTTLCache<String, String>
    /// Requests not yet answered or held: their database deadline and its timer.
    private var pending: [ObjectIdentifier: PendingRequest] = [:]

    private final class PendingRequest {
        let demand: Demand
        var timer: EventLoop.TimerID?
        init(_ demand: Demand) { self.demand = demand }
    }

    /// While the database is not keeping up, a new request waits at most this long for it (answers that need
    /// nothing but caches still go out).
    static let shedWaitMs: Int64 = 250

    /// Create after `ProcessSignals.blockProcessSignals()`: this starts the pool threads.
    public init(config: ServerConfig, log: Logger) {
        // Every metric is created now, so a fresh worker exposes each series at 0.
        WorkerMetrics.shared.liveLimit.set(config.concurrencyLimit ?? 0)
        self.config = config
        self.log = log
        writer = ResponseWriter(loop: loop, timeoutMs: config.writeTimeoutMs)
        db = LoopDatabase(config: config, loop: loop, log: log)
        WorkerMetrics.shared.pgQueueLimit.set(config.pgQueueLimit)
        subscriber = config.redis.makeSubscriber(loop: loop, sharded: config.redisSharded,
                                                 pingIntervalMs: config.redisPingIntervalMs, pongTimeoutMs: config.redisPingTimeoutMs)
        auth = Authenticator(db: db, ttlMs: config.authCacheTtlMs, maxEntries: config.authCacheMaxEntries,
                             additionalKeysEnabled: config.additionalApiKeys, log: log)
        store = RunStore(db: db, lookupTtlMs: config.authCacheTtlMs, rowTtlMs: config.runCacheTtlMs,
                         maxEntries: config.runCacheMaxEntries)
        // Encoded change messages of recent row versions, and single-row answer bodies.
        encoded = BoundedTTLCache(ttlMs: 2_000, maxEntries: config.runCacheMaxEntries * 2)
        channels = EnvChannels(loop: loop, subscriber: subscriber, config: config)
        feeds = RunFeedRegistry(loop: loop, channels: channels, config: config)
        let resolver: MembershipResolver
        if let endpoint = config.clickhouse {
            for w in endpoint.warnings { log.warning(w) }
            let ch = ClickHousePool(endpoint: endpoint, size: config.clickhouseMaxConnections,
                                    timeoutMs: config.clickhouseTimeoutMs, keepAlive: config.clickhouseKeepAlive)
            clickhouse = ch
            resolver = ClickHouseResolver(pool: ch, loop: loop, log: log)
        } else {
            clickhouse = nil
            resolver = PostgresResolver(db: db)
        }
        runsets = RunsetService(resolver: resolver, db: db, log: log, limit: config.maxListResults,
                                ttlMs: config.runsetCacheTtlMs, maxEntries: config.runsetCacheMaxEntries,
                                admissionLimit: config.resolveAdmissionLimit)
        views = SharedViews(loop: loop, endpoint: config.redis, ttlMs: config.workingSetTtlMs, log: log)
        lists = ListFeedRegistry(loop: loop, channels: channels, runsets: runsets, views: views, config: config)
        if let limit = config.concurrencyLimit {
            limiter = ConcurrencyLimiter(loop: loop, endpoint: config.rateLimitRedis, limit: limit, threads: 2, log: log)
        } else {
            limiter = nil
        }
        feeds.server = self
        lists.server = self
        runsets.onHydrated = { [store] env, rows, startedAt in store.remember(envId: env, rows: rows, startedAt: startedAt) }
    }

    /// A fresh `electric-cursor` value: a per-process counter wrapping below 2^53.
    func nextCursor() -> UInt64 {
        seq = seq >= (1 << 53) - 1 ? 1 : seq + 1
        return seq
    }

    /// Opens the listener and runs the event loop on the calling thread until SIGTERM drains it.
    public func run() throws {
        let l = try FastCGIListener(address: config.listen, backlog: FastCGIListener.burstBacklog)
        listener = l
        try runLoop(with: l)
    }

    /// Runs on an already-listening socket (inherited from a supervisor, systemd or spawn-fcgi). With
    /// `readyFd`, one byte is written there once the worker accepts (the supervisor waits for it).
    public func run(inheritedFd: Int32, readyFd: Int32? = nil) throws {
        let l = try FastCGIListener(inheritedFd: inheritedFd, description: "fd \(inheritedFd)")
        listener = l
        try runLoop(with: l, readyFd: readyFd)
    }

    private func runLoop(with l: FastCGIListener, readyFd: Int32? = nil) throws {
        subscriber.log = { [log] in log.info($0) }
        if log.level <= .debug { subscriber.trace = { [log] in log.debug($0) } }
        subscriber.onMessage = { [weak self] channel, payload in self?.channels.received(channel: channel, payload: payload) }
        subscriber.onSubscriptionChange = { [weak self] channel, at in self?.channels.subscriptionChanged(channel: channel, at: at) }
        subscriber.start()
        ProcessSignals.watch(on: loop) { [weak self] sig in self?.signalled(sig) }
        sweepCaches()
        if let address = config.metricsListen {
            let s = try StatusHTTPServer(loop: loop, address: address) { [weak self] _, path, respond in
                guard let self else { return }
                switch path {
                case "/metrics":
                    respond(200, "text/plain; version=0.0.4", self.metricsText())
                case "/healthz":
                    self.health { ok, body in respond(ok ? 200 : 503, "application/json", body) }
                default:
                    respond(404, "text/plain", "not found\n")
                }
            }
            s.start()
            status = s
            log.info("metrics and health on http://\(address)/metrics and /healthz")
        }
        let server = FastCGIServer(loop: loop, listenFd: l.socketFd, writer: writer)
        fastcgi = server
        server.start { [self] conn in handle(conn) }
        if let readyFd { signalReady(fd: readyFd) }
        log.info("runfeed worker listening on \(l.address) (hold \(config.holdMs) ms ±\(Int(config.jitterRatio * 100))%, redis \(config.redis.host):\(config.redis.port), list membership via \(runsets.resolverName))")
        loop.run()
    }

    // MARK: requests

    func handle(_ conn: FastCGIConnection) {
        inFlight += 1
        let info = conn.info
        let demand = track(conn)
        let origin = info.headers["origin"]
        if info.method == "OPTIONS" {
            respond(conn, ElectricResponse.options(origin: origin, requestHeaders: info.headers["access-control-request-headers"]))
            return
        }
        guard info.method == "GET" || info.method == "HEAD" else {
            respond(conn, ElectricResponse.error(.methodNotAllowed, origin: origin))
            return
        }
        guard let route = Route.match(path: info.path) else {
            fail(conn, .notFound(shouldRetry: false))
            return
        }
        auth.authenticate(info, demand: demand) { [self] result in
            switch result {
            case .failure(let e):
                fail(conn, e)
            case .success(let ctx):
                switch FeedQuery.parse(queryString: info.queryString) {
                case .failure(let e):
                    fail(conn, e)
                case .success(let query):
                    dispatch(conn, route: route, ctx: ctx, query: query, demand: demand)
                }
            }
        }
    }

    private func dispatch(_ conn: FastCGIConnection, route: Route, ctx: AuthContext, query: FeedQuery, demand: Demand) {
        guard !conn.isAnswered else { return }
        switch route {
        case .run(let friendlyId):
            serveRun(conn, ctx: ctx, query: query, friendlyId: friendlyId, demand: demand)
        case .runs:
            serveTags(conn, ctx: ctx, query: query, demand: demand)
        case .batch(let friendlyId):
            serveBatch(conn, ctx: ctx, query: query, friendlyId: friendlyId, demand: demand)
        }
    }

    private func serveRun(_ conn: FastCGIConnection, ctx: AuthContext, query: FeedQuery, friendlyId: String, demand: Demand) {
        store.lookup(envId: ctx.envId, friendlyId: friendlyId, demand: demand) { [self] result in
            guard case .success(let found) = result else {
                fail(conn, .unavailable)
                return
            }
            guard let run = found else {
                fail(conn, .notFound(shouldRetry: false))
                return
            }
            if let scopes = ctx.scopes,
               !scopes.authorizes(any: RouteResources.run(friendlyId: run.friendlyId, taskIdentifier: run.taskIdentifier,
                                                          runTags: run.runTags, batchFriendlyId: run.batchFriendlyId)) {
                fail(conn, .unauthorized)
                return
            }
            guard !conn.isAnswered else { return }
            let feed = RunFeedRequest(
                conn: conn, envId: ctx.envId, runId: run.id, demand: demand,
                columns: SkipColumns.resolve(jwtClaim: ctx.skipColumnsClaim, query: query.skipColumns),
                legacyHeaderNames: !ElectricResponse.isModernClient(electricVersionHeader: conn.info.headers["x-trigger-electric-version"]),
                apiVersion: conn.info.headers["x-trigger-api-version"])
            if query.live, case .at(let offset) = query.offset {
                if draining {
                    answerLive(feed, offset: offset, row: nil, readBasisMs: nil)
                } else {
                    withLiveSlot(conn, envId: ctx.envId) { self.feeds.startLive(feed, offset: offset) }
                }
            } else {
                snapshot(feed, query: query)
            }
        }
    }

    /// Non-live: the initial snapshot (`offset=-1` or no handle), or a catch-up from a known offset.
    private func snapshot(_ feed: RunFeedRequest, query: FeedQuery) {
        var previous: Offset?
        if case .at(let o) = query.offset, query.handle == feed.handle { previous = o }
        // A catch-up reads afresh (read-your-writes); a snapshot may share a row read ≤ 250 ms old.
        let freshAfter = previous == nil ? monotonicUs() - config.runCacheTtlMs * 1000 : monotonicUs()
        let requestedAt = wallMs()
        store.readRow(envId: feed.envId, runId: feed.runId, freshAfter: freshAfter, demand: feed.demand) { [self] result in
            guard case .success(let row) = result else {
                fail(feed.conn, .unavailable)
                return
            }
            let basis = row.map { $0.readAtUs / 1000 } ?? requestedAt
            if let previous {
                // Catch-up: the row if the client does not hold it.
                let view = RunClientView(previous)
                if let row, view.isNew(updatedAtMs: row.updatedAtMs, digest: row.digest) {
                    sendFeed(feed.conn, handle: feed.handle, columns: feed.columns, legacyHeaderNames: feed.legacyHeaderNames,
                             apiVersion: feed.apiVersion, rows: [(row, "update")],
                             offset: Offset(updatedAtMs: row.updatedAtMs, tail: basis, token: row.digest), live: false)
                } else {
                    sendFeed(feed.conn, handle: feed.handle, columns: feed.columns, legacyHeaderNames: feed.legacyHeaderNames,
                             apiVersion: feed.apiVersion, rows: [],
                             offset: Offset(updatedAtMs: previous.updatedAtMs, tail: basis, token: view.token), live: false)
                }
                return
            }
            sendFeed(feed.conn, handle: feed.handle, columns: feed.columns, legacyHeaderNames: feed.legacyHeaderNames,
                     apiVersion: feed.apiVersion, rows: row.map { [($0, "insert")] } ?? [],
                     offset: Offset(updatedAtMs: row?.updatedAtMs ?? 0, tail: basis, token: row?.digest ?? 0), live: false)
        }
    }

    /// Answers a live poll: the row if the client does not hold it, else `[up-to-date]` with the client's
    /// view (its basis moved to `readBasisMs` when a read confirmed it).
    func answerLive(_ feed: RunFeedRequest, offset: Offset, row: RunRow?, readBasisMs: Int64?) {
        let view = RunClientView(offset)
        if let row, view.isNew(updatedAtMs: row.updatedAtMs, digest: row.digest) {
            sendFeed(feed.conn, handle: feed.handle, columns: feed.columns, legacyHeaderNames: feed.legacyHeaderNames,
                     apiVersion: feed.apiVersion, rows: [(row, "update")],
                     offset: Offset(updatedAtMs: row.updatedAtMs, tail: row.readAtUs / 1000, token: row.digest), live: true)
            return
        }
        sendFeed(feed.conn, handle: feed.handle, columns: feed.columns, legacyHeaderNames: feed.legacyHeaderNames,
                 apiVersion: feed.apiVersion, rows: [],
                 offset: Offset(updatedAtMs: offset.updatedAtMs, tail: readBasisMs ?? offset.basisMs, token: view.token), live: true)
    }

    /// Sends a feed answer — the rows (inserts or updates) then `up-to-date` — with the headers of a
    /// live or non-live response. Returns the size of the body.
    @discardableResult
    private func sendFeed(_ conn: FastCGIConnection, handle: String, columns: ColumnSet, legacyHeaderNames: Bool,
                          apiVersion: String?, rows: [(RunRow, String)], offset: Offset, live: Bool,
                          extraHeaders: [(String, String)] = [], memo: RunsetMemo? = nil) -> Int {
        if live {
            // Now minus each emitted row's updatedAt.
            let now = wallMs()
            for (row, _) in rows { WorkerMetrics.shared.deliveryLag.record(Double(now - row.updatedAtMs) / 1000) }
        }
        // One row (or none): the same body for every feed answered with that row version (its digest, not
        // its updatedAt, which two versions can share) — a fan-out encodes it once.
        let body: String
        if let memo, rows.count > 1 {
            let key = columns.signature + (apiVersion == RunEncoder.currentApiVersion ? "|current" : "|legacy")
            if let hit = memo.snapshotBodies[key] {
                body = hit
            } else {
                body = feedBody(rows, columns, apiVersion)
                memo.snapshotBodies[key] = body
            }
        } else {
            body = rows.count > 1 ? feedBody(rows, columns, apiVersion) : encodedOnce(
                "body|\(rows.first.map { "\($0.0.id)|\($0.0.digest)|\($0.1)" } ?? "")|\(columns.signature)|\(apiVersion == RunEncoder.currentApiVersion)"
            ) { feedBody(rows, columns, apiVersion) }
        }
        let offset = offset.text
        var response = ElectricResponse.feed(
            handle: handle, offset: offset, cursor: live ? String(nextCursor()) : nil, live: live,
            schema: live ? nil : RunEncoder.schemaHeader(columns), body: body, upToDate: true,
            legacyHeaderNames: legacyHeaderNames)
        response.headers.append(contentsOf: extraHeaders)
        respond(conn, response)
        return body.utf8.count
    }

    /// The rows as change messages, then `up-to-date`. Each message is cached per row version, columns
    /// and operation: a 1,000-row snapshot served again within the cache's life is a concatenation.
    private func feedBody(_ rows: [(RunRow, String)], _ columns: ColumnSet, _ apiVersion: String?) -> String {
        let messages = rows.map { row, op in
            encodedOnce("msg|\(row.id)|\(row.digest)|\(columns.signature)|\(op)") {
                RunEncoder.changeMessage(runId: row.id, valueJSON: RunEncoder.valueJSON(row, columns: columns), operation: op)
            }
        }
        return RunEncoder.rewriteForLegacyApiVersion(RunEncoder.body(messages + [RunEncoder.upToDate]), apiVersion: apiVersion)
    }

    /// `make()`, or what it gave for `key` within the last 2 s.
    private func encodedOnce(_ key: String, _ make: () -> String) -> String {
        let now = monotonicMs()
        if let hit = encoded.get(key, nowMs: now) { return hit }
        let v = make()
        encoded.set(key, v, nowMs: now)
        return v
    }

    /// Takes a per-environment concurrency slot for a live poll, then runs `start`; 429 when the
    /// environment is at its limit, 500 when the limit cannot be read (reference §3).
    private func withLiveSlot(_ conn: FastCGIConnection, envId: String, _ start: @escaping () -> Void) {
        guard let limiter else {
            start()
            return
        }
        limiter.acquire(envId: envId) { [self] admission in
            switch admission {
            case .admitted(let member):
                guard !conn.isAnswered else {
                    // Answered while waiting for the slot (deadline, client gone): nothing holds it.
                    limiter.release(envId: envId, member: member)
                    return
                }
                slots[ObjectIdentifier(conn)] = (envId, member)
                start()
            case .rejected:
                fail(conn, .tooManyLive)
            case .failed:
                fail(conn, .limitLookupFailed)
            }
        }
    }

    func fail(_ conn: FastCGIConnection, _ e: RequestError) {
        respond(conn, ElectricResponse.error(e, origin: conn.info.headers["origin"]))
    }

    func respond(_ conn: FastCGIConnection, _ response: HTTPResponse) {
        let info = conn.info
        untrack(conn, clientGone: conn.clientGone)
        if let slot = slots.removeValue(forKey: ObjectIdentifier(conn)) {
            limiter?.release(envId: slot.envId, member: slot.member)
        }
        if conn.respond(head: response.fastCGIHead(), body: response.body, with: writer) {
            inFlight -= 1
            let us = monotonicUs() - conn.acceptedAtUs
            // An answer to a client that had already gone is counted as 499, not as what it would have been.
            let status = conn.clientGone ? RequestLabels.clientClosed : response.status
            WorkerMetrics.shared.request(RequestLabels(method: info.method, path: info.path, queryString: info.queryString),
                                         status: status, seconds: Double(us) / 1e6)
            log.debug("\(info.method) \(info.path) status=\(status) ms=\(us / 1000)")
        }
    }

    // MARK: list feeds

    private func serveTags(_ conn: FastCGIConnection, ctx: AuthContext, query: FeedQuery, demand: Demand) {
        let tags: [String]
        switch TagFilter.parse(query.tags) {
        case .failure(let e):
            fail(conn, e)
            return
        case .success(let t):
            tags = t
        }
        if let scopes = ctx.scopes, !scopes.authorizes(any: RouteResources.runsList(tags: tags)) {
            fail(conn, .unauthorized)
            return
        }
        let now = wallMs()
        var handle: String
        var floor: Int64
        var extra: [(String, String)] = []
        if case .at = query.offset, let h = query.handle, case .runs(let pinned, _, _)? = ListHandle.parse(h) {
            // The window is pinned in the handle; re-clamp it so a stale or crafted handle cannot widen it.
            // The connection keeps its handle; only the effective floor moves (the maximum age slides).
            floor = CreatedAtWindow.repin(floorMs: pinned, nowMs: now, maxAgeMs: config.createdAtMaxAgeMs,
                                          bucketMs: config.createdAtBucketMs)
            handle = h
        } else {
            let w = CreatedAtWindow.floor(createdAt: query.createdAt, nowMs: now, maxAgeMs: config.createdAtMaxAgeMs,
                                          bucketMs: config.createdAtBucketMs)
            floor = w.floorMs
            if w.clamped { extra.append(("x-runfeed-created-at-clamped", String(config.createdAtMaxAgeMs))) }
            handle = ListHandle.mintRuns(floorMs: floor, seq: nextCursor(), nonce: ListHandle.randomNonce()).text
        }
        extra.append(("x-runfeed-created-at-floor", String(floor)))
        let request = makeListRequest(conn, ctx: ctx, query: query, filter: ListFilter(kind: .tags(tags), floorMs: floor),
                                      handle: handle, extra: extra, demand: demand)
        startList(request, query: query)
    }

    private func serveBatch(_ conn: FastCGIConnection, ctx: AuthContext, query: FeedQuery, friendlyId: String, demand: Demand) {
        store.lookupBatch(envId: ctx.envId, friendlyId: friendlyId, demand: demand) { [self] result in
            guard case .success(let found) = result else {
                fail(conn, .unavailable)
                return
            }
            guard let batchId = found else {
                fail(conn, .notFound(shouldRetry: true))
                return
            }
            if let scopes = ctx.scopes, !scopes.authorizes(any: RouteResources.batch(friendlyId: friendlyId)) {
                fail(conn, .unauthorized)
                return
            }
            var handle = ListHandle.mintBatch(batchId: batchId, seq: nextCursor(), nonce: ListHandle.randomNonce()).text
            if case .at = query.offset, let h = query.handle, case .batch(let b, _, _)? = ListHandle.parse(h), b == batchId {
                handle = h
            }
            guard !conn.isAnswered else { return }
            let request = makeListRequest(conn, ctx: ctx, query: query, filter: ListFilter(kind: .batch(batchId: batchId), floorMs: 0),
                                          handle: handle, extra: [], demand: demand)
            startList(request, query: query)
        }
    }

    private func makeListRequest(_ conn: FastCGIConnection, ctx: AuthContext, query: FeedQuery, filter: ListFilter,
                                 handle: String, extra: [(String, String)], demand: Demand) -> ListFeedRequest {
        ListFeedRequest(conn: conn, ctx: ctx, filter: filter, handle: handle,
                        columns: SkipColumns.resolve(jwtClaim: ctx.skipColumnsClaim, query: query.skipColumns),
                        legacyHeaderNames: !ElectricResponse.isModernClient(electricVersionHeader: conn.info.headers["x-trigger-electric-version"]),
                        apiVersion: conn.info.headers["x-trigger-api-version"], extraHeaders: extra, demand: demand)
    }

    // MARK: database deadlines

    /// Starts tracking a request: its database deadline (`RUNFEED_REQUEST_TIMEOUT_MS`, or `shedWaitMs` while the
    /// database is not keeping up), answered 503 + `Retry-After` when it passes, and its client leaving (nginx
    /// closes the connection; stdin was drained, so any readability is EOF), which drops the queries it waits for.
    private func track(_ conn: FastCGIConnection) -> Demand {
        let waitMs = db.stalled ? min(config.requestTimeoutMs, Self.shedWaitMs) : config.requestTimeoutMs
        let demand = Demand(deadlineUs: monotonicUs() + waitMs * 1000)
        let p = PendingRequest(demand)
        pending[ObjectIdentifier(conn)] = p
        p.timer = loop.schedule(afterMs: waitMs) { [weak self, weak conn] in
            guard let self, let conn, !conn.isAnswered else { return }
            p.timer = nil
            WorkerMetrics.shared.requestTimeouts.increment()
            self.fail(conn, .unavailable)
        }
        loop.watch(fd: conn.fd, events: EV_IN | EV_RDHUP) { [weak self, weak conn] _ in
            guard let self, let conn, !conn.isAnswered else { return }
            conn.clientGone = true
            self.loop.unwatch(fd: conn.fd)
            demand.end(clientGone: true)
            // Nobody reads the answer: it is counted as 499 and the connection is released now.
            self.fail(conn, .unavailable)
        }
        return demand
    }

    /// The request is held as a live poll now: the poll's own deadline and EOF watch take over.
    func parked(_ conn: FastCGIConnection) {
        guard let p = pending.removeValue(forKey: ObjectIdentifier(conn)) else { return }
        if let t = p.timer { loop.cancel(t) }
        p.demand.end()
    }

    private func untrack(_ conn: FastCGIConnection, clientGone: Bool) {
        guard let p = pending.removeValue(forKey: ObjectIdentifier(conn)) else { return }
        if let t = p.timer { loop.cancel(t) }
        p.demand.end(clientGone: clientGone)
    }

    private func startList(_ request: ListFeedRequest, query: FeedQuery) {
        if query.live, case .at(let offset) = query.offset, query.handle == request.handle {
            if draining {
                answerList(request, rows: [], offset: offset, live: true, view: .none)
            } else {
                withLiveSlot(request.conn, envId: request.envId) { self.lists.startLive(request, offset: offset) }
            }
        } else {
            // A live request whose handle had to be replaced (a new window) starts over with a snapshot.
            lists.snapshot(request, offset: query.handle == request.handle ? query.offset : .snapshot)
        }
    }

    /// Answers a list feed: the rows (inserts or updates) then `up-to-date`.
    /// `memo`: the resolve a snapshot's rows come from (its body is built once per columns and API version).
    func answerList(_ request: ListFeedRequest, rows: [(RunRow, String)], offset: Offset, live: Bool, view: ViewSource,
                    memo: RunsetMemo? = nil) {
        WorkerMetrics.shared.listAnswers(view.rawValue).increment()
        let bytes = sendFeed(request.conn, handle: request.handle, columns: request.columns,
                        legacyHeaderNames: request.legacyHeaderNames, apiVersion: request.apiVersion, rows: rows,
                        offset: offset, live: live, extraHeaders: request.extraHeaders, memo: memo)
        WorkerMetrics.shared.listAnswerBytes(view.rawValue).increment(by: Int64(bytes))
    }

    /// Every second, drops expired cache entries: the caches are bounded in entries, and this bounds
    /// them in time too, so rows with large payloads are not kept once stale.
    private func sweepCaches() {
        let now = monotonicMs()
        auth.purgeExpired(nowMs: now)
        store.purgeExpired(nowMs: now)
        runsets.purgeExpired(nowMs: now)
        lists.purgeExpired(nowMs: now)
        encoded.purgeExpired(nowMs: now)
        loop.schedule(afterMs: 1000) { [weak self] in self?.sweepCaches() }
    }

    // MARK: shutdown

    private func signalled(_ sig: Int32) {
        switch sig {
        case SIGTERM, SIGINT:
            drain()
        default:
            log.info("signal \(sig) ignored")
        }
    }

    /// Stops accepting, answers every held poll with `up-to-date` at once (clients re-poll elsewhere
    /// without losing anything), lets in-flight snapshots finish, then exits.
    private func drain() {
        guard !draining else { return }
        draining = true
        log.info("draining: \(feeds.count) held polls, \(inFlight) requests in flight")
        // Idle kept connections are closed now (nginx sends their next requests to other workers); the
        // others after their answer.
        fastcgi?.stopAccepting()
        feeds.answerAll()
        lists.answerAll()
        subscriber.shutdown()
        let deadline = monotonicMs() + config.drainTimeoutMs
        func check() {
            // Every request answered and written, every concurrency slot released.
            let idle = inFlight == 0 && writer.inProgress == 0
                && (limiter?.pending ?? 0) == 0
            if idle || monotonicMs() >= deadline {
                log.info("drained (\(inFlight) left); exiting")
                exit(0)
            }
            loop.schedule(afterMs: 20) { check() }
        }
        check()
    }
}

extension RequestError {
    /// A dependency (Postgres, ClickHouse) is down: retryable for the client, never a fatal 4xx.
    static let unavailable = RequestError(status: 503, body: "{\"error\":\"Service Unavailable\"}",
                                          extraHeaders: [("retry-after", "1")])
}

/// One run-feed request after auth and lookup: everything needed to answer it.
final class RunFeedRequest {
    let conn: FastCGIConnection
    let envId: String
    let runId: String
    /// The request's database deadline (until it is held; a held poll has its own).
    let demand: Demand?
    let columns: ColumnSet
    let legacyHeaderNames: Bool
    let apiVersion: String?
    var handle: String { "run-" + runId }

    init(conn: FastCGIConnection, envId: String, runId: String, demand: Demand? = nil, columns: ColumnSet,
         legacyHeaderNames: Bool, apiVersion: String?) {
        self.conn = conn
        self.demand = demand
        self.envId = envId
        self.runId = runId
        self.columns = columns
        self.legacyHeaderNames = legacyHeaderNames
        self.apiVersion = apiVersion
    }
}
