import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import RunfeedIO

final class ThreadsTests: XCTestCase {
    /// A thread's resource: counts the work it ran.
    final class Counter {
        var n = 0
    }

    /// What a test's completions record; touched only on the loop thread (the test thread runs the loop).
    final class Seen: @unchecked Sendable {
        var ints: [Int] = []
        var strings: [String] = []
        var refused: [String] = []
        var offLoop = 0
        var outcomes: [Int: Int] = [:]
    }

    func testCompletionsRunOnTheSubmittingLoop() {
        let loop = EventLoop()
        let pool = BlockingPool<Counter>(name: "t-pool", threads: 1) { Counter() }
        let seen = Seen()
        loop.execute {
            for _ in 0..<50 {
                let accepted = pool.submit(work: { c -> Int in
                    c.n += 1
                    return c.n
                }, on: loop) { n in
                    if !loop.isOnLoop { seen.offLoop += 1 }
                    seen.ints.append(n)
                    if seen.ints.count == 50 { loop.stop() }
                }
                XCTAssertTrue(accepted)
            }
        }
        loop.run()
        // One thread, one resource: the work ran in submission order, and every completion on the loop.
        XCTAssertEqual(seen.ints, Array(1...50))
        XCTAssertEqual(seen.offLoop, 0)
        XCTAssertEqual(pool.load.queued, 0)
    }

    func testAFullQueueRefusesWork() {
        let loop = EventLoop()
        let pool = BlockingPool<Counter>(name: "t-bound", threads: 1, queueLimit: 2) { Counter() }
        let release = Lock(false)
        let seen = Seen()
        loop.execute {
            // Stops once the two queued jobs and the held one answered.
            let answer: (String) -> Void = {
                seen.strings.append($0)
                if seen.strings.count == 3 { loop.stop() }
            }
            // The first job holds the only thread until released.
            pool.submit(work: { _ -> String in
                while !release.withLock({ $0 }) { usleep(1000) }
                return "a"
            }, on: loop, done: answer)
            while pool.load.running == 0 { usleep(1000) }
            for name in ["b", "c", "d"] {
                if !pool.submit(work: { _ in name }, on: loop, done: answer) { seen.refused.append(name) }
            }
            XCTAssertEqual(pool.load.queued, 2)
            release.withLock { $0 = true }
        }
        loop.run()
        XCTAssertEqual(seen.refused, ["d"])
        XCTAssertEqual(seen.strings, ["a", "b", "c"])
    }

    func testOperationsOfOneLoopTurnGoOutAsOneBatch() {
        let loop = EventLoop()
        let pool = BlockingPool<Counter>(name: "t-batch", threads: 2) { Counter() }
        let batchSizes = Lock<[Int]>([])
        let batcher = LoopBatcher<Counter, Int, Int>(pool: pool, loop: loop) { _, ops in
            batchSizes.withLock { $0.append(ops.count) }
            return ops.map { $0 * 10 }
        }
        let seen = Seen()
        let box = LoopBox(batcher, loop: loop)
        loop.execute {
            let batcher = box.value
            for i in 0..<10 {
                batcher.push(i) { outcome in
                    seen.outcomes[i] = outcome
                    if seen.outcomes.count == 10 { loop.stop() }
                }
            }
            XCTAssertEqual(batcher.pending, 10)
        }
        loop.run()
        XCTAssertEqual(batchSizes.withLock { $0 }, [10])
        XCTAssertEqual(seen.outcomes, Dictionary(uniqueKeysWithValues: (0..<10).map { ($0, $0 * 10) }))
        XCTAssertEqual(batcher.pending, 0)
    }

    func testLockGuardsItsValue() {
        let counter = Lock(0)
        let done = Lock(0)
        for _ in 0..<4 {
            startThread(name: "t-lock") {
                for _ in 0..<10_000 { counter.withLock { $0 += 1 } }
                done.withLock { $0 += 1 }
            }
        }
        while done.withLock({ $0 }) < 4 { usleep(1000) }
        XCTAssertEqual(counter.withLock { $0 }, 40_000)
    }
}
