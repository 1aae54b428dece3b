/// The per-environment live-poll limit (429 over it) as batched Redis commands. The data layout is the
/// reference's — a sorted set per environment (hash-tagged here, `tr:realtime:native:concurrency:{<envId>}`, so a
/// cluster keeps an environment's set in its channel's slot), members scored
/// by admission time and dropped after 5 minutes — but a burst of admissions costs one script call per
/// environment and a burst of releases one `ZREM` per environment, instead of one round trip each.
/// Pure: the limiter threads send the commands and hand each operation its outcome.
public enum LimiterOp: Sendable, Equatable {
    case acquire(envId: String, member: String, nowMs: Int64)
    case release(envId: String, member: String)
}

public enum LimiterOutcome: Sendable, Equatable {
    case admitted
    case rejected
    case released
    case failed(String)
}

public struct LimiterBatch: Sendable {
    public static func key(_ envId: String) -> String { "tr:realtime:native:concurrency:{" + envId + "}" }

    /// Admits ARGV[3…] one by one, in order, while the set holds at most ARGV[2] members; returns 1
    /// (admitted) or 0 (rejected) per member. ARGV[1] is the admission time in ms.
    public static let acquireScript = """
        local now = tonumber(ARGV[1])
        local limit = tonumber(ARGV[2])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - 300000))
        local out = {}
        for i = 3, #ARGV do
          redis.call('ZADD', KEYS[1], now, ARGV[i])
          if redis.call('ZCARD', KEYS[1]) > limit then
            redis.call('ZREM', KEYS[1], ARGV[i])
            out[#out + 1] = 0
          else
            out[#out + 1] = 1
          end
        end
        redis.call('EXPIRE', KEYS[1], 300)
        return out
        """

    /// The commands, in the order they are sent: releases first (an admission released in the same burst
    /// makes room for the new ones), then one script call per environment.
    public private(set) var commands: [[String]] = []
    /// For each operation: which command answers it, and for an admission its position in that
    /// command's reply.
    public private(set) var answers: [(command: Int, position: Int)] = []

    /// `sha`: the script's SHA once loaded (EVALSHA), else the script text is sent (EVAL).
    public init(_ ops: [LimiterOp], limit: Int64, sha: String?) {
        var releaseCommand: [String: Int] = [:]
        var acquireCommand: [String: Int] = [:]
        var acquireOrder: [String] = []
        var acquireMembers: [String: [String]] = [:]
        var acquireNow: [String: Int64] = [:]
        answers = Array(repeating: (0, 0), count: ops.count)
        for (i, op) in ops.enumerated() {
            if case .release(let env, let member) = op {
                if let c = releaseCommand[env] {
                    commands[c].append(member)
                    answers[i] = (c, 0)
                } else {
                    releaseCommand[env] = commands.count
                    answers[i] = (commands.count, 0)
                    commands.append(["ZREM", Self.key(env), member])
                }
            }
        }
        for (i, op) in ops.enumerated() {
            if case .acquire(let env, let member, let now) = op {
                if acquireMembers[env] == nil { acquireOrder.append(env) }
                answers[i] = (-1, acquireMembers[env]?.count ?? 0)
                acquireMembers[env, default: []].append(member)
                acquireNow[env] = max(acquireNow[env] ?? now, now)
            }
        }
        for env in acquireOrder {
            acquireCommand[env] = commands.count
            let head = sha.map { ["EVALSHA", $0] } ?? ["EVAL", Self.acquireScript]
            commands.append(head + ["1", Self.key(env), String(acquireNow[env]!), String(limit)] + acquireMembers[env]!)
        }
        for (i, op) in ops.enumerated() {
            if case .acquire(let env, _, _) = op { answers[i].command = acquireCommand[env]! }
        }
    }

    /// Each operation's outcome from the replies (one per command, in order).
    public func outcomes(_ ops: [LimiterOp], replies: [RedisReply]) -> [LimiterOutcome] {
        ops.indices.map { i in
            let a = answers[i]
            guard a.command < replies.count else { return .failed("no reply") }
            let reply = replies[a.command]
            if case .release = ops[i] {
                if case .error(let e) = reply { return .failed(e) }
                return .released
            }
            switch reply {
            case .array(let items) where a.position < items.count:
                switch items[a.position] {
                case .integer(1): return .admitted
                case .integer(0): return .rejected
                default: return .failed("unexpected reply \(items[a.position])")
                }
            case .error(let e): return .failed(e)
            default: return .failed("unexpected reply \(reply)")
            }
        }
    }
}
