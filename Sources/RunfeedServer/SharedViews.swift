import RunfeedCore
import RunfeedIO

/// List connections' working sets (what each client holds: run → digest and read time), shared between
/// every worker and host through the pub/sub Redis, so a poll that lands on another worker continues
/// exactly where the last answer left the client.
///
/// One hash per connection, `runfeed:view:{<envId>}:<handle>` (the braces keep an environment in one
/// cluster slot), with a field per run and `@token` naming the answer it belongs to; the token travels in
/// the client's offset. An answer stores only what changed since the client's previous view, and only onto
/// that view (a Lua script checks `@token`); otherwise it stores the whole view. The key expires after the
/// working-set TTL unless answers keep refreshing it.
///
/// Commands run on one thread with a blocking connection (never on the event loop); what is queued
/// meanwhile goes out as one pipeline; completions come back on the loop.
final class SharedViews: @unchecked Sendable {
    private enum Op: Sendable {
        case load(key: String, token: UInt64)
        case save(key: String, base: UInt64?, token: UInt64, delta: ListViewDelta, full: ListView)
        case touch(key: String)
    }

    private struct Job: Sendable {
        let op: Op
        /// Runs on the loop: the view loaded (load), or whether it was stored (save, touch).
        let done: @Sendable (ListView?, Bool) -> Void
    }

    private let loop: EventLoop
    private let ttlMs: Int64
    private let queue = JobQueue<[Job]>()
    private var gathered: [Job] = []

    static func key(envId: String, handle: String) -> String { "runfeed:view:{" + envId + "}:" + handle }

    init(loop: EventLoop, endpoint: RedisEndpoint, ttlMs: Int64, log: Logger) {
        self.loop = loop
        self.ttlMs = ttlMs
        startThread(name: "views") { [queue, loop, ttlMs] in
            let client = RedisClient(endpoint: endpoint, timeoutMs: 1000)
            var failing = false
            while let batches = queue.popBatch(max: 64) {
                let jobs = batches.flatMap { $0 }
                let results = Self.run(jobs.map(\.op), client: client, ttlMs: ttlMs)
                let ok = results.allSatisfy { $0.1 }
                if ok == failing {
                    failing = !ok
                    if failing { log.warning("shared working sets: Redis unavailable; a poll that changes worker re-sends its list") }
                }
                loop.execute {
                    for (job, r) in zip(jobs, results) { job.done(r.0, r.1) }
                }
            }
        }
    }

    /// The view stored for `token` (nil: none — expired, replaced, or Redis unavailable). Runs `done` on the loop.
    func load(envId: String, handle: String, token: UInt64, _ done: @escaping (ListView?) -> Void) {
        let box = LoopBox(done)
        push(Job(op: .load(key: Self.key(envId: envId, handle: handle), token: token)) { view, _ in box.value(view) })
    }

    /// Stores `view` under `token`, as the change from the view stored under `base` when there is one.
    /// Runs `done` on the loop once Redis has it (or failed to take it).
    func save(envId: String, handle: String, base: UInt64?, baseView: ListView?, token: UInt64, view: ListView,
              _ done: @escaping (Bool) -> Void) {
        let box = LoopBox(done)
        let delta = ListViewDelta.between(base == nil ? nil : baseView, view)
        push(Job(op: .save(key: Self.key(envId: envId, handle: handle), base: baseView == nil ? nil : base, token: token,
                           delta: delta, full: view)) { _, ok in box.value(ok) })
    }

    /// Keeps a stored view from expiring while its connection is alive.
    func touch(envId: String, handle: String) {
        push(Job(op: .touch(key: Self.key(envId: envId, handle: handle))) { _, _ in })
    }

    private func push(_ job: Job) {
        gathered.append(job)
        guard gathered.count == 1 else { return }
        loop.execute { [self] in
            let jobs = gathered
            gathered = []
            queue.push(jobs)
        }
    }

    /// Applies a change (or, with an empty base, a whole view) if the stored view is the base's.
    /// KEYS[1] the hash; ARGV: base token ("" = replace), new token, TTL ms, count of removed runs, the
    /// removed runs, then field/value pairs.
    static let saveScript = """
        if ARGV[1] == '' then redis.call('DEL', KEYS[1])
        elseif redis.call('HGET', KEYS[1], '@token') ~= ARGV[1] then return 0 end
        local n = tonumber(ARGV[4])
        local i = 5
        while i <= 4 + n do
          local last = math.min(4 + n, i + 499)
          redis.call('HDEL', KEYS[1], unpack(ARGV, i, last))
          i = last + 1
        end
        redis.call('HSET', KEYS[1], '@token', ARGV[2])
        while i <= #ARGV do
          local last = math.min(#ARGV, i + 999)
          redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
          i = last + 1
        end
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return 1
        """

    static func saveCommand(key: String, base: UInt64?, token: UInt64, ttlMs: Int64, set: [(String, RowVersion)],
                            removed: [String]) -> [String] {
        var args = ["EVAL", saveScript, "1", key, base.map { String($0) } ?? "", String(token), String(ttlMs),
                    String(removed.count)]
        args.reserveCapacity(args.count + removed.count + 2 * set.count)
        args.append(contentsOf: removed)
        for (id, v) in set {
            args.append(id)
            args.append(ListViewCodec.encode(v))
        }
        return args
    }

    private static func run(_ ops: [Op], client: RedisClient, ttlMs: Int64) -> [(ListView?, Bool)] {
        let commands: [[String]] = ops.map { op in
            switch op {
            case .load(let key, _):
                return ["HGETALL", key]
            case .save(let key, let base, let token, let delta, let full):
                if base == nil {
                    return saveCommand(key: key, base: nil, token: token, ttlMs: ttlMs,
                                       set: full.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, removed: [])
                }
                return saveCommand(key: key, base: base, token: token, ttlMs: ttlMs, set: delta.changed, removed: delta.removed)
            case .touch(let key):
                return ["PEXPIRE", key, String(ttlMs)]
            }
        }
        for (op, cmd) in zip(ops, commands) {
            switch op {
            case .load: WorkerMetrics.sharedViewCommands("load").increment()
            case .save:
                WorkerMetrics.sharedViewCommands("save").increment()
                WorkerMetrics.sharedViewBytesWritten.increment(by: Int64(cmd.dropFirst(2).reduce(0) { $0 + $1.utf8.count }))
            case .touch: WorkerMetrics.sharedViewCommands("touch").increment()
            }
        }
        guard let replies = try? client.pipeline(commands) else { return ops.map { _ in (nil, false) } }
        var out: [(ListView?, Bool)] = []
        for (op, reply) in zip(ops, replies) {
            switch op {
            case .load(_, let token):
                if case .array(let items) = reply {
                    let pairs = items.compactMap { item -> String? in if case .string(let s) = item { return s }; return nil }
                    out.append((ListViewCodec.view(fromPairs: pairs, token: token), true))
                } else {
                    out.append((nil, false))
                }
            case .save(let key, _, let token, _, let full):
                if case .integer(1) = reply {
                    out.append((nil, true))
                } else {
                    // The stored view is not the client's previous one (expired, or an answer the client
                    // never received was stored meanwhile): store the whole view instead.
                    let cmd = saveCommand(key: key, base: nil, token: token, ttlMs: ttlMs,
                                          set: full.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, removed: [])
                    WorkerMetrics.sharedViewCommands("save_whole").increment()
                    WorkerMetrics.sharedViewBytesWritten.increment(by: Int64(cmd.dropFirst(2).reduce(0) { $0 + $1.utf8.count }))
                    if case .integer(1)? = try? client.command(cmd) {
                        out.append((nil, true))
                    } else {
                        out.append((nil, false))
                    }
                }
            case .touch:
                if case .error = reply { out.append((nil, false)) } else { out.append((nil, true)) }
            }
        }
        return out
    }
}
