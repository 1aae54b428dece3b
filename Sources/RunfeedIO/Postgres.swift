import CPostgres
#if canImport(Glibc)
import Glibc
#endif

/// Rows of a query in libpq's text format; nil is SQL NULL.
public struct PGRows: Sendable {
    public var columns: [String]
    public var rows: [[String?]]
    /// When the statement was sent (wall clock, µs since the epoch): it sees every commit before then.
    public var startedAtUs: Int64
    public init(columns: [String], rows: [[String?]], startedAtUs: Int64 = 0) {
        self.columns = columns
        self.rows = rows
        self.startedAtUs = startedAtUs
    }
}

public struct PGError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The connection failed (as opposed to the statement): the pool reconnects.
    public var connectionLost: Bool
    /// The server's SQLSTATE for a failed statement (e.g. `42P01` undefined table), when it sent one.
    public var sqlState: String? = nil

    public init(description: String, connectionLost: Bool, sqlState: String? = nil) {
        self.description = description
        self.connectionLost = connectionLost
        self.sqlState = sqlState
    }

    /// The statement names a table or column this database does not have (an older schema).
    public var isUndefinedObject: Bool { sqlState == "42P01" || sqlState == "42703" }
}

/// One libpq connection, used by one thread at a time. Parameterized queries only.
public final class PGConnection {
    private let conninfo: String
    private var conn: OpaquePointer?
    private let statementTimeoutMs: Int

    public init(conninfo: String, statementTimeoutMs: Int = 10_000) {
        self.conninfo = conninfo
        self.statementTimeoutMs = statementTimeoutMs
    }

    deinit { if let c = conn { PQfinish(c) } }

    private func connect() throws {
        if let c = conn { PQfinish(c); conn = nil }
        let keys = ["dbname", "connect_timeout", "application_name"]
        let values = [conninfo, "5", "runfeed"]
        let c: OpaquePointer? = withCStringArray(keys) { k in
            withCStringArray(values) { v in PQconnectdbParams(k, v, 1) }
        }
        guard let c, PQstatus(c) == CONNECTION_OK else {
            let msg = c.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let c { PQfinish(c) }
            throw PGError(description: "connect: \(msg.trimmingTrailingNewlines())", connectionLost: true)
        }
        conn = c
        // Zone-less timestamp(3) columns hold UTC: keep the session in UTC so now() compares right.
        _ = try execOnce("SET TimeZone TO 'UTC'", [])
        if statementTimeoutMs > 0 {
            _ = try execOnce("SET statement_timeout TO \(statementTimeoutMs)", [])
        }
    }

    /// Runs a parameterized statement, reconnecting once if the connection was lost (server restart).
    public func query(_ sql: String, _ params: [String?]) throws -> PGRows {
        if conn == nil || PQstatus(conn) != CONNECTION_OK { try connect() }
        do {
            return try execOnce(sql, params)
        } catch let e as PGError where e.connectionLost {
            try connect()
            return try execOnce(sql, params)
        }
    }

    private func execOnce(_ sql: String, _ params: [String?]) throws -> PGRows {
        guard let c = conn else { throw PGError(description: "not connected", connectionLost: true) }
        let startedAtUs = wallUs()
        let res: OpaquePointer? = withOptionalCStringArray(params) { values in
            PQexecParams(c, sql, Int32(params.count), nil, values, nil, nil, 0)
        }
        defer { PQclear(res) }
        let status = PQresultStatus(res)
        switch status {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
            break
        default:
            let lost = PQstatus(c) != CONNECTION_OK
            let msg = res.map { String(cString: PQresultErrorMessage($0)) } ?? String(cString: PQerrorMessage(c))
            let state = res.flatMap { PQresultErrorField($0, Int32(UInt8(ascii: "C"))) }.map { String(cString: $0) }
            throw PGError(description: msg.trimmingTrailingNewlines(), connectionLost: lost, sqlState: state)
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

/// A small fixed pool of connections, each owned by its own OS thread. Callers get their result on
/// the pool thread and hop back to their event loop themselves.
public final class PostgresPool: @unchecked Sendable {
    public typealias Completion = @Sendable (Result<PGRows, PGError>) -> Void
    private struct Job: Sendable {
        let sql: String
        let params: [String?]
        let done: Completion
    }
    private let queue = JobQueue<Job>()
    public let size: Int

    public init(conninfo: String, size: Int, statementTimeoutMs: Int = 10_000) {
        self.size = max(1, size)
        for i in 0..<self.size {
            startThread(name: "pg-\(i)") { [queue] in
                let conn = PGConnection(conninfo: conninfo, statementTimeoutMs: statementTimeoutMs)
                while let job = queue.pop() {
                    let result: Result<PGRows, PGError>
                    do {
                        result = .success(try conn.query(job.sql, job.params))
                    } catch let e as PGError {
                        result = .failure(e)
                    } catch {
                        result = .failure(PGError(description: "\(error)", connectionLost: false))
                    }
                    job.done(result)
                }
            }
        }
    }

    public func query(_ sql: String, _ params: [String?], _ done: @escaping Completion) {
        queue.push(Job(sql: sql, params: params, done: done))
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
