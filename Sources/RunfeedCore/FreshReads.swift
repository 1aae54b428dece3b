/// Single-flight for reads that must be fresher than a given moment: one read per key at a time serves every
/// caller whose freshness it covers; callers that need a fresher answer than the read in flight wait for the
/// next one, which starts as soon as the current one finishes, fresh enough for all of them.
///
/// Pure: events in (a caller wants a read of a key fresher than T; the read of a key finished), actions out
/// (start a read; answer these waiters). The owner does the reading and keeps any cache of finished reads.
/// Times are monotonic µs.
public struct FreshReads<Key: Hashable, Waiter> {
    /// A read in flight for one key, and who waits for the one after it.
    struct Slot {
        /// The read in flight counts as started no earlier than this: when it was sent (`readsCountFromSend`),
        /// or the freshness it asked for.
        var startedAt: Int64
        var current: [Waiter]
        var next: [Waiter] = []
        /// The latest freshness asked by `next`.
        var nextFreshAfter: Int64 = Int64.min
    }

    /// Whether a read counts as started when it is sent (a primary database read) or at the freshness it asked
    /// for (a replica read, which the replica gate lets through once the replica has applied every commit made
    /// before then).
    public let readsCountFromSend: Bool
    private var slots: [Key: Slot] = [:]

    public init(readsCountFromSend: Bool) {
        self.readsCountFromSend = readsCountFromSend
    }

    public enum WantAction {
        /// Start a read of the key that reflects every commit made before `freshAfter`; `waiters` wait for it.
        case start(freshAfter: Int64, waiters: [Waiter])
        /// The waiter joined the read in flight.
        case joinedCurrent
        /// The waiter waits for the read after the one in flight.
        case queuedNext
    }

    /// A caller wants a read of `key` that started at or after `freshAfter`. `nowUs`: when a read started now
    /// is sent.
    public mutating func want(_ key: Key, freshAfter: Int64, nowUs: Int64, waiter: Waiter) -> WantAction {
        guard var slot = slots[key] else {
            slots[key] = Slot(startedAt: startedAt(freshAfter: freshAfter, nowUs: nowUs), current: [waiter])
            return .start(freshAfter: freshAfter, waiters: [waiter])
        }
        if slot.startedAt >= freshAfter {
            slot.current.append(waiter)
            slots[key] = slot
            return .joinedCurrent
        }
        slot.next.append(waiter)
        slot.nextFreshAfter = max(slot.nextFreshAfter, freshAfter)
        slots[key] = slot
        return .queuedNext
    }

    /// Joins the read of `key` in flight when it started at or after `freshAfter`; false (nothing changes)
    /// when there is none, or it is too old.
    public mutating func joinIfFresh(_ key: Key, freshAfter: Int64, waiter: Waiter) -> Bool {
        guard var slot = slots[key], slot.startedAt >= freshAfter else { return false }
        slot.current.append(waiter)
        slots[key] = slot
        return true
    }

    /// What to do once the read of a key finishes (with rows or an error: the owner hands the result out).
    public struct FinishAction {
        /// Those who waited for the read that finished.
        public var answer: [Waiter]
        /// The read to start next (those who needed a fresher answer), if any.
        public var start: (freshAfter: Int64, waiters: [Waiter])?
    }

    /// The read of `key` in flight finished (succeeded or failed). `nowUs`: when a read started now is sent.
    public mutating func finished(_ key: Key, nowUs: Int64) -> FinishAction {
        guard let slot = slots.removeValue(forKey: key) else { return FinishAction(answer: [], start: nil) }
        guard !slot.next.isEmpty else { return FinishAction(answer: slot.current, start: nil) }
        let fresh = slot.nextFreshAfter
        slots[key] = Slot(startedAt: startedAt(freshAfter: fresh, nowUs: nowUs), current: slot.next)
        return FinishAction(answer: slot.current, start: (fresh, slot.next))
    }

    /// When the read of `key` in flight counts as started (nil: none in flight).
    public func inFlightStartedAt(_ key: Key) -> Int64? { slots[key]?.startedAt }

    /// Keys with a read in flight.
    public var inFlightCount: Int { slots.count }

    private func startedAt(freshAfter: Int64, nowUs: Int64) -> Int64 {
        readsCountFromSend ? nowUs : freshAfter
    }
}
