import RunfeedCore

/// What the worker needs of its pub/sub connection(s): one node (`RedisSubscriber`) or a cluster
/// (`ClusterSubscriber`). Loop-confined.
public protocol PubSubClient: AnyObject {
    var onMessage: ((String, String) -> Void)? { get set }
    var onSubscriptionChange: ((String, Int64?) -> Void)? { get set }
    var log: ((String) -> Void)? { get set }
    var trace: ((String) -> Void)? { get set }
    /// Up: every connection that carries wanted channels (at least one connection) answers.
    var isReady: Bool { get }
    var reconnects: Int { get }
    func start()
    func subscribe(_ channel: String)
    func unsubscribe(_ channel: String)
    func shutdown()
}

extension RedisSubscriber: PubSubClient {
    public var isReady: Bool { state == .ready }
}

extension RedisEndpoint {
    /// The worker's pub/sub client for this endpoint: one connection, or one per cluster node that owns a wanted
    /// channel (sharded) / one on some node of the cluster (classic).
    public func makeSubscriber(loop: EventLoop, sharded: Bool, pingIntervalMs: Int64, pongTimeoutMs: Int64) -> PubSubClient {
        guard cluster else {
            return RedisSubscriber(loop: loop, endpoint: self, sharded: false,
                                   pingIntervalMs: pingIntervalMs, pongTimeoutMs: pongTimeoutMs)
        }
        return ClusterSubscriber(loop: loop, seed: self, sharded: sharded,
                                 pingIntervalMs: pingIntervalMs, pongTimeoutMs: pongTimeoutMs)
    }
}

/// Pub/sub on a Redis Cluster, on the event loop.
///
/// - Sharded (`SSUBSCRIBE`): each wanted channel is subscribed on the master of its slot, one `RedisSubscriber`
///   per such node. A `MOVED` answer re-routes the channel at once; a slot that moves away (the server's
///   `sunsubscribe`) or a node that stops answering (failover) makes the slot map be read again — from any node
///   that answers — and every channel whose owner changed is subscribed on its new master. Each loss and
///   re-subscription goes through `onSubscriptionChange`, so the worker reads the gap of the affected feeds.
/// - Classic (`SUBSCRIBE`): the cluster broadcasts every `PUBLISH` to every node, so one connection to any node
///   carries everything; when that node stops answering, the channels move to another master of the map.
public final class ClusterSubscriber: PubSubClient {
    private let loop: EventLoop
    private let seed: RedisEndpoint
    private let sharded: Bool
    private let pingIntervalMs: Int64
    private let pongTimeoutMs: Int64

    private var map: RedisSlotMap?
    private var nodes: [RedisNodeAddress: RedisSubscriber] = [:]
    /// The node each wanted channel is subscribed on.
    private var route: [String: RedisNodeAddress] = [:]
    private var desired: Set<String> = []
    /// Classic mode: the node carrying every channel. Sharded: the node kept connected for health when no
    /// channel is wanted (and the first place a channel goes before the map is known).
    private var home: RedisNodeAddress
    private var refreshing = false
    private var refreshAgain = false
    private var refreshTimer: EventLoop.TimerID?
    private var periodicTimer: EventLoop.TimerID?
    private var shuttingDown = false
    /// Reconnects of subscribers that were closed (their counts stay in the total).
    private var retiredReconnects = 0

    public var onMessage: ((String, String) -> Void)?
    public var onSubscriptionChange: ((String, Int64?) -> Void)?
    public var log: ((String) -> Void)?
    public var trace: ((String) -> Void)?

    public init(loop: EventLoop, seed: RedisEndpoint, sharded: Bool, pingIntervalMs: Int64, pongTimeoutMs: Int64) {
        self.loop = loop
        self.seed = seed
        self.sharded = sharded
        self.pingIntervalMs = pingIntervalMs
        self.pongTimeoutMs = pongTimeoutMs
        home = RedisNodeAddress(host: seed.host, port: seed.port)
    }

    public var isReady: Bool {
        let carrying = Set(route.values).union([home])
        return carrying.allSatisfy { nodes[$0]?.state == .ready }
    }

    public var reconnects: Int { retiredReconnects + nodes.values.reduce(0) { $0 + $1.reconnects } }

    public func start() {
        _ = node(home)
        refreshMap()
        schedulePeriodicRefresh()
    }

    public func subscribe(_ channel: String) {
        guard desired.insert(channel).inserted else { return }
        place(channel)
    }

    public func unsubscribe(_ channel: String) {
        guard desired.remove(channel) != nil else { return }
        if let at = route.removeValue(forKey: channel) { nodes[at]?.unsubscribe(channel) }
        retireIdleNodes()
    }

    public func shutdown() {
        shuttingDown = true
        if let t = refreshTimer { loop.cancel(t) }
        if let t = periodicTimer { loop.cancel(t) }
        for n in nodes.values { n.shutdown() }
        nodes.removeAll()
        route.removeAll()
        desired.removeAll()
    }

    // MARK: routing

    /// Where `channel` belongs now.
    private func owner(of channel: String) -> RedisNodeAddress {
        guard sharded else { return home }
        return map?.node(forKey: channel) ?? home
    }

    private func place(_ channel: String) {
        let target = owner(of: channel)
        if let at = route[channel] {
            if at == target { return }
            nodes[at]?.unsubscribe(channel)
            // Whatever the old node heard is no longer a complete record: the worker reads the gap once the
            // channel is confirmed on its new node.
            route.removeValue(forKey: channel)
            onSubscriptionChange?(channel, nil)
        }
        route[channel] = target
        node(target).subscribe(channel)
        if sharded { trace?("redis cluster: \(channel) (slot \(RedisSlot.of(channel))) on \(target)") }
    }

    private func node(_ address: RedisNodeAddress) -> RedisSubscriber {
        if let n = nodes[address] { return n }
        let n = RedisSubscriber(loop: loop, endpoint: seed.node(address), sharded: sharded,
                                pingIntervalMs: pingIntervalMs, pongTimeoutMs: pongTimeoutMs)
        n.log = { [weak self] in self?.log?("[\(address)] \($0)") }
        n.trace = { [weak self] in self?.trace?("[\(address)] \($0)") }
        n.onMessage = { [weak self] ch, payload in self?.onMessage?(ch, payload) }
        n.onSubscriptionChange = { [weak self] ch, at in
            guard let self else { return }
            // Only the node a channel is routed to speaks for it (an old owner's late confirmation or loss is moot).
            guard self.route[ch] == address else { return }
            self.onSubscriptionChange?(ch, at)
            if at == nil { self.scheduleRefresh() }
        }
        n.onChannelMoved = { [weak self] ch, to in self?.moved(ch, from: address, to: to) }
        n.onConnectionLost = { [weak self] in self?.scheduleRefresh() }
        nodes[address] = n
        n.start()
        return n
    }

    private func moved(_ channel: String, from: RedisNodeAddress, to: String?) {
        guard route[channel] == from else { return }
        route.removeValue(forKey: channel)
        onSubscriptionChange?(channel, nil)
        guard desired.contains(channel) else { return }
        if let to, let address = RedisNodeAddress(to) {
            let slot = RedisSlot.of(channel)
            if map == nil { map = RedisSlotMap() }
            map?.assign(slot...slot, to: address)
            place(channel)
        }
        // The slot map changed under us: read it again (also places a channel evicted without a new address).
        scheduleRefresh()
    }

    /// Closes connections that carry no wanted channel (except home).
    private func retireIdleNodes() {
        let carrying = Set(route.values).union([home])
        for (address, n) in nodes where !carrying.contains(address) {
            retiredReconnects += n.reconnects
            n.shutdown()
            nodes.removeValue(forKey: address)
        }
    }

    // MARK: slot map

    private func schedulePeriodicRefresh() {
        periodicTimer = loop.schedule(afterMs: 15_000) { [weak self] in
            guard let self, !self.shuttingDown else { return }
            self.refreshMap()
            self.schedulePeriodicRefresh()
        }
    }

    /// A refresh soon (coalesced): a connection was lost, a slot moved.
    private func scheduleRefresh(afterMs: Int64 = 250) {
        guard refreshTimer == nil, !shuttingDown else { return }
        refreshTimer = loop.schedule(afterMs: afterMs) { [weak self] in
            self?.refreshTimer = nil
            self?.refreshMap()
        }
    }

    private func refreshMap() {
        guard !refreshing else {
            refreshAgain = true
            return
        }
        refreshing = true
        // Ask the nodes that answered last time first, then the seed, then every other known node.
        var candidates: [RedisEndpoint] = []
        var seen: Set<RedisNodeAddress> = []
        let ready = nodes.filter { $0.value.state == .ready }.map(\.key)
        for a in ready + [RedisNodeAddress(host: seed.host, port: seed.port)] + (map?.masters ?? []) where seen.insert(a).inserted {
            candidates.append(seed.node(a))
        }
        let me = LoopBox(self, loop: loop)
        startThread(name: "redis-slots") { [loop, candidates] in
            let result = Result { try RedisEndpoint.fetchSlotMap(candidates, timeoutMs: 2000) }
            loop.execute { me.value.mapFetched(result) }
        }
    }

    private func mapFetched(_ result: Result<RedisSlotMap, Error>) {
        refreshing = false
        guard !shuttingDown else { return }
        switch result {
        case .success(let fresh):
            let changed = fresh != map
            map = fresh
            if changed { log?("redis cluster: \(fresh.masters.count) masters: \(fresh.masters.map(\.description).joined(separator: ", "))") }
            // Home moves off a node that is no master any more, or that does not answer.
            if !fresh.masters.contains(home) || nodes[home]?.state != .ready,
               let better = fresh.masters.first(where: { nodes[$0]?.state == .ready }) ?? fresh.masters.first, better != home {
                log?("redis cluster: \(sharded ? "home" : "subscriptions") move from \(home) to \(better)")
                home = better
                _ = node(home)
            }
            for ch in desired.sorted() { place(ch) }
            retireIdleNodes()
            // A node that carries channels and does not answer: its replica may not be promoted yet. Look again
            // every second until the map names a node that answers.
            if !isReady { scheduleRefresh(afterMs: 1000) }
        case .failure(let e):
            log?("redis cluster: \(e)")
            scheduleRefresh(afterMs: 1000)
        }
        if refreshAgain {
            refreshAgain = false
            scheduleRefresh()
        }
    }
}
