import RunfeedCore
import RunfeedIO
#if canImport(Glibc)
import Glibc
#endif

/// One worker: a FastCGI listener, an event loop that owns every parked live poll, the Redis
/// subscription, and the Postgres pool. All mutable state below is confined to the loop thread.
public final class Server: @unchecked Sendable {
    let config: ServerConfig
    let log: Logger
    let loop = EventLoop()
    let writers: BlockingPool
    let db: LoopDatabase
    let subscriber: RedisSubscriber
    let auth: Authenticator
    let store: RunStore
    let feeds: RunFeedRegistry
    private var listener: FastCGIListener?
    private var inFlight = 0
    private var draining = false
    private var encoded: BoundedTTLCache<String, String>

    /// Create after `ProcessSignals.blockProcessSignals()`: this starts the pool threads.
    public init(config: ServerConfig, log: Logger) {
        self.config = config
        self.log = log
        writers = BlockingPool(name: "fcgi-write", threads: config.writerThreads)
        let pool = PostgresPool(conninfo: config.databaseURL, size: config.pgPoolSize)
        db = LoopDatabase(pool: pool, loop: loop, log: log)
        subscriber = RedisSubscriber(loop: loop, endpoint: config.redis, sharded: config.redisSharded)
        auth = Authenticator(db: db, ttlMs: config.authCacheTtlMs, maxEntries: config.authCacheMaxEntries)
        store = RunStore(db: db, lookupTtlMs: config.authCacheTtlMs, rowTtlMs: config.runCacheTtlMs,
                         maxEntries: config.runCacheMaxEntries)
        encoded = BoundedTTLCache(ttlMs: 2_000, maxEntries: config.runCacheMaxEntries)
        feeds = RunFeedRegistry(loop: loop, subscriber: subscriber, config: config)
        feeds.server = self
    }

    /// Opens the listener and runs the event loop on the calling thread until SIGTERM drains it.
    public func run() throws {
        let l = try FastCGIListener(address: config.listen)
        listener = l
        try runLoop(with: l)
    }

    /// Runs on an already-listening socket (inherited from a supervisor).
    public func run(inheritedFd: Int32) throws {
        let l = try FastCGIListener(inheritedFd: inheritedFd, description: "fd \(inheritedFd)")
        listener = l
        try runLoop(with: l)
    }

    private func runLoop(with l: FastCGIListener) throws {
        subscriber.log = { [log] in log.info($0) }
        subscriber.onMessage = { [weak self] channel, payload in self?.feeds.received(channel: channel, payload: payload) }
        subscriber.onSubscriptionChange = { [weak self] channel, at in self?.feeds.subscriptionChanged(channel: channel, at: at) }
        subscriber.start()
        ProcessSignals.watch(on: loop) { [weak self] sig in self?.signalled(sig) }
        l.startAccepting { [loop, self] conn in
            loop.execute { self.handle(conn) }
        }
        log.info("runfeed worker listening on \(l.address) (hold \(config.holdMs) ms ±\(Int(config.jitterRatio * 100))%, redis \(config.redis.host):\(config.redis.port))")
        loop.run()
    }

    // MARK: requests

    func handle(_ conn: FastCGIConnection) {
        inFlight += 1
        let info = conn.info
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
        auth.authenticate(info) { [self] result in
            switch result {
            case .failure(let e):
                fail(conn, e)
            case .success(let ctx):
                switch FeedQuery.parse(queryString: info.queryString) {
                case .failure(let e):
                    fail(conn, e)
                case .success(let query):
                    dispatch(conn, route: route, ctx: ctx, query: query)
                }
            }
        }
    }

    private func dispatch(_ conn: FastCGIConnection, route: Route, ctx: AuthContext, query: FeedQuery) {
        switch route {
        case .run(let friendlyId):
            serveRun(conn, ctx: ctx, query: query, friendlyId: friendlyId)
        case .runs, .batch:
            respond(conn, ElectricResponse.error(RequestError(status: 501, body: "{\"error\":\"Not implemented: tag and batch feeds are not served by this version\"}"), origin: conn.info.headers["origin"]))
        }
    }

    private func serveRun(_ conn: FastCGIConnection, ctx: AuthContext, query: FeedQuery, friendlyId: String) {
        store.lookup(envId: ctx.envId, friendlyId: friendlyId) { [self] result in
            guard case .success(let found) = result else {
                fail(conn, .internal)
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
            let feed = RunFeedRequest(
                conn: conn, envId: ctx.envId, runId: run.id,
                columns: SkipColumns.resolve(jwtClaim: ctx.skipColumnsClaim, query: query.skipColumns),
                legacyHeaderNames: !ElectricResponse.isModernClient(electricVersionHeader: conn.info.headers["x-trigger-electric-version"]),
                apiVersion: conn.info.headers["x-trigger-api-version"])
            if query.live, case .at(let offset) = query.offset {
                if draining {
                    answerLive(feed, floorMs: max(0, offset.updatedAtMs), row: nil)
                } else {
                    feeds.startLive(feed, offset: offset)
                }
            } else {
                snapshot(feed, query: query)
            }
        }
    }

    /// Non-live: the initial snapshot (`offset=-1` or no handle), or a catch-up from a known offset.
    private func snapshot(_ feed: RunFeedRequest, query: FeedQuery) {
        var floor: Int64?
        if case .at(let o) = query.offset, query.handle == feed.handle { floor = max(0, o.updatedAtMs) }
        store.readRow(envId: feed.envId, runId: feed.runId, freshAfter: monotonicMs() - config.runCacheTtlMs) { [self] result in
            guard case .success(let row) = result else {
                fail(feed.conn, .internal)
                return
            }
            var messages: [String] = []
            var offsetMs = floor ?? 0
            if let row, floor == nil || row.updatedAtMs > floor! {
                messages.append(RunEncoder.changeMessage(runId: row.id, valueJSON: value(row, feed.columns),
                                                         operation: floor == nil ? "insert" : "update"))
                offsetMs = row.updatedAtMs
            }
            messages.append(RunEncoder.upToDate)
            let body = RunEncoder.rewriteForLegacyApiVersion(RunEncoder.body(messages), apiVersion: feed.apiVersion)
            respond(feed.conn, ElectricResponse.feed(
                handle: feed.handle, offset: Offset(updatedAtMs: offsetMs, tail: wallMs()).text, cursor: nil,
                live: false, schema: RunEncoder.schemaHeader(feed.columns), body: body, upToDate: true,
                legacyHeaderNames: feed.legacyHeaderNames))
        }
    }

    /// Answers a live poll: the row if it advanced, else `[up-to-date]` at the client's floor.
    func answerLive(_ feed: RunFeedRequest, floorMs: Int64, row: RunRow?) {
        var messages: [String] = []
        var offsetMs = floorMs
        if let row, row.updatedAtMs > floorMs {
            messages.append(RunEncoder.changeMessage(runId: row.id, valueJSON: value(row, feed.columns), operation: "update"))
            offsetMs = row.updatedAtMs
        }
        messages.append(RunEncoder.upToDate)
        let body = RunEncoder.rewriteForLegacyApiVersion(RunEncoder.body(messages), apiVersion: feed.apiVersion)
        respond(feed.conn, ElectricResponse.feed(
            handle: feed.handle, offset: Offset(updatedAtMs: offsetMs, tail: wallMs()).text,
            cursor: String(feeds.nextCursor()), live: true, schema: nil, body: body, upToDate: true,
            legacyHeaderNames: feed.legacyHeaderNames))
    }

    /// The encoded `value` object, shared by every feed that emits the same row version with the same columns.
    private func value(_ row: RunRow, _ columns: ColumnSet) -> String {
        let key = "\(row.id)|\(row.updatedAtMs)|\(columns.signature)"
        let now = monotonicMs()
        if let hit = encoded.get(key, nowMs: now) { return hit }
        let v = RunEncoder.valueJSON(row, columns: columns)
        encoded.set(key, v, nowMs: now)
        return v
    }

    func fail(_ conn: FastCGIConnection, _ e: RequestError) {
        respond(conn, ElectricResponse.error(e, origin: conn.info.headers["origin"]))
    }

    func respond(_ conn: FastCGIConnection, _ response: HTTPResponse) {
        let info = conn.info
        let started = conn.acceptedAt
        if conn.respond(response.fastCGIText(), on: writers) {
            inFlight -= 1
            log.debug("\(info.method) \(info.path) status=\(response.status) ms=\(monotonicMs() - started)")
        }
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
        listener?.stopAccepting()
        feeds.answerAll()
        subscriber.shutdown()
        let deadline = monotonicMs() + config.drainTimeoutMs
        func check() {
            if (inFlight == 0 && writers.load == 0) || monotonicMs() >= deadline {
                log.info("drained (\(inFlight) left); exiting")
                exit(0)
            }
            loop.schedule(afterMs: 20) { check() }
        }
        check()
    }
}

/// One run-feed request after auth and lookup: everything needed to answer it.
final class RunFeedRequest {
    let conn: FastCGIConnection
    let envId: String
    let runId: String
    let columns: ColumnSet
    let legacyHeaderNames: Bool
    let apiVersion: String?
    var handle: String { "run-" + runId }

    init(conn: FastCGIConnection, envId: String, runId: String, columns: ColumnSet, legacyHeaderNames: Bool, apiVersion: String?) {
        self.conn = conn
        self.envId = envId
        self.runId = runId
        self.columns = columns
        self.legacyHeaderNames = legacyHeaderNames
        self.apiVersion = apiVersion
    }
}
