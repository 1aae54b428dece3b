import RunfeedCore
import RunfeedIO

/// One answer to a feed request, whoever built it: the change messages (then `up-to-date`) with the
/// headers of a live or non-live response, for one connection.
struct FeedReply {
    let conn: FastCGIConnection
    let handle: String
    let offset: Offset
    let columns: ColumnSet
    let legacyHeaderNames: Bool
    let apiVersion: String?
    /// Each row with how the client applies it.
    let rows: [(RunRow, ChangeOperation)]
    let live: Bool
    var extraHeaders: [(String, String)] = []
    /// The resolve a list snapshot's rows come from: its body is built once per columns and API version.
    var memo: RunsetMemo? = nil
}

/// Where the feed registries hand their answers. The server implements it (FastCGI); tests record.
protocol FeedAnswering: AnyObject {
    /// The request is held as a live poll now: the poll's own deadline and EOF watch take over.
    func parked(_ conn: FastCGIConnection)
    /// Sends `reply`. Returns the size of its body.
    @discardableResult
    func answer(_ reply: FeedReply) -> Int
    /// Answers with an error.
    func fail(_ conn: FastCGIConnection, _ error: RequestError)
}

/// The run rows a live run poll reads (the worker's `RunStore`).
protocol RunRowSource: AnyObject {
    /// The row as of a read started at or after `freshAfter` (monotonic µs); nil when the run is gone.
    func readRow(envId: String, runId: String, freshAfter: Int64, demand: Demand?,
                 _ done: @escaping (Result<RunRow?, PGError>) -> Void)
    /// As `readRow`, gathered with other reads of the environment into one query (backstops).
    func readRowBatched(envId: String, runId: String, freshAfter: Int64, demand: Demand?,
                        _ done: @escaping (Result<RunRow?, PGError>) -> Void)
    /// The row read on the primary (a replica's copy was older than the change record).
    func readRowFromPrimary(envId: String, runId: String, demand: Demand?,
                            _ done: @escaping (Result<RunRow?, PGError>) -> Void)
    /// A row read at or after `freshAfter`, if one is cached.
    func cachedRow(envId: String, runId: String, freshAfter: Int64) -> RunRow?
}

/// The rows and memberships a list feed reads (the worker's `RunsetService`).
protocol RunsetSource: AnyObject {
    /// The runs `filter` covers, newest first, from a resolve started at or after `notBeforeUs` (wall µs).
    func runset(_ ctx: AuthContext, _ filter: ListFilter, notBeforeUs: Int64, demand: Demand?,
                _ done: @escaping (Result<Runset, RunsetFailure>) -> Void)
    /// Full rows by id, read at or after `freshAfter` (monotonic µs).
    func hydrate(envId: String, ids: [String], freshAfter: Int64, demands: QueryDemands?, fromPrimary: Bool,
                 _ done: @escaping (Result<[RunRow], RunsetFailure>) -> Void)
}

/// Where the views of list clients are shared between workers and hosts (the worker's `SharedViews`).
protocol ListViewStore: AnyObject {
    func load(envId: String, handle: String, token: UInt64, _ done: @escaping (ListView?) -> Void)
    func save(envId: String, handle: String, base: UInt64?, baseView: ListView?, token: UInt64, view: ListView,
              viewText: String?, _ done: @escaping (Bool) -> Void)
    /// Refreshes the expiry of the stored view.
    func touch(envId: String, handle: String)
}

extension RunStore: RunRowSource {}
extension RunsetService: RunsetSource {}
extension SharedViews: ListViewStore {}
