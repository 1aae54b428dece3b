import RunfeedCore

/// Commands and pipelines on Redis, one node or a cluster. Blocking: threads only, never the event loop.
public protocol RedisCommands: AnyObject {
    func command(_ args: [String]) throws -> RedisReply
    /// Replies in the order of `commands` (one round trip per node involved). Commands may be sent again after a
    /// lost connection or a redirection, so they must be safe to repeat.
    func pipeline(_ commands: [[String]]) throws -> [RedisReply]
}

extension RedisClient: RedisCommands {}

extension RedisEndpoint {
    /// A blocking client for this endpoint: cluster-aware when `cluster` is set.
    public func makeClient(timeoutMs: Int = 2000) -> RedisCommands {
        cluster ? RedisClusterClient(seed: self, timeoutMs: timeoutMs) : RedisClient(endpoint: self, timeoutMs: timeoutMs)
    }

    /// This endpoint's settings (credentials, TLS) for another node of its cluster.
    public func node(_ address: RedisNodeAddress) -> RedisEndpoint {
        var e = self
        e.host = address.host
        e.port = address.port
        return e
    }

    /// Reads the cluster's slot map from the first of `candidates` that answers `CLUSTER SLOTS` completely.
    public static func fetchSlotMap(_ candidates: [RedisEndpoint], timeoutMs: Int) throws -> RedisSlotMap {
        var lastError = "no node to ask"
        for c in candidates {
            do {
                let reply = try RedisClient(endpoint: c, timeoutMs: timeoutMs).command(["CLUSTER", "SLOTS"])
                if case .error(let e) = reply { throw IOError("CLUSTER SLOTS: \(e)") }
                guard let map = RedisSlotMap(clusterSlots: reply, fallbackHost: c.host) else {
                    throw IOError("CLUSTER SLOTS: unexpected reply")
                }
                guard map.isComplete else { throw IOError("CLUSTER SLOTS from \(c.host):\(c.port): not every slot is served") }
                return map
            } catch {
                lastError = "\(c.host):\(c.port): \(error)"
            }
        }
        throw IOError("redis cluster: no slot map (\(lastError))")
    }
}

/// A blocking Redis Cluster client: each command goes to the master of its key's slot (`RedisCommandKey`), one
/// pipeline per node; `MOVED` updates the slot map and resends, `ASK` resends once with `ASKING`, a lost node
/// refreshes the map (from any node that answers) and resends.
public final class RedisClusterClient: RedisCommands {
    private let seed: RedisEndpoint
    private let timeoutMs: Int
    private var map: RedisSlotMap?
    private var clients: [RedisNodeAddress: RedisClient] = [:]
    private static let maxRounds = 5

    public init(seed: RedisEndpoint, timeoutMs: Int = 2000) {
        self.seed = seed
        self.timeoutMs = timeoutMs
    }

    public func command(_ args: [String]) throws -> RedisReply {
        try pipeline([args])[0]
    }

    private var seedAddress: RedisNodeAddress { RedisNodeAddress(host: seed.host, port: seed.port) }

    private func client(_ address: RedisNodeAddress) -> RedisClient {
        if let c = clients[address] { return c }
        let c = RedisClient(endpoint: seed.node(address), timeoutMs: timeoutMs)
        clients[address] = c
        return c
    }

    private func refreshMap() throws {
        var candidates = [seed]
        for m in map?.masters ?? [] where m != seedAddress { candidates.append(seed.node(m)) }
        map = try RedisEndpoint.fetchSlotMap(candidates, timeoutMs: timeoutMs)
        // Connections to nodes that serve no slot any more are closed.
        let live = Set(map?.masters ?? [])
        clients = clients.filter { live.contains($0.key) || $0.key == seedAddress }
    }

    public func pipeline(_ commands: [[String]]) throws -> [RedisReply] {
        if map == nil { try refreshMap() }
        var replies = [RedisReply?](repeating: nil, count: commands.count)
        var todo = Array(commands.indices)
        var asking: [Int: RedisNodeAddress] = [:]
        var lastError: Error?
        for _ in 0..<Self.maxRounds where !todo.isEmpty {
            // Group by target node, keeping each node's commands in their original order.
            var groups: [RedisNodeAddress: [Int]] = [:]
            var order: [RedisNodeAddress] = []
            for i in todo {
                let target = asking[i] ?? RedisCommandKey.of(commands[i]).flatMap { map?.node(forKey: $0) }
                    ?? map?.masters.first ?? seedAddress
                if groups[target] == nil { order.append(target) }
                groups[target, default: []].append(i)
            }
            var retry: [Int] = []
            var mapStale = false
            for node in order {
                let idxs = groups[node]!
                var batch: [[String]] = []
                for i in idxs {
                    if asking[i] != nil { batch.append(["ASKING"]) }
                    batch.append(commands[i])
                }
                let got: [RedisReply]
                do {
                    got = try client(node).pipeline(batch)
                } catch {
                    lastError = error
                    clients.removeValue(forKey: node)
                    mapStale = true
                    retry.append(contentsOf: idxs)
                    continue
                }
                var k = 0
                for i in idxs {
                    if asking.removeValue(forKey: i) != nil { k += 1 }  // the ASKING reply
                    let reply = got[k]
                    k += 1
                    if case .error(let e) = reply, let redirect = RedisRedirect(error: e) {
                        switch redirect {
                        case .moved(let slot, let address):
                            if map == nil { map = RedisSlotMap() }
                            map?.assign(slot...slot, to: address)
                            mapStale = true
                        case .ask(_, let address):
                            asking[i] = address
                        }
                        retry.append(i)
                    } else if case .error(let e) = reply, e.hasPrefix("CLUSTERDOWN") || e.hasPrefix("TRYAGAIN") {
                        // A failover or resharding in progress: ask again after a fresh map.
                        lastError = IOError("redis cluster: \(e)")
                        mapStale = true
                        retry.append(i)
                    } else {
                        replies[i] = reply
                    }
                }
            }
            if mapStale { try? refreshMap() }
            todo = retry
        }
        guard todo.isEmpty else {
            throw lastError ?? IOError("redis cluster: too many redirections")
        }
        return replies.map { $0! }
    }
}
