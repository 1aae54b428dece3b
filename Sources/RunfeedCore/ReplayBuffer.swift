/// The latest change-record arrival time per run of one environment, kept for a short window so a
/// feed that re-arms can see what arrived between two of its polls. Bounded in age and in runs.
public struct ReplayBuffer: Sendable {
    public let windowMs: Int64
    public let maxRuns: Int
    private var latest: [String: Int64] = [:]
    /// The latest change record per run (present for every run in `latest`; synthesized as a partial record
    /// when the run was recorded by id only).
    private var recordByRun: [String: ChangeRecord] = [:]
    /// When the latest record of each run was heard, on the local monotonic clock in µs (present when the
    /// caller gave it): orders the arrival against local row reads, which wall milliseconds cannot.
    private var heardUs: [String: Int64] = [:]
    /// Arrivals in time order; stale entries (superseded by a later arrival) are skipped on pruning.
    private var order: [(runId: String, atMs: Int64)] = []
    private var head = 0
    /// The latest arrival (wall ms) dropped to keep `maxRuns`, not for age: a gap that began at or before
    /// it is not covered by this buffer.
    public private(set) var evictedThroughMs = Int64.min

    public init(windowMs: Int64, maxRuns: Int) {
        self.windowMs = windowMs
        self.maxRuns = max(1, maxRuns)
    }

    public var count: Int { latest.count }

    /// Records that a change for `runId` arrived at `atMs` (wall clock). Without a change record the run's
    /// buffered record becomes partial (tag feeds must hydrate it).
    public mutating func record(runId: String, atMs: Int64) {
        var r = recordByRun[runId] ?? ChangeRecord(v: 0, runId: runId, envId: "")
        r.tags = nil
        store(r, atMs: atMs)
    }

    /// Records that `r` arrived at `atMs` (wall clock) and keeps it as the run's latest record. A missing
    /// `batchId`, `updatedAtMs` or `envId` keeps what an earlier record of the run said (`updatedAtMs`: the max).
    public mutating func record(_ r: ChangeRecord, atMs: Int64, heardUs: Int64? = nil) {
        store(recordByRun[r.runId].map { $0.folding(r, partialWins: false) } ?? r, atMs: atMs)
        if let heardUs { self.heardUs[r.runId] = heardUs } else { self.heardUs.removeValue(forKey: r.runId) }
    }

    /// The latest record of every run whose latest arrival is at or after `sinceMs` and still in the window,
    /// oldest arrival first.
    public func records(sinceMs: Int64) -> [ChangeRecord] {
        var out: [ChangeRecord] = []
        var seen = Set<String>()
        for i in head..<order.count {
            let e = order[i]
            guard e.atMs >= sinceMs, latest[e.runId] == e.atMs, let r = recordByRun[e.runId],
                  seen.insert(e.runId).inserted else { continue }
            out.append(r)
        }
        return out
    }

    /// The latest record of one run, if it is still buffered.
    public func latestRecord(runId: String) -> ChangeRecord? { recordByRun[runId] }

    private mutating func store(_ r: ChangeRecord, atMs: Int64) {
        let runId = r.runId
        recordByRun[runId] = r
        latest[runId] = max(atMs, latest[runId] ?? Int64.min)
        order.append((runId, atMs))
        prune(nowMs: atMs)
        while latest.count > maxRuns, head < order.count {
            let e = order[head]
            if latest[e.runId] == e.atMs { evictedThroughMs = max(evictedThroughMs, e.atMs) }
            dropHead()
        }
    }

    /// The latest change record of `runId`, if it arrived at or after `sinceMs` (wall ms) and is still
    /// buffered: its arrival in wall ms, and in local monotonic µs when that was recorded.
    public func lastArrival(runId: String, sinceMs: Int64) -> (atMs: Int64, heardUs: Int64?)? {
        guard let at = latest[runId], at >= sinceMs else { return nil }
        return (at, heardUs[runId])
    }

    /// True when a change for `runId` arrived at or after `sinceMs` and is still in the window.
    public func changed(runId: String, sinceMs: Int64) -> Bool {
        lastArrival(runId: runId, sinceMs: sinceMs) != nil
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
        if latest[e.runId] == e.atMs {
            latest.removeValue(forKey: e.runId)
            recordByRun.removeValue(forKey: e.runId)
            heardUs.removeValue(forKey: e.runId)
        }
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

/// How fresh the gap read of a live poll must be, as a lower bound (local monotonic µs) on when that read
/// started; nil when no gap read is needed.
///
/// - Gap not covered (this worker was not listening for the whole gap, or it is too old): a read started
///   now, since the change could have happened at any time.
/// - Covered, no record of the run since the client's previous response: no read.
/// - Covered, a record heard at `heardUs`: any read that started after the record arrived already sees the
///   write (records are published after the commit), so the row read shared by the polls the record woke
///   also serves every client that re-arms after it — on this worker or coming from another one. Without
///   the local arrival time, only a read started now will do.
public func gapReadFreshAfter(covered: Bool, heard: (atMs: Int64, heardUs: Int64?)?, nowUs: Int64) -> Int64? {
    guard covered else { return nowUs }
    guard let heard else { return nil }
    guard let us = heard.heardUs else { return nowUs }
    return min(us + 1, nowUs)
}
