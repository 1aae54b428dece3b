import ArgumentParser
import RunfeedCore
import RunfeedIO
import RunfeedServer
#if canImport(Glibc)
import Glibc
#endif

struct Capture: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a change record for every committed change of \"TaskRun\", read from a logical replication slot (pgoutput).",
        discussion: """
        Settings from the environment: DATABASE_URL (or RUNFEED_CAPTURE_DATABASE_URL; a role with REPLICATION), \
        the Redis settings of the workers, RUNFEED_CAPTURE_SLOT / RUNFEED_CAPTURE_PUBLICATION (default runfeed_capture), \
        RUNFEED_CAPTURE_METRICS_PORT or RUNFEED_CAPTURE_METRICS_LISTEN (/metrics, /healthz), RUNFEED_CAPTURE_MAX_BACKLOG. \
        One process streams a slot; others stand by and take over when it stops. See docs/OPERATIONS.md, "Change capture".
        """)

    @Option(help: "Log level: debug, info, warning, error (default: RUNFEED_LOG_LEVEL or info).")
    var logLevel: String?

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let dict = processEnvironment()
        let config: CaptureConfig
        do { config = try CaptureConfig.from(environment: dict) } catch { throw ValidationError("\(error)") }
        let endpoint = RedisEndpoint.pubsub(from: ProcessEnvironment(dict))
        let level = LogLevel(rawValue: logLevel ?? dict["RUNFEED_LOG_LEVEL"] ?? "info") ?? .info
        let format = LogFormat(rawValue: dict["RUNFEED_LOG_FORMAT"] ?? "text") ?? .text
        let log = RunfeedLogger(level: level, format: format)
        let service = CaptureService(config: config, publishVerb: endpoint.shardedPubSub ? "SPUBLISH" : "PUBLISH",
                                     makeRedis: { endpoint.makeClient() },
                                     log: { message, isError in isError ? log.error(message) : log.info(message) })
        if let address = config.metricsListen {
            do { try service.startStatus(address: address) } catch { throw ValidationError("\(error)") }
        }
        log.info("capture: slot \(config.slot), publication \(config.publication), redis \(endpoint.description)")
        do {
            try service.run()
        } catch {
            log.error("capture: \(error)")
            Glibc.exit(2)
        }
    }
}
