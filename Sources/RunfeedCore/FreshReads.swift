/// Single-flight for reads that must be fresher than a given moment: one read per key at a time serves every
/// caller whose freshness it covers; callers that need a fresher answer than the read in flight wait for the
/// next one, which starts as soon as the current one finishes, fresh enough for all of them.
///
/// Pure: events in (a caller wants a read of a key fresher than T; the read of a key finished), actions out
/// (start a read; answer these waiters). The owner does the reading and keeps any cache of finished reads.
/// Times are monotonic µs.
public struct FreshReads<Key: Hashable, Waiter> {
    /// A read in flight for one key, and who waits for the one after it.
    struct Flight {
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
    private var flights: [Key: Flight] = [:]

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
        guard var flight = flights[key] else {
            flights[key] = Flight(startedAt: startedAt(freshAfter: freshAfter, nowUs: nowUs), current: [waiter])
            return .start(freshAfter: freshAfter, waiters: [waiter])
        }
        if flight.startedAt >= freshAfter {
            flight.current.append(waiter)
            flights[key] = flight
            return .joinedCurrent
        }
        flight.next.append(waiter)
        flight.nextFreshAfter = max(flight.nextFreshAfter, freshAfter)
        flights[key] = flight
        return .queuedNext
    }

    /// Joins the read of `key` in flight when it started at or after `freshAfter`; false (nothing changes)
    /// when there is none, or it is too old.
    public mutating func joinIfFresh(_ key: Key, freshAfter: Int64, waiter: Waiter) -> Bool {
        guard var flight = flights[key], flight.startedAt >= freshAfter else { return false }
        flight.current.append(waiter)
        flights[key] = flight
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
        guard let flight = flights.removeValue(forKey: key) else { return FinishAction(answer: [], start: nil) }
        guard !flight.next.isEmpty else { return FinishAction(answer: flight.current, start: nil) }
        let fresh = flight.nextFreshAfter
        flights[key] = Flight(startedAt: startedAt(freshAfter: fresh, nowUs: nowUs), current: flight.next)
        return FinishAction(answer: flight.current, start: (fresh, flight.next))
    }

    /// When the read of `key` in flight counts as started (nil: none in flight).
    public func inFlightStartedAt(_ key: Key) -> Int64? { flights[key]?.startedAt }

    /// Keys with a read in flight.
    public var inFlightCount: Int { flights.count }

    private func startedAt(freshAfter: Int64, nowUs: Int64) -> Int64 {
        readsCountFromSend ? nowUs : freshAfter
    }
}
