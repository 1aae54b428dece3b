// A discrete-event model of runfeed's live feeds, used by ConvergenceModelTests.
//
// The decisions are the REAL pure code of RunfeedCore (RunFeedPoll, ListFeedPoll, ListDiff, RunClientView,
// RowVersion, Offset, ReplayBuffer, gapCovered, gapReadFreshAfter, LeadingEdgeCoalescer, WakeIndex, ListFilter,
// ListViewDelta, ListViewCodec, BoundedTTLCache, HoldTiming). The server wiring that carries them out
// (Sources/RunfeedServer: RunFeedRegistry, ListFeeds, RunStore, Runsets, EnvChannels, SharedViews, PollParking,
// Server, and RunfeedIO's RedisSubscriber) cannot be linked into this test target, so it is re-written here
// line by line; every function below names the server function it mirrors. Where the model simplifies, the
// comment says so.
//
// Time: one virtual clock in µs (`World.now`), the "true" time. A worker's monotonic clock is the true time;
// its wall clock is the true time plus its host's skew (`Params.hostSkewUs`). The database server has a clock of
// its own: the true time plus `Params.dbSkewUs` (0 by default: the sweeps keep the database on the true time,
// so every worker's wall clock is at or ahead of it; RUNFEED_MODEL_DB_SKEW_MS explores other settings).
// Everything is deterministic from the seed (SplitMix64; every Set/Dictionary iteration that can influence the
// schedule is sorted first).
//
// Which clock each time is on, as in the server:
// - a row's `readAtUs` is the statement's start on the database server (`statement_timestamp()`, read with
//   `PostgresListSQL.readAtColumn`): the database clock. Single-run offsets' bases (`row.readAtUs / 1000`),
//   the gap-from-cache basis and every `RowVersion` in a list view are on it;
// - `Runset.resolvedAtUs` (the membership query's start), a hydrate's basis, `requestedAt` when a run is not
//   found, subscription times, replay arrival times (`gapCovered`, `replayed`) and the runset cache's
//   `notBeforeUs` are on the worker's wall clock; the run store's `freshAfter`/`startedAt` on its monotonic one.
//
// Modelled: Postgres reads that see every commit before their start, stamped with the database clock at that
// start, with random latency (`Params.statementDelayMaxUs` can start the statement on the server after the
// worker sent it); the run store's row cache, per-run fresh-read single-flight (the core's `FreshReads`) and batched backstop reads; the runset cache
// and in-flight resolves, single-flighted per filter, a caller needing a later start queued for the next
// resolve (Postgres membership at the query's start); "confirm before sending" (a row the client does not hold
// read before its view is confirmed by a read started now: `RunFeedRegistry.act(.readRow)`,
// `ListFeedRegistry.resolveForClient` and the gap-from-cache check in `park`; `Params.confirmBeforeSend` off
// models the wiring without it); Redis pub/sub per worker connection (FIFO, SUBSCRIBE confirmation, publishes
// delayed after the commit, lost for all or some workers, lost while Redis is down, reconnect backoff,
// resubscription wakes); the shared working sets (`@token`, a whole view as `@base`, changes as run fields by a
// conditional write, the whole view rewritten when the condition fails or the fields pile up, failures while
// Redis is down, wiped by a restart; a view loaded from Redis kept locally); the replay buffer and its
// eviction; the coalescing window (0 or 250 ms); hold deadlines with jitter; subscription linger; worker kills
// (held polls and in-flight work vanish; Redis jobs not yet applied are lost) and drains (held polls answered,
// then exit), with restarts.
//
// Not modelled: database, ClickHouse and resolve failures; ClickHouse membership lag (membership is read from
// Postgres); the resolve admission gate (unlimited); the runset row limit; created-at windows (tag feeds use
// floor 0); working-set TTLs (a lost view comes from Redis restarts and failed saves); run deletion; client
// aborts; non-live catch-up requests; auth and lookups.

import RunfeedCore

enum ConvergenceModel {
    static let env = "env_1"
    /// The true time at which the simulation starts (µs since the epoch, mid-2026).
    static let baseUs: Int64 = 1_780_000_000_000_000
}

// MARK: - PRNG

extension ConvergenceModel {
    /// SplitMix64: small, fast, and the same on every platform.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        init(seed: UInt64) { state = seed }

        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }

        /// 0..<n (n > 0).
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        /// lo...hi inclusive.
        mutating func int(_ lo: Int64, _ hi: Int64) -> Int64 {
            hi <= lo ? lo : lo + Int64(next() % UInt64(hi - lo + 1))
        }
        mutating func unit() -> Double { Double(next() >> 11) / Double(UInt64(1) << 53) }
        mutating func chance(_ p: Double) -> Bool { p > 0 && unit() < p }
        mutating func pick<T>(_ a: [T]) -> T { a[below(a.count)] }
    }
}

// MARK: - Parameters

extension ConvergenceModel {
    struct Params: CustomStringConvertible {
        var seed: UInt64 = 0
        /// The host of each worker (the number of workers is its count).
        var hostOfWorker: [Int] = [0]
        /// Wall-clock skew of each host (µs; a host's workers share its clock).
        var hostSkewUs: [Int64] = [0]
        /// `config.clockSkewMs`: the allowance for skew between hosts.
        var clockSkewMs: Int64 = 250
        var initialRuns = 3
        var runClients = 2
        var listClients = 2
        var writes = 60
        var writeSpanMs: Int64 = 12_000
        var insertRate = 0.1
        var tagChangeRate = 0.06
        var noopRate = 0.05
        var partialRecordRate = 0.1
        /// Publishes delivered to no worker.
        var lostRate = 0.0
        /// Publishes delivered to only some workers (lost for the others).
        var lostSomeRate = 0.0
        /// Publishes that reach Redis late (50–500 ms after the commit) instead of within 5 ms.
        var slowPublishRate = 0.05
        var redisWipes = 0
        var kills = 0
        var drains = 0
        var holdMs: Int64 = 3_000
        var jitterRatio = 0.15
        var coalesceWindowMs: Int64 = 0
        var replayWindowMs: Int64 = 10_000
        var replayMaxRuns = 512
        var runCacheTtlMs: Int64 = 250
        var runsetCacheTtlMs: Int64 = 1_000
        var lingerMs: Int64 = 5_000
        var workingSetTtlMs: Int64 = 300_000
        /// Database reads that take 20–150 ms instead of 0.3–6 ms.
        var slowReadRate = 0.05
        /// The database server's clock: the true time plus this (µs). `readAtUs` of every read is on it.
        var dbSkewUs: Int64 = 0
        /// "Confirm before sending", as the server does it: a row the client does not hold whose read is not
        /// after the client's view (single run: `readAtUs <= basisMs * 1000 + 999`; lists:
        /// `ListDiff.needsFresherRead` against `ListDiff.sendFloorUs`) is not sent: a read started now is made and
        /// ITS result used (`RunFeedRegistry.act(.readRow)`, `ListFeedRegistry.resolveForClient`, the gap from
        /// cache in `ListFeedRegistry.park`); and a cold start's resolve must have started after the client's
        /// basis plus the skew allowance (`ListFeedRegistry.notBefore`). `false` models the wiring without either
        /// (cached and in-flight reads used as they are): the model must then find regressions.
        var confirmBeforeSend = true
        /// Fail on regressions from reads older than the client's view too (with `confirmBeforeSend = false` they
        /// are counted instead; see `World.receive`).
        var strictRegressions = true
        /// Exploration only (default 0): a statement starts on the database server up to this long after the
        /// worker sent it (waiting for a pool connection, network). Its snapshot and its `readAtUs`
        /// (`statement_timestamp()`) are both taken then; the run store's `startedAt` and a resolve's
        /// `resolvedAtUs` stay at the send.
        var statementDelayMaxUs: Int64 = 0
        /// A read replica (`LoopDatabase`, `ReplicaGate`): row reads and hydrates go to a replica that has applied
        /// every commit made before `now − lag` (lag drawn per attempt, up to this; 0: no replica). A read that must
        /// reflect every commit before its freshness X goes there once its snapshot reaches X (re-checked every
        /// 1–20 ms, at most 1 s, then the primary). Its `readAtUs` is its snapshot on the database's clock (the server
        /// reads the last replayed commit's time before and after the statement: `ReplicaLabel`), its run-store start
        /// the watermark on the worker's monotonic clock (a lower bound). A row missing there is read on the primary.
        /// (Membership queries stay on the primary in the model.)
        var replicaLagMaxUs: Int64 = 0
        /// Negative control: replica reads are not gated and carry their statement's own start as read time, as if
        /// the replica were current. The model must then find clients sent an older version or left behind.
        var replicaLabelledAsCurrent = false
        /// Deliberate breakage of the wiring, to check that the model notices (self-tests).
        var mutation: Mutation = .none

        enum Mutation {
            case none
            /// At the hold deadline, answer up-to-date without the backstop read.
            case noBackstopRead
            /// Single-run polls decide by the offset floor only (the upstream rule, before digests): a row is
            /// new only if its `updatedAt` is later.
            case floorOnlyRunView
        }

        var workers: Int { hostOfWorker.count }

        var description: String {
            "workers=\(workers) hosts=\(Set(hostOfWorker).count) skewUs=\(hostSkewUs) clockSkewMs=\(clockSkewMs) "
                + "runs=\(initialRuns) runClients=\(runClients) listClients=\(listClients) writes=\(writes) "
                + "spanMs=\(writeSpanMs) lost=\(lostRate) lostSome=\(lostSomeRate) wipes=\(redisWipes) kills=\(kills) "
                + "drains=\(drains) holdMs=\(holdMs) coalesceMs=\(coalesceWindowMs) replayMaxRuns=\(replayMaxRuns) "
                + "dbSkewUs=\(dbSkewUs) confirmBeforeSend=\(confirmBeforeSend) statementDelayMaxUs=\(statementDelayMaxUs) "
                + "replicaLagMaxUs=\(replicaLagMaxUs) replicaLabelledAsCurrent=\(replicaLabelledAsCurrent)"
        }
    }
}

// MARK: - Event queue

extension ConvergenceModel {
    /// A binary min-heap of closures keyed by (time, insertion order).
    final class EventQueue {
        private struct Event {
            let t: Int64
            let s: UInt64
            let f: () -> Void

            @inline(__always) func before(_ o: Event) -> Bool { t < o.t || (t == o.t && s < o.s) }
        }

        private var heap: [Event] = []
        private var seq: UInt64 = 0

        func push(_ t: Int64, _ f: @escaping () -> Void) {
            seq &+= 1
            let e = Event(t: t, s: seq, f: f)
            heap.append(e)
            var i = heap.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                if !e.before(heap[p]) { break }
                heap[i] = heap[p]
                i = p
            }
            heap[i] = e
        }

        func pop() -> (Int64, () -> Void)? {
            guard let top = heap.first else { return nil }
            let last = heap.removeLast()
            let n = heap.count
            if n > 0 {
                var i = 0
                while true {
                    let l = 2 * i + 1
                    if l >= n { break }
                    var m = l
                    let r = l + 1
                    if r < n, heap[r].before(heap[l]) { m = r }
                    if !heap[m].before(last) { break }
                    heap[i] = heap[m]
                    i = m
                }
                heap[i] = last
            }
            return (top.t, top.f)
        }

        func removeAll() { heap.removeAll() }
    }
}

// MARK: - Database

extension ConvergenceModel {
    /// Postgres: every version of every run with its commit time. A read started at `t` sees every commit
    /// before `t` (and none after).
    final class Database {
        struct Version {
            let commitUs: Int64
            let row: RunRow
            /// Content sequence: increases with every commit that changes the row (a no-op write keeps it).
            let cseq: Int
        }

        private(set) var runIds: [String] = []
        private var versions: [String: [Version]] = [:]
        private var cseqByDigest: [String: [UInt64: Int]] = [:]
        private var nextCseq = 1

        func commit(_ row: RunRow, at t: Int64) {
            var list = versions[row.id] ?? []
            if list.isEmpty { runIds.append(row.id) }
            precondition(list.last.map { $0.commitUs < t } ?? true, "commits are in time order")
            let cseq: Int
            if let last = list.last, last.row.digest == row.digest {
                cseq = last.cseq
            } else {
                cseq = nextCseq
                nextCseq += 1
            }
            list.append(Version(commitUs: t, row: row, cseq: cseq))
            versions[row.id] = list
            cseqByDigest[row.id, default: [:]][row.digest] = cseq
        }

        /// The version a read started at `t` sees.
        func at(_ runId: String, _ t: Int64) -> Version? {
            guard let list = versions[runId] else { return nil }
            var i = list.count - 1
            while i >= 0 {
                if list[i].commitUs < t { return list[i] }
                i -= 1
            }
            return nil
        }

        func current(_ runId: String) -> Version? { versions[runId]?.last }

        /// The content sequence of a version of a run, by digest (every content-changing write is unique).
        func cseq(_ runId: String, _ digest: UInt64) -> Int? { cseqByDigest[runId]?[digest] }

    }
}

// MARK: - Rows

extension ConvergenceModel {
    static func makeRaw(id: String, createdMs: Int64, updatedMs: Int64, status: String, metadata: String?,
                        tags: [String], batchId: String?) -> [String?] {
        var v = [String?](repeating: nil, count: RunRow.rawCount)
        v[RunColumn.id.index] = id
        v[RunColumn.taskIdentifier.index] = "my-task"
        v[RunColumn.createdAt.index] = PGText.epochMsToTimestamp(createdMs)
        v[RunColumn.updatedAt.index] = PGText.epochMsToTimestamp(updatedMs)
        v[RunColumn.friendlyId.index] = "run_" + id
        v[RunColumn.number.index] = "1"
        v[RunColumn.isTest.index] = "f"
        v[RunColumn.status.index] = status
        v[RunColumn.usageDurationMs.index] = "0"
        v[RunColumn.costInCents.index] = "0"
        v[RunColumn.baseCostInCents.index] = "0"
        v[RunColumn.payloadType.index] = "application/json"
        v[RunColumn.metadata.index] = metadata
        v[RunColumn.metadataType.index] = "application/json"
        v[RunColumn.outputType.index] = "application/json"
        v[RunColumn.runTags.index] = PGText.encodeArray(tags)
        v[RunColumn.realtimeStreams.index] = "{}"
        v[RunRow.envIdIndex] = env
        v[RunRow.batchIdIndex] = batchId
        return v
    }

    static func replacing(_ row: RunRow, updatedMs: Int64, status: String, metadata: String, tags: [String]) -> RunRow {
        var raw = row.raw
        raw[RunColumn.updatedAt.index] = PGText.epochMsToTimestamp(updatedMs)
        raw[RunColumn.status.index] = status
        raw[RunColumn.metadata.index] = metadata
        raw[RunColumn.runTags.index] = PGText.encodeArray(tags)
        return RunRow(raw: raw)!
    }

    static func short(_ d: UInt64) -> String { String(String(d, radix: 16).prefix(6)) }
}

// MARK: - Requests, answers, clients

extension ConvergenceModel {
    enum FeedKind {
        case run(String)
        case list(ListFilter)
    }

    final class Request {
        let id: Int
        let client: Client
        let live: Bool
        let offset: Offset?
        let handle: String?
        let sentUs: Int64
        var worker: Worker?
        var done = false

        init(id: Int, client: Client, live: Bool, offset: Offset?, handle: String?, sentUs: Int64) {
            self.id = id; self.client = client; self.live = live; self.offset = offset; self.handle = handle
            self.sentUs = sentUs
        }
    }

    /// How a live poll ended, for the statistics.
    enum Ending {
        case snapshot
        /// Answered by the poll's first read (gap read, replay, cold resolve), before any wake or deadline.
        case start
        case wake
        case backstop
        case drain
    }

    struct Answer {
        var rows: [(RunRow, ChangeOperation)]
        var offset: Offset
        var handle: String
        /// Model-only: the view the server associates with the answer's token (lists), to check it is faithful.
        var view: ListView?
        var ending: Ending
        var worker: Int
        /// Model-only, live answers: the read time (database clock, µs) at or before which a read is not after
        /// the client's view, as the server's confirmation judges it (single run: `basisMs * 1000 + 999`;
        /// lists: `ListDiff.sendFloorUs` of the offset and the view the poll started with).
        var sendFloorUs: Int64? = nil
    }

    final class Client {
        let id: Int
        let kind: FeedKind
        var handle: String?
        var offset: Offset?
        var rows: [String: RunRow] = [:]
        var started = false
        var polls = 0
        /// Scripted clients: the worker of each request in turn; nil: a random serving worker.
        var route: [Int]?
        var routeIndex = 0
        /// Live polls sent after the quiet point that ended at or after their deadline.
        var quietBackstops = 0

        init(id: Int, kind: FeedKind) { self.id = id; self.kind = kind }

        var label: String {
            switch kind {
            case .run(let r): return "c\(id)[run \(r)]"
            case .list(let f):
                if let b = f.batchId { return "c\(id)[batch \(b)]" }
                return "c\(id)[tags \(f.tags)]"
            }
        }

        func mentions(_ runId: String) -> Bool {
            if case .run(let r) = kind { return r == runId }
            return true
        }
    }

    struct Stats: CustomStringConvertible {
        var writes = 0, inserts = 0, noops = 0, tagChanges = 0
        var published = 0, lost = 0, lostSome = 0
        var polls = 0, snapshots = 0
        var deliveriesAtStart = 0, deliveriesOnWake = 0, deliveriesAtBackstop = 0, deliveriesOnDrain = 0
        var upToDates = 0
        /// Held polls answered by a draining worker (up-to-date with the client's own offset or view).
        var drainAnswers = 0
        var coldResolves = 0, gapFromCache = 0, resyncs = 0
        var wipes = 0, kills = 0, drains = 0, failedRequests = 0
        var events = 0
        /// Rows the client did not hold, read before its view, re-read before sending (`confirmBeforeSend`):
        /// single-run polls, list resolves (`resolveForClient`), list gaps that could have come from cached rows.
        var confirmingRunReads = 0, confirmingResolves = 0, confirmingGapReads = 0
        var confirmingReads: Int { confirmingRunReads + confirmingResolves + confirmingGapReads }
        /// Regressions of the known class (an answer built from a read not after the client's view), counted
        /// instead of failed when `strictRegressions` is off.
        var staleRegressions = 0

        var description: String {
            "deliveries: \(deliveriesOnWake) on a wake, \(deliveriesAtBackstop) at a backstop, \(deliveriesAtStart) at poll start, "
                + "\(deliveriesOnDrain) on drain; \(upToDates) up-to-date (\(drainAnswers) by a drain); polls=\(polls) snapshots=\(snapshots) "
                + "writes=\(writes) (inserts \(inserts), no-ops \(noops), tag changes \(tagChanges)) published=\(published) "
                + "lost=\(lost) lostSome=\(lostSome) coldResolves=\(coldResolves) gapFromCache=\(gapFromCache) "
                + "resyncs=\(resyncs) confirming reads: \(confirmingRunReads) run, \(confirmingResolves) resolve, "
                + "\(confirmingGapReads) gap; wipes=\(wipes) kills=\(kills) drains=\(drains) failedRequests=\(failedRequests) events=\(events) staleRegressions=\(staleRegressions)"
        }
    }
}

// MARK: - World

extension ConvergenceModel {
    final class World {
        let p: Params
        var rng: SplitMix64
        var now: Int64 = baseUs
        let queue = EventQueue()
        let db = Database()
        var workers: [Worker] = []
        var clients: [Client] = []
        var stats = Stats()
        /// The first invariant violation (the run stops there).
        var failure: String?
        let tracing: Bool
        var traceLines: [String] = []
        /// After this, no writes and no faults: every client must converge.
        var quietUs: Int64 = .max
        var endUs: Int64 = .max
        var nextRequestId = 1
        var writeCounter = 0
        var nextRunNumber = 1
        var finished = false
        /// Scripted worlds (bug reproductions): no random writers, clients or faults; see `script*`.
        let scripted: Bool
        /// The first regression of the known class, for the report.
        var firstStaleRegression: String?
        /// Scripted: called after a worker heard a change record (and woke its polls).
        var onHeard: ((Worker, ChangeRecord) -> Void)?

        // Redis
        var redisUp = true
        /// Shared working sets: key → hash fields (`@token`, `@base` — a whole view, `ListViewCodec.encodeBase` —
        /// and run → `<digest hex>:<readAtUs>` or `-` for the changes since the base).
        var shared: [String: [String: String]] = [:]

        static let statuses = ["PENDING", "QUEUED", "EXECUTING", "REATTEMPTING", "WAITING_TO_RESUME", "PAUSED"]
        static let tagUniverse = ["a", "b", "c"]
        static let batches: [String?] = ["batch_1", "batch_1", "batch_2", nil]

        init(_ p: Params, tracing: Bool = false, scripted: Bool = false) {
            self.p = p
            self.rng = SplitMix64(seed: p.seed &* 0x2545_F491_4F6C_DD1D &+ 0x1234_5678)
            self.tracing = tracing
            self.scripted = scripted
        }

        // MARK: scheduling and tracing

        func at(_ t: Int64, _ f: @escaping () -> Void) { queue.push(max(t, now), f) }

        func trace(_ s: @autoclosure () -> String) {
            guard tracing else { return }
            let ms = Double(now - baseUs) / 1000
            traceLines.append("t=" + String(format3(ms)) + " " + s())
        }

        func format3(_ v: Double) -> String {
            let scaled = Int64((v * 1000).rounded())
            let neg = scaled < 0
            let a = abs(scaled)
            let frac = String(a % 1000)
            return (neg ? "-" : "") + String(a / 1000) + "." + String(repeating: "0", count: 3 - frac.count) + frac
        }

        func fail(_ s: String) {
            if failure == nil {
                failure = "t=" + format3(Double(now - baseUs) / 1000) + "ms: " + s
                trace("FAILURE: " + s)
            }
        }

        /// Network latencies (µs).
        func netUs() -> Int64 { rng.int(200, 3_000) }
        func redisNetUs() -> Int64 { rng.int(100, 2_000) }
        func dbLatencyUs() -> Int64 { rng.chance(p.slowReadRate) ? rng.int(20_000, 150_000) : rng.int(300, 6_000) }

        // MARK: setup

        func startWorkers() {
            for (i, host) in p.hostOfWorker.enumerated() {
                let w = Worker(world: self, id: i, host: host, skewUs: p.hostSkewUs[host])
                workers.append(w)
                w.connect()
            }
        }

        func setUp() {
            startWorkers()
            // Initial runs, committed well before anyone asks.
            for _ in 0..<p.initialRuns {
                insertRun(at: baseUs - 10_000_000, publish: false)
            }
            var n = 0
            for _ in 0..<p.runClients {
                n += 1
                let runId = rng.pick(Array(db.runIds.prefix(p.initialRuns)))
                clients.append(Client(id: n, kind: .run(runId)))
            }
            for _ in 0..<p.listClients {
                n += 1
                let filter: ListFilter
                switch rng.below(4) {
                case 0: filter = .tags(["a"], floorMs: 0)
                case 1: filter = .tags(["a", "b"], floorMs: 0)
                case 2: filter = .tags([], floorMs: 0)
                default: filter = .batch("batch_1")
                }
                clients.append(Client(id: n, kind: .list(filter)))
            }
            for c in clients {
                at(baseUs + rng.int(0, 1_000_000)) { [self] in
                    c.started = true
                    send(c)
                }
            }
            // Writes.
            var times: [Int64] = (0..<p.writes).map { _ in baseUs + rng.int(0, p.writeSpanMs * 1000) }
            times.sort()
            for i in times.indices where i > 0 && times[i] <= times[i - 1] { times[i] = times[i - 1] + 1 }
            for t in times { at(t) { [self] in write() } }
            let lastWrite = times.last ?? baseUs
            var quiet = lastWrite + 1_000_000
            // Faults, inside the write phase.
            let span = max(p.writeSpanMs * 1000, 1_000_000)
            for _ in 0..<p.redisWipes {
                let t = baseUs + span / 5 + rng.int(0, span * 3 / 5)
                let outage = rng.int(50_000, 2_000_000)
                at(t) { [self] in wipeRedis(outageUs: outage) }
                quiet = max(quiet, t + outage + 7_000_000)
            }
            for _ in 0..<p.kills {
                let t = baseUs + span / 10 + rng.int(0, span * 4 / 5)
                let down = rng.int(200_000, 3_000_000)
                at(t) { [self] in killSome(downUs: down) }
                quiet = max(quiet, t + down + 2_000_000)
            }
            for _ in 0..<p.drains {
                let t = baseUs + span / 10 + rng.int(0, span * 4 / 5)
                let down = rng.int(200_000, 3_000_000)
                at(t) { [self] in drainSome(downUs: down) }
                quiet = max(quiet, t + down + 12_000_000)
            }
            quietUs = quiet
            // Enough for two full holds after the quiet point, with retries and slow reads.
            endUs = quiet + 8 * (p.holdMs * 1000 * 6 / 5) + 30_000_000
        }

        /// Runs to the end. Returns nil when every check passed, else a description of the failure.
        func run() -> String? {
            setUp()
            while failure == nil, !finished, let (t, f) = queue.pop() {
                if t > endUs { break }
                now = t
                stats.events += 1
                f()
            }
            if failure == nil {
                if !finished {
                    let lagging = clients.filter { $0.quietBackstops < 2 }.map(\.label)
                    fail("no convergence point reached by t=\(format3(Double(endUs - baseUs) / 1000))ms: clients without two "
                         + "backstop cycles after the quiet point: \(lagging)")
                } else {
                    checkConverged()
                }
            }
            queue.removeAll()  // closures hold the world: break the cycles
            for w in workers { w.shutdownModel() }
            return failure
        }

        func checkConverged() {
            for c in clients {
                switch c.kind {
                case .run(let runId):
                    let cur = db.current(runId)!
                    if c.rows[runId]?.digest != cur.row.digest {
                        fail("\(c.label) did not converge: holds \(c.rows[runId].map { describe($0) } ?? "nothing"), "
                             + "database has \(describe(cur.row))")
                    }
                case .list(let f):
                    for runId in db.runIds {
                        let cur = db.current(runId)!
                        guard f.contains(cur.row) else { continue }
                        if c.rows[runId]?.digest != cur.row.digest {
                            fail("\(c.label) did not converge on \(runId): holds \(c.rows[runId].map { describe($0) } ?? "nothing"), "
                                 + "database has \(describe(cur.row))")
                        }
                    }
                }
            }
        }

        /// `r3#v12(ab12cd read@104.8)`: the run, its version (the global content sequence of the database: every
        /// content-changing commit gets the next number), the digest and when the read that produced it started
        /// (the database clock, ms since the start).
        func describe(_ r: RunRow) -> String {
            let v = "\(r.id)#v\(db.cseq(r.id, r.digest).map(String.init) ?? "?")(\(short(r.digest))"
            return r.readAtUs == 0 ? v + ")" : v + " read@\(format3(Double(r.readAtUs - baseUs) / 1000)))"
        }

        // MARK: writers

        func insertRun(at t: Int64, publish: Bool) {
            let id = "r\(nextRunNumber)"
            nextRunNumber += 1
            var tags: [String] = []
            for tag in Self.tagUniverse where rng.chance(tag == "a" ? 0.75 : 0.5) { tags.append(tag) }
            writeCounter += 1
            let ms = t / 1000
            let raw = makeRaw(id: id, createdMs: ms - rng.int(0, 5), updatedMs: ms, status: "PENDING",
                              metadata: "{\"w\":\(writeCounter)}", tags: tags, batchId: rng.pick(Self.batches))
            let row = RunRow(raw: raw)!
            db.commit(row, at: t)
            if publish { self.publish(row) }
        }

        func write() {
            stats.writes += 1
            if rng.chance(p.insertRate) {
                stats.inserts += 1
                insertRun(at: now, publish: true)
                trace("WRITE insert \(describe(db.current(db.runIds.last!)!.row))")
                return
            }
            let runId = rng.pick(db.runIds)
            let prev = db.current(runId)!.row
            let row: RunRow
            if rng.chance(p.noopRate) {
                stats.noops += 1
                row = prev
            } else {
                writeCounter += 1
                let commitMs = now / 1000
                let u = rng.unit()
                let stamp: Int64
                if u < 0.3 {
                    stamp = prev.updatedAtMs  // the same millisecond as the previous stamp
                } else if u < 0.6 {
                    stamp = commitMs - rng.int(0, 20)  // stamped a few ms before the commit
                } else if u < 0.75 {
                    stamp = commitMs - rng.int(0, 60_000)  // up to the 60 s horizon
                } else {
                    stamp = commitMs + rng.int(0, 20)
                }
                var tags = prev.runTags
                if rng.chance(p.tagChangeRate) {
                    stats.tagChanges += 1
                    let t = rng.pick(Self.tagUniverse)
                    if let i = tags.firstIndex(of: t) { tags.remove(at: i) } else { tags.append(t); tags.sort() }
                }
                row = replacing(prev, updatedMs: stamp, status: rng.pick(Self.statuses), metadata: "{\"w\":\(writeCounter)}",
                                tags: tags)
            }
            db.commit(row, at: now)
            trace("WRITE \(describe(row)) tags=\(row.runTags) updatedAt=\(row.updatedAtMs)")
            publish(row)
        }

        /// trigger.dev publishes the change record after the commit; it reaches Redis after a delay (publishes
        /// from different app instances can overtake each other). `onlyTo` (scripts): lost for every other worker.
        func publish(_ row: RunRow, onlyTo: Set<Int>? = nil) {
            let record = rng.chance(p.partialRecordRate)
                ? ChangeRecord(v: 0, runId: row.id, envId: "")
                : ChangeRecord(v: 1, runId: row.id, envId: env, tags: row.runTags, batchId: row.batchId,
                               updatedAtMs: row.updatedAtMs)
            let delay = rng.chance(p.slowPublishRate) ? rng.int(50_000, 500_000) : rng.int(100, 5_000)
            let lostAll = rng.chance(p.lostRate)
            let lostSome = !lostAll && rng.chance(p.lostSomeRate)
            at(now + delay) { [self] in
                guard redisUp else {
                    stats.lost += 1
                    trace("PUBLISH \(row.id) lost (Redis down)")
                    return
                }
                if lostAll {
                    stats.lost += 1
                    trace("PUBLISH \(row.id) LOST")
                    return
                }
                stats.published += 1
                var targets = workers.filter { $0.alive && $0.redisSideSubscribed }
                if lostSome {
                    stats.lostSome += 1
                    targets = targets.filter { _ in rng.chance(0.5) }
                }
                if let onlyTo {
                    if targets.contains(where: { !onlyTo.contains($0.id) }) { stats.lostSome += 1 }
                    targets = targets.filter { onlyTo.contains($0.id) }
                }
                trace("PUBLISH \(row.id) \(record.isFull ? "full" : "partial") -> workers \(targets.map(\.id))\(lostSome || onlyTo != nil ? " (lost for some)" : "")")
                for w in targets { w.fromRedis { w.channelsReceived(record) } }
            }
        }

        // MARK: faults

        func wipeRedis(outageUs: Int64) {
            stats.wipes += 1
            trace("REDIS RESTART (down \(outageUs / 1000) ms): working sets and subscriptions gone")
            redisUp = false
            shared = [:]
            for w in workers where w.alive { w.redisConnectionLost() }
            at(now + outageUs) { [self] in
                redisUp = true
                trace("REDIS up")
            }
        }

        func servingWorkers() -> [Worker] { workers.filter { $0.alive && !$0.draining } }

        func killSome(downUs: Int64) {
            let serving = servingWorkers()
            guard serving.count >= 2 else { return }
            let w = rng.pick(serving)
            stats.kills += 1
            trace("KILL w\(w.id)")
            let id = w.id
            w.kill()
            at(now + downUs) { [self] in restart(id) }
        }

        func drainSome(downUs: Int64) {
            let serving = servingWorkers()
            guard serving.count >= 2 else { return }
            let w = rng.pick(serving)
            stats.drains += 1
            trace("DRAIN w\(w.id)")
            w.drain { [self] in
                let id = w.id
                at(now + downUs) { [self] in restart(id) }
            }
        }

        func restart(_ id: Int) {
            let old = workers[id]
            let w = Worker(world: self, id: id, host: old.host, skewUs: old.skewUs)
            workers[id] = w
            trace("START w\(id)")
            w.connect()
        }

        // MARK: clients

        func send(_ c: Client) {
            guard !finished else { return }
            let w: Worker
            if let route = c.route {
                guard c.routeIndex < route.count else { return }
                w = workers[route[c.routeIndex]]
                c.routeIndex += 1
            } else {
                let serving = servingWorkers()
                guard !serving.isEmpty else {
                    at(now + 50_000) { [self] in send(c) }
                    return
                }
                w = rng.pick(serving)
            }
            let live = c.offset != nil
            let req = Request(id: nextRequestId, client: c, live: live, offset: c.offset, handle: c.handle, sentUs: now)
            nextRequestId += 1
            if live { stats.polls += 1 } else { stats.snapshots += 1 }
            c.polls += 1
            let arrive = now + netUs()
            at(arrive) { [self] in
                guard w.alive else {
                    failed(req)
                    return
                }
                w.handle(req)
            }
        }

        /// The worker went away with the request: the client retries elsewhere with the same offset.
        func failed(_ req: Request) {
            guard !req.done else { return }
            req.done = true
            stats.failedRequests += 1
            trace("\(req.client.label) request \(req.id) failed; retrying")
            at(now + rng.int(10_000, 100_000)) { [self] in send(req.client) }
        }

        func respond(_ req: Request, _ a: Answer) {
            guard !req.done else { return }
            req.done = true
            req.worker?.openRequests.removeValue(forKey: req.id)
            at(now + netUs()) { [self] in receive(req, a) }
        }

        /// The SDK applies an answer (rows are full: set them), then polls again at once.
        func receive(_ req: Request, _ a: Answer) {
            let c = req.client
            trace("\(c.label) <- w\(a.worker) \(a.ending) rows=\(a.rows.map { "\($0.1) \(describe($0.0))" }) offset=\(a.offset.text)")
            for (row, _) in a.rows {
                if let held = c.rows[row.id], let hs = db.cseq(row.id, held.digest), let ns = db.cseq(row.id, row.digest), ns < hs {
                    let what = "REGRESSION: \(c.label) holding \(describe(held)) was sent the older \(describe(row)) by w\(a.worker) (\(a.ending))"
                    // The known class: an answer built from a read not after the client's view (what confirming
                    // before sending prevents).
                    if let floor = a.sendFloorUs, row.readAtUs <= floor, !p.strictRegressions {
                        stats.staleRegressions += 1
                        if firstStaleRegression == nil { firstStaleRegression = "t=\(format3(Double(now - baseUs) / 1000))ms: " + what }
                        trace("known bug: " + what)
                    } else {
                        fail(what + (a.sendFloorUs.map { " [read not after the client's view: \(row.readAtUs <= $0)]" } ?? ""))
                    }
                }
                c.rows[row.id] = row
            }
            if req.live {
                switch a.ending {
                case .snapshot, .start: if !a.rows.isEmpty { stats.deliveriesAtStart += 1 }
                case .wake: if !a.rows.isEmpty { stats.deliveriesOnWake += 1 }
                case .backstop: if !a.rows.isEmpty { stats.deliveriesAtBackstop += 1 }
                case .drain: if !a.rows.isEmpty { stats.deliveriesOnDrain += 1 }
                }
                if a.rows.isEmpty { stats.upToDates += 1 }
                if a.ending == .drain { stats.drainAnswers += 1 }
            }
            // The offset travels as text.
            guard let parsed = Offset.parse(a.offset.text) else {
                fail("offset \(a.offset.text) does not parse")
                return
            }
            c.offset = parsed
            c.handle = a.handle
            // The offset's token must describe what the client now holds.
            switch c.kind {
            case .run(let runId):
                let expect = c.rows[runId]?.digest ?? 0
                if parsed.token != expect {
                    fail("\(c.label) offset token \(parsed.token.map { short($0) } ?? "nil") but it holds \(short(expect))")
                }
            case .list:
                if let view = a.view {
                    for (runId, v) in view.sorted(by: { $0.key < $1.key })
                    where runId != ListDiff.membersKey && c.rows[runId]?.digest != v.digest {
                        fail("\(c.label): the view stored for token \(parsed.token.map { short($0) } ?? "nil") says \(runId) is at "
                             + "\(short(v.digest)), the client holds \(c.rows[runId].map { describe($0) } ?? "nothing")")
                    }
                }
            }
            if req.live, req.sentUs >= quietUs, a.ending == .backstop { c.quietBackstops += 1 }
            if now >= quietUs, clients.allSatisfy({ $0.quietBackstops >= 2 }) {
                finished = true
                return
            }
            at(now + rng.int(0, 2_000)) { [self] in send(c) }
        }
    }
}

// MARK: - Scripted worlds

extension ConvergenceModel.World {
    typealias M = ConvergenceModel

    /// Commits the first version of a run 10 s before the start.
    func scriptRun(_ id: String, tags: [String], batch: String? = nil) {
        writeCounter += 1
        let ms = (M.baseUs - 10_000_000) / 1000
        let raw = M.makeRaw(id: id, createdMs: ms - Int64(db.runIds.count), updatedMs: ms, status: "PENDING",
                            metadata: "{\"w\":\(writeCounter)}", tags: tags, batchId: batch)
        db.commit(RunRow(raw: raw)!, at: M.baseUs - 10_000_000)
    }

    /// A client whose requests go to `route`'s workers in turn (then it stops), starting at `ms`.
    @discardableResult
    func scriptClient(_ kind: M.FeedKind, route: [Int], at ms: Int64) -> M.Client {
        let c = M.Client(id: clients.count + 1, kind: kind)
        c.route = route
        clients.append(c)
        at(M.baseUs + ms * 1000) { [self] in
            c.started = true
            send(c)
        }
        return c
    }

    /// A write at `ms`: a new status and metadata, `updatedAt` = the commit ms, optionally new tags; published
    /// (to the workers `heardBy` only, if given: lost for the others).
    func scriptWrite(at ms: Int64, run: String, tags: [String]? = nil, heardBy: Set<Int>? = nil) {
        at(M.baseUs + ms * 1000) { [self] in
            let prev = db.current(run)!.row
            writeCounter += 1
            let row = M.replacing(prev, updatedMs: now / 1000, status: "EXECUTING", metadata: "{\"w\":\(writeCounter)}",
                                  tags: tags ?? prev.runTags)
            db.commit(row, at: now)
            stats.writes += 1
            trace("WRITE \(describe(row)) tags=\(row.runTags)")
            publish(row, onlyTo: heardBy)
        }
    }

    /// Worker `worker` drains at `ms` (its held polls are answered), and restarts `downMs` after it exits.
    func scriptDrain(_ worker: Int, at ms: Int64, downMs: Int64 = 1_000) {
        at(M.baseUs + ms * 1000) { [self] in
            let w = workers[worker]
            guard w.alive, !w.draining else { return }
            stats.drains += 1
            trace("DRAIN w\(worker)")
            w.drain { [self] in at(now + downMs * 1000) { [self] in restart(worker) } }
        }
    }

    func scriptRedisRestart(at ms: Int64, outageMs: Int64) {
        at(M.baseUs + ms * 1000) { [self] in wipeRedis(outageUs: outageMs * 1000) }
    }

    /// Redis restarts the moment worker `worker` has heard a record of `run` (once).
    func scriptRedisRestart(whenWorker worker: Int, hears run: String, outageMs: Int64) {
        onHeard = { [unowned self] w, r in
            guard w.id == worker, r.runId == run else { return }
            onHeard = nil
            wipeRedis(outageUs: outageMs * 1000)
        }
    }

    /// Runs the script until `ms`; returns the first failure (nil: none).
    func runScript(untilMs ms: Int64) -> String? {
        precondition(scripted)
        endUs = M.baseUs + ms * 1000
        while failure == nil, let (t, f) = queue.pop() {
            if t > endUs { break }
            now = t
            stats.events += 1
            f()
        }
        queue.removeAll()
        onHeard = nil
        for w in workers { w.shutdownModel() }
        return failure
    }
}

// MARK: - Worker

extension ConvergenceModel {
    /// One runfeed worker process: EnvChannels + RedisSubscriber, RunStore, RunsetService, SharedViews,
    /// RunFeedRegistry, ListFeedRegistry and the Server's request handling, for one environment.
    final class Worker {
        unowned let world: World
        let id: Int
        let host: Int
        let skewUs: Int64
        var p: Params { world.p }
        var alive = true
        var draining = false
        var openRequests: [Int: Request] = [:]

        init(world: World, id: Int, host: Int, skewUs: Int64) {
            self.world = world
            self.id = id
            self.host = host
            self.skewUs = skewUs
            rows = BoundedTTLCache(ttlMs: max(world.p.runCacheTtlMs, 2_000), maxEntries: 5_000)
            runsetCache = BoundedTTLCache(ttlMs: world.p.runsetCacheTtlMs, maxEntries: 5_000)
            localViews = BoundedTTLCache(ttlMs: world.p.workingSetTtlMs, maxEntries: 10_000)
        }

        /// Drops references the scheduled closures could keep alive.
        func shutdownModel() {
            alive = false
            runFeeds = [:]
            listFeeds = [:]
            loading = [:]
            reads = FreshReads(readsCountFromSend: reads.readsCountFromSend)
            batched = []
            runsetInflight = [:]
            openRequests = [:]
        }

        // Clocks.
        var monoUs: Int64 { world.now }
        var monoMs: Int64 { world.now / 1000 }
        var wallUs: Int64 { world.now + skewUs }
        var wallMs: Int64 { (world.now + skewUs) / 1000 }
        /// The database server's clock (the same for every worker).
        func dbClockUs(atTrueUs t: Int64) -> Int64 { t + p.dbSkewUs }

        /// A timer or completion on this process: nothing runs once it is dead.
        func after(_ us: Int64, _ f: @escaping () -> Void) {
            world.at(world.now + us) { [self] in
                guard alive else { return }
                f()
            }
        }

        func trace(_ s: @autoclosure () -> String) {
            guard world.tracing else { return }
            world.trace("w\(id) " + s())
        }

        // MARK: RedisSubscriber (Sources/RunfeedIO/Redis.swift), one channel

        var connEpoch = 0
        var connReady = false
        var backoffMs: Int64 = 100
        var subDesired = false
        var unsubscribing = false
        var confirmed = false
        /// Redis's side of the connection: whether it delivers the env channel to this worker.
        var redisSideSubscribed = false
        private var toWorkerLastUs: Int64 = 0
        private var toRedisLastUs: Int64 = 0

        /// `connect()` + `connected()`.
        func connect() {
            after(world.redisNetUs()) { [self] in
                guard world.redisUp else {
                    scheduleReconnect()
                    return
                }
                connEpoch += 1
                connReady = true
                backoffMs = 100
                toWorkerLastUs = world.now
                toRedisLastUs = world.now
                if subDesired { sendSubscribe() }
            }
        }

        func scheduleReconnect() {
            connReady = false
            let delay = backoffMs
            backoffMs = min(backoffMs * 2, 5_000)
            after(delay * 1000) { [self] in connect() }
        }

        /// Redis restarted: the connection is gone (Redis side at once, noticed by the worker a moment later).
        func redisConnectionLost() {
            redisSideSubscribed = false
            connEpoch += 1
            after(world.rng.int(1_000, 50_000)) { [self] in disconnected() }
        }

        /// `disconnected(status:reason:)`.
        func disconnected() {
            guard !shutDown else { return }
            connReady = false
            unsubscribing = false
            let was = confirmed
            confirmed = false
            if was { subscriptionChanged(at: nil) }
            scheduleReconnect()
        }

        var shutDown = false

        /// A command on the connection: runs at Redis (FIFO), if the connection is still the same.
        private func toRedis(_ f: @escaping () -> Void) {
            let ep = connEpoch
            let t = max(toRedisLastUs, world.now + world.redisNetUs())
            toRedisLastUs = t
            world.at(t) { [self] in
                guard alive, connEpoch == ep, world.redisUp else { return }
                f()
            }
        }

        /// A reply or message from Redis on the connection (FIFO).
        func fromRedis(_ f: @escaping () -> Void) {
            let ep = connEpoch
            let t = max(toWorkerLastUs, world.now + world.redisNetUs())
            toWorkerLastUs = t
            world.at(t) { [self] in
                guard alive, connEpoch == ep else { return }
                f()
            }
        }

        func subscriberSubscribe() {
            guard !subDesired else { return }
            subDesired = true
            if connReady, !unsubscribing { sendSubscribe() }
        }

        func subscriberUnsubscribe() {
            guard subDesired else { return }
            subDesired = false
            if connReady, confirmed, !unsubscribing {
                unsubscribing = true
                sendUnsubscribe()
            }
        }

        private func sendSubscribe() {
            toRedis { [self] in
                redisSideSubscribed = true
                fromRedis { [self] in
                    if subDesired {
                        confirmed = true
                        subscriptionChanged(at: wallMs)
                    } else if !unsubscribing {
                        unsubscribing = true
                        sendUnsubscribe()
                    }
                }
            }
        }

        private func sendUnsubscribe() {
            toRedis { [self] in
                redisSideSubscribed = false
                fromRedis { [self] in
                    unsubscribing = false
                    confirmed = false
                    subscriptionChanged(at: nil)
                    if subDesired { sendSubscribe() }
                }
            }
        }

        // MARK: EnvChannels (Sources/RunfeedServer/EnvChannels.swift), one environment

        var refs = 0
        var lingerPending = false
        private var lingerGen = 0
        var replay: ReplayBuffer?
        var subscribedAtMs: Int64?
        var everConfirmed = false

        func retain() {
            refs += 1
            if lingerPending {
                lingerPending = false
                lingerGen += 1
            }
            if refs == 1 { subscriberSubscribe() }
        }

        func release() {
            guard refs > 0 else { return }
            if refs > 1 {
                refs -= 1
                return
            }
            refs = 0
            lingerPending = true
            lingerGen += 1
            let g = lingerGen
            after(p.lingerMs * 1000) { [self] in
                guard lingerPending, lingerGen == g else { return }
                lingerPending = false
                guard refs == 0 else { return }
                trace("unsubscribe (linger over)")
                subscriberUnsubscribe()
                replay = nil
                subscribedAtMs = nil
                everConfirmed = false
            }
        }

        func covers(sinceMs: Int64) -> Bool {
            gapCovered(subscribedAtMs: subscribedAtMs, sinceMs: sinceMs, nowMs: wallMs, windowMs: p.replayWindowMs,
                       skewMs: p.clockSkewMs)
                && sinceMs - p.clockSkewMs > (replay?.evictedThroughMs ?? Int64.min)
        }

        func replayed(sinceMs: Int64) -> [ChangeRecord] {
            replay?.records(sinceMs: sinceMs - p.clockSkewMs) ?? []
        }

        func gapFreshAfter(runId: String, sinceMs: Int64, covered: Bool, nowUs: Int64) -> Int64? {
            let heard = covered ? replay?.lastArrival(runId: runId, sinceMs: sinceMs - p.clockSkewMs) : nil
            return gapReadFreshAfter(covered: covered, heard: heard, nowUs: nowUs)
        }

        func subscriptionChanged(at: Int64?) {
            if let at {
                subscribedAtMs = at
                trace("subscription confirmed at wall \(at)")
                if everConfirmed {
                    trace("resubscribed: waking every held poll")
                    wakeAllRuns()
                    listResubscribed()
                } else {
                    everConfirmed = true
                }
            } else {
                trace("subscription lost")
                subscribedAtMs = nil
            }
        }

        func channelsReceived(_ r: ChangeRecord) {
            guard refs > 0 || lingerPending else { return }
            if replay == nil { replay = ReplayBuffer(windowMs: p.replayWindowMs, maxRuns: p.replayMaxRuns) }
            replay!.record(r, atMs: wallMs, heardUs: monoUs)
            trace("heard \(r.runId)")
            runReceived(r)
            listOffer(r)
            world.onHeard?(self, r)
        }

        // MARK: Database access (LoopDatabase)

        /// When a statement sent now starts on the database server (true µs): now, or up to
        /// `statementDelayMaxUs` later.
        func statementStartUs() -> Int64 {
            world.now + (p.statementDelayMaxUs > 0 ? world.rng.int(0, p.statementDelayMaxUs) : 0)
        }

        /// `readRuns` (and `RunStore.start`'s single-row query): one query; its snapshot is taken at the
        /// statement's start on the database server, and every row carries that start on the database's clock
        /// (`PostgresListSQL.readAtColumn`, `RunRow.init?(read:fallbackReadAtUs:)`).
        func readRuns(_ ids: [String], _ done: @escaping ([String: RunRow]) -> Void) {
            let start = statementStartUs()
            let readAt = dbClockUs(atTrueUs: start)
            after(start - world.now + world.dbLatencyUs()) { [self] in
                var byId: [String: RunRow] = [:]
                for id in ids {
                    if var r = world.db.at(id, start)?.row {
                        r.readAtUs = readAt
                        byId[id] = r
                    }
                }
                done(byId)
            }
        }

        /// `readRuns` for a read that must reflect every commit made before `freshAfter` (worker monotonic µs): on the
        /// replica when the model has one (see `Params.replicaLagMaxUs`). `done` also gets when the read counts as
        /// started (monotonic µs).
        func readRuns(_ ids: [String], freshAfter: Int64, _ done: @escaping ([String: RunRow], Int64) -> Void) {
            let sent = monoUs
            guard p.replicaLagMaxUs > 0 else {
                readRuns(ids) { done($0, sent) }
                return
            }
            replicaRead(ids, freshAfter: freshAfter, since: sent, done)
        }

        private func replicaRead(_ ids: [String], freshAfter x: Int64, since: Int64,
                                 _ done: @escaping ([String: RunRow], Int64) -> Void) {
            let start = statementStartUs()
            // The replica has applied every commit made before `snapshot` (true µs = the worker's monotonic clock here).
            let snapshot = start - world.rng.int(0, p.replicaLagMaxUs)
            // The gate's watermark: a primary position sample the replica is known to have replayed (up to 30 ms before
            // what it has applied). It decides freshness; the label is the snapshot itself (`ReplicaLabel`: the last
            // replayed commit's time, the same before and after the statement, or the watermark if later).
            let watermark = snapshot - world.rng.int(0, 30_000)
            if !p.replicaLabelledAsCurrent && watermark < x {
                if world.now - since >= 1_000_000 {
                    let sentNow = monoUs
                    readRuns(ids) { done($0, sentNow) }
                    return
                }
                after(world.rng.int(1_000, 20_000)) { [self] in replicaRead(ids, freshAfter: x, since: since, done) }
                return
            }
            let label = p.replicaLabelledAsCurrent ? start : snapshot
            let startedAt = p.replicaLabelledAsCurrent ? start : watermark
            let readAt = dbClockUs(atTrueUs: label)
            after(start - world.now + world.dbLatencyUs()) { [self] in
                var byId: [String: RunRow] = [:]
                for id in ids {
                    if var r = world.db.at(id, snapshot)?.row {
                        r.readAtUs = readAt
                        byId[id] = r
                    }
                }
                let missing = ids.filter { byId[$0] == nil }
                guard !missing.isEmpty, !p.replicaLabelledAsCurrent else {
                    done(byId, startedAt)
                    return
                }
                // Missing on the replica: the primary says whether those runs exist.
                readRuns(missing) { primary in
                    byId.merge(primary) { a, _ in a }
                    done(byId, startedAt)
                }
            }
        }

        // MARK: RunStore (Sources/RunfeedServer/RunStore.swift)

        struct CachedRow {
            var row: RunRow?
            var startedAt: Int64
        }

        var rows: BoundedTTLCache<String, CachedRow>
        /// The run store's single-flight of row reads: the core's own state machine.
        lazy var reads = FreshReads<String, (RunRow?) -> Void>(
            // Primary reads count from when they are sent; a replica read is worth its snapshot, which the gate
            // makes ≥ freshAfter.
            readsCountFromSend: !(p.replicaLagMaxUs > 0 && !p.replicaLabelledAsCurrent))
        var batched: [(runId: String, freshAfter: Int64, done: (RunRow?) -> Void)] = []
        var batchTimerArmed = false

        func fresh(_ runId: String, after: Int64) -> CachedRow? {
            guard let c = rows.get(runId, nowMs: monoMs), c.startedAt >= after else { return nil }
            return c
        }

        func cachedRow(_ runId: String, freshAfter: Int64) -> RunRow? { fresh(runId, after: freshAfter)?.row }

        func remember(_ read: [RunRow], startedAt: Int64) {
            for row in read {
                if fresh(row.id, after: startedAt) != nil { continue }
                rows.set(row.id, CachedRow(row: row, startedAt: startedAt), nowMs: monoMs)
            }
        }

        func readRow(_ runId: String, freshAfter: Int64, _ done: @escaping (RunRow?) -> Void) {
            if let c = fresh(runId, after: freshAfter) {
                done(c.row)
                return
            }
            if case .start(let fresh, _) = reads.want(runId, freshAfter: freshAfter, nowUs: monoUs, waiter: done) {
                startRead(runId, freshAfter: fresh)
            }
        }

        func readRowBatched(_ runId: String, freshAfter: Int64, _ done: @escaping (RunRow?) -> Void) {
            if let c = fresh(runId, after: freshAfter) {
                done(c.row)
                return
            }
            if reads.joinIfFresh(runId, freshAfter: freshAfter, waiter: done) { return }
            batched.append((runId, freshAfter, done))
            if !batchTimerArmed {
                batchTimerArmed = true
                after(50_000) { [self] in flushBatched() }
            }
        }

        private func flushBatched() {
            batchTimerArmed = false
            let pending = batched
            batched = []
            let ids = Array(Set(pending.map(\.runId))).sorted()
            guard !ids.isEmpty else { return }
            readRuns(ids, freshAfter: pending.map(\.freshAfter).max() ?? monoUs) { [self] byId, startedAt in
                for id in ids { rows.set(id, CachedRow(row: byId[id], startedAt: startedAt), nowMs: monoMs) }
                for w in pending { w.done(byId[w.runId]) }
            }
        }

        private func startRead(_ runId: String, freshAfter: Int64) {
            readRuns([runId], freshAfter: freshAfter) { [self] byId, startedAt in
                let row = byId[runId]
                rows.set(runId, CachedRow(row: row, startedAt: startedAt), nowMs: monoMs)
                let action = reads.finished(runId, nowUs: monoUs)
                if let next = action.start { startRead(runId, freshAfter: next.freshAfter) }
                for w in action.answer { w(row) }
            }
        }

        // MARK: RunsetService (Sources/RunfeedServer/Runsets.swift), Postgres membership, no admission limit

        struct Runset {
            var rows: [RunRow]
            var resolvedAtUs: Int64
        }

        var runsetCache: BoundedTTLCache<ListFilter, Runset>
        var runsetInflight: [ListFilter: RunsetFlight] = [:]

        final class RunsetFlight {
            /// When the membership query started (wall µs; no admission gate: at once).
            let startedAtUs: Int64
            var waiters: [(Runset) -> Void]
            /// Callers that need a resolve started after this one's: a new resolve when this one ends.
            var next: [(Runset) -> Void] = []
            init(startedAtUs: Int64, waiters: [(Runset) -> Void]) { self.startedAtUs = startedAtUs; self.waiters = waiters }
        }

        /// `RunsetService.runset`: a cached or in-flight resolve is shared only if it started at or after
        /// `notBeforeUs` (wall µs); a caller that needs a later one waits for the next resolve of the filter.
        func runset(_ filter: ListFilter, notBeforeUs: Int64 = 0, _ done: @escaping (Runset) -> Void) {
            if let hit = runsetCache.get(filter, nowMs: monoMs), hit.resolvedAtUs >= notBeforeUs {
                done(hit)
                return
            }
            if let flight = runsetInflight[filter] {
                if flight.startedAtUs >= notBeforeUs { flight.waiters.append(done) } else { flight.next.append(done) }
                return
            }
            startResolve(filter, waiters: [done])
        }

        /// `RunsetService.start` + `finish`.
        private func startResolve(_ filter: ListFilter, waiters: [(Runset) -> Void]) {
            let resolvedAtUs = wallUs
            let flight = RunsetFlight(startedAtUs: resolvedAtUs, waiters: waiters)
            runsetInflight[filter] = flight
            resolveOnce(filter, resolvedAtUs: resolvedAtUs) { [self] set in
                runsetCache.set(filter, set, nowMs: monoMs)
                runsetInflight.removeValue(forKey: filter)
                if !flight.next.isEmpty { startResolve(filter, waiters: flight.next) }
                for w in flight.waiters { w(set) }
            }
        }

        private func resolveOnce(_ filter: ListFilter, resolvedAtUs: Int64, _ done: @escaping (Runset) -> Void) {
            // The membership query sees the database as of its start on the server.
            let snapshot = statementStartUs()
            after(snapshot - world.now + world.dbLatencyUs()) { [self] in
                let ids = world.db.runIds
                    .compactMap { id in world.db.at(id, snapshot).map { $0.row } }
                    .filter { filter.contains($0) }
                    .sorted { ($0.createdAtMs, $0.id) > ($1.createdAtMs, $1.id) }
                    .map(\.id)
                hydrate(ids) { rows in
                    done(Runset(rows: rows.filter { filter.contains($0) }
                        .sorted { ($0.createdAtMs, $0.id) > ($1.createdAtMs, $1.id) }, resolvedAtUs: resolvedAtUs))
                }
            }
        }

        func hydrate(_ ids: [String], _ done: @escaping ([RunRow]) -> Void) {
            guard !ids.isEmpty else {
                done([])
                return
            }
            readRuns(ids, freshAfter: monoUs) { [self] byId, startedAt in
                let rows = ids.compactMap { byId[$0] }
                remember(rows, startedAt: startedAt)
                done(rows)
            }
        }

        // MARK: SharedViews (Sources/RunfeedServer/SharedViews.swift)

        private var viewsLastUs: Int64 = 0

        static func viewKey(_ handle: String) -> String { "runfeed:view:{" + env + "}:" + handle }

        /// One job on the views thread: applied at Redis (FIFO per worker) unless the worker died first; the
        /// completion comes back on the loop.
        private func viewsJob(_ apply: @escaping () -> (ListView?, Bool), _ done: @escaping (ListView?, Bool) -> Void) {
            let t = max(viewsLastUs, world.now + world.redisNetUs())
            viewsLastUs = t
            world.at(t) { [self] in
                guard alive else { return }
                let r = world.redisUp ? apply() : (nil, false)
                after(world.redisNetUs()) { done(r.0, r.1) }
            }
        }

        func viewsLoad(handle: String, token: UInt64, _ done: @escaping (ListView?) -> Void) {
            let key = Self.viewKey(handle)
            viewsJob({ [world] in
                let hash = world.shared[key] ?? [:]
                var pairs: [String] = []
                for (k, v) in hash { pairs.append(k); pairs.append(v) }
                return (ListViewCodec.view(fromPairs: pairs, token: token), true)
            }, { view, _ in done(view) })
        }

        /// `SharedViews.save` + `run`: a change onto the stored view when it is the client's previous one
        /// (`changeScript`: run fields, `-` for a run that left), else — or once the run fields outgrow the view
        /// (`compactAt`) — the whole view as the `@base` of a fresh hash (`wholeCommands`).
        func viewsSave(handle: String, base: UInt64?, baseView: ListView?, token: UInt64, view: ListView,
                       _ done: @escaping (Bool) -> Void) {
            let key = Self.viewKey(handle)
            let opBase = baseView == nil ? nil : base
            let delta = opBase == nil ? ListViewDelta(changed: [], removed: []) : ListViewDelta.between(baseView, view)
            viewsJob({ [world] in
                func whole() -> Bool {
                    world.shared[key] = [ListViewCodec.tokenField: String(token), ListViewCodec.baseField: ListViewCodec.encodeBase(view)]
                    return true
                }
                guard let opBase else { return (nil, whole()) }
                // changeScript: 0 when the stored view is another, else the hash's field count after the change.
                var fields = 0
                if var hash = world.shared[key], hash[ListViewCodec.tokenField] == String(opBase) {
                    hash[ListViewCodec.tokenField] = String(token)
                    for (id, v) in delta.changed { hash[id] = ListViewCodec.encode(v) }
                    for id in delta.removed { hash[id] = ListViewCodec.removed }
                    world.shared[key] = hash
                    fields = hash.count
                }
                // `SharedViews.compactAt`.
                if fields > 0, fields <= max(64, 2 * view.count + 2) { return (nil, true) }
                // The stored view is not the client's previous one, or its run fields piled up: the whole view.
                return (nil, whole())
            }, { _, ok in done(ok) })
        }

        // MARK: Server (Sources/RunfeedServer/Server.swift)

        func handle(_ req: Request) {
            req.worker = self
            openRequests[req.id] = req
            switch req.client.kind {
            case .run(let runId):
                if req.live, let offset = req.offset {
                    if draining {
                        answerLive(req, offset: offset, row: nil, readBasisMs: nil, ending: .drain)
                    } else {
                        runStartLive(req, runId: runId, offset: offset)
                    }
                } else {
                    runSnapshot(req, runId: runId)
                }
            case .list(let filter):
                var handle = "h\(req.client.id)_" + String(world.rng.next() % 100_000)
                if req.live, let h = req.handle { handle = h }  // the handle names this feed: kept
                if req.live, let offset = req.offset, req.handle == handle {
                    if draining {
                        answerList(req, rows: [], offset: offset, handle: handle, view: nil, ending: .drain)
                    } else {
                        listStartLive(req, filter: filter, handle: handle, offset: offset)
                    }
                } else {
                    listSnapshot(req, filter: filter, handle: handle)
                }
            }
        }

        /// `Server.snapshot` for `offset=-1`.
        func runSnapshot(_ req: Request, runId: String) {
            let freshAfter = monoUs - p.runCacheTtlMs * 1000
            let requestedAt = wallMs
            readRow(runId, freshAfter: freshAfter) { [self] row in
                let basis = row.map { $0.readAtUs / 1000 } ?? requestedAt
                world.respond(req, Answer(rows: row.map { [($0, .insert)] } ?? [],
                                          offset: Offset(updatedAtMs: row?.updatedAtMs ?? 0, tail: basis, token: row?.digest ?? 0),
                                          handle: "run-" + runId, view: nil, ending: .snapshot, worker: id))
            }
        }

        /// `RunFeedRequest.liveReply`, answered.
        func answerLive(_ req: Request, offset: Offset, row: RunRow?, readBasisMs: Int64?, ending: Ending,
                        sendFloorUs: Int64? = nil) {
            guard case .run(let runId) = req.client.kind else { return }
            let view = RunClientView(offset)
            if let row, view.isNew(updatedAtMs: row.updatedAtMs, digest: row.digest) {
                world.respond(req, Answer(rows: [(row, .update)],
                                          offset: Offset(updatedAtMs: row.updatedAtMs, tail: row.readAtUs / 1000, token: row.digest),
                                          handle: "run-" + runId, view: nil, ending: ending, worker: id,
                                          sendFloorUs: sendFloorUs))
                return
            }
            world.respond(req, Answer(rows: [], offset: Offset(updatedAtMs: offset.updatedAtMs, tail: readBasisMs ?? offset.basisMs,
                                                                token: view.token),
                                      handle: "run-" + runId, view: nil, ending: ending, worker: id))
        }

        /// `ListFeedRegistry.send`.
        func answerList(_ req: Request, rows: [(RunRow, ChangeOperation)], offset: Offset, handle: String, view: ListView?, ending: Ending,
                        sendFloorUs: Int64? = nil) {
            world.respond(req, Answer(rows: rows, offset: offset, handle: handle, view: view, ending: ending, worker: id,
                                      sendFloorUs: sendFloorUs))
        }

        // MARK: Worker lifecycle

        func kill() {
            alive = false
            redisSideSubscribed = false
            for (_, req) in openRequests.sorted(by: { $0.key < $1.key }) {
                world.at(world.now + world.rng.int(1_000, 20_000)) { [world] in world.failed(req) }
            }
            openRequests = [:]
        }

        /// `Server.drain`: answer every held poll now, stop the subscriber, exit once idle.
        func drain(_ exited: @escaping () -> Void) {
            draining = true
            runAnswerAll()
            listAnswerAll()
            shutDown = true
            subDesired = false
            redisSideSubscribed = false
            connEpoch += 1
            if confirmed {
                confirmed = false
                subscriptionChanged(at: nil)
            }
            let deadline = world.now + 10_000_000
            func check() {
                if openRequests.isEmpty || world.now >= deadline {
                    trace("drained; exiting")
                    kill()
                    exited()
                    return
                }
                after(20_000) { check() }
            }
            after(0) { check() }
        }

        // MARK: PollParking (Sources/RunfeedServer/PollParking.swift)

        final class Parking {
            var parked = false
            var deadlinePending = false
            var timerGen = 0
        }

        func parkRetain(_ pk: Parking) {
            guard !pk.parked else { return }
            pk.parked = true
            retain()
        }

        func parkArm(_ pk: Parking, onDeadline: @escaping () -> Void) {
            parkRetain(pk)
            let hold = HoldTiming.holdMs(baseMs: p.holdMs, jitterRatio: p.jitterRatio, unit: world.rng.unit())
            pk.deadlinePending = true
            pk.timerGen += 1
            let g = pk.timerGen
            after(hold * 1000) {
                guard pk.deadlinePending, pk.timerGen == g else { return }
                pk.deadlinePending = false
                onDeadline()
            }
        }

        func unpark(_ pk: Parking) {
            guard pk.parked else { return }
            pk.parked = false
            pk.deadlinePending = false
            pk.timerGen += 1
            release()
        }

        // MARK: RunFeedRegistry (Sources/RunfeedServer/RunFeedRegistry.swift)

        final class LiveRunFeed {
            let id: Int
            let req: Request
            let runId: String
            let offset: Offset
            var machine: RunFeedPoll
            let parking: Parking
            var lastRow: RunRow?
            var lastReadBasisMs: Int64?
            var woken = false
            var deadlineFired = false

            init(id: Int, req: Request, runId: String, offset: Offset, machine: RunFeedPoll, parking: Parking) {
                self.id = id; self.req = req; self.runId = runId; self.offset = offset; self.machine = machine
                self.parking = parking
            }

            var ending: Ending { deadlineFired ? .backstop : woken ? .wake : .start }
        }

        var runFeeds: [Int: LiveRunFeed] = [:]
        var byRun: [String: Set<Int>] = [:]
        var nextFeedId = 1

        func runStartLive(_ req: Request, runId: String, offset: Offset) {
            let pk = Parking()
            parkRetain(pk)
            let covered = covers(sinceMs: offset.tail)
            let freshAfter = gapFreshAfter(runId: runId, sinceMs: offset.tail, covered: covered, nowUs: monoUs)
            let feed = LiveRunFeed(id: nextFeedId, req: req, runId: runId, offset: offset,
                                   machine: RunFeedPoll(view: p.mutation == .floorOnlyRunView ? .floor(offset.floorMs) : RunClientView(offset),
                                                        needsGapRead: freshAfter != nil),
                                   parking: pk)
            nextFeedId += 1
            runFeeds[feed.id] = feed
            byRun[runId, default: []].insert(feed.id)
            trace("\(req.client.label) run poll \(feed.id) offset=\(offset.text) covered=\(covered) gapRead=\(freshAfter.map { "after \($0 - baseUs)" } ?? "none")")
            parkArm(feed.parking) { [self] in
                feed.deadlineFired = true
                runEvent(feed, p.mutation == .noBackstopRead ? .aborted : .deadline)
            }
            runAct(feed, feed.machine.start(), freshAfter: freshAfter ?? monoUs)
        }

        /// `RunFeedRegistry.readAfterClientsView`: whether `row`, which the client does not hold, was read after
        /// the read behind the client's view (both on the database clock, the basis in whole ms).
        func readAfterClientsView(_ feed: LiveRunFeed, _ row: RunRow) -> Bool {
            row.readAtUs > feed.offset.basisMs * 1000 + 999
        }

        func runEvent(_ feed: LiveRunFeed, _ e: RunFeedEvent, notifiedAt: Int64? = nil) {
            guard runFeeds[feed.id] != nil else { return }
            if e == .notified { feed.woken = true }
            let freshAfter = e == .notified ? (notifiedAt ?? monoUs) : monoUs - p.runCacheTtlMs * 1000
            runAct(feed, feed.machine.handle(e), freshAfter: freshAfter)
        }

        func runAct(_ feed: LiveRunFeed, _ action: RunFeedAction, freshAfter: Int64) {
            switch action {
            case .hold, .finishSilently:
                return
            case .readRow:
                let backstop = feed.machine.state == .reading(.backstop)
                let done: (RunRow?) -> Void = { [self] row in
                    guard runFeeds[feed.id] != nil else { return }
                    // (confirmBeforeSend) a row the client does not hold, read before its view: not fed to the
                    // machine; a read started now is, as it comes.
                    if p.confirmBeforeSend, let row, feed.machine.view.isNew(updatedAtMs: row.updatedAtMs, digest: row.digest),
                       !readAfterClientsView(feed, row) {
                        world.stats.confirmingRunReads += 1
                        trace("\(feed.req.client.label) run poll \(feed.id): \(world.describe(row)) read before the client's view "
                              + "(basis \(feed.offset.basisMs - baseUs / 1000)): confirming")
                        readRow(feed.runId, freshAfter: monoUs) { [self] row in runCompleteRead(feed, row, freshAfter: freshAfter) }
                        return
                    }
                    runCompleteRead(feed, row, freshAfter: freshAfter)
                }
                if backstop {
                    readRowBatched(feed.runId, freshAfter: freshAfter, done)
                } else {
                    readRow(feed.runId, freshAfter: freshAfter, done)
                }
            case .emitRow:
                runFinish(feed, row: feed.lastRow, ending: feed.ending)
            case .emitUpToDate:
                runFinish(feed, row: nil, ending: feed.ending)
            }
        }

        /// `RunFeedRegistry.completeRead`.
        func runCompleteRead(_ feed: LiveRunFeed, _ row: RunRow?, freshAfter: Int64) {
            guard runFeeds[feed.id] != nil else { return }
            var found: RunReadResult?
            if let row {
                feed.lastRow = row
                feed.lastReadBasisMs = row.readAtUs / 1000
                found = RunReadResult(updatedAtMs: row.updatedAtMs, digest: row.digest)
            }
            runAct(feed, feed.machine.handle(.rowRead(found)), freshAfter: freshAfter)
        }

        func runFinish(_ feed: LiveRunFeed, row: RunRow?, ending: Ending) {
            guard runFeeds.removeValue(forKey: feed.id) != nil else { return }
            unpark(feed.parking)
            byRun[feed.runId]?.remove(feed.id)
            if byRun[feed.runId]?.isEmpty == true { byRun.removeValue(forKey: feed.runId) }
            answerLive(feed.req, offset: feed.offset, row: row, readBasisMs: feed.lastReadBasisMs, ending: ending,
                       sendFloorUs: feed.offset.basisMs * 1000 + 999)
        }

        func runAnswerAll() {
            for (_, feed) in runFeeds.sorted(by: { $0.key < $1.key }) { runFinish(feed, row: nil, ending: .drain) }
        }

        func wakeAllRuns() {
            let now = monoUs
            for id in runFeeds.keys.sorted() {
                if let feed = runFeeds[id] { runEvent(feed, .notified, notifiedAt: now) }
            }
        }

        func runReceived(_ r: ChangeRecord) {
            guard let ids = byRun[r.runId] else { return }
            let now = monoUs
            for id in ids.sorted() {
                if let feed = runFeeds[id] { runEvent(feed, .notified, notifiedAt: now) }
            }
        }

        // MARK: ListFeedRegistry (Sources/RunfeedServer/ListFeeds.swift)

        final class LiveListFeed {
            let id: Int
            let req: Request
            let filter: ListFilter
            let handle: String
            let offset: Offset
            let baseView: ListView?
            var machine: ListFeedPoll
            let parking = Parking()
            var lastRows: [RunRow] = []
            var lastReadBasisMs: Int64
            var woken = false
            var deadlineFired = false
            var aborted = false
            /// The next full resolve must have started at or after this (wall µs).
            var resolveNotBeforeUs: Int64 = 0
            /// Model-only: see `Answer.sendFloorUs`.
            var sendFloorUs: Int64 = .min

            init(id: Int, req: Request, filter: ListFilter, handle: String, offset: Offset, baseView: ListView?) {
                self.id = id; self.req = req; self.filter = filter; self.handle = handle; self.offset = offset
                self.baseView = baseView
                machine = ListFeedPoll(view: baseView, floorMs: offset.floorMs)
                lastReadBasisMs = offset.basisMs
            }

            var ending: Ending { aborted ? .drain : deadlineFired ? .backstop : woken ? .wake : .start }
        }

        struct LocalView {
            var token: UInt64
            var view: ListView
            var savedAtMs: Int64
        }

        var listFeeds: [Int: LiveListFeed] = [:]
        var loading: [Int: (req: Request, offset: Offset, handle: String)] = [:]
        var index = WakeIndex<Int>()
        var localViews: BoundedTTLCache<String, LocalView>
        var coalescer: LeadingEdgeCoalescer?
        var coalesceTimerArmed = false

        static func workingSetKey(_ handle: String) -> String { env + "\u{0}" + handle }

        func clientView(handle: String, offset: Offset, _ done: @escaping (ListView?) -> Void) {
            guard let token = offset.token, token != 0 else {
                done(nil)
                return
            }
            if let local = localViews.get(Self.workingSetKey(handle), nowMs: monoMs), local.token == token {
                done(local.view)
                return
            }
            viewsLoad(handle: handle, token: token) { [self] view in
                // Kept here from now on (`ListFeedRegistry.clientView`).
                if let view { localViews.set(Self.workingSetKey(handle), LocalView(token: token, view: view, savedAtMs: 0), nowMs: monoMs) }
                done(view)
            }
        }

        /// `ListFeedRegistry.answer`: stores a changed view under a fresh token before the answer goes out.
        func listAnswer(_ req: Request, rows: [(RunRow, ChangeOperation)], offsetMs: Int64, basisMs: Int64, handle: String,
                        from previous: Offset?, baseView: ListView?, view: ListView?, changed: Bool, ending: Ending,
                        sendFloorUs: Int64? = nil) {
            let now = monoMs
            let key = Self.workingSetKey(handle)
            guard changed, let view else {
                let token = previous?.token
                if let token, token != 0, var local = localViews.get(key, nowMs: now), local.token == token,
                   now - local.savedAtMs > p.workingSetTtlMs / 2 {
                    local.savedAtMs = now
                    localViews.set(key, local, nowMs: now)
                }
                answerList(req, rows: rows, offset: Offset(updatedAtMs: offsetMs, tail: basisMs, token: token), handle: handle,
                           view: view ?? baseView, ending: ending, sendFloorUs: sendFloorUs)
                return
            }
            var token = UInt64.random(in: 1...UInt64.max, using: &world.rng)
            if token == previous?.token { token &+= 1 }
            localViews.set(key, LocalView(token: token, view: view, savedAtMs: now), nowMs: now)
            let base = previous?.token.flatMap { $0 == 0 ? nil : $0 }
            viewsSave(handle: handle, base: base, baseView: base == nil ? nil : baseView, token: token, view: view) { [self] _ in
                answerList(req, rows: rows, offset: Offset(updatedAtMs: offsetMs, tail: basisMs, token: token), handle: handle,
                           view: view, ending: ending, sendFloorUs: sendFloorUs)
            }
        }

        /// `snapshot(_:offset:)` for `offset=-1` → `resolveAndAnswer(previous: nil, view: nil, source: .snapshot)`.
        func listSnapshot(_ req: Request, filter: ListFilter, handle: String) {
            resolveForClient(filter, notBeforeUs: listNotBeforeUs(nil), offset: nil, view: nil) { [self] set in
                let versions = set.rows.map(RunVersion.init)
                var emits = ListDiff.diff(versions, view: nil)
                emits = emits.map { ListEmit(index: $0.index, operation: .insert) }
                let next = ListDiff.replace(nil, versions, emits: emits)
                listAnswer(req, rows: emits.map { (set.rows[$0.index], $0.operation) },
                           offsetMs: ListDiff.offsetMs(versions, floorMs: 0), basisMs: set.resolvedAtUs / 1000, handle: handle,
                           from: nil, baseView: nil, view: next, changed: true, ending: .snapshot)
            }
        }

        func listStartLive(_ req: Request, filter: ListFilter, handle: String, offset: Offset) {
            let id = nextFeedId
            nextFeedId += 1
            retain()
            loading[id] = (req, offset, handle)
            clientView(handle: handle, offset: offset) { [self] view in
                defer { release() }
                guard loading.removeValue(forKey: id) != nil else { return }
                park(id: id, req, filter: filter, handle: handle, offset: offset, view: view)
            }
        }

        private func park(id: Int, _ req: Request, filter: ListFilter, handle: String, offset: Offset, view: ListView?) {
            let feed = LiveListFeed(id: id, req: req, filter: filter, handle: handle, offset: offset, baseView: view)
            feed.sendFloorUs = ListDiff.sendFloorUs(basisMs: offset.basisMs, view: view, skewMs: p.clockSkewMs)
            parkRetain(feed.parking)
            listFeeds[id] = feed
            index.add(id, envId: env, filter: filter)
            parkArm(feed.parking) { [self] in
                guard listFeeds[id] != nil else { return }
                feed.deadlineFired = true
                listAct(feed, feed.machine.handle(p.mutation == .noBackstopRead ? .aborted : .deadline))
            }
            let basis = offset.basisMs
            guard view != nil, covers(sinceMs: basis) else {
                world.stats.coldResolves += 1
                trace("\(req.client.label) list poll \(id) offset=\(offset.text) view=\(view == nil ? "unknown" : "known") -> cold resolve")
                feed.resolveNotBeforeUs = listNotBeforeUs(offset)
                listAct(feed, feed.machine.start(.resolve))
                return
            }
            let missed = replayed(sinceMs: basis).filter { filter.mayMatch($0) }
            trace("\(req.client.label) list poll \(id) offset=\(offset.text) covered, replay \(missed.map(\.runId))")
            let action = feed.machine.start(.replay(Set(missed.map(\.runId))))
            guard case .hydrate = action else {
                listAct(feed, action)
                return
            }
            let now = monoUs
            var cached: [RunRow] = []
            for r in missed {
                guard let fa = gapFreshAfter(runId: r.runId, sinceMs: basis, covered: true, nowUs: now),
                      let row = cachedRow(r.runId, freshAfter: fa) else { break }
                cached.append(row)
            }
            let confirm = cached.count == missed.count && needsFresherRead(cached.filter { filter.contains($0) }, offset: offset, view: view,
                                                                           askedAtMs: wallUs / 1000)
            if confirm {
                world.stats.confirmingGapReads += 1
                trace("\(req.client.label) list poll \(id): cached gap rows read before the client's view: hydrating afresh")
            }
            if cached.count == missed.count, !confirm {
                world.stats.gapFromCache += 1
                feed.lastReadBasisMs = (cached.map(\.readAtUs).min() ?? wallUs) / 1000
                deliverHydrated(feed, rows: cached.filter { filter.contains($0) })
            } else {
                listAct(feed, action)
            }
        }

        func listAct(_ feed: LiveListFeed, _ action: ListPollAction) {
            switch action {
            case .hold, .finishSilently:
                return
            case .resolve:
                let notBeforeUs = feed.resolveNotBeforeUs
                feed.resolveNotBeforeUs = 0
                resolveForClient(feed.filter, notBeforeUs: notBeforeUs, offset: feed.offset, view: feed.machine.view) { [self] set in
                    guard listFeeds[feed.id] != nil else { return }
                    feed.lastRows = set.rows
                    feed.lastReadBasisMs = set.resolvedAtUs / 1000
                    listAct(feed, feed.machine.handle(.resolved(set.rows.map(RunVersion.init),
                                                                membersReadAtUs: set.rows.map(\.readAtUs).min()
                                                                    ?? (set.resolvedAtUs + p.clockSkewMs * 1000))))
                }
            case .hydrate(let runs):
                hydrateAndDeliver([feed.id: runs])
            case .answer(let emits):
                listFinish(feed, rows: emits.map { (feed.lastRows[$0.index], $0.operation) },
                           basisMs: answerBasis(feed.lastReadBasisMs), ending: feed.ending)
            case .upToDate(let fromRead):
                listFinish(feed, rows: [], basisMs: fromRead ? answerBasis(feed.lastReadBasisMs) : feed.offset.basisMs,
                           ending: feed.ending)
            }
        }

        /// `ListFeedRegistry.notBefore`: the earliest start (wall µs) of a resolve that answers a client whose
        /// gap this worker did not hear: after the client's basis plus the skew allowance, capped at now.
        /// (confirmBeforeSend off: none.)
        func listNotBeforeUs(_ offset: Offset?) -> Int64 {
            guard p.confirmBeforeSend, let offset, offset.basisMs > 0 else { return 0 }
            return min(wallUs, (offset.basisMs + p.clockSkewMs) * 1000)
        }

        /// `ListFeedRegistry.needsFresherRead`: whether rows read for a client would send it something read
        /// before its view. (confirmBeforeSend off: never.)
        func needsFresherRead(_ rows: [RunRow], offset: Offset?, view: ListView?, askedAtMs: Int64) -> Bool {
            guard p.confirmBeforeSend else { return false }
            return ListDiff.needsFresherRead(rows.map(RunVersion.init), view: view,
                                             floorUs: ListDiff.sendFloorUs(offset: offset, view: view, skewMs: p.clockSkewMs, askedAtMs: askedAtMs))
        }

        /// `ListFeedRegistry.resolveForClient`: a resolve whose rows may be sent to a client holding `view`,
        /// re-resolved afresh (and that one used as it is) when the first would send something read before
        /// the client's view.
        func resolveForClient(_ filter: ListFilter, notBeforeUs: Int64, offset: Offset?, view: ListView?,
                              _ done: @escaping (Runset) -> Void) {
            let askedAtMs = wallUs / 1000
            runset(filter, notBeforeUs: notBeforeUs) { [self] set in
                if needsFresherRead(set.rows, offset: offset, view: view, askedAtMs: askedAtMs) {
                    world.stats.confirmingResolves += 1
                    trace("runset of \(filter) resolved at wall \((set.resolvedAtUs - baseUs) / 1000) would send a read from "
                          + "before the client's view: re-resolving")
                    runset(filter, notBeforeUs: wallUs, done)
                    return
                }
                done(set)
            }
        }

        func answerBasis(_ readMs: Int64) -> Int64 {
            guard let c = coalescer, c.pendingCount > 0 else { return readMs }
            return min(readMs, wallMs - p.coalesceWindowMs - 1)
        }

        func hydrateAndDeliver(_ wanted: [Int: Set<String>]) {
            let ids = Array(wanted.values.reduce(into: Set<String>()) { $0.formUnion($1) }).sorted()
            guard !ids.isEmpty else { return }
            let startedMs = wallMs
            hydrate(ids) { [self] rows in
                let byId = Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                for (id, runs) in wanted.sorted(by: { $0.key < $1.key }) {
                    guard let feed = listFeeds[id] else { continue }
                    feed.lastReadBasisMs = startedMs
                    deliverHydrated(feed, rows: runs.sorted().compactMap { byId[$0] }.filter { feed.filter.contains($0) })
                }
            }
        }

        func deliverHydrated(_ feed: LiveListFeed, rows: [RunRow]) {
            let sorted = rows.sorted { ($0.createdAtMs, $0.id) > ($1.createdAtMs, $1.id) }
            feed.lastRows = sorted
            listAct(feed, feed.machine.handle(.hydrated(sorted.map(RunVersion.init))))
        }

        func listFinish(_ feed: LiveListFeed, rows: [(RunRow, ChangeOperation)], basisMs: Int64, ending: Ending) {
            guard listFeeds.removeValue(forKey: feed.id) != nil else { return }
            unpark(feed.parking)
            index.remove(feed.id)
            let m = feed.machine
            listAnswer(feed.req, rows: rows, offsetMs: m.offsetMs, basisMs: basisMs, handle: feed.handle, from: feed.offset,
                       baseView: feed.baseView, view: m.view, changed: m.viewChanged, ending: ending,
                       sendFloorUs: feed.sendFloorUs)
        }

        func listAnswerAll() {
            for (_, l) in loading.sorted(by: { $0.key < $1.key }) {
                answerList(l.req, rows: [], offset: l.offset, handle: l.handle, view: nil, ending: .drain)
            }
            loading = [:]
            for (_, feed) in listFeeds.sorted(by: { $0.key < $1.key }) {
                feed.aborted = true
                listAct(feed, feed.machine.handle(.aborted))
            }
        }

        func listOffer(_ record: ChangeRecord) {
            guard index.count(envId: env) > 0 else { return }
            var c = coalescer ?? LeadingEdgeCoalescer(windowMs: p.coalesceWindowMs)
            let step = c.offer(record, nowMs: monoMs)
            coalescer = c
            if case .deliverNow(let records, let endsAt) = step {
                route(records)
                armWindow(endsAt)
            }
        }

        private func armWindow(_ endsAt: Int64) {
            guard !coalesceTimerArmed, p.coalesceWindowMs > 0 else { return }
            coalesceTimerArmed = true
            after(max(0, endsAt - monoMs) * 1000) { [self] in
                coalesceTimerArmed = false
                guard var c = coalescer else { return }
                let (records, next) = c.windowEnded(nowMs: monoMs)
                if next == nil && records.isEmpty { coalescer = nil } else { coalescer = c }
                if !records.isEmpty { route(records) }
                if let next { armWindow(next) }
            }
        }

        private func route(_ records: [ChangeRecord]) {
            var wanted: [Int: Set<String>] = [:]
            for r in records {
                for id in index.candidates(envId: env, record: r) { wanted[id, default: []].insert(r.runId) }
            }
            var reads: [Int: Set<String>] = [:]
            for (id, runs) in wanted.sorted(by: { $0.key < $1.key }) {
                guard let feed = listFeeds[id] else { continue }
                feed.woken = true
                switch feed.machine.handle(.records(runs)) {
                case .hydrate(let r): reads[id] = r
                case let other: listAct(feed, other)
                }
            }
            if !reads.isEmpty { hydrateAndDeliver(reads) }
        }

        func listResubscribed() {
            for (_, feed) in listFeeds.sorted(by: { $0.key < $1.key }) {
                world.stats.coldResolves += 1
                world.stats.resyncs += 1
                feed.woken = true
                // Records published while the subscription was down are lost: a resolve from before is no use
                // (kept with confirmBeforeSend off too: it is about the lost records, not the client's view).
                feed.resolveNotBeforeUs = wallUs
                listAct(feed, feed.machine.handle(.resync))
            }
        }
    }
}
