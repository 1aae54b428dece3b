/// The realtime routes runfeed serves, matched on the decoded request path.
public enum Route: Equatable, Sendable {
    case run(friendlyId: String)
    case runs
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
            return .runs
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
