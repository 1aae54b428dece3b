/// The latest change-record arrival time per run of one environment, kept for a short window so a
/// feed that re-arms can see what arrived between two of its polls. Bounded in age and in runs.
public struct ReplayBuffer: Sendable {
    public let windowMs: Int64
    public let maxRuns: Int
    private var latest: [String: Int64] = [:]
    /// Arrivals in time order; stale entries (superseded by a later arrival) are skipped on pruning.
    private var order: [(runId: String, atMs: Int64)] = []
    private var head = 0

    public init(windowMs: Int64, maxRuns: Int) {
        self.windowMs = windowMs
        self.maxRuns = max(1, maxRuns)
    }

    public var count: Int { latest.count }

    /// Records that a change for `runId` arrived at `atMs` (wall clock).
    public mutating func record(runId: String, atMs: Int64) {
        latest[runId] = max(atMs, latest[runId] ?? Int64.min)
        order.append((runId, atMs))
        prune(nowMs: atMs)
        while latest.count > maxRuns, head < order.count {
            dropHead()
        }
    }

    /// True when a change for `runId` arrived at or after `sinceMs` and is still in the window.
    public func changed(runId: String, sinceMs: Int64) -> Bool {
        guard let at = latest[runId] else { return false }
        return at >= sinceMs
    }

    /// Run ids whose latest change arrived at or after `sinceMs`.
    public func runs(sinceMs: Int64) -> [String] {
        latest.compactMap { $0.value >= sinceMs ? $0.key : nil }
    }

    /// Forgets arrivals older than the window.
    public mutating func prune(nowMs: Int64) {
        let cutoff = nowMs - windowMs
        while head < order.count, order[head].atMs < cutoff { dropHead() }
        if head > 256 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    private mutating func dropHead() {
        let e = order[head]
        head += 1
        if latest[e.runId] == e.atMs { latest.removeValue(forKey: e.runId) }
    }
}

/// Whether this process heard every change record of an environment since a client's last response.
/// `subscribedAtMs` is when the channel subscription was confirmed (nil: not subscribed now),
/// `sinceMs` when the client's previous response was sent (from its offset), `skewMs` a margin for
/// clocks of other hosts.
public func gapCovered(subscribedAtMs: Int64?, sinceMs: Int64, nowMs: Int64, windowMs: Int64, skewMs: Int64) -> Bool {
    guard let sub = subscribedAtMs, sinceMs > 0 else { return false }
    let since = sinceMs - skewMs
    return sub <= since && since >= nowMs - windowMs && sinceMs <= nowMs + skewMs
}
