/// Coalesces concurrent lookups of the same key: the first caller starts the work, later callers wait
/// for its result instead of starting their own (a cache entry expiring under a burst of requests costs
/// one query, not one per request). Not thread-safe: use it from one thread (the event loop).
public struct SingleFlight<Key: Hashable, Value> {
    private var waiting: [Key: [(Value) -> Void]] = [:]

    public init() {}

    /// Adds `waiter` for `key`; true when no lookup of `key` is in flight, so the caller must start one
    /// and call `complete` when it ends.
    public mutating func join(_ key: Key, _ waiter: @escaping (Value) -> Void) -> Bool {
        if waiting[key] != nil {
            waiting[key]!.append(waiter)
            return false
        }
        waiting[key] = [waiter]
        return true
    }

    /// Ends the lookup of `key`; returns its waiters, to be called with the value.
    public mutating func complete(_ key: Key) -> [(Value) -> Void] {
        waiting.removeValue(forKey: key) ?? []
    }

    public var inFlight: Int { waiting.count }
}
