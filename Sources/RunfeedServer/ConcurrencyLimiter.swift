import RunfeedCore
import RunfeedIO
#if canImport(Glibc)
import Glibc
#endif

/// Per-environment limit on held live polls (reference §3): a sorted set per environment on the
/// rate-limit Redis, `tr:realtime:native:concurrency:<envId>`, with members that expire after 5 min.
/// Admission and release run on their own blocking Redis connections (never on the event loop);
/// completions come back on the loop.
final class ConcurrencyLimiter: @unchecked Sendable {
    enum Admission {
        case admitted(member: String)
        case rejected
        case failed
    }

    private struct Job: Sendable {
        let args: [String]
        /// Runs on the loop.
        let done: @Sendable (Result<RedisReply, IOError>) -> Void
    }

    private let loop: EventLoop
    private let log: Logger
    let limit: Int64
    private let queue = JobQueue<Job>()
    private let outstanding = Mutex()
    private var outstandingJobs = 0
    private var nextMember: UInt64 = 0

    static let script = """
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[1]) - 300000))
        redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
        redis.call('EXPIRE', KEYS[1], 300)
        if redis.call('ZCARD', KEYS[1]) > tonumber(ARGV[3]) then
          redis.call('ZREM', KEYS[1], ARGV[2])
          return 0
        end
        return 1
        """

    init(loop: EventLoop, endpoint: RedisEndpoint, limit: Int64, threads: Int, log: Logger) {
        self.loop = loop
        self.limit = limit
        self.log = log
        for i in 0..<max(1, threads) {
            startThread(name: "limit-\(i)") { [queue, loop, self] in
                let client = RedisClient(endpoint: endpoint, timeoutMs: 1000)
                var sha: String?
                // Everything queued meanwhile goes out in one pipelined write (one round trip and one
                // wake of the loop for a burst of re-arming polls), the script by its SHA once loaded.
                while let jobs = queue.popBatch(max: 512) {
                    let results = Self.run(jobs, client: client, sha: &sha)
                    loop.execute {
                        for (job, result) in zip(jobs, results) { job.done(result) }
                    }
                    self.outstanding.withLock { self.outstandingJobs -= jobs.count }
                }
            }
        }
    }

    private static func run(_ jobs: [Job], client: RedisClient, sha: inout String?) -> [Result<RedisReply, IOError>] {
        do {
            if sha == nil, case .string(let loaded)? = try? client.command(["SCRIPT", "LOAD", script]) { sha = loaded }
            let commands = jobs.map { job -> [String] in
                guard let sha, job.args.first == "EVAL" else { return job.args }
                return ["EVALSHA", sha] + job.args.dropFirst(2)
            }
            var replies = try client.pipeline(commands)
            for i in replies.indices {
                // The script cache was flushed (SCRIPT FLUSH, a restart): send the script itself.
                if case .error(let e) = replies[i], e.hasPrefix("NOSCRIPT") {
                    sha = nil
                    replies[i] = try client.command(jobs[i].args)
                }
            }
            return replies.map { .success($0) }
        } catch let e as IOError {
            return jobs.map { _ in .failure(e) }
        } catch {
            return jobs.map { _ in .failure(IOError("\(error)")) }
        }
    }

    static func key(_ envId: String) -> String { "tr:realtime:native:concurrency:" + envId }

    /// Admissions and releases not yet done (a draining worker waits for its releases).
    var pending: Int { outstanding.withLock { outstandingJobs } }

    private func push(_ job: Job) {
        outstanding.withLock { outstandingJobs += 1 }
        queue.push(job)
    }

    /// Takes a slot for one live poll of `envId`. Runs `done` on the loop.
    func acquire(envId: String, _ done: @escaping (Admission) -> Void) {
        nextMember &+= 1
        let member = "\(getpid())-\(nextMember)-\(UInt32.random(in: 0...UInt32.max))"
        let box = LoopBox(done)
        let args = ["EVAL", Self.script, "1", Self.key(envId), String(wallMs()), member, String(limit)]
        push(Job(args: args) { [log] result in
            switch result {
            case .success(.integer(1)):
                box.value(.admitted(member: member))
            case .success(.integer(0)):
                WorkerMetrics.liveRejectedByLimit.increment()
                box.value(.rejected)
            case .success(let other):
                log.error("concurrency limit: unexpected reply \(other)")
                WorkerMetrics.liveLimitLookupFailed.increment()
                box.value(.failed)
            case .failure(let e):
                log.error("concurrency limit lookup failed: \(e.description)")
                WorkerMetrics.liveLimitLookupFailed.increment()
                box.value(.failed)
            }
        })
    }

    /// Frees a slot (the poll was answered or its client left).
    func release(envId: String, member: String) {
        push(Job(args: ["ZREM", Self.key(envId), member]) { _ in })
    }
}

extension RequestError {
    /// 429 with `Retry-After` (client 1.0.14 retries a 429 with its own backoff).
    static let tooManyLive = RequestError(status: 429, body: "{\"error\":\"Too many concurrent requests\"}",
                                          extraHeaders: [("retry-after", "1")])
}
