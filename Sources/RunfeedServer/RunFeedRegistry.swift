import RunfeedCore
import RunfeedIO

/// A parked live poll of one run.
final class LiveRunFeed {
    let id: UInt64
    let request: RunFeedRequest
    let floorMs: Int64
    var machine: RunFeedPoll
    var deadline: EventLoop.TimerID?
    var lastRow: RunRow?

    init(id: UInt64, request: RunFeedRequest, floorMs: Int64, machine: RunFeedPoll) {
        self.id = id
        self.request = request
        self.floorMs = floorMs
        self.machine = machine
    }
}

/// The worker's held live polls, indexed by environment and run, and the per-environment Redis
/// channel subscriptions they need (reference-counted, with a short linger after the last feed leaves).
/// A change record wakes only the feeds of its run; the row read is shared by all of them.
final class RunFeedRegistry {
    private let loop: EventLoop
    private let subscriber: RedisSubscriber
    private let config: ServerConfig
    weak var server: Server?

    private var feeds: [UInt64: LiveRunFeed] = [:]
    private var byRun: [String: Set<UInt64>] = [:]
    private var byEnv: [String: Set<UInt64>] = [:]
    private var lingers: [String: EventLoop.TimerID] = [:]
    private var replay: [String: ReplayBuffer] = [:]
    private var subscribedAt: [String: Int64] = [:]
    private var everConfirmed: Set<String> = []
    private var nextId: UInt64 = 1
    private var seq: UInt64 = 0

    private(set) var wakes = 0
    private(set) var backstops = 0
    private(set) var backstopDeliveries = 0
    private(set) var aborts = 0
    private(set) var recordsReceived = 0

    init(loop: EventLoop, subscriber: RedisSubscriber, config: ServerConfig) {
        self.loop = loop
        self.subscriber = subscriber
        self.config = config
    }

    var count: Int { feeds.count }

    /// A fresh `electric-cursor` value: a per-process counter wrapping below 2^53.
    func nextCursor() -> UInt64 {
        seq = seq >= (1 << 53) - 1 ? 1 : seq + 1
        return seq
    }

    private static func runKey(_ envId: String, _ runId: String) -> String { envId + "\u{0}" + runId }

    // MARK: feeds

    func startLive(_ request: RunFeedRequest, offset: Offset) {
        let floor = max(0, offset.updatedAtMs)
        let env = request.envId
        let now = wallMs()
        retain(env: env)
        let covered = gapCovered(subscribedAtMs: subscribedAt[env], sinceMs: offset.tail, nowMs: now,
                                 windowMs: config.replayWindowMs, skewMs: config.clockSkewMs)
        let missed = covered && (replay[env]?.changed(runId: request.runId, sinceMs: offset.tail - config.clockSkewMs) ?? false)
        let feed = LiveRunFeed(id: nextId, request: request, floorMs: floor,
                               machine: RunFeedPoll(floorMs: floor, needsGapRead: !covered || missed))
        nextId += 1
        feeds[feed.id] = feed
        byRun[Self.runKey(env, request.runId), default: []].insert(feed.id)
        byEnv[env, default: []].insert(feed.id)

        let hold = HoldTiming.holdMs(baseMs: config.holdMs, jitterRatio: config.jitterRatio, unit: Double.random(in: 0..<1))
        feed.deadline = loop.schedule(afterMs: hold) { [weak self] in
            feed.deadline = nil
            self?.event(feed, .deadline)
        }
        // nginx closes the upstream connection when the client goes away; stdin was drained, so
        // any readability now means EOF.
        loop.watch(fd: request.conn.fd, events: EV_IN | EV_RDHUP) { [weak self] _ in
            self?.event(feed, .aborted)
        }
        act(feed, feed.machine.start(), freshAfter: monotonicMs())
    }

    private func event(_ feed: LiveRunFeed, _ e: RunFeedEvent) {
        guard feeds[feed.id] != nil else { return }
        switch e {
        case .deadline: backstops += 1
        case .aborted:
            aborts += 1
            server?.log.debug("live poll aborted by client run=\(feed.request.runId) held=\(feeds.count - 1)")
        case .notified: wakes += 1
        default: break
        }
        let freshAfter = e == .notified ? monotonicMs() : monotonicMs() - config.runCacheTtlMs
        act(feed, feed.machine.handle(e), freshAfter: freshAfter)
    }

    private func act(_ feed: LiveRunFeed, _ action: RunFeedAction, freshAfter: Int64) {
        switch action {
        case .hold, .finishSilently:
            return
        case .readRow:
            let r = feed.request
            server?.store.readRow(envId: r.envId, runId: r.runId, freshAfter: freshAfter) { [weak self] result in
                guard let self, self.feeds[feed.id] != nil else { return }
                var updatedAt: Int64?
                if case .success(let row) = result, let row {
                    feed.lastRow = row
                    updatedAt = row.updatedAtMs
                }
                self.act(feed, feed.machine.handle(.rowRead(updatedAtMs: updatedAt)), freshAfter: freshAfter)
            }
        case .emitRow:
            if feed.deadline == nil { backstopDeliveries += 1 }
            finish(feed, row: feed.lastRow)
        case .emitUpToDate:
            finish(feed, row: nil)
        }
    }

    private func finish(_ feed: LiveRunFeed, row: RunRow?) {
        remove(feed)
        server?.answerLive(feed.request, floorMs: feed.floorMs, row: row)
    }

    private func remove(_ feed: LiveRunFeed) {
        guard feeds.removeValue(forKey: feed.id) != nil else { return }
        if let t = feed.deadline { loop.cancel(t) }
        feed.deadline = nil
        loop.unwatch(fd: feed.request.conn.fd)
        let env = feed.request.envId
        let key = Self.runKey(env, feed.request.runId)
        byRun[key]?.remove(feed.id)
        if byRun[key]?.isEmpty == true { byRun.removeValue(forKey: key) }
        byEnv[env]?.remove(feed.id)
        if byEnv[env]?.isEmpty == true { byEnv.removeValue(forKey: env) }
        release(env: env)
    }

    /// Answers every held poll with `up-to-date` now (drain).
    func answerAll() {
        for feed in Array(feeds.values) { finish(feed, row: nil) }
    }

    // MARK: channels

    private var envRefs: [String: Int] = [:]

    private func retain(env: String) {
        envRefs[env, default: 0] += 1
        if let t = lingers.removeValue(forKey: env) { loop.cancel(t) }
        if envRefs[env] == 1 { subscriber.subscribe(Channels.env(env)) }
    }

    private func release(env: String) {
        guard let n = envRefs[env] else { return }
        if n > 1 {
            envRefs[env] = n - 1
            return
        }
        envRefs.removeValue(forKey: env)
        // Linger, so a feed that re-arms right away finds the subscription (and its replay) in place.
        lingers[env] = loop.schedule(afterMs: config.unsubscribeLingerMs) { [weak self] in
            guard let self else { return }
            self.lingers.removeValue(forKey: env)
            guard self.envRefs[env] == nil else { return }
            self.subscriber.unsubscribe(Channels.env(env))
            self.replay.removeValue(forKey: env)
            self.subscribedAt.removeValue(forKey: env)
        }
    }

    func subscriptionChanged(channel: String, at: Int64?) {
        guard let env = Channels.envId(fromChannel: channel) else { return }
        if let at {
            subscribedAt[env] = at
            // Subscribed again after a loss: records may have been missed meanwhile, so re-read
            // every run this worker holds for the environment instead of waiting for the backstop.
            if !everConfirmed.insert(env).inserted {
                wakeAll(env: env)
            }
        } else {
            subscribedAt.removeValue(forKey: env)
            if envRefs[env] == nil { everConfirmed.remove(env) }
        }
    }

    private func wakeAll(env: String) {
        for id in byEnv[env] ?? [] {
            if let feed = feeds[id] { event(feed, .notified) }
        }
    }

    // MARK: change records

    func received(channel: String, payload: String) {
        guard let env = Channels.envId(fromChannel: channel), let record = ChangeRecord.parse(payload) else { return }
        recordsReceived += 1
        let now = wallMs()
        var buffer = replay[env] ?? ReplayBuffer(windowMs: config.replayWindowMs, maxRuns: config.replayMaxRuns)
        buffer.record(runId: record.runId, atMs: now)
        replay[env] = buffer
        // The channel names the environment: a record cannot reach another environment's feeds.
        guard let ids = byRun[Self.runKey(env, record.runId)] else { return }
        for id in ids {
            if let feed = feeds[id] { event(feed, .notified) }
        }
    }
}
