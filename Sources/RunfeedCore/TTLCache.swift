// Bounded TTL caches: FIFO eviction with expired entries evicted first.

/// A size-bounded cache whose entries expire `ttlMs` after they were set.
///
/// When a new key would exceed `maxEntries`, expired entries are evicted first, then the oldest-inserted entry
/// (FIFO; setting an existing key counts as a fresh insertion). All operations are O(1) amortized: a dictionary
/// plus an insertion-order queue with lazy deletion. Not thread-safe: confine it to one thread.
public final class BoundedTTLCache<Key: Hashable, Value> {
    private struct Entry {
        var value: Value
        var expiresAtMs: Int64
        var generation: UInt64
    }

    public let ttlMs: Int64
    public let maxEntries: Int
    private var entries: [Key: Entry] = [:]
    /// Insertion order; an element is stale when its generation no longer matches the live entry.
    private var order: [(key: Key, generation: UInt64)] = []
    private var head = 0
    private var nextGeneration: UInt64 = 0

    public init(ttlMs: Int64, maxEntries: Int) {
        self.ttlMs = ttlMs
        self.maxEntries = max(0, maxEntries)
    }

    /// Number of stored entries (expired entries may be counted until they are purged).
    public var count: Int { entries.count }

    /// The live value for `k`, or nil (an expired entry is removed).
    public func get(_ k: Key, nowMs: Int64) -> Value? {
        guard let e = entries[k] else { return nil }
        if nowMs >= e.expiresAtMs {
            entries.removeValue(forKey: k)
            return nil
        }
        return e.value
    }

    public func set(_ k: Key, _ v: Value, nowMs: Int64) {
        guard maxEntries > 0 else { return }
        purgeExpiredFront(nowMs: nowMs)
        if entries[k] == nil {
            while entries.count >= maxEntries, let victim = popFront() {
                entries.removeValue(forKey: victim)
            }
        }
        nextGeneration &+= 1
        entries[k] = Entry(value: v, expiresAtMs: nowMs &+ ttlMs, generation: nextGeneration)
        order.append((k, nextGeneration))
        compactIfNeeded()
    }

    public func remove(_ k: Key) {
        entries.removeValue(forKey: k)
        compactIfNeeded()
    }

    public func removeAll() {
        entries.removeAll()
        order.removeAll()
        head = 0
    }

    /// Removes expired entries at the front of the insertion order (they are also the earliest to expire
    /// when the clock is monotonic, because every entry has the same TTL).
    public func purgeExpired(nowMs: Int64) { purgeExpiredFront(nowMs: nowMs) }

    private func purgeExpiredFront(nowMs: Int64) {
        while head < order.count {
            let item = order[head]
            guard let e = entries[item.key], e.generation == item.generation else { head += 1; continue }
            guard nowMs >= e.expiresAtMs else { break }
            entries.removeValue(forKey: item.key)
            head += 1
        }
        compactIfNeeded()
    }

    /// Pops the oldest live key from the queue (skipping stale items).
    private func popFront() -> Key? {
        while head < order.count {
            let item = order[head]
            head += 1
            if let e = entries[item.key], e.generation == item.generation { return item.key }
        }
        return nil
    }

    private func compactIfNeeded() {
        let queued = order.count - head
        if head > 0 && head * 2 >= order.count {
            order.removeFirst(head)
            head = 0
        } else if queued > 2 * entries.count + 32 {
            order = order[head...].filter { item in entries[item.key]?.generation == item.generation }
            head = 0
        }
        if order.isEmpty { head = 0 }
    }
}
