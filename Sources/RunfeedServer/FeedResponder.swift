import RunfeedCore
import RunfeedIO

/// Answers the worker's requests over FastCGI: builds each reply's body (cached per row version), writes
/// it, and keeps what ends with the answer — the request's database deadline and client watch while it is
/// not held, its live admission, the in-flight count and the request metrics. Loop thread only.
final class FeedResponder: FeedAnswering {
    private let loop: EventLoop
    let writer: ResponseWriter
    private let config: ServerConfig
    private let log: RunfeedLogger
    private let limiter: ConcurrencyLimiter?
    private let databaseStalled: () -> Bool
    /// Encoded change messages of recent row versions, and single-row answer bodies.
    private var encoded: BoundedTTLCache<String, String>
    private var seq: UInt64 = 0
    /// Requests read and not yet answered.
    private(set) var inFlight = 0
    /// Requests not yet answered or held: their database deadline and its timer.
    private var pending: [ObjectIdentifier: PendingRequest] = [:]
    /// Live polls admitted by the concurrency limiter, by connection: released when the poll is answered.
    private var admissions: [ObjectIdentifier: (envId: String, member: String)] = [:]

    private final class PendingRequest {
        let demand: Demand
        var timer: EventLoop.TimerID?
        init(_ demand: Demand) { self.demand = demand }
    }

    /// While the database is not keeping up, a new request waits at most this long for it (answers that need
    /// nothing but caches still go out).
    static let shedWaitMs: Int64 = 250

    init(loop: EventLoop, config: ServerConfig, log: RunfeedLogger, limiter: ConcurrencyLimiter?,
         databaseStalled: @escaping () -> Bool) {
        self.loop = loop
        self.config = config
        self.log = log
        self.limiter = limiter
        self.databaseStalled = databaseStalled
        writer = ResponseWriter(loop: loop, timeoutMs: config.writeTimeoutMs)
        encoded = BoundedTTLCache(ttlMs: 2_000, maxEntries: config.runCacheMaxEntries * 2)
    }

    /// A fresh `electric-cursor` value: a per-process counter wrapping below 2^53.
    func nextCursor() -> UInt64 {
        seq = seq >= (1 << 53) - 1 ? 1 : seq + 1
        return seq
    }

    func purgeExpired(nowMs: Int64) { encoded.purgeExpired(nowMs: nowMs) }

    // MARK: requests

    /// Starts tracking a request: its database deadline (`RUNFEED_REQUEST_TIMEOUT_MS`, or `shedWaitMs` while the
    /// database is not keeping up), answered 503 + `Retry-After` when it passes, and its client leaving (nginx
    /// closes the connection; stdin was drained, so any readability is EOF), which drops the queries it waits for.
    func track(_ conn: FastCGIConnection) -> Demand {
        inFlight += 1
        let waitMs = databaseStalled() ? min(config.requestTimeoutMs, Self.shedWaitMs) : config.requestTimeoutMs
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

    /// The live poll of `conn` holds one of its environment's admissions until it is answered.
    func holdAdmission(_ conn: FastCGIConnection, envId: String, member: String) {
        admissions[ObjectIdentifier(conn)] = (envId, member)
    }

    // MARK: answers

    func fail(_ conn: FastCGIConnection, _ e: RequestError) {
        respond(conn, ElectricResponse.error(e, origin: conn.info.headers.origin))
    }

    func respond(_ conn: FastCGIConnection, _ response: HTTPResponse) {
        untrack(conn, clientGone: conn.clientGone)
        if let admission = admissions.removeValue(forKey: ObjectIdentifier(conn)) {
            limiter?.release(envId: admission.envId, member: admission.member)
        }
        if conn.respond(head: response.fastCGIHead(), body: response.body, with: writer) {
            inFlight -= 1
            let us = monotonicUs() - conn.acceptedAtUs
            // An answer to a client that had already gone is counted as 499, not as what it would have been.
            let status = conn.clientGone ? RequestLabels.clientClosed : response.status
            WorkerMetrics.shared.request(conn.labels, status: status, seconds: Double(us) / 1e6)
            log.debug("\(conn.info.method) \(conn.labels.route) \(conn.labels.mode) status=\(status) ms=\(us / 1000)")
        }
    }

    @discardableResult
    func answer(_ reply: FeedReply) -> Int {
        let rows = reply.rows, columns = reply.columns, apiVersion = reply.apiVersion
        if reply.live {
            // Now minus each emitted row's updatedAt.
            let now = wallMs()
            for (row, _) in rows { WorkerMetrics.shared.deliveryLag.record(Double(now - row.updatedAtMs) / 1000) }
        }
        // One row (or none): the same body for every feed answered with that row version (its digest, not
        // its updatedAt, which two versions can share) — a fan-out encodes it once.
        let body: String
        if let memo = reply.memo, rows.count > 1 {
            let key = columns.signature + (apiVersion == RunEncoder.currentApiVersion ? "|current" : "|legacy")
            if let hit = memo.snapshotBodies[key] {
                body = hit
            } else {
                body = feedBody(rows, columns, apiVersion)
                memo.snapshotBodies[key] = body
            }
        } else {
            body = rows.count > 1 ? feedBody(rows, columns, apiVersion) : encodedOnce(
                "body|\(rows.first.map { "\($0.0.id)|\($0.0.digest)|\($0.1.rawValue)" } ?? "")|\(columns.signature)|\(apiVersion == RunEncoder.currentApiVersion)"
            ) { feedBody(rows, columns, apiVersion) }
        }
        var response = ElectricResponse.feed(
            handle: reply.handle, offset: reply.offset.text, cursor: reply.live ? String(nextCursor()) : nil, live: reply.live,
            schema: reply.live ? nil : RunEncoder.schemaHeader(columns), body: body, upToDate: true,
            legacyHeaderNames: reply.legacyHeaderNames)
        response.headers.append(contentsOf: reply.extraHeaders)
        respond(reply.conn, response)
        return body.utf8.count
    }

    /// The rows as change messages, then `up-to-date`. Each message is cached per row version, columns
    /// and operation: a 1,000-row snapshot served again within the cache's life is a concatenation.
    private func feedBody(_ rows: [(RunRow, ChangeOperation)], _ columns: ColumnSet, _ apiVersion: String?) -> String {
        let messages = rows.map { row, op in
            encodedOnce("msg|\(row.id)|\(row.digest)|\(columns.signature)|\(op.rawValue)") {
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
}
