// Wake coalescing per env channel (leading edge, then one batch per window) and the FIFO resolve admission gate.

extension ChangeRecord {
    /// Folds a later record for the same run into an earlier one: the later record's fields win, except that a
    /// missing `batchId` or `updatedAtMs` keeps the earlier value (`updatedAtMs`: the maximum) and an empty
    /// `envId` keeps the earlier one. With `partialWins`, the result is partial if either record is.
    func folding(_ later: ChangeRecord, partialWins: Bool) -> ChangeRecord {
        var r = later
        if r.batchId == nil { r.batchId = batchId }
        if let a = updatedAtMs { r.updatedAtMs = max(a, r.updatedAtMs ?? a) }
        if r.envId.isEmpty { r.envId = envId }
        if partialWins && tags == nil { r.tags = nil }
        return r
    }
}

/// What to do with an offered record.
public enum CoalescerStep: Sendable, Equatable {
    /// Leading edge: the first record of a quiet period. Deliver it now and arm a timer for `windowEndsAtMs`
    /// that calls `windowEnded` (with `windowMs ≤ 0` no timer is needed).
    case deliverNow([ChangeRecord], windowEndsAtMs: Int64)
    /// Held until the current window ends.
    case buffered
}

/// A leading-edge throttle for one env channel. The first record after a quiet period is delivered at once;
/// later records accumulate (latest per run) until the window ends, are delivered then, and open the next
/// window. A window that ends with nothing accumulated makes the channel quiet again. Nothing is dropped: every
/// offered record is either delivered by `offer` or by the next `windowEnded` (or `flush`).
///
/// Accumulated records of one run are folded: the latest wins, but the result is partial (`tags == nil`) if
/// any of them was partial, so tag feeds still hydrate the run; a known `batchId` and the largest
/// `updatedAtMs` are kept. Delivery order is the order in which runs first entered the window.
public struct LeadingEdgeCoalescer: Sendable {
    public let windowMs: Int64
    /// The end of the open window, or nil when quiet.
    public private(set) var windowEndsAtMs: Int64?
    private var pending: [String: ChangeRecord] = [:]
    private var order: [String] = []

    public init(windowMs: Int64) {
        self.windowMs = windowMs
    }

    public var isQuiet: Bool { windowEndsAtMs == nil }
    /// Runs waiting for the end of the window.
    public var pendingCount: Int { order.count }

    public mutating func offer(_ r: ChangeRecord, nowMs: Int64) -> CoalescerStep {
        guard windowMs > 0 else { return .deliverNow([r], windowEndsAtMs: nowMs) }
        guard windowEndsAtMs != nil else {
            let end = CreatedAtWindow.saturatingAdd(nowMs, windowMs)
            windowEndsAtMs = end
            return .deliverNow([r], windowEndsAtMs: end)
        }
        if let prev = pending[r.runId] {
            pending[r.runId] = prev.folding(r, partialWins: true)
        } else {
            pending[r.runId] = r
            order.append(r.runId)
        }
        return .buffered
    }

    /// Call when the armed timer fires. Delivers what accumulated and, if anything did, opens the next window
    /// (arm a timer for `nextWindowEndsAtMs`); otherwise the channel goes quiet (`nextWindowEndsAtMs == nil`).
    public mutating func windowEnded(nowMs: Int64) -> (deliver: [ChangeRecord], nextWindowEndsAtMs: Int64?) {
        guard windowEndsAtMs != nil else { return ([], nil) }
        let out = drain()
        if out.isEmpty {
            windowEndsAtMs = nil
            return ([], nil)
        }
        let end = CreatedAtWindow.saturatingAdd(nowMs, windowMs)
        windowEndsAtMs = end
        return (out, end)
    }

    /// Delivers whatever accumulated and goes quiet (for shutdown or unsubscribe; cancel the timer).
    public mutating func flush() -> [ChangeRecord] {
        windowEndsAtMs = nil
        return drain()
    }

    private mutating func drain() -> [ChangeRecord] {
        let out = order.map { pending[$0]! }
        order.removeAll(keepingCapacity: true)
        pending.removeAll(keepingCapacity: true)
        return out
    }
}

/// A FIFO counting semaphore without threads: the caller runs a ticket when `acquire` says so, or later when
/// a `release` hands it the ticket. `limit ≤ 0` means unlimited.
public struct AdmissionGate: Sendable {
    public let limit: Int
    /// Tickets holding a permit.
    public private(set) var running = 0
    private var queue: [UInt64] = []
    private var head = 0

    public init(limit: Int) {
        self.limit = limit
    }

    /// Tickets waiting for a permit.
    public var queued: Int { queue.count - head }

    /// True: the ticket holds a permit and runs now. False: it is queued behind earlier tickets.
    public mutating func acquire(_ ticket: UInt64) -> Bool {
        if limit <= 0 || (running < limit && queued == 0) {
            running += 1
            return true
        }
        queue.append(ticket)
        return false
    }

    /// Gives back one permit. If a ticket is queued, the permit passes to it (oldest first) and it is returned:
    /// run it now. Otherwise returns nil. A release without a running ticket is ignored.
    public mutating func release() -> UInt64? {
        guard running > 0 else { return nil }
        if head < queue.count {
            let next = queue[head]
            head += 1
            compact()
            return next  // the permit moves from the releasing ticket to `next`: running is unchanged
        }
        running -= 1
        return nil
    }

    /// Withdraws a queued ticket (its request went away). True if it was queued.
    public mutating func cancel(_ ticket: UInt64) -> Bool {
        guard let i = queue[head...].firstIndex(of: ticket) else { return false }
        queue.remove(at: i)
        compact()
        return true
    }

    private mutating func compact() {
        if head == queue.count {
            queue.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 64 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
    }
}
