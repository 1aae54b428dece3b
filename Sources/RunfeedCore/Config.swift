// Environment-variable helpers and Redis endpoints.

/// A read-only view of environment variables with fallback chains.
public struct ProcessEnvironment: Sendable {
    public let values: [String: String]

    public init(_ dict: [String: String]) { values = dict }

    /// The first value among `names` that is not empty or blank, returned as-is.
    public func string(_ names: [String]) -> String? {
        for n in names {
            if let v = values[n], !Credential.trim(v).isEmpty { return v }
        }
        return nil
    }

    private func trimmed(_ names: [String]) -> String? { string(names).map { Credential.trim($0) } }

    /// The first non-empty value among `names` parsed as an integer; `default` if absent or unparseable.
    public func int(_ names: [String], default d: Int64) -> Int64 {
        guard let s = trimmed(names) else { return d }
        if let v = Int64(s) { return v }
        if let f = Double(s), f.isFinite, f == f.rounded(), abs(f) < 9.2e18 { return Int64(f) }  // "1e3", "5.0"
        return d
    }

    /// The first non-empty value among `names` parsed as a finite number; `default` if absent or unparseable.
    public func double(_ names: [String], default d: Double) -> Double {
        guard let s = trimmed(names), let v = Double(s), v.isFinite else { return d }
        return v
    }

    /// `1`, `true`, `yes`, `on` → true; `0`, `false`, `no`, `off` → false (case-insensitive); else `default`.
    public func bool(_ names: [String], default d: Bool) -> Bool {
        guard let s = trimmed(names)?.lowercased() else { return d }
        switch s {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: return d
        }
    }

    /// Like `bool`, but nil when no name is set (or the value is unrecognized).
    public func optionalBool(_ names: [String]) -> Bool? {
        guard string(names) != nil else { return nil }
        let t = bool(names, default: true)
        let f = bool(names, default: false)
        return t == f ? t : nil
    }
}

/// A Redis server to connect to: the pub/sub Redis of the change records, or the one the concurrency limit is kept in.
public struct RedisEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    /// nil: plain TCP.
    public var tls: RedisTLS?
    /// A Redis Cluster: `host:port` is one of its nodes (the seed the slot map is read from).
    public var cluster: Bool
    /// Pub/sub with SSUBSCRIBE/SPUBLISH (a cluster with sharded pub/sub enabled).
    public var shardedPubSub: Bool

    public init(host: String, port: Int, username: String? = nil, password: String? = nil, tls: RedisTLS? = nil,
                cluster: Bool = false, shardedPubSub: Bool = false) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.tls = tls
        self.cluster = cluster
        self.shardedPubSub = cluster && shardedPubSub
    }

    /// `AUTH [username] password` (ACL user when a username is set), sent first on every connection.
    public var authArgs: [String]? {
        guard let password, !password.isEmpty else { return nil }
        if let username, !username.isEmpty { return ["AUTH", username, password] }
        return ["AUTH", password]
    }

    public var description: String { "\(tls == nil ? "redis" : "rediss")://\(host):\(port)" }

    /// The pub/sub Redis as configured: each field from `REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_*`, then
    /// `PUBSUB_REDIS_*`, then `REDIS_*`. TLS (with `RedisTLS.from`) unless `…TLS_DISABLED` is true: upstream's default
    /// (managed Redis services require TLS). Sharded pub/sub in cluster mode unless
    /// `REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_SHARDED_ENABLED` is false.
    public static func pubsub(from env: ProcessEnvironment) -> RedisEndpoint {
        func names(_ field: String) -> [String] {
            ["REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_" + field, "PUBSUB_REDIS_" + field, "REDIS_" + field]
        }
        var port = Int(env.int(names("PORT"), default: 6379))
        if port <= 0 || port > 65535 { port = 6379 }
        return RedisEndpoint(
            host: env.string(names("HOST")) ?? "127.0.0.1",
            port: port,
            username: env.string(names("USERNAME")),
            password: env.string(names("PASSWORD")),
            tls: env.optionalBool(names("TLS_DISABLED")) == true ? nil : RedisTLS.from(env),
            cluster: env.bool(names("CLUSTER_MODE_ENABLED"), default: false),
            shardedPubSub: env.bool(["REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_SHARDED_ENABLED"], default: true))
    }
}

/// TLS settings of a Redis endpoint.
public struct RedisTLS: Sendable, Hashable {
    /// PEM bundle of CAs to trust in addition to the system trust store (private CAs).
    public var caFile: String?
    /// Client certificate (chain) and key, PEM, for servers that require one (key: the certificate file if unset).
    public var certFile: String?
    public var keyFile: String?
    /// Name to verify the server certificate against and send as SNI (default: the host connected to).
    public var serverName: String?

    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.serverName = serverName
    }

    /// `RUNFEED_REDIS_TLS_{CA_FILE,CERT_FILE,KEY_FILE,SERVER_NAME}`: for every Redis connection that uses TLS.
    public static func from(_ env: ProcessEnvironment) -> RedisTLS {
        RedisTLS(caFile: env.string(["RUNFEED_REDIS_TLS_CA_FILE"]), certFile: env.string(["RUNFEED_REDIS_TLS_CERT_FILE"]),
                 keyFile: env.string(["RUNFEED_REDIS_TLS_KEY_FILE"]), serverName: env.string(["RUNFEED_REDIS_TLS_SERVER_NAME"]))
    }
}
