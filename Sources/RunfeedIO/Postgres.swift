import CPostgres
import RunfeedCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Rows of a query in libpq's text format; nil is SQL NULL.
public struct PGRows: Sendable {
    public var columns: [String]
    public var rows: [[String?]]
    /// When the statement was sent (wall clock, µs since the epoch): it sees every commit before then.
    public var startedAtUs: Int64
    /// Served by the read replica.
    public var fromReplica = false
    /// A replica read counts as a read that started at its watermark: this is that moment on the primary's
    /// clock (µs since the epoch), to use instead of the statement's own start (`statement_timestamp()`).
    public var readAtOverrideUs: Int64?
    /// … and on this worker's monotonic clock (µs); nil: when the statement was submitted.
    public var effectiveMonoUs: Int64?
    /// A bracketed statement (`PostgresPool.submit(bracket:)`): the commit time of the last transaction the server
    /// had replayed just before and just after it (µs since the epoch, primary's clock; nil: none / not a replica).
    public var replayedBeforeUs: Int64?
    public var replayedAfterUs: Int64?
    public init(columns: [String], rows: [[String?]], startedAtUs: Int64 = 0) {
        self.columns = columns
        self.rows = rows
        self.startedAtUs = startedAtUs
    }
}

public struct PGError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The connection failed or could not be made: the pool reconnects on its next query.
        case connection
        /// The server refused the statement (syntax, undefined table, …).
        case statement
        /// The statement ran past its deadline (the request's, or the statement timeout) and was cancelled.
        case timeout
        /// Never sent: its deadline passed, or every request waiting for it had gone, while it was queued.
        case dropped(clientGone: Bool)
        /// Never queued: the pool's queue was full (the database is not keeping up).
        case saturated
    }

    public var description: String
    public var kind: Kind
    /// The server's SQLSTATE for a failed statement (e.g. `42P01` undefined table), when it sent one.
    public var sqlState: String? = nil

    public init(description: String, connectionLost: Bool, sqlState: String? = nil) {
        self.description = description
        self.kind = connectionLost ? .connection : .statement
        self.sqlState = sqlState
    }

    public init(_ kind: Kind, _ description: String, sqlState: String? = nil) {
        self.description = description
        self.kind = kind
        self.sqlState = sqlState
    }

    /// The connection failed (as opposed to the statement): the pool reconnects.
    public var connectionLost: Bool { kind == .connection }

    /// The statement names a table or column this database does not have (an older schema).
    public var isUndefinedObject: Bool { sqlState == "42P01" || sqlState == "42703" }

    /// The statement names a function this server does not have, or may not call (e.g. WAL positions on a
    /// managed service that hides them).
    public var isUnavailableFunction: Bool { sqlState == "42883" || sqlState == "42501" || sqlState == "55000" }

    /// Never reached the database (deadline, client gone, queue full): nothing is known about the server.
    public var neverSent: Bool {
        switch kind {
        case .dropped, .saturated: return true
        default: return false
        }
    }
}

/// One libpq connection, used by one thread at a time. Parameterized queries only, through the unnamed
/// statement (`PQsendQueryParams`): no named prepared statements and no session state (no `SET`), so a
/// connection pooler in transaction mode (PgBouncer) can hand each statement to any server connection.
/// Timeouts are enforced here, by cancelling the statement (`PQcancel`) when its deadline passes.
public final class PGConnection {
    private let conninfo: String
    private var conn: OpaquePointer?
    private let statementTimeoutMs: Int

    public init(conninfo: String, statementTimeoutMs: Int = 10_000) {
        self.conninfo = conninfo
        self.statementTimeoutMs = statementTimeoutMs
    }

    deinit { if let c = conn { PQfinish(c) } }

    /// Whether the connection is open (it may still have been closed by the server since).
    public var isConnected: Bool { conn != nil && PQstatus(conn) == CONNECTION_OK }

    private func connect(deadlineUs: Int64) throws {
        if let c = conn { PQfinish(c); conn = nil }
        // libpq's smallest connect timeout is 2 s; never more than 5 s or what the deadline leaves.
        let leftS = max(2, min(5, (deadlineUs - monotonicUs()) / 1_000_000))
        // TCP keepalives notice a server that went away without closing (the URL may override them).
        let keys = ["keepalives_idle", "keepalives_interval", "keepalives_count", "dbname", "connect_timeout", "application_name"]
        let values = ["10", "5", "3", conninfo, String(leftS), "runfeed"]
        let c: OpaquePointer? = withCStringArray(keys) { k in
            withCStringArray(values) { v in PQconnectdbParams(k, v, 1) }
        }
        guard let c, PQstatus(c) == CONNECTION_OK else {
            let msg = c.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let c { PQfinish(c) }
            throw PGError(.connection, "connect: \(msg.trimmingTrailingNewlines())")
        }
        conn = c
    }

    /// Closes the connection (the next query reconnects).
    public func close() {
        if let c = conn { PQfinish(c) }
        conn = nil
    }

    /// Runs a parameterized statement, reconnecting once if the connection was lost (server restart).
    /// It is cancelled once `deadlineUs` (monotonic) or the statement timeout passes, whichever comes first.
    public func query(_ sql: String, _ params: [String?], deadlineUs: Int64? = nil) throws -> PGRows {
        let now = monotonicUs()
        var deadline = statementTimeoutMs > 0 ? now + Int64(statementTimeoutMs) * 1000 : Int64.max
        if let d = deadlineUs { deadline = min(deadline, d) }
        if conn == nil || PQstatus(conn) != CONNECTION_OK { try connect(deadlineUs: deadline) }
        do {
            return try execOnce(sql, params, deadlineUs: deadline)
        } catch let e as PGError where e.connectionLost && monotonicUs() < deadline {
            try connect(deadlineUs: deadline)
            return try execOnce(sql, params, deadlineUs: deadline)
        }
    }

    private func lost(_ what: String) -> PGError {
        let msg = conn.map { String(cString: PQerrorMessage($0)) } ?? "not connected"
        close()
        return PGError(.connection, "\(what): \(msg.trimmingTrailingNewlines())")
    }

    private func execOnce(_ sql: String, _ params: [String?], deadlineUs: Int64) throws -> PGRows {
        guard let c = conn else { throw PGError(.connection, "not connected") }
        let startedAtUs = wallUs()
        let sent: Int32 = withOptionalCStringArray(params) { values in
            PQsendQueryParams(c, sql, Int32(params.count), nil, values, nil, nil, 0)
        }
        guard sent == 1 else { throw lost("send") }
        var cancelled = false
        // After a cancel the server answers at once; a server that does not is given up on.
        var giveUpUs = Int64.max
        var first: OpaquePointer?
        defer { if let first { PQclear(first) } }
        while true {
            while PQisBusy(c) == 1 {
                let now = monotonicUs()
                if !cancelled && now >= deadlineUs {
                    cancelled = true
                    giveUpUs = now + 2_000_000
                    if let cancel = PQgetCancel(c) {
                        var err = [CChar](repeating: 0, count: 256)
                        _ = PQcancel(cancel, &err, Int32(err.count))
                        PQfreeCancel(cancel)
                    }
                }
                if now >= giveUpUs {
                    close()
                    throw PGError(.timeout, "statement cancelled at its deadline; the server did not answer the cancel")
                }
                let until = cancelled ? giveUpUs : deadlineUs
                var pfd = pollfd(fd: PQsocket(c), events: Int16(POLLIN), revents: 0)
                let waitMs = Int32(clamping: max(1, min(1_000, (until - now + 999) / 1000)))
                let rc = poll(&pfd, 1, waitMs)
                if rc < 0 && errno != EINTR { throw lost("poll") }
                if rc > 0 && PQconsumeInput(c) == 0 { throw lost("read") }
            }
            guard let r = PQgetResult(c) else { break }
            if first == nil { first = r } else { PQclear(r) }
        }
        guard let res = first else { throw lost("no result") }
        let status = PQresultStatus(res)
        switch status {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
            break
        default:
            let state = PQresultErrorField(res, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let msg = String(cString: PQresultErrorMessage(res)).trimmingTrailingNewlines()
            if PQstatus(c) != CONNECTION_OK {
                close()
                throw PGError(.connection, msg, sqlState: state)
            }
            if cancelled || state == "57014" { throw PGError(.timeout, msg, sqlState: state) }
            throw PGError(.statement, msg, sqlState: state)
        }
        let nf = Int(PQnfields(res))
        let nt = Int(PQntuples(res))
        var columns: [String] = []
        columns.reserveCapacity(nf)
        for f in 0..<nf { columns.append(String(cString: PQfname(res, Int32(f)))) }
        var rows: [[String?]] = []
        rows.reserveCapacity(nt)
        for t in 0..<nt {
            var row: [String?] = []
            row.reserveCapacity(nf)
            for f in 0..<nf {
                if PQgetisnull(res, Int32(t), Int32(f)) != 0 {
                    row.append(nil)
                } else {
                    row.append(String(cString: PQgetvalue(res, Int32(t), Int32(f))))
                }
            }
            rows.append(row)
        }
        return PGRows(columns: columns, rows: rows, startedAtUs: startedAtUs)
    }
}

/// One request (or held poll) that waits for database answers: queries it is the only reason for are dropped
/// before they are sent once it is gone (answered, client left) or past its deadline. Thread-safe.
public final class Demand: Sendable {
    /// Monotonic µs.
    public let deadlineUs: Int64
    /// `ended | gone` bits: one atomic word instead of a lock (every held poll has a demand).
    private let state = Atomic<UInt8>(0)
    private static let ended: UInt8 = 1
    private static let gone: UInt8 = 2

    public init(deadlineUs: Int64) { self.deadlineUs = deadlineUs }

    /// The request was answered, or its client left (`clientGone`): nothing it asked for is needed any more.
    public func end(clientGone: Bool = false) {
        state.bitwiseOr(clientGone ? Self.ended | Self.gone : Self.ended, ordering: .acquiringAndReleasing)
    }

    public var hasEnded: Bool { state.load(ordering: .acquiring) & Self.ended != 0 }
    public var clientGone: Bool { state.load(ordering: .acquiring) & Self.gone != 0 }

    func wants(nowUs: Int64) -> Bool { !hasEnded && nowUs < deadlineUs }
}

/// Who waits for one query (its first requester, then every request that joined it). The query is sent only
/// while one of them still wants it, and cancelled once the last deadline passes. Thread-safe.
public final class QueryDemands: Sendable {
    private let demands: Lock<[Demand]>

    public init(_ demands: [Demand] = []) { self.demands = Lock(demands) }
    public convenience init(_ demand: Demand?) { self.init(demand.map { [$0] } ?? []) }

    public func add(_ d: Demand?) {
        guard let d else { return }
        demands.withLock { $0.append(d) }
    }

    public var isEmpty: Bool { demands.withLock { $0.isEmpty } }

    /// nil: nobody in particular (a background query); else whether someone still wants it, and why not.
    func state(nowUs: Int64) -> (wanted: Bool, clientGone: Bool, deadlineUs: Int64)? {
        demands.withLock { demands in
            guard !demands.isEmpty else { return nil }
            let wanted = demands.contains { $0.wants(nowUs: nowUs) }
            let gone = demands.allSatisfy { $0.clientGone }
            return (wanted, gone, demands.map(\.deadlineUs).max() ?? Int64.max)
        }
    }
}

/// A small fixed pool of Postgres connections (a `BlockingPool`: each owned by its own OS thread, behind a
/// bounded FIFO); completions run on the submitting event loop.
///
/// Work is bounded: at most `queueLimit` statements wait for a connection (`submit` refuses more), a waiting
/// statement whose requests have all gone or whose deadline passed is dropped without being sent, and a
/// running one is cancelled at its deadline (or the statement timeout).
public final class PostgresPool: Sendable {
    /// The commit time of the last transaction a standby replayed (NULL on a primary, or before the first).
    static let replayedSQL = "SELECT (extract(epoch from pg_last_xact_replay_timestamp()) * 1000000)::bigint::text"

    private let pool: BlockingPool<PGConnection>
    /// When the last statement ended at its deadline without an answer (dropped for its deadline, cancelled).
    private let lastTimedOutUs = Lock<Int64>(Int64.min / 2)
    public let size: Int
    public let queueLimit: Int
    public let statementTimeoutMs: Int
    public let name: String

    public init(conninfo: String, size: Int, statementTimeoutMs: Int = 10_000, queueLimit: Int = 1_000,
                name: String = "pg") {
        self.size = max(1, size)
        self.queueLimit = max(1, queueLimit)
        self.statementTimeoutMs = statementTimeoutMs
        self.name = name
        pool = BlockingPool(name: name, threads: size, queueLimit: queueLimit) {
            PGConnection(conninfo: conninfo, statementTimeoutMs: statementTimeoutMs)
        }
    }

    /// Queues a statement; `done` gets its result on `loop`. Returns false (and never calls `done`) when the queue
    /// is full. `deadlineUs` (monotonic) applies when `demands` is nil or empty. `bracket`: on a standby, also read
    /// the last replayed commit's time just before and after it (`PGRows.replayedBeforeUs`/`…AfterUs`).
    @discardableResult
    public func submit(_ sql: String, _ params: [String?], deadlineUs: Int64, demands: QueryDemands?, bracket: Bool = false,
                       on loop: EventLoop, _ done: @escaping (Result<PGRows, PGError>) -> Void) -> Bool {
        let demands = demands.flatMap { $0.isEmpty ? nil : $0 }
        let lastTimedOutUs = lastTimedOutUs
        return pool.submit(work: { conn in
            let result = Self.run(conn, sql, params, deadlineUs: deadlineUs, demands: demands, bracket: bracket)
            if case .failure(let e) = result, e.kind == .timeout || e.kind == .dropped(clientGone: false) {
                lastTimedOutUs.withLock { $0 = monotonicUs() }
            }
            return result
        }, on: loop, done: done)
    }

    /// Runs one statement on a pool thread: dropped unsent when nobody wants it any more or its deadline passed,
    /// else sent and cancelled at the deadline.
    private static func run(_ conn: PGConnection, _ sql: String, _ params: [String?], deadlineUs: Int64,
                            demands: QueryDemands?, bracket: Bool) -> Result<PGRows, PGError> {
        let now = monotonicUs()
        let deadline: Int64
        if let state = demands?.state(nowUs: now) {
            guard state.wanted else {
                return .failure(PGError(.dropped(clientGone: state.clientGone),
                                        state.clientGone ? "dropped: the client had gone" : "dropped: its deadline passed"))
            }
            deadline = state.deadlineUs
        } else {
            deadline = deadlineUs
        }
        if now >= deadline {
            return .failure(PGError(.dropped(clientGone: false), "dropped: its deadline passed"))
        }
        do {
            if bracket {
                // Same connection, so the same server: what it had replayed around the statement's snapshot.
                let before = try conn.query(Self.replayedSQL, [], deadlineUs: deadline)
                var rows = try conn.query(sql, params, deadlineUs: deadline)
                let after = try conn.query(Self.replayedSQL, [], deadlineUs: deadline)
                rows.replayedBeforeUs = before.rows.first?.first?.flatMap { Int64($0) }
                rows.replayedAfterUs = after.rows.first?.first?.flatMap { Int64($0) }
                return .success(rows)
            }
            return .success(try conn.query(sql, params, deadlineUs: deadline))
        } catch let e as PGError {
            return .failure(e)
        } catch {
            return .failure(PGError(.statement, "\(error)"))
        }
    }

    /// A snapshot of the pool's load.
    public struct Load: Sendable {
        /// Statements waiting for a connection.
        public var queued: Int
        /// Statements running (or being dropped).
        public var running: Int
        /// How long the oldest waiting statement has waited (µs; 0 when none waits).
        public var oldestWaitUs: Int64
        /// How long the longest-running statement has run (µs; 0 when none runs).
        public var longestRunningUs: Int64
        /// Since a statement last ended at its deadline without an answer (µs).
        public var sinceTimedOutUs: Int64
    }

    public var load: Load {
        let l = pool.load
        let timedOut = lastTimedOutUs.withLock { $0 }
        return Load(queued: l.queued, running: l.running, oldestWaitUs: l.oldestWaitUs,
                    longestRunningUs: l.longestRunningUs, sinceTimedOutUs: monotonicUs() - timedOut)
    }
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var s = self
        while s.last == "\n" || s.last == "\r" { s.removeLast() }
        return s
    }
}

/// Calls `body` with a NULL-terminated array of C strings that live for the call.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let dups: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { dups.forEach { free($0) } }
    var ptrs: [UnsafePointer<CChar>?] = dups.map { UnsafePointer($0) }
    ptrs.append(nil)
    return ptrs.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Like `withCStringArray`, with nil entries passed as NULL (SQL NULL parameters).
func withOptionalCStringArray<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let dups: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } ?? nil }
    defer { dups.forEach { free($0) } }
    let ptrs: [UnsafePointer<CChar>?] = dups.map { UnsafePointer($0) }
    if ptrs.isEmpty { return body(nil) }
    return ptrs.withUnsafeBufferPointer { body($0.baseAddress!) }
}
