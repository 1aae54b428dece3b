import RunfeedLoadCore
import CPostgres
import RunfeedCore
import RunfeedIO
#if canImport(Glibc)
import Glibc
#endif

/// The database-load baseline: every subscriber re-reads its run from Postgres once a second (what an
/// app polling `runs.retrieve` would cause), over a small pool of non-blocking libpq connections.
/// Subscriber i's reads are due at start + i·(1000/K) ms + n·1000 ms, spread evenly over each second.
struct NaiveSettings {
    var databaseURL: String
    var runs: [(id: String, env: String)]
    var subscribers: Int
    var connections: Int
    var durationS: Int
}

final class NaivePoller {
    private let settings: NaiveSettings
    private let loop = EventLoop()
    private let log = EventLog()
    private var conns: [OpaquePointer] = []
    private var busy: [Bool] = []
    private var dueOf: [Int64] = []
    private var queue: [(subscriber: Int, dueUs: Int64)] = []
    private var queueHead = 0
    private var released = 0
    private var startUs: Int64 = 0
    private var latencies = Samples()
    private var failures = 0
    private var maxBacklog = 0
    private var stopping = false
    private let sql = "SELECT \(PostgresListSQL.rowColumns) FROM \"TaskRun\" WHERE \"id\" = $1 AND \"runtimeEnvironmentId\" = $2 LIMIT 1"

    init(settings: NaiveSettings) { self.settings = settings }

    func run() throws {
        for _ in 0..<settings.connections {
            guard let c = PQconnectdb(settings.databaseURL), PQstatus(c) == CONNECTION_OK else {
                throw LoadError.usage("naive: cannot connect to Postgres")
            }
            PQsetnonblocking(c, 1)
            conns.append(c)
        }
        busy = Array(repeating: false, count: conns.count)
        dueOf = Array(repeating: 0, count: conns.count)
        for (i, c) in conns.enumerated() {
            loop.watch(fd: PQsocket(c), events: EV_IN) { [unowned self] ev in onReadable(i, ev) }
        }
        startUs = monotonicUs()
        func tick() {
            release()
            dispatch()
            if !stopping { loop.schedule(afterMs: 2, tick) }
        }
        tick()
        func status() {
            log.line("H \(monotonicUs()) done=\(latencies.count) backlog=\(queue.count - queueHead) failures=\(failures)")
            log.flush()
            loop.schedule(afterMs: 1000, status)
        }
        loop.schedule(afterMs: 1000, status)
        loop.schedule(afterMs: Int64(settings.durationS) * 1000) { [self] in stopping = true; loop.stop() }
        loop.run()
        let secs = Double(monotonicUs() - startUs) / 1e6
        log.line("NAIVE subscribers=\(settings.subscribers) connections=\(conns.count) seconds=\(fixed(secs, 3)) queries=\(latencies.count) qps=\(fixed(Double(latencies.count) / secs, 1)) due_to_done_p50_us=\(latencies.percentile(50)) p99_us=\(latencies.percentile(99)) max_backlog=\(maxBacklog) failures=\(failures)")
        log.flush()
        for c in conns { PQfinish(c) }
    }

    /// Queues every read that has come due.
    private func release() {
        let now = monotonicUs()
        let k = Int64(settings.subscribers)
        while true {
            let due = startUs + Int64(released) * 1_000_000 / k
            if due > now { break }
            queue.append((released % settings.subscribers, due))
            released += 1
        }
        maxBacklog = max(maxBacklog, queue.count - queueHead)
        if queueHead > 4096 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
    }

    private func dispatch() {
        for i in conns.indices where !busy[i] {
            guard queueHead < queue.count else { return }
            let item = queue[queueHead]
            queueHead += 1
            let run = settings.runs[item.subscriber % settings.runs.count]
            let ok = run.id.withCString { idp in
                run.env.withCString { envp in
                    var params: [UnsafePointer<CChar>?] = [idp, envp]
                    return PQsendQueryParams(conns[i], sql, 2, nil, &params, nil, nil, 0)
                }
            }
            if ok != 1 { failures += 1; continue }
            busy[i] = true
            dueOf[i] = item.dueUs
            if PQflush(conns[i]) == 1 { loop.modify(fd: PQsocket(conns[i]), events: EV_IN | EV_OUT) }
        }
    }

    private func onReadable(_ i: Int, _ ev: UInt32) {
        let c = conns[i]
        if ev & EV_OUT != 0, PQflush(c) == 0 { loop.modify(fd: PQsocket(c), events: EV_IN) }
        guard ev & EV_IN != 0 else { return }
        if PQconsumeInput(c) == 0 { failures += 1; return }
        while busy[i] && PQisBusy(c) == 0 {
            guard let res = PQgetResult(c) else {
                busy[i] = false
                latencies.add(monotonicUs() - dueOf[i])
                break
            }
            if PQresultStatus(res) != PGRES_TUPLES_OK { failures += 1 }
            PQclear(res)
        }
        if !busy[i] { dispatch() }
    }
}
