import ArgumentParser
import RunfeedCore
import RunfeedIO
import RunfeedServer
#if canImport(Glibc)
import Glibc
#endif

@main
struct Runfeed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runfeed",
        abstract: "trigger.dev's realtime runs feed as FastCGI workers behind nginx.",
        version: "\(BuildInfo.version) (revision \(BuildInfo.revision))",
        subcommands: [Serve.self, Publish.self, Token.self, Demo.self, Capture.self]
    )
}

/// The process environment as a dictionary.
func processEnvironment() -> [String: String] {
    var out: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
        p += 1
    }
    return out
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run one FastCGI worker.")

    @Option(help: "Unix socket path (/run/runfeed/w1.sock) or TCP address (127.0.0.1:9000).")
    var listen: String?

    @Option(help: "Live-poll hold in ms (default: REALTIME_BACKEND_NATIVE_LIVE_POLL_TIMEOUT_MS or 20000).")
    var holdMs: Int64?

    @Option(help: "Log level: trace, debug, info, warning, error (default: RUNFEED_LOG_LEVEL or info).")
    var logLevel: String?

    @Option(help: "Log format: text or json, one line per event (default: RUNFEED_LOG_FORMAT or text).")
    var logFormat: String?

    @Option(help: "host:port for this worker's /metrics and /healthz (default: RUNFEED_METRICS_LISTEN; none). In a pool, worker i listens on port + i.")
    var metricsListen: String?

    @Option(help: "Worker processes sharing the socket under a supervisor (default: the number of cores). 0: serve in this process, no supervisor.")
    var workers: Int?

    @Option(help: "Serve on this inherited listening socket instead of --listen (systemd: 3; spawn-fcgi: 0). Found automatically from LISTEN_FDS, or on fd 0 when it is a listening socket.")
    var listenFd: Int32?

    @Option(help: .hidden) var readyFd: Int32?
    @Option(help: .hidden) var workerIndex: Int?

    func run() throws {
        // Before any thread exists: SIGTERM/SIGINT/SIGHUP go to the event loop's signalfd.
        ProcessSignals.blockProcessSignals()
        raiseOpenFileLimit()
        initializeCurl()
        var env = processEnvironment()
        if let listen { env["RUNFEED_LISTEN"] = listen }
        if let holdMs { env["REALTIME_BACKEND_NATIVE_LIVE_POLL_TIMEOUT_MS"] = String(holdMs) }
        if let logLevel { env["RUNFEED_LOG_LEVEL"] = logLevel }
        if let logFormat { env["RUNFEED_LOG_FORMAT"] = logFormat }
        if let metricsListen { env["RUNFEED_METRICS_LISTEN"] = metricsListen }
        let config: ServerConfig
        do {
            config = try ServerConfig.from(environment: env)
        } catch {
            throw ValidationError("\(error)")
        }
        let log = RunfeedLogger(level: config.logLevel, format: config.logFormat)
        if workerIndex != nil, !dieWithParent(SIGTERM) {
            throw ValidationError("supervisor gone before the worker started")
        }
        let inherited = listenFd ?? Self.inheritedSocket(env)
        let poolSize = workers ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        if poolSize <= 0 || workerIndex != nil {
            let server = Server(config: config, log: log)
            if let fd = inherited {
                try server.run(inheritedFd: fd, readyFd: readyFd)
            } else {
                try server.run()
            }
            return
        }
        // Supervisor: no threads here; workers are fresh processes that inherit the socket.
        let fd = try inherited ?? openFastCGISocket(config.listen)
        var args = ["serve", "--workers", "0"]
        if let holdMs { args += ["--hold-ms", String(holdMs)] }
        if let logLevel { args += ["--log-level", logLevel] }
        if let logFormat { args += ["--log-format", logFormat] }
        let metricsBase = config.metricsListen.flatMap(Self.splitHostPort)
        let options = Supervisor.Options(workers: poolSize, drainTimeoutMs: config.drainTimeoutMs) { index in
            guard let (host, port) = metricsBase else { return args }
            return args + ["--metrics-listen", "\(host):\(port + index)"]
        }
        let supervisor = Supervisor(listenFd: fd, options: options) { log.info($0) }
        Glibc.exit(supervisor.run())
    }

    /// systemd socket activation (LISTEN_FDS for this pid: fd 3), or spawn-fcgi's fd 0.
    static func inheritedSocket(_ env: [String: String]) -> Int32? {
        if let n = env["LISTEN_FDS"].flatMap(Int.init), n >= 1,
           env["LISTEN_PID"].flatMap(Int32.init) == getpid(), isListeningSocket(3) {
            return 3
        }
        if env["RUNFEED_LISTEN"] == nil, isListeningSocket(0) { return 0 }
        return nil
    }

    static func splitHostPort(_ s: String) -> (String, Int)? {
        guard let c = s.lastIndex(of: ":"), let p = Int(s[s.index(after: c)...]) else { return nil }
        return (String(s[..<c]), p)
    }
}

struct Publish: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a run change record on realtime:env:{<env>} (wakes the live polls of that run).")

    @Option(help: "Environment id (RuntimeEnvironment.id).")
    var env: String

    @Option(name: .customLong("run"), help: "Internal run id (TaskRun.id).")
    var runId: String

    @Option(help: "The run's tags, comma-separated; given (even empty) makes a full record, omitted a partial one.")
    var tags: String?

    @Option(help: "Internal batch id.")
    var batch: String?

    @Option(help: "The run's committed updatedAt in epoch ms.")
    var updatedAtMs: Int64?

    @Flag(help: "Publish the bare run id instead of a JSON record (the early format).")
    var bare = false

    func run() throws {
        let environment = ProcessEnvironment(processEnvironment())
        let redis = RedisEndpoint.pubsub(from: environment)
        let record = ChangeRecord(v: 1, runId: runId, envId: env,
                                  tags: tags.map { $0.isEmpty ? [] : $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) },
                                  batchId: batch, updatedAtMs: updatedAtMs)
        let client = redis.makeClient()
        // The worker's rule: sharded pub/sub only in cluster mode with …_SHARDED_ENABLED (default 1).
        let verb = redis.shardedPubSub ? "SPUBLISH" : "PUBLISH"
        let reply = try client.command([verb, Channels.env(env), bare ? runId : record.json()])
        switch reply {
        case .integer(let n):
            print("published to \(Channels.env(env)): \(n) subscriber(s)")
        case .error(let e):
            throw ValidationError("redis: \(e)")
        default:
            print("published to \(Channels.env(env))")
        }
    }
}

struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mint a public access token (HS256 JWT) for an environment, as the SDK's auth.createPublicToken does.")

    @Option(help: "Environment id (the token's sub).")
    var env: String

    @Option(help: "The environment's secret API key (signing key).")
    var key: String

    @Option(help: "Scopes, comma-separated (read:runs:run_123,read:tags:user:42).")
    var scopes: String = "read:runs"

    @Option(help: "Lifetime in seconds.")
    var ttl: Int64 = 900

    @Option(help: "realtime.skipColumns claim, comma-separated.")
    var skipColumns: String?

    func run() throws {
        let now = wallMs() / 1000
        let scopeList = scopes.split(separator: ",").map { JSONText.quote(String($0)) }.joined(separator: ",")
        var payload = "{\"sub\":\(JSONText.quote(env)),\"pub\":true,\"scopes\":[\(scopeList)]"
        if let skipColumns {
            payload += ",\"realtime\":{\"skipColumns\":\(JSONText.array(skipColumns.split(separator: ",").map(String.init)))}"
        }
        payload += ",\"iat\":\(now),\"exp\":\(now + ttl),\"iss\":\"https://id.trigger.dev\",\"aud\":\"https://api.trigger.dev\"}"
        print(JWT.sign(payloadJSON: payload, key: Array(key.utf8)))
    }
}
