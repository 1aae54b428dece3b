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
//   (the testNoRegression* scenarios are ways list polls did before the server confirmed, by a read started
//   now, any row the client does not hold that was read before its view: "confirm before sending");
// - faithful offsets: a single-run offset's token is the digest of the row the client holds; every run in the
//   view a list answer's token names is held by the client at that digest.
//
// Environment:
//   RUNFEED_MODEL_SEEDS=<n>          seeds per topology (default `defaultSeeds`)
//   RUNFEED_MODEL_SEED=<n>           replay one seed (the failure message carries its trace)
//   RUNFEED_MODEL_NO_CONFIRM=1       model the wiring without "confirm before sending" (`Params.confirmBeforeSend`:
//                                    no confirming reads, no cold-start floor): regressions from reads not after
//                                    the client's view are then counted and reported, not failed
//   RUNFEED_MODEL_DB_SKEW_MS=<n>     the database server's clock is n ms (may be negative) off the true time;
//                                    workers' clocks are at +0…50 ms (`Params.dbSkewUs`; default 0). Also used
//                                    by testNoRegressionWhenTheViewHoldsNoReadAfterItsBasis, which fails with
//                                    30 (a database clock ahead of the workers': see it)
//   RUNFEED_MODEL_STATEMENT_DELAY_MS=<n> statements start on the database server up to n ms after being sent
//                                    (their snapshot and `readAtUs` both then; `Params.statementDelayMaxUs`)
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
        if ProcessInfo.processInfo.environment["RUNFEED_MODEL_NO_CONFIRM"] == "1" {
            p.confirmBeforeSend = false
            p.strictRegressions = false
        }
        if let ms = envInt("RUNFEED_MODEL_DB_SKEW_MS") { p.dbSkewUs = Int64(ms) * 1000 }
        if let ms = envInt("RUNFEED_MODEL_STATEMENT_DELAY_MS") { p.statementDelayMaxUs = Int64(ms) * 1000 }
        mutate(&p)
        let world = M.World(p, tracing: tracing)
        let failure = world.run()
        let lines = world.traceLines
        return (Result(seed: seed, failure: failure, stats: world.stats, params: p, firstStale: world.firstStaleRegression), lines)
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
            total.staleRegressions += r.stats.staleRegressions
            total.confirmingRunReads += r.stats.confirmingRunReads
            total.confirmingResolves += r.stats.confirmingResolves
            total.confirmingGapReads += r.stats.confirmingGapReads
            if r.stats.staleRegressions > 0 { staleSeeds.append(r) }
            if let f = r.failure {
                failures.append(r)
                print("[\(topo.rawValue)] seed \(seed): \(f.prefix(400))")
                if failures.count >= Self.maxFailures { break }
            }
        }
        print("[\(topo.rawValue)] \(seeds.count) seeds: \(total.writes) writes, \(total.events) events; deliveries: "
              + "\(total.deliveriesOnWake) on a wake, \(total.deliveriesAtBackstop) at a backstop, \(total.deliveriesAtStart) at poll start, "
              + "\(total.deliveriesOnDrain) on drain; confirming reads: \(total.confirmingRunReads) run, "
              + "\(total.confirmingResolves) resolve, \(total.confirmingGapReads) gap; failing seeds: \(failures.map(\.seed))")
        if let first = staleSeeds.first {
            // Only without confirmation (RUNFEED_MODEL_NO_CONFIRM=1): counted, not failed.
            print("[\(topo.rawValue)] without confirm-before-sending (answers from reads not after the client's view): "
                  + "\(total.staleRegressions) regressions in \(staleSeeds.count) of \(seeds.count) seeds, e.g. seed "
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

    // MARK: A lagging read replica

    /// Row reads and hydrates through a replica 0–`lag` behind, gated and labelled as the server does it
    /// (`ReplicaGate`): a replica read counts as a read started at its snapshot. Every client converges and none is
    /// sent an older version than it holds.
    func testReplicaReadsCountAsStartedAtTheirSnapshot() {
        let seeds = Self.envInt("RUNFEED_MODEL_SEEDS").map { max(20, $0 / 4) } ?? 60
        for topo in [Topology.oneHost, .twoHostsSkewed, .everything] {
            var failures: [String] = []
            for seed in UInt64(1)...UInt64(seeds) {
                let lag: Int64 = [30_000, 300_000, 1_500_000][Int(seed % 3)]
                let (r, _) = Self.runOne(topo, seed: seed) { $0.replicaLagMaxUs = lag }
                if let f = r.failure { failures.append("\(topo) seed \(seed) lag \(lag / 1000) ms: \(f)") }
                if failures.count >= Self.maxFailures { break }
            }
            XCTAssertTrue(failures.isEmpty, failures.prefix(2).joined(separator: "\n"))
        }
    }

    /// Negative control: replica reads not gated and labelled with their statement's start (as if the replica were
    /// current) send clients older versions or leave them behind, and the model notices.
    func testModelCatchesReplicaReadsLabelledAsCurrent() {
        var caught: [String] = []
        for seed in UInt64(1)...40 {
            let (r, _) = Self.runOne(.oneHost, seed: seed) {
                $0.replicaLagMaxUs = 1_500_000
                $0.replicaLabelledAsCurrent = true
            }
            if let f = r.failure { caught.append(f) }
        }
        XCTAssertFalse(caught.isEmpty, "no seed noticed replica reads labelled as current")
        if ProcessInfo.processInfo.environment["RUNFEED_MODEL_VERBOSE"] == "1" {
            print("replica reads labelled as current: \(caught.count) of 40 seeds fail; first: \(caught.first ?? "")")
        }
    }

    // MARK: Regressions from reads older than the client's view, and "confirm before sending"
    //
    // A read that started before the client's view was read (a row or runset cached a moment ago, a read or
    // resolve in flight) may show an older version than the client holds. Sent as it is, it moves the client
    // backwards wherever nothing else orders it: for a single run, the digest only says "different"; for a list,
    // `ListDiff` protects the client only when its view knows the run with a later `readAtUs`, which fails when
    // the view is unknown or no longer lists the run. The server confirms instead: a row the client does not
    // hold whose read is not after the client's view (`readAtUs <= basisMs * 1000 + 999`; lists:
    // `ListDiff.needsFresherRead` against `ListDiff.sendFloorUs`) is not sent; a read started now is made and its
    // result used (`RunFeedRegistry.act(.readRow)`, `ListFeedRegistry.resolveForClient`, the gap from cache in
    // `ListFeedRegistry.park`); and a cold start's resolve must have started after the client's basis plus the
    // skew allowance (`ListFeedRegistry.notBefore`). Each scenario below is a minimal script that regresses
    // with `confirmBeforeSend = false` (the wiring without both) and not with it:
    //
    // 1. the view is unknown (Redis restarted, or the working set could not be stored/loaded): every row of a
    //    stale cached runset is sent as an update, rolling the client back (a hop: the cold start's floor
    //    skips the cached runset; the confirmation alone would re-resolve too);
    // 2. the view no longer lists a run that left the filter (`ListDiff.replace` drops it): a stale cached
    //    runset re-inserts an old version of it (same protection as 1);
    // 4. the same in a list poll's gap, from rows cached on a worker that missed the latest records: the
    //    gap-from-cache check in `park` (a covered gap: no cold start, no floor) is what protects;
    // 5. a single-run poll's gap read served by a row cached on a worker that missed the latest record: the
    //    single-run confirmation is what protects;
    // 6. as 4, with a view holding no read newer than the client's basis: the basis alone sets the floor.
    //
    // And 3, hosts whose clocks differ: no longer a regression at all, with or without confirmation (see its
    // test). Convergence is not at stake in any of them (later reads supersede the stale rows, and the backstop
    // reads afresh); without the protection the client briefly shows older states.

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
        p.strictRegressions = true
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

    /// Scenario 3: two hosts, w1's clock 40 ms ahead of w0's (allowance 50 ms); w1's runset was read before B's
    /// row.
    ///
    ///   t=0    B (tags a) snapshot on w0, then a live poll held on w0
    ///   t=80   C (tags a) snapshot on w1: w1 resolves {r1 v1} (membership at w1 wall ~120 ms), its rows read at
    ///          ~81 ms on the database's clock; cached
    ///   t=95   r1 → v2: B gets r1 v2 from w0, read at ~96 ms on the database's clock
    ///   ~t=105 B polls w1 (not subscribed: cold resolve) → the cached runset (without confirmation)
    ///
    /// When rows were stamped with the reading worker's wall clock, r1 v1 carried w1's ~121 ms, later than B's
    /// ~96 ms, so `isSupersededBy` took it for newer and sent "update r1 v1": B went back from v2 to v1. Read times
    /// now come from one clock, the database server's (`statement_timestamp()`): r1 v1 is stamped ~81 ms, older
    /// than B's ~96 ms, and `ListDiff` skips it — with or without confirmation. Hosts' skew no longer orders
    /// reads; it is kept as a check that it stays so.
    static func scenarioSkew(_ p: M.Params) -> M.World {
        let w = M.World(p, tracing: tracingScripts, scripted: true)
        w.startWorkers()
        w.scriptRun("r1", tags: ["a"])
        w.scriptClient(.list(.tags(["a"], floorMs: 0)), route: [0, 0, 1], at: 0)
        w.scriptClient(.list(.tags(["a"], floorMs: 0)), route: [1], at: 80)
        w.scriptWrite(at: 95, run: "r1")
        return w
    }

    static var skewParams: M.Params { scriptParams(workers: [0, 1], skewUs: [0, 40_000], clockSkewMs: 50) }

    func testNoRegressionFromAStaleRunsetOnAHostWhoseClockIsAhead() {
        for seed in UInt64(1)...20 {
            for confirm in [true, false] {
                var p = Self.skewParams
                p.seed = seed
                p.confirmBeforeSend = confirm
                let failure = Self.runScenario(Self.scenarioSkew(p))
                XCTAssertNil(failure, "clock skew, seed \(seed), confirmBeforeSend=\(confirm): \(failure ?? "")")
            }
        }
    }

    /// Scenario 4: three workers; a list poll's gap served by rows cached on a worker that missed the run's
    /// later records, for a run the client's view no longer lists. C (tags c) keeps w1 subscribed; nothing
    /// else there reads r1 or hears r2.
    ///
    ///   t=0    C (tags c) snapshot on w1, then live polls on w1; B (tags a) snapshot on w0, then live polls on w0
    ///   t=400  r1 (tags a, c) → v2, heard by all: C and B get it; C's next poll on w1 re-reads r1 for its gap
    ///          (~410): w1 caches r1 v2, read after the record arrived there
    ///   t=430  r1 → v3, heard by w0 and w2 only: B gets r1 v3 from w0
    ///   t=450  r1 → v4 with tags b only (leaves both filters), heard by w0 and w2 only
    ///   t=470  r2 → v2, heard by w0 and w2 only: B gets r2 v2 from w0; B polls w2 (cold resolve, fresh: r1 is
    ///          not a member, `replace` drops it from B's view; nothing to send, the poll holds on w2)
    ///   t=530  r2 → v3, heard by w0 and w2 only: B gets r2 v3 from w2 (view {r2 v3}); B polls w1 — subscribed
    ///          since t≈15, the gap is covered; its replay lists r1 (v2's record, the last w1 heard), and w1's
    ///          cached r1 v2 was read after that record arrived → without confirmation: "insert r1 v2": B goes
    ///          from r1 v3 back to v2, and r1 is shown as a member again. With it: r1 v2 was read before B's
    ///          view → hydrated afresh: r1 v4 is not a member, nothing to send.
    static func scenarioListGapFromCache(_ p: M.Params) -> M.World {
        let w = M.World(p, tracing: tracingScripts, scripted: true)
        w.startWorkers()
        w.scriptRun("r1", tags: ["a", "c"])
        w.scriptRun("r2", tags: ["a"])
        w.scriptClient(.list(.tags(["c"], floorMs: 0)), route: [1, 1, 1, 1, 1, 1], at: 0)
        w.scriptClient(.list(.tags(["a"], floorMs: 0)), route: [0, 0, 0, 0, 2, 1], at: 0)
        w.scriptWrite(at: 400, run: "r1")
        w.scriptWrite(at: 430, run: "r1", heardBy: [0, 2])
        w.scriptWrite(at: 450, run: "r1", tags: ["b"], heardBy: [0, 2])
        w.scriptWrite(at: 470, run: "r2", heardBy: [0, 2])
        w.scriptWrite(at: 530, run: "r2", heardBy: [0, 2])
        return w
    }

    func testNoRegressionFromCachedGapRowsReadBeforeTheView() {
        let failure = Self.runScenario(Self.scenarioListGapFromCache(Self.scriptParams(workers: [0, 0, 0])))
        XCTAssertNil(failure, "list gap from rows cached before the client's view: \(failure ?? "")")
    }

    /// Scenario 5: two workers; a single-run poll's gap read served by a row cached on a worker that missed
    /// the run's latest record.
    ///
    ///   t=0    A (r1) snapshot on w1, then live polls on w1; B (r1) snapshot on w0, then live polls on w0
    ///   t=400  r1 → v2, heard by both: A and B get it; A's next poll on w1 reads r1 for its gap (~410, after
    ///          the record arrived there): v2, which A holds: it holds; w1 caches r1 v2
    ///   t=440  r1 → v3, heard by w0 only: B gets r1 v3 from w0 (read ~442); B polls w1 — covered; the last
    ///          record w1 heard of r1 is v2's, and its cached r1 v2 was read after it → without confirmation:
    ///          "update r1 v2": B goes from v3 back to v2. With it: r1 v2 was read before B's view (its basis) →
    ///          a read started now: v3, which B holds: it holds.
    static func scenarioRunCachedBeforeView(_ p: M.Params) -> M.World {
        let w = M.World(p, tracing: tracingScripts, scripted: true)
        w.startWorkers()
        w.scriptRun("r1", tags: ["a"])
        w.scriptClient(.run("r1"), route: [1, 1, 1, 1, 1, 1], at: 0)
        w.scriptClient(.run("r1"), route: [0, 0, 0, 1], at: 0)
        w.scriptWrite(at: 400, run: "r1")
        w.scriptWrite(at: 440, run: "r1", heardBy: [0])
        return w
    }

    func testNoRegressionFromARunRowCachedBeforeTheView() {
        let failure = Self.runScenario(Self.scenarioRunCachedBeforeView(Self.scriptParams(workers: [0, 0])))
        XCTAssertNil(failure, "single-run gap read from a row cached before the client's view: \(failure ?? "")")
    }

    /// Scenario 6: scenario 4 where the client's view holds no read newer than its basis, so the basis alone
    /// sets the send floor. Drains answer B's polls up-to-date: its basis stays that of the answer that sent it
    /// r1 v3 (w0's hydrate start, on w0's wall clock), while the cold resolve on w2 drops r1 from its view.
    ///
    ///   t=0    C (tags c) snapshot on w1, then live polls on w1; B (tags a) snapshot on w0, then live polls on w0
    ///   t=400  r1 (tags a, c) → v2, heard by all: C and B get it; C's next poll on w1 re-reads r1 for its gap
    ///          (~416): w1 caches r1 v2
    ///   t=430  r1 → v3, heard by w0 and w2 only: B gets r1 v3 from w0 (basis ~431, w0's wall clock)
    ///   t=450  r1 → v4 with tags b only (leaves both filters), heard by w0 and w2 only
    ///   t=480  w0 drains: B's held poll is answered up-to-date (basis unchanged); B polls w2: cold resolve, r1
    ///          is not a member and leaves B's view ({r2 read at its snapshot}); the poll holds
    ///   t=540  w2 drains: B's poll is answered up-to-date (basis unchanged, the new view stored); B polls w1
    ///          (covered): its replay lists r1 and w1's cached r1 v2 is fresh enough for the gap → without
    ///          confirmation: "insert r1 v2" (B holds v3). With it: read at ~416 on the database's clock, not
    ///          after B's basis (~431.999) → hydrated afresh.
    ///
    /// The basis is on a worker's wall clock, the read times on the database's. The sweeps keep the database
    /// on the true time (every worker at or ahead of it). With the database's clock ahead of the workers' by
    /// more than the ~15 ms between the stale read and B's basis (RUNFEED_MODEL_DB_SKEW_MS=30 for this test),
    /// the stale row looks read after B's view and is sent even with confirmation: see the report in
    /// `testNoRegressionWhenTheViewHoldsNoReadAfterItsBasis`.
    static func scenarioViewOlderThanItsBasis(_ p: M.Params) -> M.World {
        let w = M.World(p, tracing: tracingScripts, scripted: true)
        w.startWorkers()
        w.scriptRun("r1", tags: ["a", "c"])
        w.scriptRun("r2", tags: ["a"])
        w.scriptClient(.list(.tags(["c"], floorMs: 0)), route: [1, 1, 1], at: 0)
        w.scriptClient(.list(.tags(["a"], floorMs: 0)), route: [0, 0, 0, 0, 2, 1], at: 0)
        w.scriptWrite(at: 400, run: "r1")
        w.scriptWrite(at: 430, run: "r1", heardBy: [0, 2])
        w.scriptWrite(at: 450, run: "r1", tags: ["b"], heardBy: [0, 2])
        w.scriptDrain(0, at: 480)
        w.scriptDrain(2, at: 540)
        return w
    }

    /// With the database's clock ahead of the workers' (RUNFEED_MODEL_DB_SKEW_MS=30), this fails: a list
    /// client's basis is a worker's wall time (`Runset.resolvedAtUs`, a hydrate's start) but
    /// `ListDiff.sendFloorUs` compares it with read times on the database's clock, so a row read before the
    /// client's view but stamped after its basis is not confirmed. (A known limit of the server, reported, not
    /// fixed here: the default keeps the database's clock at or behind the workers'.)
    func testNoRegressionWhenTheViewHoldsNoReadAfterItsBasis() {
        var p = Self.scriptParams(workers: [0, 0, 0])
        p.dbSkewUs = Int64(Self.envInt("RUNFEED_MODEL_DB_SKEW_MS") ?? 0) * 1000
        let failure = Self.runScenario(Self.scenarioViewOlderThanItsBasis(p))
        XCTAssertNil(failure, "list gap from rows cached before the client's view, a view older than its basis "
                     + "(dbSkewUs=\(p.dbSkewUs)): \(failure ?? "")")
    }

    /// The scenarios reproduce without confirmation (the scripts really exercise the regressions), and
    /// confirming before sending removes them all. (Scenario 3 no longer reproduces either way: see its test.)
    func testScenariosRegressWithoutConfirmationAndNotWithIt() {
        let scenarios: [(String, (M.Params) -> M.World, M.Params)] = [
            ("unknown view", Self.scenarioUnknownView, Self.scriptParams(workers: [0, 0])),
            ("run left the filter", Self.scenarioRunLeftTheFilter, Self.scriptParams(workers: [0, 0, 0])),
            ("list gap from cache", Self.scenarioListGapFromCache, Self.scriptParams(workers: [0, 0, 0])),
            ("run row cached before the view", Self.scenarioRunCachedBeforeView, Self.scriptParams(workers: [0, 0])),
            ("view older than its basis", Self.scenarioViewOlderThanItsBasis, Self.scriptParams(workers: [0, 0, 0])),
        ]
        for (name, make, p) in scenarios {
            var confirmations = 0
            for seed in UInt64(1)...20 {
                var before = p
                before.seed = seed
                before.confirmBeforeSend = false
                let failure = make(before).runScript(untilMs: 1_000)
                XCTAssertTrue(failure?.contains("REGRESSION") == true, "\(name), seed \(seed): the scenario no longer reproduces: \(failure ?? "no failure")")
                var fixed = p
                fixed.seed = seed
                let world = make(fixed)
                let after = world.runScript(untilMs: 1_000)
                XCTAssertNil(after, "\(name), seed \(seed), with confirmation: \(after ?? "")")
                confirmations += world.stats.confirmingReads
            }
            if name != "unknown view" && name != "run left the filter" {
                // Protected by the confirmation itself (not by a cold start's floor).
                XCTAssertGreaterThan(confirmations, 0, "\(name): no confirming read")
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

