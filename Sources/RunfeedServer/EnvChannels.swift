import RunfeedCore
import RunfeedIO

/// The worker's per-environment Redis channels: reference-counted SUBSCRIBE/UNSUBSCRIBE with a linger
/// after the last feed leaves, the confirmation time of each subscription, and the replay buffer of
/// recent change records. Every record is parsed once here and handed to the feed registries.
final class EnvChannels {
    private let loop: EventLoop
    private let subscriber: PubSubClient
    private let config: ServerConfig
    private var refs: [String: Int] = [:]
    private var lingers: [String: EventLoop.TimerID] = [:]
    private var replays: [String: ReplayBuffer] = [:]
    private var subscribedAt: [String: Int64] = [:]
    private var everConfirmed: Set<String> = []

    /// Called for each change record, with the environment named by its channel.
    var onRecord: [(String, ChangeRecord) -> Void] = []
    /// Called when an environment's channel is subscribed again after a loss: records may be lost.
    var onResubscribed: [(String) -> Void] = []

    init(loop: EventLoop, subscriber: PubSubClient, config: ServerConfig) {
        self.loop = loop
        self.subscriber = subscriber
        self.config = config
    }

    var subscribedCount: Int { subscribedAt.count }

    /// Held polls of the environment with the most on this worker (each keeps one reference).
    var busiestEnvironmentHeld: Int { refs.values.max() ?? 0 }

    func retain(_ env: String) {
        refs[env, default: 0] += 1
        if let t = lingers.removeValue(forKey: env) { loop.cancel(t) }
        if refs[env] == 1 { subscriber.subscribe(Channels.env(env)) }
    }

    func release(_ env: String) {
        guard let n = refs[env] else { return }
        if n > 1 {
            refs[env] = n - 1
            return
        }
        refs.removeValue(forKey: env)
        // Linger, so a feed that re-arms right away finds the subscription (and its replay) in place.
        lingers[env] = loop.schedule(afterMs: config.unsubscribeLingerMs) { [weak self] in
            guard let self else { return }
            self.lingers.removeValue(forKey: env)
            guard self.refs[env] == nil else { return }
            self.subscriber.unsubscribe(Channels.env(env))
            self.replays.removeValue(forKey: env)
            self.subscribedAt.removeValue(forKey: env)
            self.everConfirmed.remove(env)
        }
    }

    /// Whether this worker heard every record of `env` since `sinceMs` (a client's previous response).
    func covers(_ env: String, sinceMs: Int64) -> Bool {
        gapCovered(subscribedAtMs: subscribedAt[env], sinceMs: sinceMs, nowMs: wallMs(),
                   windowMs: config.replayWindowMs, skewMs: config.clockSkewMs)
            // Records dropped to bound the buffer (more runs changed than it keeps) are unknown.
            && sinceMs - config.clockSkewMs > (replays[env]?.evictedThroughMs ?? Int64.min)
    }

    /// Records of `env` that arrived since `sinceMs` (allowing for clock skew), latest per run.
    func replayed(_ env: String, sinceMs: Int64) -> [ChangeRecord] {
        replays[env]?.records(sinceMs: sinceMs - config.clockSkewMs) ?? []
    }

    /// How fresh a read of `runId` must be for a poll whose gap began at `sinceMs` (`gapReadFreshAfter`;
    /// `covered` is `covers(env, sinceMs:)`): it depends on when this worker last heard a record of the run.
    func gapReadFreshAfter(_ env: String, runId: String, sinceMs: Int64, covered: Bool, nowUs: Int64) -> Int64? {
        let heard = covered ? replays[env]?.lastArrival(runId: runId, sinceMs: sinceMs - config.clockSkewMs) : nil
        return RunfeedCore.gapReadFreshAfter(covered: covered, heard: heard, nowUs: nowUs)
    }

    func subscriptionChanged(channel: String, at: Int64?) {
        guard let env = Channels.envId(fromChannel: channel) else { return }
        if let at {
            subscribedAt[env] = at
            if !everConfirmed.insert(env).inserted {
                for h in onResubscribed { h(env) }
            }
        } else {
            subscribedAt.removeValue(forKey: env)
        }
    }

    func received(channel: String, payload: String) {
        guard let env = Channels.envId(fromChannel: channel), refs[env] != nil || lingers[env] != nil else { return }
        guard payload.utf8.count <= 16_384, let record = ChangeRecord.parse(payload) else {
            WorkerMetrics.shared.recordsRejected.increment()
            return
        }
        WorkerMetrics.shared.recordsAccepted.increment()
        // Mutated in place (no copy of the buffer per record).
        replays[env, default: ReplayBuffer(windowMs: config.replayWindowMs, maxRuns: config.replayMaxRuns)]
            .record(record, atMs: wallMs(), heardUs: monotonicUs())
        // The channel names the environment: a record never reaches another environment's feeds,
        // whatever envId it claims.
        for h in onRecord { h(env, record) }
    }
}
