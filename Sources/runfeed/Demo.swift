import ArgumentParser
import RunfeedCore
import RunfeedIO
#if canImport(Glibc)
import Glibc
#endif

/// `runfeed demo`: a stand-in for trigger.dev's run engine on the demo data. Every tick it moves one
/// run tagged `--tag` one step along PENDING → DEQUEUED → EXECUTING → COMPLETED_*, restarts runs that
/// have rested in a final state, writes the row the way the webapp does (UTC timestamps, `updatedAt`
/// stamped by the writer) and publishes a full change record, so the live feeds and the demo page move.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate demo runs moving through their lifecycle, publishing a change record per move.",
        discussion: """
            Reads DATABASE_URL and the Redis settings of `publish` from the environment. With a ClickHouse \
            URL (--clickhouse-url, RUNFEED_CLICKHOUSE_URL, REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL or \
            CLICKHOUSE_URL), a restarted run's new createdAt is also written to trigger_dev.task_runs_v2, \
            standing in for replication. Writes only runs of --env that carry --tag. Never use it on real data.
            """)

    @Option(help: "Environment id (default: RUNFEED_ENV_ID, else the demo environment).")
    var env: String?

    @Option(help: "Only runs carrying this tag are moved.")
    var tag: String = "demo-set"

    @Option(help: "Milliseconds between two moves.")
    var intervalMs: Int = 1500

    @Option(help: "Stop after this many seconds (default: run until SIGINT/SIGTERM).")
    var duration: Double?

    @Option(help: "Seconds a run rests in a final state before it is restarted as PENDING.")
    var restartAfter: Double = 20

    @Option(help: "Share of executions that end COMPLETED_WITH_ERRORS (0…1).")
    var errorRate: Double = 0.25

    @Flag(inversion: .prefixedNo,
          help: "A restart also moves createdAt to now (a fresh run), so createdAt windows such as 1h never run dry.")
    var refreshCreatedAt = true

    @Option(help: "ClickHouse HTTP URL to mirror restarted runs into (default: from the environment; none: off).")
    var clickhouseUrl: String?

    func validate() throws {
        guard intervalMs >= 10 else { throw ValidationError("--interval-ms must be at least 10") }
        if let d = duration, !(d > 0 && d.isFinite) { throw ValidationError("--duration must be a positive number of seconds") }
        guard restartAfter >= 0, restartAfter.isFinite else { throw ValidationError("--restart-after must be >= 0") }
        guard (0...1).contains(errorRate) else { throw ValidationError("--error-rate must be between 0 and 1") }
        guard !tag.isEmpty else { throw ValidationError("--tag must not be empty") }
    }

    func run() throws {
        // Before anything else: SIGINT/SIGTERM/SIGHUP are taken synchronously by the waits between moves.
        ProcessSignals.blockProcessSignals()
        let environment = ProcessEnvironment(processEnvironment())
        guard let dbURL = environment.string(["DATABASE_URL"]) else {
            throw ValidationError("DATABASE_URL is not set")
        }
        let envId = env ?? environment.string(["RUNFEED_ENV_ID"]) ?? "cmdemoenv0000000000000001"
        let chURL = clickhouseUrl ?? environment.string(
            ["RUNFEED_CLICKHOUSE_URL", "REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL", "CLICKHOUSE_URL"])
        if chURL != nil { initializeCurl() }
        let redis = RedisEndpoint.pubsub(from: environment)
        var sim = DemoSimulator(
            db: PGConnection(conninfo: dbURL),
            redis: redis.makeClient(),
            publishVerb: redis.shardedPubSub ? "SPUBLISH" : "PUBLISH",
            clickhouse: chURL.map { ClickHouseMirror(url: $0) },
            envId: envId, tag: tag, restartAfterMs: Int64(restartAfter * 1000), errorRate: errorRate,
            refreshCreatedAt: refreshCreatedAt)

        let deadline = duration.map { monotonicMs() + Int64($0 * 1000) }
        say("demo: env \(envId), tag \(tag), a move every \(intervalMs) ms"
            + (duration.map { ", for \($0) s" } ?? ", until SIGINT/SIGTERM")
            + (chURL != nil && refreshCreatedAt ? ", mirroring restarts to ClickHouse" : ""))
        sim.mirrorAll()
        var moves = 0
        while true {
            if sim.step() { moves += 1 }
            var waitMs = Int64(intervalMs)
            if let deadline {
                let left = deadline - monotonicMs()
                if left <= 0 { break }
                waitMs = min(waitMs, left)
            }
            if let sig = waitForSignal(ms: waitMs) {
                say("demo: signal \(sig), stopping")
                break
            }
            if let deadline, monotonicMs() >= deadline { break }
        }
        say("demo: \(moves) move(s)")
    }
}

/// Waits up to `ms` for one of the blocked process signals; returns it, or nil on timeout.
private func waitForSignal(ms: Int64) -> Int32? {
    var set = sigset_t()
    sigemptyset(&set)
    for s in ProcessSignals.handled { sigaddset(&set, s) }
    let end = monotonicMs() + max(0, ms)
    while true {
        let left = end - monotonicMs()
        if left <= 0 { return nil }
        var ts = timespec(tv_sec: Int(left / 1000), tv_nsec: Int(left % 1000) * 1_000_000)
        let sig = sigtimedwait(&set, nil, &ts)
        if sig > 0 { return sig }
        if errno != EINTR && errno != EAGAIN { return nil }
    }
}

/// One line on stdout with a UTC timestamp, written at once (stdout is usually a log file).
private func say(_ line: String) {
    let bytes = Array((PGText.epochMsToISO8601(wallMs()) + " " + line + "\n").utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes[done...].withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
        if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { return }
    }
}

/// A run as the simulator sees it.
private struct DemoRun {
    var id: String
    var friendlyId: String
    var status: String
    var idleMs: Int64
}

/// What a move does to a run.
private enum DemoMove {
    case dequeue, execute, succeed, fail, restart

    var target: String {
        switch self {
        case .dequeue: return "DEQUEUED"
        case .execute: return "EXECUTING"
        case .succeed: return "COMPLETED_SUCCESSFULLY"
        case .fail: return "COMPLETED_WITH_ERRORS"
        case .restart: return "PENDING"
        }
    }
}

private struct DemoSimulator {
    let db: PGConnection
    let redis: RedisCommands
    let publishVerb: String
    let clickhouse: ClickHouseMirror?
    let envId: String
    let tag: String
    let restartAfterMs: Int64
    let errorRate: Double
    let refreshCreatedAt: Bool
    private var lastError = ""

    init(db: PGConnection, redis: RedisCommands, publishVerb: String, clickhouse: ClickHouseMirror?, envId: String,
         tag: String, restartAfterMs: Int64, errorRate: Double, refreshCreatedAt: Bool) {
        self.db = db; self.redis = redis; self.publishVerb = publishVerb; self.clickhouse = clickhouse
        self.envId = envId; self.tag = tag; self.restartAfterMs = restartAfterMs; self.errorRate = errorRate
        self.refreshCreatedAt = refreshCreatedAt
    }

    /// The next move for a run in `status`, or nil while a finished run is still resting.
    func move(for run: DemoRun) -> DemoMove? {
        switch run.status {
        case "PENDING": return .dequeue
        case "DEQUEUED", "WAITING_TO_RESUME", "RETRYING_AFTER_FAILURE": return .execute
        case "EXECUTING": return Double.random(in: 0..<1) < errorRate ? .fail : .succeed
        case "DELAYED", "PENDING_VERSION", "WAITING_FOR_DEPLOY", "PAUSED": return .restart
        default:
            // A final state: rest a while so the page shows it, then run again.
            return run.idleMs >= restartAfterMs ? .restart : nil
        }
    }

    /// One move of one randomly chosen run; false when nothing moved.
    mutating func step() -> Bool {
        do {
            let runs = try candidates()
            let movable = runs.compactMap { r in move(for: r).map { (r, $0) } }
            guard let (run, mv) = movable.randomElement() else {
                note(runs.isEmpty ? "demo: no runs tagged \(tag) in env \(envId) (seed the stack: scripts/stack.sh start --seed)"
                                  : "demo: every run is resting; waiting")
                return false
            }
            guard let moved = try apply(mv, to: run) else {
                say("\(run.friendlyId) changed under us; skipped")
                return false
            }
            if mv == .restart, refreshCreatedAt, let clickhouse {
                do { try clickhouse.mirror(runIds: [run.id], db: db) } catch {
                    say("demo: clickhouse mirror of \(run.friendlyId) failed: \(error)")
                }
            }
            let delivered = publish(moved)
            say("\(run.friendlyId) \(run.status) -> \(moved.status)  updatedAtMs=\(moved.updatedAtMs)  \(delivered)")
            lastError = ""
            return true
        } catch {
            note("demo: \(error)")
            return false
        }
    }

    /// Upserts every candidate into ClickHouse once at start-up (createdAt may have been refreshed by an
    /// earlier run of the simulator without ClickHouse).
    func mirrorAll() {
        guard let clickhouse, refreshCreatedAt else { return }
        do {
            let ids = try candidates().map(\.id)
            if !ids.isEmpty { try clickhouse.mirror(runIds: ids, db: db) }
        } catch {
            say("demo: clickhouse mirror failed: \(error)")
        }
    }

    /// Prints a repeated problem once, not every tick.
    private mutating func note(_ line: String) {
        if line != lastError { say(line) }
        lastError = line
    }

    private func candidates() throws -> [DemoRun] {
        let rows = try db.query("""
            SELECT "id", "friendlyId", "status"::text,
                   GREATEST(0, (extract(epoch FROM ((now() AT TIME ZONE 'utc') - "updatedAt")) * 1000))::bigint
            FROM "TaskRun"
            WHERE "runtimeEnvironmentId" = $1 AND "runTags" @> ARRAY[$2::text]
            ORDER BY "createdAt" DESC, "id" DESC
            LIMIT 200
            """, [envId, tag])
        return rows.rows.compactMap { r in
            guard r.count == 4, let id = r[0], let fid = r[1], let status = r[2] else { return nil }
            return DemoRun(id: id, friendlyId: fid, status: status, idleMs: Int64(r[3] ?? "0") ?? 0)
        }
    }

    struct Moved {
        var runId: String
        var status: String
        var tags: [String]
        var batchId: String?
        var updatedAtMs: Int64
    }

    /// Writes the move; nil when the run is no longer in the status it was read in (another writer).
    private func apply(_ mv: DemoMove, to run: DemoRun) throws -> Moved? {
        let now = "(now() AT TIME ZONE 'utc')"
        // updatedAt strictly forward: a feed only sends a row whose updatedAt moved.
        var sets = ["\"updatedAt\" = GREATEST(\(now), r.\"updatedAt\" + interval '1 millisecond')",
                    "\"status\" = $3::\"TaskRunStatus\""]
        var params: [String?] = [run.id, run.status, mv.target]
        switch mv {
        case .dequeue:
            sets.append("\"queuedAt\" = coalesce(r.\"queuedAt\", \(now))")
        case .execute:
            sets.append("\"startedAt\" = coalesce(r.\"startedAt\", \(now))")
        case .succeed, .fail:
            let usage = "GREATEST(0, LEAST(2147483647, (extract(epoch FROM (\(now) - coalesce(r.\"startedAt\", \(now)))) * 1000)::bigint))"
            sets += ["\"completedAt\" = \(now)",
                     "\"usageDurationMs\" = \(usage)::int",
                     // A demo rate of 0.05 cents per second of compute.
                     "\"costInCents\" = round((\(usage) * 0.00005)::numeric, 5)::float8",
                     "\"error\" = $4::jsonb"]
            params.append(mv == .fail ? Self.demoError() : nil)
        case .restart:
            sets += ["\"queuedAt\" = \(now)", "\"startedAt\" = NULL", "\"completedAt\" = NULL",
                     "\"expiredAt\" = NULL", "\"delayUntil\" = NULL", "\"error\" = NULL",
                     "\"usageDurationMs\" = 0", "\"costInCents\" = 0"]
            if refreshCreatedAt { sets.append("\"createdAt\" = \(now)") }
        }
        let sql = """
            UPDATE "TaskRun" AS r SET \(sets.joined(separator: ", "))
            WHERE r."id" = $1 AND r."status" = $2::"TaskRunStatus"
            RETURNING r."status"::text, array_to_json(coalesce(r."runTags", '{}'::text[]))::text, r."batchId",
                      (extract(epoch FROM r."updatedAt") * 1000)::bigint
            """
        let rows = try db.query(sql, params)
        guard let row = rows.rows.first, row.count == 4, let status = row[0] else { return nil }
        let tags = row[1].flatMap { JSONValue.parse($0)?.arrayValue?.compactMap(\.stringValue) } ?? []
        return Moved(runId: run.id, status: status, tags: tags, batchId: row[2], updatedAtMs: Int64(row[3] ?? "0") ?? 0)
    }

    /// A full change record (tags present) on the environment's channel. A failure is reported, not
    /// thrown: pub/sub is fire-and-forget and the feeds' backstop picks the change up.
    private func publish(_ moved: Moved) -> String {
        let record = ChangeRecord(v: 1, runId: moved.runId, envId: envId, tags: moved.tags, batchId: moved.batchId,
                                  updatedAtMs: moved.updatedAtMs)
        do {
            switch try redis.command([publishVerb, Channels.env(envId), record.json()]) {
            case .integer(let n): return "published to \(n) subscriber(s)"
            case .error(let e): return "publish failed: \(e)"
            default: return "published"
            }
        } catch {
            return "publish failed: \(error)"
        }
    }

    static func demoError() -> String {
        let failures = [
            ("Error", "Upstream API answered 503 (simulated failure)"),
            ("TimeoutError", "Customer sync timed out after 30s (simulated failure)"),
            ("TypeError", "Cannot read properties of undefined (reading 'email') (simulated failure)"),
        ]
        let (name, message) = failures.randomElement()!
        let stack = "\(name): \(message)\n    at run (src/trigger/demo.ts:12:11)"
        return "{\"type\":\"BUILT_IN_ERROR\",\"name\":" + JSONText.quote(name) + ",\"message\":"
            + JSONText.quote(message) + ",\"stackTrace\":" + JSONText.quote(stack) + "}"
    }
}

/// Writes runs into trigger_dev.task_runs_v2 the way scripts/clickhouse-sync.sh does (one JSONEachRow line
/// per run, `_version` = updatedAt in ms), then tombstones the run's rows under any other createdAt (it
/// is part of the sort key, so a moved createdAt is a new row). Production has replication for this.
private final class ClickHouseMirror {
    static let table = ClickHouseSQL.defaultTable
    static let columns = "environment_id, organization_id, project_id, run_id, friendly_id, batch_id, root_run_id, "
        + "tags, created_at, updated_at, _version, _is_deleted"
    let connection: ClickHouseConnection
    /// DateTime64 (production DDL) takes milliseconds; 18.16's DateTime whole seconds.
    private var millis: Bool?

    init(url: String) {
        connection = ClickHouseConnection(url: url, timeoutMs: 5000)
    }

    private func createdAtHasMillis() throws -> Bool {
        if let millis { return millis }
        let type = try connection.query("SELECT type FROM system.columns WHERE database = 'trigger_dev' "
            + "AND table = 'task_runs_v2' AND name = 'created_at' FORMAT TabSeparated")
        guard !type.isEmpty else { throw IOError("\(Self.table) does not exist") }
        let m = type.hasPrefix("DateTime64")
        millis = m
        return m
    }

    func mirror(runIds: [String], db: PGConnection) throws {
        let ms = try createdAtHasMillis()
        func stamp(_ col: String) -> String {
            "CASE WHEN $2 = '1' THEN (\(col) / 1000)::text || '.' || lpad((\(col) % 1000)::text, 3, '0') "
                + "ELSE (\(col) / 1000)::text END"
        }
        let rows = try db.query("""
            WITH src AS (
                SELECT r."id", r."friendlyId", r."runtimeEnvironmentId", r."batchId", r."runTags",
                       e."organizationId", e."projectId",
                       (extract(epoch FROM r."createdAt") * 1000)::bigint AS c_ms,
                       (extract(epoch FROM r."updatedAt") * 1000)::bigint AS u_ms
                FROM "TaskRun" r JOIN "RuntimeEnvironment" e ON e."id" = r."runtimeEnvironmentId"
                WHERE r."id" = ANY($1::text[])
            )
            SELECT json_build_object(
                'environment_id', "runtimeEnvironmentId", 'organization_id', "organizationId",
                'project_id', "projectId", 'run_id', "id", 'friendly_id', "friendlyId",
                'batch_id', coalesce("batchId", ''), 'root_run_id', '',
                'tags', coalesce(array_remove("runTags", NULL), '{}'::text[]),
                'created_at', \(stamp("c_ms")), 'updated_at', \(stamp("u_ms")),
                '_version', u_ms, '_is_deleted', 0)::text,
                "id", "runtimeEnvironmentId", (c_ms / 1000)::text
            FROM src
            """, [PGText.arrayLiteralParam(runIds), ms ? "1" : "0"])
        guard !rows.rows.isEmpty else { return }
        var lines: [String] = []
        var stale: [String] = []
        for r in rows.rows {
            guard r.count == 4, let line = r[0], let id = r[1], let env = r[2], let sec = r[3] else { continue }
            lines.append(line)
            stale.append("(environment_id = \(ClickHouseSQL.literal(env)) AND run_id = \(ClickHouseSQL.literal(id)) "
                + "AND toUnixTimestamp(created_at) != \(sec))")
        }
        _ = try connection.query("INSERT INTO \(Self.table) (\(Self.columns)) FORMAT JSONEachRow\n"
            + lines.joined(separator: "\n") + "\n")
        _ = try connection.query("INSERT INTO \(Self.table) (\(Self.columns)) SELECT environment_id, organization_id, "
            + "project_id, run_id, friendly_id, batch_id, root_run_id, tags, created_at, updated_at, _version + 1, 1 "
            + "FROM \(Self.table) FINAL WHERE _is_deleted = 0 AND (" + stale.joined(separator: " OR ") + ")")
    }
}
