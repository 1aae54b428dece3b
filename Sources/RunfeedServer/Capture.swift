import RunfeedCore
import RunfeedIO
#if canImport(Glibc)
import Glibc
#endif

/// `runfeed capture` (issue 16): streams the `"TaskRun"` changes of a logical replication slot and publishes a
/// change record for each on `realtime:env:{<envId>}`. Decisions are `ChangeCapture`'s; this class runs them on
/// one OS thread of its own (libpq and the Redis client block; nothing here runs on Swift's pool).
public final class CaptureService: @unchecked Sendable {
    public enum State: String, Sendable { case connecting, standby, active }

    /// What /metrics and /healthz report, written by the capture thread and read by the status thread.
    struct Snapshot {
        var state: State = .connecting
        var redisUp = true
        var lagBytes: UInt64 = 0
        var lagSeconds: Double = 0
        var backlog = 0
        var confirmed: LSN = .zero
        var counters = ChangeCapture.Counters()
        var reconnects: Int64 = 0
        var redisFailures: Int64 = 0
        var standbyRetries: Int64 = 0
    }

    /// A fatal configuration problem: the process exits with status 2.
    public struct Fatal: Error, CustomStringConvertible { public var description: String }

    private let config: CaptureConfig
    private let makeRedis: () -> RedisCommands
    private let publishVerb: String
    private let log: (String, Bool) -> Void
    private let snapshot = Lock(Snapshot())
    private var capture: ChangeCapture

    /// `log(message, isError)`.
    public init(config: CaptureConfig, publishVerb: String, makeRedis: @escaping () -> RedisCommands,
                log: @escaping (String, Bool) -> Void) {
        self.config = config
        self.publishVerb = publishVerb
        self.makeRedis = makeRedis
        self.log = log
        capture = ChangeCapture(settings: ChangeCaptureSettings(maxBacklog: config.maxBacklog))
    }

    private func update(_ body: (inout Snapshot) -> Void) {
        snapshot.withLock(body)
    }

    private func read() -> Snapshot {
        snapshot.withLock { $0 }
    }

    // MARK: status listener

    /// Serves /metrics and /healthz on `address` from an event loop on its own thread.
    public func startStatus(address: String) throws {
        let loop = EventLoop()
        let server = try StatusHTTPServer(loop: loop, address: address) { [weak self] _, path, respond in
            guard let self else { return respond(503, "text/plain", "gone\n") }
            let s = self.read()
            switch path {
            case "/metrics":
                respond(200, "text/plain; version=0.0.4", Self.metricsText(s))
            case "/healthz":
                let ok = s.state != .active || s.redisUp
                respond(ok ? 200 : 503, "application/json",
                        "{\"status\":\"\(ok ? "ok" : "degraded")\",\"state\":\"\(s.state.rawValue)\",\"redis\":\"\(s.redisUp ? "up" : "down")\",\"lagBytes\":\(s.lagBytes)}\n")
            default:
                respond(404, "text/plain", "not found\n")
            }
        }
        let box = UncheckedBox((loop, server))
        startThread(name: "capture-status") {
            let (loop, server) = box.value
            server.start()
            loop.run()
        }
    }

    static func metricsText(_ s: Snapshot) -> String {
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ value: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        metric("runfeed_capture_active", "gauge", "1 while this process streams the slot, 0 while it stands by or connects.",
               s.state == .active ? "1" : "0")
        metric("runfeed_capture_redis_up", "gauge", "0 after a failed publish until one succeeds.", s.redisUp ? "1" : "0")
        metric("runfeed_capture_lag_bytes", "gauge", "WAL the slot holds beyond its confirmed position (pg_current_wal_lsn - confirmed_flush_lsn).",
               String(s.lagBytes))
        metric("runfeed_capture_lag_seconds", "gauge", "Age of the oldest committed change not yet published (0 when none waits).",
               JSNumber.format(s.lagSeconds))
        metric("runfeed_capture_backlog_records", "gauge", "Change records read and not yet published.", String(s.backlog))
        metric("runfeed_capture_confirmed_lsn_bytes", "gauge", "The slot position this process confirmed, as a byte offset.",
               String(s.confirmed.value))
        metric("runfeed_capture_transactions_total", "counter", "Committed transactions read from the stream.", String(s.counters.transactions))
        metric("runfeed_capture_changes_total", "counter", "Row changes of the captured table read from the stream.", String(s.counters.changes))
        metric("runfeed_capture_records_published_total", "counter", "Change records published to Redis.", String(s.counters.published))
        metric("runfeed_capture_changes_skipped_total", "counter", "Changes without an environment id (a DELETE without REPLICA IDENTITY FULL).",
               String(s.counters.skipped))
        metric("runfeed_capture_truncates_total", "counter", "TRUNCATEs of the captured table (no record: no run ids).", String(s.counters.truncates))
        metric("runfeed_capture_reconnects_total", "counter", "Replication streams started again after an error.", String(s.reconnects))
        metric("runfeed_capture_redis_failures_total", "counter", "Failed publish rounds (retried).", String(s.redisFailures))
        metric("runfeed_capture_standby_retries_total", "counter", "Attempts to take the slot while another consumer held it.",
               String(s.standbyRetries))
        return out
    }

    // MARK: main loop

    /// Runs until a fatal configuration error (thrown); every other failure is retried.
    public func run() throws {
        var attempt = 0
        var wasStandby = false
        while true {
            do {
                try stream(onActive: { attempt = 0; wasStandby = false })
                attempt = 0
            } catch let f as Fatal {
                throw f
            } catch let e as PGError where e.sqlState == "55006" {
                // The slot is active for another process: stand by.
                if !wasStandby { log("capture: slot \(config.slot) is in use by another consumer; standing by", false) }
                wasStandby = true
                update { $0.state = .standby; $0.standbyRetries += 1 }
            } catch {
                log("capture: \(error); retrying", true)
                update { $0.state = .connecting; $0.reconnects += 1 }
            }
            let delay = config.retryDelayMs(attempt: attempt)
            attempt += 1
            // Up to 25 % jitter so standbys do not retry in lockstep.
            let jitter = Int64.random(in: 0...max(1, delay / 4))
            usleep(UInt32(min(600_000, delay + jitter)) * 1000)
        }
    }

    /// Ensures the publication (the SQL is logged and the process exits 2 when the role may not create it).
    private func ensurePublication(_ db: PGConnection) throws {
        let rows = try db.query("SELECT 1 FROM pg_publication WHERE pubname = $1", [config.publication])
        if !rows.rows.isEmpty { return }
        do {
            _ = try db.query(config.publicationStatement, [])
            log("capture: created publication \(config.publication)", false)
        } catch let e as PGError where e.sqlState == "42710" {
            return  // created meanwhile by another capturer
        } catch let e as PGError where e.sqlState == "42501" || e.sqlState == "42P01" {
            throw Fatal(description: "cannot create publication \(config.publication) (\(e.description)); an operator must run, as the table owner:\n  \(config.publicationSQL)")
        }
    }

    private func slotPosition(_ db: PGConnection) throws -> (exists: Bool, confirmed: LSN, plugin: String?) {
        let r = try db.query("SELECT confirmed_flush_lsn::text, plugin::text FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()",
                             [config.slot])
        guard let row = r.rows.first else { return (false, .zero, nil) }
        return (true, row[0].flatMap(LSN.init(text:)) ?? .zero, row[1])
    }

    private func stream(onActive: () -> Void) throws {
        let db = PGConnection(conninfo: config.databaseURL, statementTimeoutMs: 5000)
        defer { db.close() }
        try ensurePublication(db)
        let repl = try ReplicationConnection(databaseURL: config.databaseURL)
        defer { repl.close() }
        var slot = try slotPosition(db)
        if !slot.exists {
            do {
                try repl.command("CREATE_REPLICATION_SLOT \(PGText.quoteIdentifier(config.slot)) LOGICAL pgoutput NOEXPORT_SNAPSHOT")
                log("capture: created logical replication slot \(config.slot) (pgoutput)", false)
            } catch let e as PGError where e.sqlState == "42710" {
                // Another capturer created it first.
            } catch let e as PGError where e.sqlState == "42501" {
                throw Fatal(description: "cannot create replication slot \(config.slot) (\(e.description)): the role needs REPLICATION")
            }
            slot = try slotPosition(db)
        } else if let plugin = slot.plugin, plugin != "pgoutput" {
            throw Fatal(description: "replication slot \(config.slot) uses plugin \(plugin), not pgoutput: drop it or choose another RUNFEED_CAPTURE_SLOT")
        }
        capture.restart(at: slot.confirmed)
        try repl.startReplication(slot: config.slot, publication: config.publication, from: capture.confirmed)
        onActive()
        log("capture: streaming slot \(config.slot) from \(capture.confirmed) (publication \(config.publication))", false)
        update { $0.state = .active }

        var redis = makeRedis()
        var redisRetryAtUs: Int64 = 0
        var redisUp = true
        var lagQueryAtUs: Int64 = 0
        var serverLag: UInt64?
        while true {
            // 1. Read what the server sent (a burst without waiting; wait only when there is nothing else to do).
            if capture.wantsData {
                let busy = capture.backlog > 0 && monotonicUs() >= redisRetryAtUs
                var frames = 0
                var timeout: Int32 = busy ? 0 : 100
                readLoop: while capture.wantsData, frames < 10_000 {
                    switch try repl.read(timeoutMs: timeout) {
                    case .frame(let bytes):
                        try capture.receive(frame: bytes)
                        frames += 1
                        timeout = 0
                    case .idle:
                        break readLoop
                    case .ended:
                        throw PGError(.connection, "the server ended the replication stream")
                    }
                }
            } else {
                usleep(20_000)  // backlog full: Redis is not taking records; the server waits for us
            }

            // 2. Publish what waits.
            let now = monotonicUs()
            if capture.backlog > 0, now >= redisRetryAtUs {
                let batch = capture.pending(max: config.publishBatch)
                do {
                    let replies = try redis.pipeline(batch.map { [publishVerb, Channels.env($0.envId), $0.json()] })
                    if let bad = replies.first(where: { if case .error = $0 { return true } else { return false } }) {
                        throw IOError("redis: \(bad)")
                    }
                    capture.published(batch.count)
                    if !redisUp { log("capture: redis is back; publishing the backlog (\(capture.backlog + batch.count) records)", false) }
                    redisUp = true
                } catch {
                    if redisUp { log("capture: publish failed (\(error)); not confirming, retrying", true) }
                    redisUp = false
                    redisRetryAtUs = now + 500_000
                    redis = makeRedis()
                    update { $0.redisFailures += 1 }
                }
            }

            // 3. Tell the server what may be released.
            if capture.statusDue(nowUs: now) {
                try repl.send(capture.statusUpdate(nowUs: now, clockUs: PGEpoch.fromUnixUs(wallUs())))
            }

            // 4. Lag as the server sees it, every 2 s (on the plain connection; a failure only skips a sample).
            if now >= lagQueryAtUs {
                lagQueryAtUs = now + 2_000_000
                if let r = try? db.query("SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
                                         [config.slot]),
                   let cell = r.rows.first?.first, let text = cell, let v = Int64(text) {
                    serverLag = UInt64(max(0, v))
                }
            }
            let c = capture
            let lagSeconds = c.oldestUnpublishedCommitUs.map { max(0, Double(wallMs() - PGEpoch.toUnixMs($0)) / 1000) } ?? 0
            let up = redisUp
            update {
                $0.state = .active
                $0.redisUp = up
                $0.lagBytes = serverLag ?? c.lagBytes
                $0.lagSeconds = lagSeconds
                $0.backlog = c.backlog
                $0.confirmed = c.confirmed
                $0.counters = c.counters
            }
        }
    }
}

struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
