import Foundation
import XCTest
@testable import RunfeedCore

// Model-based convergence tests: randomized, seeded worlds of workers (1–4, on 1–2 hosts with skewed clocks),
// Redis (pub/sub with lost publishes, shared working sets, restarts), Postgres, writers and SDK clients
// (ConvergenceModel.swift), driven by the real decision code of RunfeedCore. For every seed:
//
// - convergence: after the writes and faults stop and every client has completed two more live polls that
//   ended at (or after) their hold deadline, every single-run client holds exactly the database row, and every
//   list client holds exactly the database row of every run that currently matches its filter;
// - no regression: no client is ever sent a version of a run older (in commit order) than one it applied
//   (the testNoRegression* scenarios are the three ways list polls did, before the read floor of
//   `ListFeedRegistry.notBefore`);
// - faithful offsets: a single-run offset's token is the digest of the row the client holds; every run in the
//   view a list answer's token names is held by the client at that digest.
//
// Environment:
//   RUNFEED_MODEL_SEEDS=<n>          seeds per topology (default `defaultSeeds`)
//   RUNFEED_MODEL_SEED=<n>           replay one seed (the failure message carries its trace)
//   RUNFEED_MODEL_NO_FLOOR=1         model the wiring without the list read floor (`Params.listReadFloor`):
//                                    list regressions are then counted and reported, not failed
//   RUNFEED_MODEL_SNAPSHOT_LAG_MS=<n> queries take their snapshot up to n ms after `readAtUs` is stamped
//   RUNFEED_MODEL_VERBOSE=1          counts per seed;  RUNFEED_MODEL_TRACE=1: the full trace of every seed
//   RUNFEED_MODEL_MAX_FAILURES=<n>   stop a topology after n failing seeds (default 3)

final class ConvergenceModelTests: XCTestCase {
    typealias M = ConvergenceModel

    enum Topology: String, CaseIterable {
        case singleWorker, oneHost, twoHostsSkewed, redisWipes, killsAndDrains, lostPublishes, everything
    }

    /// The parameters of one seed of a topology (drawn from the seed; the world's own randomness is seeded from
    /// both too, so every topology explores different worlds).
    static func params(_ topo: Topology, seed: UInt64) -> M.Params {
        var h = FNV1a64()
        h.add(topo.rawValue.utf8)
        h.add(seed)
        var r = M.SplitMix64(seed: h.value)
        var p = M.Params()
        p.seed = h.value
        p.initialRuns = Int(r.int(2, 5))
        p.runClients = Int(r.int(1, 3))
        p.listClients = Int(r.int(1, 3))
        p.writes = Int(r.int(20, 60))
        p.writeSpanMs = r.int(3_000, 8_000)
        p.holdMs = r.pick([2_000, 3_000, 4_000])
        p.coalesceWindowMs = r.pick([0, 0, 250])
        p.replayMaxRuns = r.pick([512, 512, 512, 3])
        p.partialRecordRate = r.pick([0, 0.1, 0.3])
        p.slowPublishRate = r.pick([0, 0.05, 0.2])
        p.slowReadRate = r.pick([0.02, 0.1])
        p.tagChangeRate = r.pick([0, 0.06])
        func workers(_ lo: Int64, _ hi: Int64, hosts: Int) {
            let n = Int(r.int(lo, hi))
            p.hostOfWorker = (0..<n).map { $0 % hosts }
            p.hostSkewUs = [Int64](repeating: 0, count: hosts)
        }
        func skew() {
            // Each host's clock is off by up to 50 ms; the allowance covers the worst difference (or more).
            p.hostSkewUs = p.hostSkewUs.map { _ in r.int(0, 50_000) }
            let spread = (p.hostSkewUs.max()! - p.hostSkewUs.min()! + 999) / 1000
            p.clockSkewMs = r.pick([max(spread, 1), 50, 250])
        }
        switch topo {
        case .singleWorker:
            workers(1, 1, hosts: 1)
            p.clockSkewMs = r.pick([0, 250])
        case .oneHost:
            workers(2, 4, hosts: 1)
        case .twoHostsSkewed:
            workers(2, 4, hosts: 2)
            skew()
        case .redisWipes:
            workers(1, 3, hosts: 1)
            p.redisWipes = Int(r.int(1, 2))
        case .killsAndDrains:
            workers(2, 4, hosts: 1)
            p.kills = Int(r.int(0, 2))
            p.drains = p.kills == 0 ? Int(r.int(1, 2)) : Int(r.int(0, 2))
        case .lostPublishes:
            workers(1, 3, hosts: 1)
            p.lostRate = r.pick([0.1, 0.3])
            p.lostSomeRate = r.pick([0, 0.2])
        case .everything:
            workers(1, 4, hosts: Int(r.int(1, 2)))
            skew()
            p.redisWipes = Int(r.int(0, 1))
            p.kills = Int(r.int(0, 1))
            p.drains = Int(r.int(0, 1))
            p.lostRate = r.pick([0, 0.1])
            p.lostSomeRate = r.pick([0, 0.1])
        }
        return p
    }

    struct Result {
        var seed: UInt64
        var failure: String?
        var stats: M.Stats
        var params: M.Params
        var firstStale: String?
    }

    static func runOne(_ topo: Topology, seed: UInt64, tracing: Bool = false,
                       mutate: (inout M.Params) -> Void = { _ in }) -> (Result, [String]) {
        var p = params(topo, seed: seed)
        if ProcessInfo.processInfo.environment["RUNFEED_MODEL_NO_FLOOR"] == "1" {
            p.listReadFloor = false
            p.strictListRegressions = false
        }
        if let lag = envInt("RUNFEED_MODEL_SNAPSHOT_LAG_MS") { p.snapshotLagMaxUs = Int64(lag) * 1000 }
        mutate(&p)
        let world = M.World(p, tracing: tracing)
        let failure = world.run()
        let lines = world.traceLines
        return (Result(seed: seed, failure: failure, stats: world.stats, params: p, firstStale: world.firstStaleListRegression), lines)
    }

    /// Seeds per topology by default: 7 × 200 small worlds take about 20 s in a debug build on 2 cores.
    static let defaultSeeds = 200

    static var maxFailures: Int { envInt("RUNFEED_MODEL_MAX_FAILURES") ?? 3 }

    static func envInt(_ name: String) -> Int? {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0) }
    }

    /// Runs the seeds of one topology; fails with the first failing seed, its parameters, counts and trace.
    func sweep(_ topo: Topology, seeds defaultSeeds: Int, file: StaticString = #filePath, line: UInt = #line) {
        let seeds: [UInt64]
        if let one = Self.envInt("RUNFEED_MODEL_SEED") {
            seeds = [UInt64(one)]
        } else {
            seeds = (1...UInt64(max(1, Self.envInt("RUNFEED_MODEL_SEEDS") ?? defaultSeeds))).map { $0 }
        }
        var total = M.Stats()
        var failures: [Result] = []
        var staleSeeds: [Result] = []
        let verbose = ProcessInfo.processInfo.environment["RUNFEED_MODEL_VERBOSE"] == "1"
        let fullTrace = ProcessInfo.processInfo.environment["RUNFEED_MODEL_TRACE"] == "1"
        for seed in seeds {
            let (r, lines) = Self.runOne(topo, seed: seed, tracing: fullTrace)
            if verbose { print("[\(topo.rawValue)] seed \(seed): \(r.stats)") }
            if fullTrace { print(lines.joined(separator: "\n")) }
            total.deliveriesOnWake += r.stats.deliveriesOnWake
            total.deliveriesAtBackstop += r.stats.deliveriesAtBackstop
            total.deliveriesAtStart += r.stats.deliveriesAtStart
            total.deliveriesOnDrain += r.stats.deliveriesOnDrain
            total.writes += r.stats.writes
            total.events += r.stats.events
            total.staleListRegressions += r.stats.staleListRegressions
            if r.stats.staleListRegressions > 0 { staleSeeds.append(r) }
            if let f = r.failure {
                failures.append(r)
                print("[\(topo.rawValue)] seed \(seed): \(f.prefix(400))")
                if failures.count >= Self.maxFailures { break }
            }
        }
        print("[\(topo.rawValue)] \(seeds.count) seeds: \(total.writes) writes, \(total.events) events; deliveries: "
              + "\(total.deliveriesOnWake) on a wake, \(total.deliveriesAtBackstop) at a backstop, \(total.deliveriesAtStart) at poll start, "
              + "\(total.deliveriesOnDrain) on drain; failing seeds: \(failures.map(\.seed))")
        if let first = staleSeeds.first {
            // Only without the list read floor (RUNFEED_MODEL_NO_FLOOR=1): counted, not failed.
            print("[\(topo.rawValue)] without the list read floor (list answers from reads older than the client's view): "
                  + "\(total.staleListRegressions) regressions in \(staleSeeds.count) of \(seeds.count) seeds, e.g. seed "
                  + "\(first.seed): \(first.firstStale ?? "")")
        }
        guard let first = failures.first else { return }
        let (_, trace) = Self.runOne(topo, seed: first.seed, tracing: true)
        let tail = trace.suffix(250).joined(separator: "\n")
        XCTFail("""
            \(topo.rawValue) seed \(first.seed) failed (replay: RUNFEED_MODEL_SEED=\(first.seed) swift test --filter \
            ConvergenceModelTests/test\(topo.rawValue.prefix(1).uppercased() + topo.rawValue.dropFirst())):
            \(first.failure!)
            params: \(first.params)
            \(first.stats)
            other failing seeds: \(failures.dropFirst().map(\.seed))
            trace (last 250 lines):
            \(tail)
            """, file: file, line: line)
    }

    func testSingleWorker() { sweep(.singleWorker, seeds: Self.defaultSeeds) }
    func testOneHost() { sweep(.oneHost, seeds: Self.defaultSeeds) }
    func testTwoHostsSkewed() { sweep(.twoHostsSkewed, seeds: Self.defaultSeeds) }
    func testRedisWipes() { sweep(.redisWipes, seeds: Self.defaultSeeds) }
    func testKillsAndDrains() { sweep(.killsAndDrains, seeds: Self.defaultSeeds) }
    func testLostPublishes() { sweep(.lostPublishes, seeds: Self.defaultSeeds) }
    func testEverything() { sweep(.everything, seeds: Self.defaultSeeds) }

    // MARK: Self-tests: the model notices a broken server

    /// Without the backstop read at the hold deadline, lost records are never delivered: the model must see
    /// clients that do not converge.
    func testModelCatchesAMissingBackstop() {
        var caught: [String] = []
        for seed in UInt64(1)...40 {
            let (r, _) = Self.runOne(.lostPublishes, seed: seed) { $0.mutation = .noBackstopRead }
            if let f = r.failure { caught.append(f) }
        }
        XCTAssertTrue(caught.contains { $0.contains("did not converge") }, "no seed noticed the missing backstop: \(caught.prefix(3))")
    }

    /// With the upstream rule (a row is new only if its `updatedAt` is later than the offset floor), writes
    /// stamped in the same millisecond or earlier never reach the client: the model must see it.
    func testModelCatchesAFloorOnlySingleRunView() {
        var caught: [String] = []
        for seed in UInt64(1)...20 {
            let (r, _) = Self.runOne(.oneHost, seed: seed) { $0.mutation = .floorOnlyRunView }
            if let f = r.failure { caught.append(f) }
        }
        XCTAssertTrue(caught.contains { $0.contains("did not converge") && $0.contains("[run ") },
                      "no seed noticed the floor-only view: \(caught.prefix(3))")
    }

    // MARK: Known bug: list answers from reads older than the client's view
    //
    // A single-run poll never uses a read that started before the client's view was read (plus the skew
    // allowance): `RunFeedRegistry.notBefore`. A list poll has no such floor: its full resolve may be served by
    // the runset cache (up to `runsetCacheTtlMs`, 1 s, old) or join a resolve in flight, and its gap may be
    // served by cached rows read before the client's view. `ListDiff` then protects the client only when
    // the view knows a newer version of the run with a later `readAtUs`, which fails in three ways — each test
    // below is a minimal scripted scenario and FAILS until the wiring has such a floor:
    //
    // 1. the view is unknown (Redis restarted, or the working set could not be stored/loaded): every row of the
    //    stale runset is sent as an update, rolling the client back;
    // 2. the view no longer lists a run that left the filter (`ListDiff.replace` drops it): the stale runset
    //    re-inserts an old version of it (older than the one the client holds, and no longer a member);
    // 3. hosts' clocks differ (within the allowance): a runset read on a host whose clock is ahead has a later
    //    `readAtUs` than the newer row the client holds, so `isSupersededBy` takes it for newer.
    //
    // Convergence is not at stake (later reads supersede the stale rows, and the backstop resolves afresh);
    // the client briefly shows older states. The `*WithProposedFix` test shows that a floor like
    // `notBefore` (reads must start at or after max(basis, newest read in the view) + skew allowance, capped at
    // now) removes all three.

    static var tracingScripts: Bool { ProcessInfo.processInfo.environment["RUNFEED_MODEL_TRACE"] == "1" }

    /// Runs a bug scenario; with RUNFEED_MODEL_TRACE=1 prints its trace.
    static func runScenario(_ w: M.World) -> String? {
        let failure = w.runScript(untilMs: 1_000)
        if tracingScripts { print(w.traceLines.joined(separator: "\n")) }
        return failure
    }

    static func scriptParams(workers hosts: [Int], skewUs: [Int64] = [0], clockSkewMs: Int64 = 250) -> M.Params {
        var p = M.Params()
        p.seed = 1
        p.hostOfWorker = hosts
        p.hostSkewUs = skewUs
        p.clockSkewMs = clockSkewMs
        p.slowReadRate = 0
        p.slowPublishRate = 0
        p.partialRecordRate = 0
        p.holdMs = 20_000
        p.jitterRatio = 0
        p.strictListRegressions = true
        return p
    }

    /// Scenario 1: two workers; B's view is lost in a Redis restart; w1 answers B's cold resolve from a runset
    /// it cached for another client's snapshot 100 ms before B received a newer row.
    ///
    ///   t=0    C (tags a) snapshot on w1: w1 resolves {r1 v1} and caches it for 1 s
    ///   t=0    B (tags a) snapshot on w0 (r1 v1), then a live poll held on w0
    ///   t=100  r1 → v2, published; w0 hears it and wakes B's poll (hydrate) — and Redis restarts then (down
    ///          2 s): w0 answers r1 v2 with token T2, which could not be stored
    ///   ~t=110 B polls w1 with T2: the view cannot be loaded (unknown) → cold resolve → the cached runset
    ///          {r1 v1} → every row sent as an update: B goes from r1 v2 back to r1 v1
    static func scenarioUnknownView(_ p: M.Params) -> M.World {
        let w = M.World(p, tracing: tracingScripts, scripted: true)
        w.startWorkers()
        w.scriptRun("r1", tags: ["a"])
        w.scriptClient(.list(.tags(["a"], floorMs: 0)), route: [1], at: 0)
        w.scriptClient(.list(.tags(["a"], floorMs: 0)), route: [0, 0, 1], at: 0)
        w.scriptWrite(at: 100, run: "r1")
        w.scriptRedisRestart(whenWorker: 0, hears: "r1", outageMs: 2_000)
        return w
    }

    func testNoRegressionFromAStaleRunsetWhenTheViewIsUnknown() {
        let failure = Self.runScenario(Self.scenarioUnknownView(Self.scriptParams(workers: [0, 0])))
        XCTAssertNil(failure, "list answer from a read older than the client's view, unknown view: \(failure ?? "")")
    }

    /// Scenario 2: three workers, no fault. r1 leaves B's filter; a fresh resolve drops it from B's view; a
    /// runset w1 cached 0.5 s earlier for another client re-inserts r1 at a version older than B's.
    ///
    ///   t=0    C (tags a) snapshot on w1: w1 caches {r1 v1, r2 v1} for 1 s
    ///   t=0    B (tags a) snapshot on w0, then a live poll held on w0
    ///   t=100  r1 → v2: B gets r1 v2 from w0; B polls w0 again (held)
    ///   t=300  r1 → v3 without tag a (leaves the filter; the record does not match, nothing is sent)
    ///   t=400  r2 → v2: B gets r2 v2 from w0; B polls w2 (not subscribed: cold resolve, fresh) → r1 is not a
    ///          member: `replace` drops it from B's view; nothing to send, B's poll holds on w2
    ///   t=500  r2 → v3: B gets r2 v3 from w2; its view {r2 v3} is stored; B polls w1 (not subscribed: cold
    ///          resolve) → w1's cached runset {r1 v1, r2 v1}: r1 is not in the view → "insert r1 v1":
    ///          B goes from r1 v2 back to v1, and r1 is shown as a member again
    static func scenarioRunLeftTheFilter(_ p: M.Params) -> M.World {
        let w = M.World(p, tracing: tracingScripts, scripted: true)
        w.startWorkers()
        w.scriptRun("r1", tags: ["a"])
        w.scriptRun("r2", tags: ["a"])
        w.scriptClient(.list(.tags(["a"], floorMs: 0)), route: [1], at: 0)
        w.scriptClient(.list(.tags(["a"], floorMs: 0)), route: [0, 0, 0, 2, 1], at: 0)
        w.scriptWrite(at: 100, run: "r1")
        w.scriptWrite(at: 300, run: "r1", tags: ["b"])
        w.scriptWrite(at: 400, run: "r2")
        w.scriptWrite(at: 500, run: "r2")
        return w
    }

    func testNoRegressionFromAStaleRunsetThatStillListsARunThatLeftTheFilter() {
        let failure = Self.runScenario(Self.scenarioRunLeftTheFilter(Self.scriptParams(workers: [0, 0, 0])))
        XCTAssertNil(failure, "list answer from a read older than the client's view, run left the filter: \(failure ?? "")")
    }

    /// Scenario 3: two hosts, w1's clock 40 ms ahead of w0's (allowance 50 ms). w1's runset was read before B's
    /// row, but stamped later.
    ///
    ///   t=0    B (tags a) snapshot on w0, then a live poll held on w0
    ///   t=80   C (tags a) snapshot on w1: w1 resolves {r1 v1}, read at true ~81 ms = w1 wall ~121 ms; cached
    ///   t=95   r1 → v2: B gets r1 v2 from w0, read at true ~96 ms = w0 wall ~96 ms
    ///   ~t=105 B polls w1 (not subscribed: cold resolve) → the cached runset: r1 v1 read at wall ~121 >
    ///          ~96 → `isSupersededBy` → "update r1 v1": B goes back from v2 to v1
    static func scenarioSkew(_ p: M.Params) -> M.World {
        let w = M.World(p, tracing: tracingScripts, scripted: true)
        w.startWorkers()
        w.scriptRun("r1", tags: ["a"])
        w.scriptClient(.list(.tags(["a"], floorMs: 0)), route: [0, 0, 1], at: 0)
        w.scriptClient(.list(.tags(["a"], floorMs: 0)), route: [1], at: 80)
        w.scriptWrite(at: 95, run: "r1")
        return w
    }

    func testNoRegressionFromAStaleRunsetOnAHostWhoseClockIsAhead() {
        let failure = Self.runScenario(Self.scenarioSkew(Self.scriptParams(workers: [0, 1], skewUs: [0, 40_000], clockSkewMs: 50)))
        XCTAssertNil(failure, "list answer from a read older than the client's view, clock skew: \(failure ?? "")")
    }

    /// The three scenarios reproduce without the list read floor (the scripts really exercise the bug), and
    /// the floor removes all three.
    func testScenariosRegressWithoutTheListReadFloorAndNotWithIt() {
        let scenarios: [(String, (M.Params) -> M.World, M.Params)] = [
            ("unknown view", Self.scenarioUnknownView, Self.scriptParams(workers: [0, 0])),
            ("run left the filter", Self.scenarioRunLeftTheFilter, Self.scriptParams(workers: [0, 0, 0])),
            ("clock skew", Self.scenarioSkew, Self.scriptParams(workers: [0, 1], skewUs: [0, 40_000], clockSkewMs: 50)),
        ]
        for (name, make, p) in scenarios {
            for seed in UInt64(1)...20 {
                var before = p
                before.seed = seed
                before.listReadFloor = false
                let failure = make(before).runScript(untilMs: 1_000)
                XCTAssertTrue(failure?.contains("REGRESSION") == true, "\(name), seed \(seed): the scenario no longer reproduces: \(failure ?? "no failure")")
                var fixed = p
                fixed.seed = seed
                let after = make(fixed).runScript(untilMs: 1_000)
                XCTAssertNil(after, "\(name), seed \(seed), with the floor: \(after ?? "")")
            }
        }
    }

    /// The model itself is deterministic: the same seed gives the same run.
    func testDeterministic() {
        let (a, _) = Self.runOne(.everything, seed: 7)
        let (b, _) = Self.runOne(.everything, seed: 7)
        XCTAssertEqual(a.stats.description, b.stats.description)
        XCTAssertEqual(a.failure, b.failure)
    }
}

