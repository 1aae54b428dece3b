import RunfeedCore
import RunfeedIO

/// List connections' working sets (what each client holds: run → digest and read time), shared between
/// every worker and host through the pub/sub Redis, so a poll that lands on another worker continues
/// exactly where the last answer left the client.
///
/// One hash per connection, `runfeed:view:{<envId>}:<handle>` (the braces keep an environment in one
/// cluster slot): `@token` names the answer the view belongs to (the token travels in the client's offset),
/// `@base` holds a whole view as one value (a snapshot), and run fields hold what changed since
/// (`ListViewCodec`). An answer stores only what changed since the client's previous view, and only onto
/// that view (a Lua script checks `@token`); otherwise — or once the run fields outgrow the view — it
/// rewrites the whole view as the base. The key expires after the working-set TTL unless answers keep
/// refreshing it.
///
/// Commands run on one thread with a blocking connection (never on the event loop); what is queued
/// meanwhile goes out as one pipeline; completions come back on the loop.
final class SharedViews: @unchecked Sendable {
    private enum Op: Sendable {
        case load(key: String, token: UInt64)
        /// `fullText`: `full` already encoded as a base, if known.
        case save(key: String, base: UInt64?, token: UInt64, delta: ListViewDelta, full: ListView, fullText: String?)
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
            let client = endpoint.makeClient(timeoutMs: 1000)
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
              viewText: String? = nil, _ done: @escaping (Bool) -> Void) {
        let box = LoopBox(done)
        let base = baseView == nil ? nil : base
        // Only a change onto a stored view needs the delta; a whole view is encoded on the store's thread.
        let delta = base == nil ? ListViewDelta(changed: [], removed: []) : ListViewDelta.between(baseView, view)
        push(Job(op: .save(key: Self.key(envId: envId, handle: handle), base: base, token: token,
                           delta: delta, full: view, fullText: viewText)) { _, ok in box.value(ok) })
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

    /// Applies a change onto the stored view if it is the base's: KEYS[1] the hash; ARGV: base token, new
    /// token, TTL ms, then field/value pairs (a run's version, or `-` for a run that left). Returns 0 when the
    /// stored view is another (nothing is changed), else the hash's field count after the change.
    static let changeScript = """
        if redis.call('HGET', KEYS[1], '@token') ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], '@token', ARGV[2])
        local i = 4
        while i <= #ARGV do
          local last = math.min(#ARGV, i + 999)
          redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
          i = last + 1
        end
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return redis.call('HLEN', KEYS[1])
        """

    static func changeCommand(key: String, base: UInt64, token: UInt64, ttlMs: Int64, delta: ListViewDelta) -> [String] {
        var args = ["EVAL", changeScript, "1", key, String(base), String(token), String(ttlMs)]
        args.reserveCapacity(args.count + 2 * (delta.changed.count + delta.removed.count))
        for (id, v) in delta.changed {
            args.append(id)
            args.append(ListViewCodec.encode(v))
        }
        for id in delta.removed {
            args.append(id)
            args.append(ListViewCodec.removed)
        }
        return args
    }

    /// A whole view as the base of a fresh hash (one value, no per-run fields), atomically.
    static func wholeCommands(key: String, token: UInt64, ttlMs: Int64, view: ListView, text: String? = nil) -> [[String]] {
        [["MULTI"], ["DEL", key],
         ["HSET", key, ListViewCodec.tokenField, String(token), ListViewCodec.baseField, text ?? ListViewCodec.encodeBase(view)],
         ["PEXPIRE", key, String(ttlMs)], ["EXEC"]]
    }

    /// Run fields past which a view is rewritten as a base (they only grow between rewrites).
    static func compactAt(_ view: ListView) -> Int64 { Int64(max(64, 2 * view.count + 2)) }

    private static func countBytes(_ commands: [[String]]) -> Int64 {
        Int64(commands.reduce(0) { $0 + $1.dropFirst().reduce(0) { $0 + $1.utf8.count } })
    }

    private static func run(_ ops: [Op], client: RedisCommands, ttlMs: Int64) -> [(ListView?, Bool)] {
        // One pipeline for everything queued: each op is one command, or the five of a whole write.
        var commands: [[String]] = []
        var spans: [Range<Int>] = []
        for op in ops {
            let start = commands.count
            switch op {
            case .load(let key, _):
                WorkerMetrics.shared.sharedViewCommands("load").increment()
                commands.append(["HGETALL", key])
            case .save(let key, let base, let token, let delta, let full, let fullText):
                if let base {
                    WorkerMetrics.shared.sharedViewCommands("save").increment()
                    commands.append(changeCommand(key: key, base: base, token: token, ttlMs: ttlMs, delta: delta))
                } else {
                    WorkerMetrics.shared.sharedViewCommands("save_whole").increment()
                    commands += wholeCommands(key: key, token: token, ttlMs: ttlMs, view: full, text: fullText)
                }
            case .touch(let key):
                WorkerMetrics.shared.sharedViewCommands("touch").increment()
                commands.append(["PEXPIRE", key, String(ttlMs)])
            }
            spans.append(start..<commands.count)
        }
        WorkerMetrics.shared.sharedViewBytesWritten.increment(by: countBytes(commands))
        guard let replies = try? client.pipeline(commands) else { return ops.map { _ in (nil, false) } }
        var out: [(ListView?, Bool)] = []
        for (op, span) in zip(ops, spans) {
            let reply = replies[span.upperBound - 1]
            switch op {
            case .load(_, let token):
                if case .array(let items) = reply {
                    let pairs = items.compactMap { item -> String? in if case .string(let s) = item { return s }; return nil }
                    out.append((ListViewCodec.view(fromPairs: pairs, token: token), true))
                } else {
                    out.append((nil, false))
                }
            case .save(let key, let base, let token, _, let full, _):
                if base == nil {
                    if case .array = reply { out.append((nil, true)) } else { out.append((nil, false)) }
                    continue
                }
                if case .integer(let fields) = reply, fields > 0, fields <= compactAt(full) {
                    out.append((nil, true))
                    continue
                }
                // The stored view is not the client's previous one (expired, or an answer the client never
                // received was stored meanwhile), or its run fields have piled up: store the whole view.
                WorkerMetrics.shared.sharedViewCommands("save_whole").increment()
                let whole = wholeCommands(key: key, token: token, ttlMs: ttlMs, view: full)
                WorkerMetrics.shared.sharedViewBytesWritten.increment(by: countBytes(whole))
                if let r = try? client.pipeline(whole), case .array? = r.last {
                    out.append((nil, true))
                } else {
                    out.append((nil, false))
                }
            case .touch:
                if case .error = reply { out.append((nil, false)) } else { out.append((nil, true)) }
            }
        }
        return out
    }
}
