import XCTest
@testable import RunfeedCore

/// A small deterministic PRNG (SplitMix64) for property tests.
struct TestRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class WakeIndexTests: XCTestCase {
    private func full(_ tags: [String], batch: String? = nil, env: String = "e1") -> ChangeRecord {
        ChangeRecord(runId: "r", envId: env, tags: tags, batchId: batch)
    }

    private func partial(batch: String? = nil) -> ChangeRecord {
        ChangeRecord(runId: "r", envId: "", tags: nil, batchId: batch)
    }

    /// e1: 1 [a], 2 [a,b], 3 unfiltered, 4 batch b1, 5 batch b2, 6 [b,c]; e2: 7 [a], 8 batch b1, 9 unfiltered.
    private func sample() -> WakeIndex<Int> {
        var w = WakeIndex<Int>()
        w.add(1, envId: "e1", filter: .tags(["a"], floorMs: 0))
        w.add(2, envId: "e1", filter: .tags(["b", "a"], floorMs: 10))
        w.add(3, envId: "e1", filter: .tags([], floorMs: 0))
        w.add(4, envId: "e1", filter: .batch("b1"))
        w.add(5, envId: "e1", filter: .batch("b2"))
        w.add(6, envId: "e1", filter: .tags(["c", "b"], floorMs: 0))
        w.add(7, envId: "e2", filter: .tags(["a"], floorMs: 0))
        w.add(8, envId: "e2", filter: .batch("b1"))
        w.add(9, envId: "e2", filter: .tags([], floorMs: 0))
        return w
    }

    func testCounts() {
        let w = sample()
        XCTAssertEqual(w.count(envId: "e1"), 6)
        XCTAssertEqual(w.count(envId: "e2"), 3)
        XCTAssertEqual(w.count(envId: "nope"), 0)
        XCTAssertEqual(w.count, 9)
        XCTAssertFalse(w.isEmpty)
        XCTAssertTrue(WakeIndex<Int>().isEmpty)
        XCTAssertEqual(Set(w.envIds), ["e1", "e2"])
        XCTAssertEqual(w.filter(of: 2), .tags(["a", "b"], floorMs: 10))
        XCTAssertEqual(w.envId(of: 8), "e2")
        XCTAssertTrue(w.contains(9))
        XCTAssertFalse(w.contains(10))
    }

    func testFullRecordReachesTagFeedsItSatisfies() {
        let w = sample()
        XCTAssertEqual(w.candidates(envId: "e1", record: full(["a"], batch: "zz")), [1, 3])
        XCTAssertEqual(w.candidates(envId: "e1", record: full(["a", "b", "c"], batch: "zz")), [1, 2, 3, 6])
        XCTAssertEqual(w.candidates(envId: "e1", record: full(["b"], batch: "zz")), [3])
        XCTAssertEqual(w.candidates(envId: "e1", record: full(["c", "b", "x"], batch: "zz")), [3, 6])
        XCTAssertEqual(w.candidates(envId: "e1", record: full([], batch: "zz")), [3])
        XCTAssertEqual(w.candidates(envId: "e1", record: full(["a", "a", "b", "b"], batch: "zz")), [1, 2, 3])
    }

    func testBatchFeedsByExactId() {
        let w = sample()
        XCTAssertEqual(w.candidates(envId: "e1", record: full([], batch: "b1")), [3, 4])
        XCTAssertEqual(w.candidates(envId: "e1", record: full(["a"], batch: "b2")), [1, 3, 5])
        XCTAssertEqual(w.candidates(envId: "e1", record: full([], batch: "B1")), [3])
    }

    func testFullRecordWithNullBatchIdReachesNoBatchFeed() {
        let w = sample()
        XCTAssertEqual(w.candidates(envId: "e1", record: full(["a"])), [1, 3])
    }

    func testPartialRecordReachesEveryFeedOfTheEnv() {
        let w = sample()
        XCTAssertEqual(w.candidates(envId: "e1", record: partial()), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(w.candidates(envId: "e1", record: partial(batch: "b1")), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(w.candidates(envId: "e2", record: ChangeRecord.parse("cmbare")!), [7, 8, 9])
    }

    func testCrossEnvIsolation() {
        let w = sample()
        XCTAssertEqual(w.candidates(envId: "e2", record: full(["a", "b", "c"], batch: "b1")), [7, 8, 9])
        // The record's own envId does not matter: the channel's env does.
        XCTAssertEqual(w.candidates(envId: "e2", record: full(["a"], batch: "b1", env: "e1")), [7, 8, 9])
        XCTAssertEqual(w.candidates(envId: "e3", record: partial()), [])
        XCTAssertEqual(w.candidates(envId: "", record: partial()), [])
        XCTAssertTrue(w.candidates(envId: "e1", record: partial()).isDisjoint(with: [7, 8, 9]))
    }

    func testByteExactTags() {
        var w = WakeIndex<String>()
        w.add("nfc", envId: "e", filter: .tags(["\u{E9}"], floorMs: 0))
        w.add("nfd", envId: "e", filter: .tags(["e\u{301}"], floorMs: 0))
        XCTAssertEqual(w.candidates(envId: "e", record: full(["\u{E9}"])), ["nfc"])
        XCTAssertEqual(w.candidates(envId: "e", record: full(["e\u{301}"])), ["nfd"])
        w.add("b", envId: "e", filter: .batch("\u{E9}"))
        XCTAssertEqual(w.candidates(envId: "e", record: full([], batch: "e\u{301}")), [])
    }

    func testRemove() {
        var w = sample()
        w.remove(1)
        XCTAssertEqual(w.candidates(envId: "e1", record: full(["a"], batch: "zz")), [3])
        w.remove(3)
        w.remove(3)
        w.remove(42)
        XCTAssertEqual(w.candidates(envId: "e1", record: full(["a"], batch: "zz")), [])
        XCTAssertEqual(w.count(envId: "e1"), 4)
        w.remove(4)
        XCTAssertEqual(w.candidates(envId: "e1", record: full([], batch: "b1")), [])
        for id in [2, 5, 6] { w.remove(id) }
        XCTAssertEqual(w.count(envId: "e1"), 0)
        XCTAssertEqual(w.envIds, ["e2"])
        for id in [7, 8, 9] { w.remove(id) }
        XCTAssertTrue(w.isEmpty)
        XCTAssertEqual(w.envIds, [])
    }

    func testReAddReplaces() {
        var w = sample()
        w.add(1, envId: "e2", filter: .batch("b9"))
        XCTAssertEqual(w.count(envId: "e1"), 5)
        XCTAssertEqual(w.count(envId: "e2"), 4)
        XCTAssertEqual(w.candidates(envId: "e1", record: full(["a"], batch: "zz")), [3])
        XCTAssertEqual(w.candidates(envId: "e2", record: full([], batch: "b9")), [1, 9])
        w.add(1, envId: "e2", filter: .tags(["q"], floorMs: 0))
        XCTAssertEqual(w.candidates(envId: "e2", record: full(["q"], batch: "b9")), [1, 9])
        XCTAssertEqual(w.count, 9)
    }

    func testManyFeedsSharingTheFirstTag() {
        var w = WakeIndex<Int>()
        for i in 0..<100 { w.add(i, envId: "e", filter: .tags(["a", "t\(i)"], floorMs: 0)) }
        XCTAssertEqual(w.candidates(envId: "e", record: full(["a", "t7", "t42", "zzz"])), [7, 42])
        XCTAssertEqual(w.candidates(envId: "e", record: full(["t7"])), [])
    }

    /// `candidates` equals the set of same-env feeds whose filter `mayMatch`es, for random feeds and records.
    func testMatchesMayMatchExhaustively() {
        var rng = TestRNG(seed: 42)
        let tagPool = ["a", "b", "c", "d", "e\u{301}", "\u{E9}", "x y", "it's"]
        let batchPool = ["b1", "b2", "b3"]
        let envs = ["e1", "e2", "e3"]
        func randomTags(_ maxCount: Int) -> [String] {
            (0..<Int.random(in: 0...maxCount, using: &rng)).map { _ in tagPool.randomElement(using: &rng)! }
        }
        var w = WakeIndex<Int>()
        var reference: [Int: (env: String, filter: ListFilter)] = [:]
        for step in 0..<3000 {
            let roll = Int.random(in: 0..<10, using: &rng)
            if roll < 4 {
                let id = Int.random(in: 0..<60, using: &rng)
                let env = envs.randomElement(using: &rng)!
                let filter: ListFilter = Bool.random(using: &rng)
                    ? .tags(randomTags(3), floorMs: Int64.random(in: 0...5, using: &rng))
                    : .batch(batchPool.randomElement(using: &rng)!)
                w.add(id, envId: env, filter: filter)
                reference[id] = (env, filter)
            } else if roll < 6 {
                let id = Int.random(in: 0..<60, using: &rng)
                w.remove(id)
                reference.removeValue(forKey: id)
            } else {
                let env = envs.randomElement(using: &rng)!
                let tags: [String]? = Int.random(in: 0..<4, using: &rng) == 0 ? nil : randomTags(5)
                let batch: String? = Bool.random(using: &rng) ? batchPool.randomElement(using: &rng)! : nil
                let record = ChangeRecord(runId: "r\(step)", envId: env, tags: tags, batchId: batch)
                let expected = Set(reference.filter { $0.value.env == env && $0.value.filter.mayMatch(record) }.keys)
                XCTAssertEqual(w.candidates(envId: env, record: record), expected, "step \(step)")
            }
            XCTAssertEqual(w.count, reference.count)
        }
        for env in envs {
            XCTAssertEqual(w.count(envId: env), reference.values.filter { $0.env == env }.count)
        }
    }
}
