import RunfeedCore
import RunfeedIO
#if canImport(Glibc)
import Glibc
#endif

/// One worker: a FastCGI listener, an event loop that owns every parked live poll, the Redis
/// subscription, and the Postgres pool. All mutable state below is confined to the loop thread.
public final class Server {
    let config: ServerConfig
    let log: RunfeedLogger
    let loop = EventLoop()
    let responder: FeedResponder
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
    /// Redis reconnects already added to the reconnect counter.
    var reportedReconnects = 0
    let processStats = ProcessStatsReader()
    private var listener: FastCGIListener?
    var fastcgi: FastCGIServer?
    var reportedAccepted = 0
    var reportedReused = 0
    private var status: StatusHTTPServer?
    private var draining = false

    /// Create after `ProcessSignals.blockProcessSignals()`: this starts the pool threads.
    public init(config: ServerConfig, log: RunfeedLogger) {
        // Every metric is created now, so a fresh worker exposes each series at 0.
        WorkerMetrics.shared.liveLimit.set(config.concurrencyLimit ?? 0)
        self.config = config
        self.log = log
        let db = LoopDatabase(config: config, loop: loop, log: log)
        self.db = db
        WorkerMetrics.shared.pgQueueLimit.set(config.pgQueueLimit)
        subscriber = config.redis.makeSubscriber(loop: loop, sharded: config.redis.shardedPubSub,
                                                 pingIntervalMs: config.redisPingIntervalMs, pongTimeoutMs: config.redisPingTimeoutMs)
        auth = Authenticator(db: db, ttlMs: config.authCacheTtlMs, maxEntries: config.authCacheMaxEntries,
                             additionalKeysEnabled: config.additionalApiKeys, log: log)
        store = RunStore(db: db, lookupTtlMs: config.authCacheTtlMs, rowTtlMs: config.runCacheTtlMs,
                         maxEntries: config.runCacheMaxEntries)
        if let limit = config.concurrencyLimit {
            limiter = ConcurrencyLimiter(loop: loop, endpoint: config.rateLimitRedis, limit: limit, threads: 2, log: log)
        } else {
            limiter = nil
        }
        responder = FeedResponder(loop: loop, config: config, log: log, limiter: limiter, databaseStalled: { db.stalled })
        channels = EnvChannels(loop: loop, subscriber: subscriber, config: config)
        feeds = RunFeedRegistry(loop: loop, channels: channels, store: store, answering: responder, config: config, log: log)
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
        lists = ListFeedRegistry(loop: loop, channels: channels, runsets: runsets, views: views, rows: store,
                                 answering: responder, databaseStalled: { db.stalled }, config: config)
        runsets.onHydrated = { [store] env, rows, startedAt in store.remember(envId: env, rows: rows, startedAt: startedAt) }
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
        let server = FastCGIServer(loop: loop, listenFd: l.socketFd, writer: responder.writer)
        fastcgi = server
        server.start { [self] conn in handle(conn) }
        if let readyFd { signalReady(fd: readyFd) }
        log.info("runfeed worker listening on \(l.address) (hold \(config.holdMs) ms ±\(Int(config.jitterRatio * 100))%, redis \(config.redis.host):\(config.redis.port), list membership via \(runsets.resolverName))")
        loop.run()
    }

    // MARK: requests

    func handle(_ conn: FastCGIConnection) {
        let info = conn.info
        let demand = responder.track(conn)
        let origin = info.headers.origin
        if info.method == "OPTIONS" {
            respond(conn, ElectricResponse.options(origin: origin, requestHeaders: info.headers.accessControlRequestHeaders))
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
            conn.routed()
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
        case .tagFeed:
            serveTagFeed(conn, ctx: ctx, query: query, demand: demand)
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
                legacyHeaderNames: !ElectricResponse.isModernClient(electricVersionHeader: conn.info.headers.triggerElectricVersion),
                apiVersion: conn.info.headers.triggerApiVersion)
            if query.live, case .at(let offset) = query.offset {
                if draining {
                    responder.answer(feed.liveReply(offset: offset, row: nil, readBasisMs: nil))
                } else {
                    admitLive(conn, envId: ctx.envId) { self.feeds.startLive(feed, offset: offset) }
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
                    responder.answer(feed.reply(rows: [(row, .update)],
                                                offset: Offset(updatedAtMs: row.updatedAtMs, tail: basis, token: row.digest), live: false))
                } else {
                    responder.answer(feed.reply(rows: [],
                                                offset: Offset(updatedAtMs: previous.updatedAtMs, tail: basis, token: view.token), live: false))
                }
                return
            }
            responder.answer(feed.reply(rows: row.map { [($0, .insert)] } ?? [],
                                        offset: Offset(updatedAtMs: row?.updatedAtMs ?? 0, tail: basis, token: row?.digest ?? 0), live: false))
        }
    }

    /// Admits a live poll under its environment's concurrency limit, then runs `start`: 429 when the
    /// environment already holds as many live polls as its limit allows, 500 when the count of held polls
    /// cannot be read.
    private func admitLive(_ conn: FastCGIConnection, envId: String, _ start: @escaping () -> Void) {
        guard let limiter else {
            start()
            return
        }
        limiter.acquire(envId: envId) { [self] admission in
            switch admission {
            case .admitted(let member):
                guard !conn.isAnswered else {
                    // Answered while waiting for admission (deadline, client gone): nothing holds it.
                    limiter.release(envId: envId, member: member)
                    return
                }
                responder.holdAdmission(conn, envId: envId, member: member)
                start()
            case .rejected:
                fail(conn, .tooManyLive)
            case .failed:
                fail(conn, .limitLookupFailed)
            }
        }
    }

    func fail(_ conn: FastCGIConnection, _ e: RequestError) { responder.fail(conn, e) }

    func respond(_ conn: FastCGIConnection, _ response: HTTPResponse) { responder.respond(conn, response) }

    // MARK: list feeds

    private func serveTagFeed(_ conn: FastCGIConnection, ctx: AuthContext, query: FeedQuery, demand: Demand) {
        let tags: [String]
        switch TagsParameter.parse(query.tags) {
        case .failure(let e):
            fail(conn, e)
            return
        case .success(let t):
            tags = t
        }
        if let scopes = ctx.scopes, !scopes.authorizes(any: RouteResources.tagFeed(tags: tags)) {
            fail(conn, .unauthorized)
            return
        }
        let now = wallMs()
        var handle: String
        var floor: Int64
        var extra: [(String, String)] = []
        if case .at = query.offset, let h = query.handle, case .tagFeed(let pinned, _, _)? = ListHandle.parse(h) {
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
            handle = ListHandle.mintTagFeed(floorMs: floor, seq: responder.nextCursor(), nonce: ListHandle.randomNonce()).text
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
            var handle = ListHandle.mintBatch(batchId: batchId, seq: responder.nextCursor(), nonce: ListHandle.randomNonce()).text
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
                        legacyHeaderNames: !ElectricResponse.isModernClient(electricVersionHeader: conn.info.headers.triggerElectricVersion),
                        apiVersion: conn.info.headers.triggerApiVersion, extraHeaders: extra, demand: demand)
    }

    private func startList(_ request: ListFeedRequest, query: FeedQuery) {
        if query.live, case .at(let offset) = query.offset, query.handle == request.handle {
            if draining {
                lists.send(request.reply(rows: [], offset: offset, live: true), view: .none)
            } else {
                admitLive(request.conn, envId: request.envId) { self.lists.startLive(request, offset: offset) }
            }
        } else {
            // A live request whose handle had to be replaced (a new window) starts over with a snapshot.
            lists.snapshot(request, offset: query.handle == request.handle ? query.offset : .snapshot)
        }
    }

    /// Every second, drops expired cache entries: the caches are bounded in entries, and this bounds
    /// them in time too, so rows with large payloads are not kept once stale.
    private func sweepCaches() {
        let now = monotonicMs()
        auth.purgeExpired(nowMs: now)
        store.purgeExpired(nowMs: now)
        runsets.purgeExpired(nowMs: now)
        lists.purgeExpired(nowMs: now)
        responder.purgeExpired(nowMs: now)
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
        log.info("draining: \(feeds.count) held polls, \(responder.inFlight) requests in flight")
        // Idle kept connections are closed now (nginx sends their next requests to other workers); the
        // others after their answer.
        fastcgi?.stopAccepting()
        feeds.answerAll()
        lists.answerAll()
        subscriber.shutdown()
        let deadline = monotonicMs() + config.drainTimeoutMs
        func check() {
            // Every request answered and written, every live admission released.
            let idle = responder.inFlight == 0 && responder.writer.inProgress == 0
                && (limiter?.pending ?? 0) == 0
            if idle || monotonicMs() >= deadline {
                log.info("drained (\(responder.inFlight) left); exiting")
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
