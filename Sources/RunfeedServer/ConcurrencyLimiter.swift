import RunfeedCore
import RunfeedIO
#if canImport(Glibc)
import Glibc
#endif

/// Per-environment limit on held live polls (a poll over it is refused 429, and 500 when the count cannot be read): a sorted set per environment on the
/// rate-limit Redis, `tr:realtime:native:concurrency:{<envId>}`, with members that expire after 5 min.
/// Admission and release run on their own blocking Redis connections (a `BlockingPool`, never on the event
/// loop); completions come back on the loop. Loop-confined.
final class ConcurrencyLimiter {
    enum Admission {
        case admitted(member: String)
        case rejected
        case failed
    }

    /// A limiter thread's connection and the script's SHA it loaded.
    private final class Connection {
        let client: RedisCommands
        var sha: String?
        init(_ client: RedisCommands) { self.client = client }
    }

    private let log: RunfeedLogger
    let limit: Int64
    /// Operations taken on the loop are handed to the limiter threads together once the loop has finished what
    /// it is doing, so a burst of re-arming polls becomes one batch; everything waiting goes out as one batch
    /// (LimiterBatch: one script call per environment for the admissions, one ZREM for the releases, pipelined),
    /// and the outcomes go back to the loop in one wake.
    private let batcher: LoopBatcher<Connection, LimiterOp, LimiterOutcome>
    private var nextMember: UInt64 = 0

    init(loop: EventLoop, endpoint: RedisEndpoint, limit: Int64, threads: Int, log: RunfeedLogger) {
        self.limit = limit
        self.log = log
        let pool = BlockingPool<Connection>(name: "limit", threads: threads) { Connection(endpoint.makeClient(timeoutMs: 1000)) }
        batcher = LoopBatcher(pool: pool, loop: loop) { conn, ops in
            Self.run(ops, limit: limit, client: conn.client, sha: &conn.sha)
        }
    }

    private static func run(_ ops: [LimiterOp], limit: Int64, client: RedisCommands, sha: inout String?) -> [LimiterOutcome] {
        do {
            if sha == nil, case .string(let loaded)? = try? client.command(["SCRIPT", "LOAD", LimiterBatch.acquireScript]) {
                sha = loaded
            }
            let batch = LimiterBatch(ops, limit: limit, sha: sha)
            var replies = try client.pipeline(batch.commands)
            for i in replies.indices {
                // The script cache was flushed (SCRIPT FLUSH, a restart): send the script itself.
                if case .error(let e) = replies[i], e.hasPrefix("NOSCRIPT"), batch.commands[i].first == "EVALSHA" {
                    sha = nil
                    replies[i] = try client.command(["EVAL", LimiterBatch.acquireScript] + batch.commands[i].dropFirst(2))
                }
            }
            return batch.outcomes(ops, replies: replies)
        } catch {
            return ops.map { _ in .failed("\(error)") }
        }
    }

    /// Admissions and releases not yet answered (a draining worker waits for its releases).
    var pending: Int { batcher.pending }

    /// Admits one live poll of `envId` under its environment's limit. Runs `done` on the loop.
    func acquire(envId: String, _ done: @escaping (Admission) -> Void) {
        nextMember &+= 1
        let member = "\(getpid())-\(nextMember)-\(UInt32.random(in: 0...UInt32.max))"
        batcher.push(.acquire(envId: envId, member: member, nowMs: wallMs())) { [log] outcome in
            switch outcome {
            case .admitted:
                done(.admitted(member: member))
            case .rejected:
                WorkerMetrics.shared.liveRejectedByLimit.increment()
                done(.rejected)
            case .failed(let e):
                log.error("concurrency limit lookup failed: \(e)")
                WorkerMetrics.shared.liveLimitLookupFailed.increment()
                done(.failed)
            case .released:
                done(.failed)
            }
        }
    }

    /// Releases an admission (the poll was answered or its client left).
    func release(envId: String, member: String) {
        batcher.push(.release(envId: envId, member: member)) { _ in }
    }
}

extension RequestError {
    /// 429 with `Retry-After` (client 1.0.14 retries a 429 with its own backoff).
    static let tooManyLive = RequestError(status: 429, body: "{\"error\":\"Too many concurrent requests\"}",
                                          extraHeaders: [("retry-after", "1")])
}
