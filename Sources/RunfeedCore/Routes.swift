/// The realtime routes runfeed serves, matched on the decoded request path.
public enum Route: Equatable, Sendable {
    case run(friendlyId: String)
    case tagFeed
    case batch(friendlyId: String)

    /// Matches `/realtime/v1/runs/:runId`, `/realtime/v1/runs` and `/realtime/v1/batches/:batchId`
    /// (a trailing slash is tolerated). Nil for anything else.
    public static func match(path: String) -> Route? {
        var p = Substring(path)
        while p.hasSuffix("/") && p.count > 1 { p = p.dropLast() }
        let prefix = "/realtime/v1/"
        guard p.hasPrefix(prefix) else { return nil }
        let parts = p.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        switch (parts.count, parts.first) {
        case (1, "runs"):
            return .tagFeed
        case (2, "runs"):
            return validId(parts[1]).map { .run(friendlyId: $0) }
        case (2, "batches"):
            return validId(parts[1]).map { .batch(friendlyId: $0) }
        default:
            return nil
        }
    }

    /// Ids are opaque, but bounded and printable: anything else cannot name a row.
    private static func validId(_ s: Substring) -> String? {
        guard !s.isEmpty, s.utf8.count <= 128 else { return nil }
        for b in s.utf8 where b <= 0x20 || b >= 0x7f || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") {
            return nil
        }
        return String(s)
    }
}

/// The labels a request is counted under in the worker's request metrics: a bounded set whatever the
/// request, so every series can be created at start-up.
public struct RequestLabels: Equatable, Hashable, Sendable {
    /// `run` (`/realtime/v1/runs/:id`), `runs` (the tag feed), `batch`, or `other` (any other path).
    public let route: String
    /// `live` for a request carrying `live=true` (a long-poll, also when it is refused before it is held),
    /// `preflight` for a CORS preflight (`OPTIONS`), `snapshot` for everything else (snapshots, catch-ups).
    public let mode: String

    public static let routes = ["run", "runs", "batch", "other"]
    public static let modes = ["snapshot", "live", "preflight"]
    /// Every status a worker answers with, plus `clientClosed`.
    public static let statuses = [200, 400, 401, 403, 404, 405, 429, 499, 500, 503]
    /// Counted instead of the answer's status for a held poll whose client had already gone (nginx
    /// closed the upstream connection) when it was answered: nobody received that answer. nginx logs
    /// the same code for such requests.
    public static let clientClosed = 499

    public init(route: String, mode: String) {
        self.route = route
        self.mode = mode
    }

    /// Classifies a request as the server routes it: the route from the path alone, `live` by the first
    /// `live` parameter (as `FeedQuery.parse` reads it).
    public init(method: String, path: String, queryString: String) {
        switch Route.match(path: path) {
        case .run?: route = "run"
        case .tagFeed?: route = "runs"
        case .batch?: route = "batch"
        case nil: route = "other"
        }
        if method == "OPTIONS" {
            mode = "preflight"
        } else if let live = QueryString.decode(queryString).first(where: { $0.0 == "live" }), live.1 == "true" {
            mode = "live"
        } else {
            mode = "snapshot"
        }
    }

    /// The label sets created at start-up: every route and status for snapshots and live polls, and the
    /// one status (200) a preflight is answered with.
    public static var startupSeries: [(labels: RequestLabels, status: Int)] {
        var out: [(RequestLabels, Int)] = []
        for route in routes {
            for mode in ["snapshot", "live"] {
                for status in statuses { out.append((RequestLabels(route: route, mode: mode), status)) }
            }
            out.append((RequestLabels(route: route, mode: "preflight"), 200))
        }
        return out
    }
}
