import CPostgres
import RunfeedCore
#if canImport(Glibc)
import Glibc
#endif

/// A logical replication connection (libpq, `replication=database`): slot creation and a COPY BOTH stream of
/// `pgoutput` messages. Blocking: use it on a thread of its own, never on an event loop or Swift's pool.
public final class ReplicationConnection {
    private var conn: OpaquePointer?
    public private(set) var streaming = false

    /// `databaseURL`: a libpq URL or key/value conninfo; `replication=database` is added.
    public init(databaseURL: String, applicationName: String = "runfeed-capture", connectTimeoutS: Int = 5) throws {
        let keys = ["keepalives_idle", "keepalives_interval", "keepalives_count", "connect_timeout", "application_name",
                    "dbname", "replication"]
        let values = ["10", "5", "3", String(connectTimeoutS), applicationName, databaseURL, "database"]
        let c: OpaquePointer? = withCStringArray(keys) { k in withCStringArray(values) { v in PQconnectdbParams(k, v, 1) } }
        guard let c, PQstatus(c) == CONNECTION_OK else {
            let msg = c.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let c { PQfinish(c) }
            throw PGError(.connection, "replication connect: \(msg.trimmingTrailingNewlines())")
        }
        conn = c
    }

    deinit { close() }

    public func close() {
        if let c = conn { PQfinish(c) }
        conn = nil
        streaming = false
    }

    /// A replication command or plain SQL (simple protocol, no parameters: only identifiers quoted by the caller).
    @discardableResult
    public func command(_ sql: String) throws -> PGRows {
        guard let c = conn else { throw PGError(.connection, "replication connection closed") }
        guard let res = PQexec(c, sql) else { throw PGError(.connection, "out of memory") }
        defer { PQclear(res) }
        switch PQresultStatus(res) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
            let nf = Int(PQnfields(res)), nt = Int(PQntuples(res))
            let cols = (0..<nf).map { String(cString: PQfname(res, Int32($0))) }
            var rows: [[String?]] = []
            for r in 0..<nt {
                rows.append((0..<nf).map { f in
                    PQgetisnull(res, Int32(r), Int32(f)) == 1 ? nil : String(cString: PQgetvalue(res, Int32(r), Int32(f)))
                })
            }
            return PGRows(columns: cols, rows: rows)
        default:
            throw Self.error(res, c)
        }
    }

    static func error(_ res: OpaquePointer?, _ c: OpaquePointer) -> PGError {
        let state = res.flatMap { r in PQresultErrorField(r, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } }
        let msg = res.map { String(cString: PQresultErrorMessage($0)) } ?? String(cString: PQerrorMessage(c))
        let lost = PQstatus(c) != CONNECTION_OK
        return PGError(lost ? .connection : .statement, msg.trimmingTrailingNewlines(), sqlState: state)
    }

    /// `IDENTIFY_SYSTEM`: the server's current WAL flush position.
    public func identifySystem() throws -> (systemId: String, timeline: Int, xlogPos: LSN) {
        let r = try command("IDENTIFY_SYSTEM")
        guard let row = r.rows.first, row.count >= 3, let id = row[0], let tli = row[1].flatMap({ Int($0) }),
              let pos = row[2].flatMap(LSN.init(text:)) else { throw PGError(.statement, "IDENTIFY_SYSTEM: unexpected answer") }
        return (id, tli, pos)
    }

    /// `START_REPLICATION SLOT … LOGICAL <lsn> (proto_version '1', publication_names '…')`; the connection is then
    /// in COPY BOTH mode. `slot` and `publication` must already be validated identifiers.
    public func startReplication(slot: String, publication: String, from lsn: LSN) throws {
        guard let c = conn else { throw PGError(.connection, "replication connection closed") }
        let pubList = PGText.quoteLiteralBody(PGText.quoteIdentifier(publication))
        let sql = "START_REPLICATION SLOT \(PGText.quoteIdentifier(slot)) LOGICAL \(lsn) (proto_version '1', publication_names '\(pubList)')"
        guard let res = PQexec(c, sql) else { throw PGError(.connection, "out of memory") }
        defer { PQclear(res) }
        guard PQresultStatus(res) == PGRES_COPY_BOTH else { throw Self.error(res, c) }
        _ = PQsetnonblocking(c, 1)
        streaming = true
    }

    public enum Read {
        case frame([UInt8])
        /// Nothing arrived within the wait.
        case idle
        /// The server ended the stream.
        case ended
    }

    /// The next CopyData message, waiting at most `timeoutMs` for one.
    public func read(timeoutMs: Int32) throws -> Read {
        guard let c = conn, streaming else { throw PGError(.connection, "not streaming") }
        var waited = false
        while true {
            var buf: UnsafeMutablePointer<CChar>?
            let n = PQgetCopyData(c, &buf, 1)
            if n > 0, let buf {
                let bytes = UnsafeRawBufferPointer(start: buf, count: Int(n)).map { $0 }
                PQfreemem(buf)
                return .frame(bytes)
            }
            if n == -1 {
                // End of the copy: collect the final result (an error such as a terminated walsender, or success).
                let res = PQgetResult(c)
                defer { if let res { PQclear(res) } }
                streaming = false
                if let res, PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_COPY_OUT {
                    throw Self.error(res, c)
                }
                return .ended
            }
            if n == -2 {
                streaming = false
                throw PGError(.connection, "replication stream: \(String(cString: PQerrorMessage(c)).trimmingTrailingNewlines())")
            }
            // n == 0: nothing complete buffered.
            if waited { return .idle }
            var pfd = pollfd(fd: PQsocket(c), events: Int16(POLLIN), revents: 0)
            let rc = poll(&pfd, 1, timeoutMs)
            if rc < 0, errno != EINTR { throw PGError(.connection, "poll: errno \(errno)") }
            if rc > 0, PQconsumeInput(c) == 0 {
                streaming = false
                throw PGError(.connection, "replication stream: \(String(cString: PQerrorMessage(c)).trimmingTrailingNewlines())")
            }
            waited = true
        }
    }

    /// Sends one CopyData message (a standby status update) and flushes it.
    public func send(_ bytes: [UInt8]) throws {
        guard let c = conn, streaming else { throw PGError(.connection, "not streaming") }
        let rc = bytes.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) { PQputCopyData(c, $0, Int32(bytes.count)) }
        }
        guard rc == 1 else { throw PGError(.connection, "send: \(String(cString: PQerrorMessage(c)).trimmingTrailingNewlines())") }
        // Non-blocking: flush what the socket takes now, the rest with the next call.
        var tries = 0
        while PQflush(c) == 1, tries < 100 {
            var pfd = pollfd(fd: PQsocket(c), events: Int16(POLLOUT), revents: 0)
            _ = poll(&pfd, 1, 50)
            tries += 1
        }
    }
}

