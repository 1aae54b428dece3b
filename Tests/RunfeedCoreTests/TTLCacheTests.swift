import Foundation
import XCTest
@testable import RunfeedCore

final class BoundedTTLCacheTests: XCTestCase {
    func testGetSet() {
        let c = BoundedTTLCache<String, Int>(ttlMs: 100, maxEntries: 10)
        XCTAssertNil(c.get("a", nowMs: 0))
        c.set("a", 1, nowMs: 0)
        XCTAssertEqual(c.get("a", nowMs: 50), 1)
        XCTAssertEqual(c.count, 1)
    }

    func testExpiry() {
        let c = BoundedTTLCache<String, Int>(ttlMs: 100, maxEntries: 10)
        c.set("a", 1, nowMs: 1000)
        XCTAssertEqual(c.get("a", nowMs: 1099), 1)
        XCTAssertNil(c.get("a", nowMs: 1100))
        XCTAssertEqual(c.count, 0)
    }

    func testOverwriteRefreshesTTL() {
        let c = BoundedTTLCache<String, Int>(ttlMs: 100, maxEntries: 10)
        c.set("a", 1, nowMs: 0)
        c.set("a", 2, nowMs: 80)
        XCTAssertEqual(c.get("a", nowMs: 150), 2)
        XCTAssertEqual(c.count, 1)
    }

    func testFIFOEviction() {
        let c = BoundedTTLCache<Int, Int>(ttlMs: 1_000_000, maxEntries: 3)
        c.set(1, 1, nowMs: 0); c.set(2, 2, nowMs: 1); c.set(3, 3, nowMs: 2)
        XCTAssertEqual(c.get(1, nowMs: 3), 1)  // reads do not refresh order
        c.set(4, 4, nowMs: 4)
        XCTAssertNil(c.get(1, nowMs: 5))
        XCTAssertEqual(c.get(2, nowMs: 5), 2)
        XCTAssertEqual(c.get(4, nowMs: 5), 4)
        XCTAssertEqual(c.count, 3)
    }

    func testReinsertMovesToBack() {
        let c = BoundedTTLCache<Int, Int>(ttlMs: 1_000_000, maxEntries: 3)
        c.set(1, 1, nowMs: 0); c.set(2, 2, nowMs: 1); c.set(3, 3, nowMs: 2)
        c.set(1, 10, nowMs: 3)
        c.set(4, 4, nowMs: 4)
        XCTAssertEqual(c.get(1, nowMs: 5), 10)
        XCTAssertNil(c.get(2, nowMs: 5))
    }

    func testOverwriteWhenFullDoesNotEvict() {
        let c = BoundedTTLCache<Int, Int>(ttlMs: 1_000_000, maxEntries: 2)
        c.set(1, 1, nowMs: 0); c.set(2, 2, nowMs: 1)
        c.set(2, 20, nowMs: 2)
        XCTAssertEqual(c.get(1, nowMs: 3), 1)
        XCTAssertEqual(c.get(2, nowMs: 3), 20)
    }

    func testExpiredEvictedBeforeLive() {
        let c = BoundedTTLCache<Int, Int>(ttlMs: 100, maxEntries: 3)
        c.set(1, 1, nowMs: 0); c.set(2, 2, nowMs: 10); c.set(3, 3, nowMs: 150)
        c.set(4, 4, nowMs: 111)  // 1 and 2 have expired; both go, 3 stays
        XCTAssertEqual(c.count, 2)
        XCTAssertEqual(c.get(3, nowMs: 112), 3)
        XCTAssertEqual(c.get(4, nowMs: 112), 4)
    }

    func testRemove() {
        let c = BoundedTTLCache<Int, Int>(ttlMs: 1000, maxEntries: 2)
        c.set(1, 1, nowMs: 0); c.set(2, 2, nowMs: 0)
        c.remove(1)
        XCTAssertNil(c.get(1, nowMs: 1))
        c.set(3, 3, nowMs: 1)
        XCTAssertEqual(c.get(2, nowMs: 1), 2)
        XCTAssertEqual(c.get(3, nowMs: 1), 3)
        c.remove(42)
        XCTAssertEqual(c.count, 2)
    }

    func testZeroCapacity() {
        let c = BoundedTTLCache<Int, Int>(ttlMs: 1000, maxEntries: 0)
        c.set(1, 1, nowMs: 0)
        XCTAssertNil(c.get(1, nowMs: 0))
        XCTAssertEqual(c.count, 0)
    }

    func testBoundedUnderChurn() {
        let c = BoundedTTLCache<Int, Int>(ttlMs: 50, maxEntries: 100)
        for i in 0..<100_000 {
            c.set(i % 1000, i, nowMs: Int64(i))
            if i % 7 == 0 { c.remove((i + 3) % 1000) }
            XCTAssertLessThanOrEqual(c.count, 100)
        }
        XCTAssertEqual(c.get(99_999 % 1000, nowMs: 99_999), 99_999)
    }

    func testHotKeyDoesNotGrowQueue() {
        let c = BoundedTTLCache<Int, Int>(ttlMs: 1_000_000_000, maxEntries: 10)
        for k in 0..<9 { c.set(k, k, nowMs: 0) }
        for i in 0..<50_000 { c.set(100, i, nowMs: Int64(i)) }
        c.set(200, 1, nowMs: 50_001)  // evicts the oldest live entry (0)
        XCTAssertNil(c.get(0, nowMs: 50_002))
        XCTAssertEqual(c.get(1, nowMs: 50_002), 1)
        XCTAssertEqual(c.get(100, nowMs: 50_002), 49_999)
        XCTAssertEqual(c.count, 10)
    }

    func testLockedCacheConcurrentAccess() {
        let c = LockedTTLCache<Int, Int>(ttlMs: 10_000, maxEntries: 500)
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in 0..<2000 {
                c.set(t * 10_000 + i, i, nowMs: Int64(i))
                _ = c.get(t * 10_000 + i - 1, nowMs: Int64(i))
            }
        }
        XCTAssertEqual(c.count, 500)
        // Which keys survived the concurrent evictions is unspecified; remove one known to be present.
        c.set(-1, 0, nowMs: 2000)
        XCTAssertEqual(c.count, 500)
        c.remove(-1)
        XCTAssertEqual(c.count, 499)
        XCTAssertEqual(c.withCache { $0.count }, 499)
    }
}

/// A thread-safe wrapper around `BoundedTTLCache` (one lock around every operation): the cache used from
/// several threads at once, as a test of its bookkeeping under interleaved use.
final class LockedTTLCache<Key: Hashable & Sendable, Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private let cache: BoundedTTLCache<Key, Value>

    init(ttlMs: Int64, maxEntries: Int) {
        cache = BoundedTTLCache(ttlMs: ttlMs, maxEntries: maxEntries)
    }

    func get(_ k: Key, nowMs: Int64) -> Value? {
        lock.lock(); defer { lock.unlock() }
        return cache.get(k, nowMs: nowMs)
    }

    func set(_ k: Key, _ v: Value, nowMs: Int64) {
        lock.lock(); defer { lock.unlock() }
        cache.set(k, v, nowMs: nowMs)
    }

    func remove(_ k: Key) {
        lock.lock(); defer { lock.unlock() }
        cache.remove(k)
    }

    func removeAll() {
        lock.lock(); defer { lock.unlock() }
        cache.removeAll()
    }

    var count: Int {
        lock.lock(); defer { lock.unlock() }
        return cache.count
    }

    /// Runs `body` with exclusive access to the underlying cache (for compound read-modify-write steps).
    func withCache<R>(_ body: (BoundedTTLCache<Key, Value>) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(cache)
    }
}
