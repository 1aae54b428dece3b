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
/// Commands run on one pool thread with a blocking connection (never on the event loop); what is queued
/// meanwhile goes out as one pipeline (`LoopBatcher`); completions come back on the loop. Loop-confined.
final class SharedViews {
    private enum Op: Sendable {
        case load(key: String, token: UInt64)
        /// `fullText`: `full` already encoded as a base, if known.
        case save(key: String, base: UInt64?, token: UInt64, delta: ListViewDelta, full: ListView, fullText: String?)
        case touch(key: String)
    }

    /// The view loaded (load), and whether Redis answered as hoped (every op).
    private struct Outcome: Sendable {
        var view: ListView?
        var ok: Bool
    }

    /// The views thread's connection, and whether its last batch failed (to log each change once).
    private final class Connection {
        let client: RedisCommands
        var failing = false
        init(_ client: RedisCommands) { self.client = client }
    }

    private let batcher: LoopBatcher<Connection, Op, Outcome>

    static func key(envId: String, handle: String) -> String { "runfeed:view:{" + envId + "}:" + handle }

    init(loop: EventLoop, endpoint: RedisEndpoint, ttlMs: Int64, log: RunfeedLogger) {
        let pool = BlockingPool<Connection>(name: "views", threads: 1) { Connection(endpoint.makeClient(timeoutMs: 1000)) }
        batcher = LoopBatcher(pool: pool, loop: loop) { conn, ops in
            let results = Self.run(ops, client: conn.client, ttlMs: ttlMs)
            let ok = results.allSatisfy(\.ok)
            if ok == conn.failing {
                conn.failing = !ok
                if conn.failing { log.warning("shared working sets: Redis unavailable; a poll that changes worker re-sends its list") }
            }
            return results
        }
    }

    /// The view stored for `token` (nil: none — expired, replaced, or Redis unavailable). Runs `done` on the loop.
    func load(envId: String, handle: String, token: UInt64, _ done: @escaping (ListView?) -> Void) {
        batcher.push(.load(key: Self.key(envId: envId, handle: handle), token: token)) { done($0.view) }
    }

    /// Stores `view` under `token`, as the change from the view stored under `base` when there is one.
    /// Runs `done` on the loop once Redis has it (or failed to take it).
    func save(envId: String, handle: String, base: UInt64?, baseView: ListView?, token: UInt64, view: ListView,
              viewText: String? = nil, _ done: @escaping (Bool) -> Void) {
        let base = baseView == nil ? nil : base
        // Only a change onto a stored view needs the delta; a whole view is encoded on the store's thread.
        let delta = base == nil ? ListViewDelta(changed: [], removed: []) : ListViewDelta.between(baseView, view)
        batcher.push(.save(key: Self.key(envId: envId, handle: handle), base: base, token: token,
                           delta: delta, full: view, fullText: viewText)) { done($0.ok) }
    }

    /// Keeps a stored view from expiring while its connection is alive.
    func touch(envId: String, handle: String) {
        batcher.push(.touch(key: Self.key(envId: envId, handle: handle))) { _ in }
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

    private static func run(_ ops: [Op], client: RedisCommands, ttlMs: Int64) -> [Outcome] {
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
        guard let replies = try? client.pipeline(commands) else { return ops.map { _ in Outcome(view: nil, ok: false) } }
        var out: [Outcome] = []
        for (op, span) in zip(ops, spans) {
            let reply = replies[span.upperBound - 1]
            switch op {
            case .load(_, let token):
                if case .array(let items) = reply {
                    let pairs = items.compactMap { item -> String? in if case .string(let s) = item { return s }; return nil }
                    out.append(Outcome(view: ListViewCodec.view(fromPairs: pairs, token: token), ok: true))
                } else {
                    out.append(Outcome(view: nil, ok: false))
                }
            case .save(let key, let base, let token, _, let full, _):
                if base == nil {
                    if case .array = reply { out.append(Outcome(view: nil, ok: true)) } else { out.append(Outcome(view: nil, ok: false)) }
                    continue
                }
                if case .integer(let fields) = reply, fields > 0, fields <= compactAt(full) {
                    out.append(Outcome(view: nil, ok: true))
                    continue
                }
                // The stored view is not the client's previous one (expired, or an answer the client never
                // received was stored meanwhile), or its run fields have piled up: store the whole view.
                WorkerMetrics.shared.sharedViewCommands("save_whole").increment()
                let whole = wholeCommands(key: key, token: token, ttlMs: ttlMs, view: full)
                WorkerMetrics.shared.sharedViewBytesWritten.increment(by: countBytes(whole))
                if let r = try? client.pipeline(whole), case .array? = r.last {
                    out.append(Outcome(view: nil, ok: true))
                } else {
                    out.append(Outcome(view: nil, ok: false))
                }
            case .touch:
                if case .error = reply { out.append(Outcome(view: nil, ok: false)) } else { out.append(Outcome(view: nil, ok: true)) }
            }
        }
        return out
    }
}
