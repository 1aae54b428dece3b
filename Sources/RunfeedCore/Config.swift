// Environment-variable helpers and Redis pub/sub settings.

/// A read-only view of environment variables with fallback chains.
public struct Environment: Sendable {
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

public struct RedisSettings: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    /// nil when no `*_TLS_DISABLED` variable is set.
    public var tlsDisabled: Bool?
    public var clusterMode: Bool
    /// `REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_SHARDED_ENABLED` (default true); only meaningful in cluster mode.
    public var shardedEnabled: Bool

    public init(host: String = "127.0.0.1", port: Int = 6379, username: String? = nil, password: String? = nil,
                tlsDisabled: Bool? = nil, clusterMode: Bool = false, shardedEnabled: Bool = true) {
        self.host = host; self.port = port; self.username = username; self.password = password
        self.tlsDisabled = tlsDisabled; self.clusterMode = clusterMode; self.shardedEnabled = shardedEnabled
    }

    /// Use SSUBSCRIBE/SPUBLISH (cluster mode with sharded pub/sub enabled).
    public var useShardedPubSub: Bool { clusterMode && shardedEnabled }

    /// TLS unless `…TLS_DISABLED` is true: upstream's default (managed Redis services require TLS).
    public var usesTLS: Bool { tlsDisabled != true }

    /// Resolves each field from `REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_*`, then `PUBSUB_REDIS_*`, then `REDIS_*`.
    public static func pubsub(from env: Environment) -> RedisSettings {
        func names(_ field: String) -> [String] {
            ["REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_" + field, "PUBSUB_REDIS_" + field, "REDIS_" + field]
        }
        var port = Int(env.int(names("PORT"), default: 6379))
        if port <= 0 || port > 65535 { port = 6379 }
        return RedisSettings(
            host: env.string(names("HOST")) ?? "127.0.0.1",
            port: port,
            username: env.string(names("USERNAME")),
            password: env.string(names("PASSWORD")),
            tlsDisabled: env.optionalBool(names("TLS_DISABLED")),
            clusterMode: env.bool(names("CLUSTER_MODE_ENABLED"), default: false),
            shardedEnabled: env.bool(["REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_SHARDED_ENABLED"], default: true))
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
    public static func from(_ env: Environment) -> RedisTLS {
        RedisTLS(caFile: env.string(["RUNFEED_REDIS_TLS_CA_FILE"]), certFile: env.string(["RUNFEED_REDIS_TLS_CERT_FILE"]),
                 keyFile: env.string(["RUNFEED_REDIS_TLS_KEY_FILE"]), serverName: env.string(["RUNFEED_REDIS_TLS_SERVER_NAME"]))
    }
}
