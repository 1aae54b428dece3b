import RunfeedCore
import RunfeedIO

/// The Postgres pool as seen from the event loop: queries run on the pool's threads, completions
/// come back on the loop thread.
final class LoopDatabase: @unchecked Sendable {
    let pool: PostgresPool
    let loop: EventLoop
    let log: Logger

    init(pool: PostgresPool, loop: EventLoop, log: Logger) {
        self.pool = pool
        self.loop = loop
        self.log = log
    }

    func query(_ sql: String, _ params: [String?], _ done: @escaping (Result<PGRows, PGError>) -> Void) {
        let box = LoopBox(done)
        let started = monotonicUs()
        pool.query(sql, params) { [loop, log] result in
            if case .failure(let e) = result { log.error("postgres query failed: \(e.description)") }
            loop.execute {
                // Time from submitting the statement to its result reaching the loop.
                WorkerMetrics.shared.postgresLatency.record(Double(monotonicUs() - started) / 1e6)
                WorkerMetrics.shared.postgresQueries.increment()
                if case .failure = result { WorkerMetrics.shared.postgresErrors.increment() }
                box.value(result)
            }
        }
    }
}

extension LoopDatabase {
    /// Full rows of up to 1,000 runs of one environment by id, in one `id = ANY(…)` query (tag and
    /// batch hydrates, batched backstop reads).
    func readRuns(envId: String, ids: [String], _ done: @escaping (Result<[String: RunRow], PGError>) -> Void) {
        let q = PostgresListSQL.hydrate(envId: envId, runIds: ids, columns: .all)
        query(q.sql, q.params) { result in
            done(result.map { got in
                var byId: [String: RunRow] = [:]
                // Read times from the database server's clock (one clock for every host).
                for values in got.rows {
                    if let r = RunRow(read: values, fallbackReadAtUs: got.startedAtUs) { byId[r.id] = r }
                }
                return byId
            })
        }
    }

    /// `ids` in slices of at most 1,000, the most one `readRuns` query takes.
    static func chunks(_ ids: [String]) -> [[String]] {
        stride(from: 0, to: ids.count, by: 1000).map { Array(ids[$0..<min($0 + 1000, ids.count)]) }
    }
}

/// Carries a loop-confined value through another thread and back. Only touched on the loop.
final class LoopBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
