import XCTest
@testable import RunfeedCore

final class LeadingEdgeCoalescerTests: XCTestCase {
    private func rec(_ id: String, tags: [String]? = [], batch: String? = nil, u: Int64? = nil) -> ChangeRecord {
        ChangeRecord(runId: id, envId: "e1", tags: tags, batchId: batch, updatedAtMs: u)
    }

    func testWindowZeroDeliversEverythingAtOnce() {
        var c = LeadingEdgeCoalescer(windowMs: 0)
        for (i, id) in ["a", "b", "a"].enumerated() {
            XCTAssertEqual(c.offer(rec(id), nowMs: Int64(i)), .deliverNow([rec(id)], windowEndsAtMs: Int64(i)))
            XCTAssertTrue(c.isQuiet)
        }
        XCTAssertTrue(c.windowEnded(nowMs: 5) == ([], nil))
        var neg = LeadingEdgeCoalescer(windowMs: -3)
        XCTAssertEqual(neg.offer(rec("a"), nowMs: 1), .deliverNow([rec("a")], windowEndsAtMs: 1))
    }

    func testLeadingEdgeThenBatchThenQuiet() {
        var c = LeadingEdgeCoalescer(windowMs: 250)
        XCTAssertTrue(c.isQuiet)
        XCTAssertEqual(c.offer(rec("a"), nowMs: 1000), .deliverNow([rec("a")], windowEndsAtMs: 1250))
        XCTAssertEqual(c.windowEndsAtMs, 1250)
        XCTAssertEqual(c.offer(rec("b"), nowMs: 1010), .buffered)
        XCTAssertEqual(c.offer(rec("c"), nowMs: 1020), .buffered)
        XCTAssertEqual(c.pendingCount, 2)
        let first = c.windowEnded(nowMs: 1250)
        XCTAssertEqual(first.deliver, [rec("b"), rec("c")])
        XCTAssertEqual(first.nextWindowEndsAtMs, 1500)
        XCTAssertFalse(c.isQuiet)
        // Nothing arrived in the second window: the channel goes quiet.
        let second = c.windowEnded(nowMs: 1500)
        XCTAssertEqual(second.deliver, [])
        XCTAssertNil(second.nextWindowEndsAtMs)
        XCTAssertTrue(c.isQuiet)
        // The next record is a leading edge again.
        XCTAssertEqual(c.offer(rec("d"), nowMs: 1600), .deliverNow([rec("d")], windowEndsAtMs: 1850))
    }

    func testSpuriousWindowEndWhileQuiet() {
        var c = LeadingEdgeCoalescer(windowMs: 100)
        XCTAssertTrue(c.windowEnded(nowMs: 0) == ([], nil))
        XCTAssertEqual(c.offer(rec("a"), nowMs: 1), .deliverNow([rec("a")], windowEndsAtMs: 101))
    }

    func testSameRunIsDeliveredAgainAfterItsLeadingEdge() {
        var c = LeadingEdgeCoalescer(windowMs: 100)
        _ = c.offer(rec("a", u: 1), nowMs: 0)
        XCTAssertEqual(c.offer(rec("a", u: 2), nowMs: 10), .buffered)
        XCTAssertEqual(c.windowEnded(nowMs: 100).deliver, [rec("a", u: 2)])
    }

    func testLatestPerRunInFirstArrivalOrder() {
        var c = LeadingEdgeCoalescer(windowMs: 100)
        _ = c.offer(rec("x"), nowMs: 0)
        _ = c.offer(rec("a", tags: ["t1"], u: 1), nowMs: 1)
        _ = c.offer(rec("b", tags: ["t2"], u: 1), nowMs: 2)
        _ = c.offer(rec("a", tags: ["t3"], u: 2), nowMs: 3)
        let out = c.windowEnded(nowMs: 100).deliver
        XCTAssertEqual(out, [rec("a", tags: ["t3"], u: 2), rec("b", tags: ["t2"], u: 1)])
    }

    func testPartialWinsWithinAWindow() {
        var c = LeadingEdgeCoalescer(windowMs: 100)
        _ = c.offer(rec("x"), nowMs: 0)
        _ = c.offer(rec("a", tags: ["t"], batch: "b1", u: 5), nowMs: 1)
        _ = c.offer(rec("a", tags: nil, batch: nil, u: nil), nowMs: 2)
        _ = c.offer(rec("b", tags: nil, u: 1), nowMs: 3)
        _ = c.offer(rec("b", tags: ["late"], batch: "b2", u: 2), nowMs: 4)
        let out = c.windowEnded(nowMs: 100).deliver
        XCTAssertEqual(out, [rec("a", tags: nil, batch: "b1", u: 5), rec("b", tags: nil, batch: "b2", u: 2)])
        // The next window starts fresh: a full record stays full.
        _ = c.offer(rec("a", tags: ["t"], u: 6), nowMs: 150)
        XCTAssertEqual(c.windowEnded(nowMs: 200).deliver, [rec("a", tags: ["t"], u: 6)])
    }

    func testBatchIdAndUpdatedAtAreKept() {
        var c = LeadingEdgeCoalescer(windowMs: 100)
        _ = c.offer(rec("x"), nowMs: 0)
        _ = c.offer(rec("a", batch: "b1", u: 9), nowMs: 1)
        _ = c.offer(rec("a", batch: nil, u: 4), nowMs: 2)
        XCTAssertEqual(c.windowEnded(nowMs: 100).deliver, [rec("a", batch: "b1", u: 9)])
        _ = c.offer(rec("a", batch: "b1"), nowMs: 101)
        _ = c.offer(rec("a", batch: "b2"), nowMs: 102)
        XCTAssertEqual(c.windowEnded(nowMs: 200).deliver, [rec("a", batch: "b2")])
    }

    func testEnvIdFromBareFramesDoesNotEraseKnownEnv() {
        var c = LeadingEdgeCoalescer(windowMs: 100)
        _ = c.offer(rec("x"), nowMs: 0)
        _ = c.offer(rec("a"), nowMs: 1)
        _ = c.offer(ChangeRecord.parse("a")!, nowMs: 2)
        let out = c.windowEnded(nowMs: 100).deliver
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(out[0].envId, "e1")
        XCTAssertNil(out[0].tags)
        XCTAssertEqual(out[0].v, 0)
    }

    func testFlush() {
        var c = LeadingEdgeCoalescer(windowMs: 100)
        _ = c.offer(rec("a"), nowMs: 0)
        _ = c.offer(rec("b"), nowMs: 1)
        XCTAssertEqual(c.flush(), [rec("b")])
        XCTAssertTrue(c.isQuiet)
        XCTAssertEqual(c.pendingCount, 0)
        XCTAssertEqual(c.flush(), [])
        XCTAssertEqual(c.offer(rec("c"), nowMs: 2), .deliverNow([rec("c")], windowEndsAtMs: 102))
    }

    func testSaturatingWindowEnd() {
        var c = LeadingEdgeCoalescer(windowMs: 100)
        XCTAssertEqual(c.offer(rec("a"), nowMs: Int64.max - 10), .deliverNow([rec("a")], windowEndsAtMs: Int64.max))
    }

    /// Random interleavings of offers and timer firings: every offered record is delivered, no later than one
    /// window after it was offered, and the last delivery of each run carries its newest data.
    func testNothingIsLostUnderRandomInterleavings() {
        for seed in UInt64(1)...40 {
            var rng = TestRNG(seed: seed)
            let window = Int64.random(in: 1...300, using: &rng)
            var c = LeadingEdgeCoalescer(windowMs: window)
            var timer: Int64?
            var now: Int64 = 0
            var counter: Int64 = 0
            var undelivered: [String: [Int64]] = [:]        // runId → offer times not yet covered by a delivery
            var newestOffered: [String: Int64] = [:]
            var lastDelivered: [String: ChangeRecord] = [:]
            var partialSinceDelivery: Set<String> = []

            func deliver(_ records: [ChangeRecord], at t: Int64) {
                XCTAssertEqual(Set(records.map(\.runId)).count, records.count, "duplicate run in one delivery")
                for r in records {
                    for offeredAt in undelivered[r.runId] ?? [] {
                        XCTAssertLessThanOrEqual(t - offeredAt, window, "seed \(seed): late delivery")
                    }
                    undelivered[r.runId] = nil
                    if partialSinceDelivery.remove(r.runId) != nil { XCTAssertNil(r.tags, "seed \(seed): partial lost") }
                    lastDelivered[r.runId] = r
                }
            }

            for _ in 0..<400 {
                now += Int64.random(in: 0...(window / 2 + 1), using: &rng)
                // Fire every due timer first (a real loop may run them slightly late; here they are punctual).
                while let t = timer, t <= now {
                    let r = c.windowEnded(nowMs: t)
                    deliver(r.deliver, at: t)
                    timer = r.nextWindowEndsAtMs
                    if let n = timer { XCTAssertEqual(n, t + window) }
                }
                let id = "r\(Int.random(in: 0..<6, using: &rng))"
                counter += 1
                let isPartial = Int.random(in: 0..<3, using: &rng) == 0
                let record = ChangeRecord(runId: id, envId: "e", tags: isPartial ? nil : ["t\(counter)"],
                                          batchId: nil, updatedAtMs: counter)
                undelivered[id, default: []].append(now)
                newestOffered[id] = counter
                if isPartial { partialSinceDelivery.insert(id) }
                switch c.offer(record, nowMs: now) {
                case .deliverNow(let rs, let end):
                    XCTAssertNil(timer, "seed \(seed): leading edge while a window is open")
                    XCTAssertEqual(rs, [record])
                    timer = end
                    deliver(rs, at: now)
                case .buffered:
                    XCTAssertNotNil(timer, "seed \(seed): buffered without an armed timer")
                }
            }
            while let t = timer {
                let r = c.windowEnded(nowMs: t)
                deliver(r.deliver, at: t)
                timer = r.nextWindowEndsAtMs
            }
            XCTAssertTrue(c.isQuiet)
            XCTAssertEqual(c.pendingCount, 0)
            XCTAssertTrue(undelivered.isEmpty, "seed \(seed): undelivered \(undelivered.keys.sorted())")
            for (id, newest) in newestOffered {
                XCTAssertEqual(lastDelivered[id]?.updatedAtMs, newest, "seed \(seed) run \(id)")
            }
        }
    }
}

final class AdmissionGateTests: XCTestCase {
    func testLimitAndFIFO() {
        var g = AdmissionGate(limit: 2)
        XCTAssertTrue(g.acquire(1))
        XCTAssertTrue(g.acquire(2))
        XCTAssertFalse(g.acquire(3))
        XCTAssertFalse(g.acquire(4))
        XCTAssertFalse(g.acquire(5))
        XCTAssertEqual(g.running, 2)
        XCTAssertEqual(g.queued, 3)
        XCTAssertEqual(g.release(), 3)
        XCTAssertEqual(g.running, 2)
        XCTAssertEqual(g.queued, 2)
        XCTAssertEqual(g.release(), 4)
        XCTAssertEqual(g.release(), 5)
        XCTAssertEqual(g.queued, 0)
        XCTAssertNil(g.release())
        XCTAssertEqual(g.running, 1)
        XCTAssertNil(g.release())
        XCTAssertEqual(g.running, 0)
        XCTAssertNil(g.release())  // extra release is ignored
        XCTAssertEqual(g.running, 0)
        XCTAssertTrue(g.acquire(6))
    }

    func testUnlimited() {
        for limit in [0, -1] {
            var g = AdmissionGate(limit: limit)
            for t in UInt64(0)..<1000 { XCTAssertTrue(g.acquire(t)) }
            XCTAssertEqual(g.running, 1000)
            XCTAssertEqual(g.queued, 0)
            XCTAssertNil(g.release())
            XCTAssertEqual(g.running, 999)
        }
    }

    func testLimitOne() {
        var g = AdmissionGate(limit: 1)
        XCTAssertTrue(g.acquire(10))
        XCTAssertFalse(g.acquire(11))
        XCTAssertEqual(g.release(), 11)
        XCTAssertFalse(g.acquire(12))
        XCTAssertEqual(g.release(), 12)
        XCTAssertNil(g.release())
        XCTAssertEqual(g.running, 0)
    }

    func testCancelQueuedTicket() {
        var g = AdmissionGate(limit: 1)
        XCTAssertTrue(g.acquire(1))
        XCTAssertFalse(g.acquire(2))
        XCTAssertFalse(g.acquire(3))
        XCTAssertTrue(g.cancel(2))
        XCTAssertFalse(g.cancel(2))
        XCTAssertFalse(g.cancel(1))  // running, not queued
        XCTAssertEqual(g.queued, 1)
        XCTAssertEqual(g.release(), 3)
        XCTAssertNil(g.release())
        XCTAssertEqual(g.running, 0)
    }

    /// Random acquire/release/cancel: never more than `limit` running, grants strictly in arrival order.
    func testRandomFIFOInvariant() {
        var rng = TestRNG(seed: 7)
        for limit in [1, 2, 3, 16] {
            var g = AdmissionGate(limit: limit)
            var running: Set<UInt64> = []
            var waiting: [UInt64] = []
            var next: UInt64 = 0
            for _ in 0..<5000 {
                let roll = Int.random(in: 0..<10, using: &rng)
                if roll < 5 {
                    next += 1
                    if g.acquire(next) {
                        XCTAssertTrue(waiting.isEmpty)
                        running.insert(next)
                    } else {
                        waiting.append(next)
                    }
                } else if roll < 9 {
                    guard let done = running.randomElement(using: &rng) else { continue }
                    running.remove(done)
                    if let granted = g.release() {
                        XCTAssertEqual(granted, waiting.removeFirst())
                        running.insert(granted)
                    } else {
                        XCTAssertTrue(waiting.isEmpty)
                    }
                } else if !waiting.isEmpty {
                    let i = Int.random(in: 0..<waiting.count, using: &rng)
                    XCTAssertTrue(g.cancel(waiting.remove(at: i)))
                }
                XCTAssertLessThanOrEqual(running.count, limit)
                XCTAssertEqual(g.running, running.count)
                XCTAssertEqual(g.queued, waiting.count)
                if !waiting.isEmpty { XCTAssertEqual(running.count, limit) }
            }
        }
    }
}
