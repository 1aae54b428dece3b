import XCTest
import RunfeedCore
@testable import RunfeedIO
@testable import RunfeedServer
#if canImport(Glibc)
import Glibc
#endif

// An in-process harness for the server's wiring: the real registries, channels and parking on a real
// event loop, with the store, the runsets, the shared views, the pub/sub client and the answering sink
// replaced by recording fakes. No socket is opened: a held poll's connection is the read end of a pipe.

/// A run row as the database would give it.
func makeRow(id: String, env: String, status: String = "EXECUTING", createdMs: Int64 = 1_700_000_000_000,
             updatedMs: Int64, tags: [String] = [], batchId: String? = nil) -> RunRow {
    var v = [String?](repeating: nil, count: RunRow.rawCount)
    v[RunColumn.id.index] = id
    v[RunColumn.friendlyId.index] = "run_" + id
    v[RunColumn.taskIdentifier.index] = "my-task"
    v[RunColumn.status.index] = status
    v[RunColumn.createdAt.index] = PGText.epochMsToTimestamp(createdMs)
    v[RunColumn.updatedAt.index] = PGText.epochMsToTimestamp(updatedMs)
    v[RunColumn.number.index] = "1"
    v[RunColumn.isTest.index] = "f"
    v[RunColumn.runTags.index] = PGText.encodeArray(tags)
    v[RunRow.envIdIndex] = env
    v[RunRow.batchIdIndex] = batchId
    return RunRow(raw: v)!
}

/// The database as the run registry sees it: each read answers at once with the row as it is now, read now.
final class FakeRunRows: RunRowSource {
    var rows: [RunKey: RunRow] = [:]
    /// Every read, in order: (environment, run, kind).
    private(set) var reads: [(envId: String, runId: String, kind: String)] = []

    private func read(_ envId: String, _ runId: String, _ kind: String) -> RunRow? {
        reads.append((envId, runId, kind))
        guard var row = rows[RunKey(envId: envId, runId: runId)] else { return nil }
        row.readAtUs = wallUs()
        return row
    }

    func readRow(envId: String, runId: String, freshAfter: Int64, demand: Demand?,
                 _ done: @escaping (Result<RunRow?, PGError>) -> Void) {
        done(.success(read(envId, runId, "fresh")))
    }

    func readRowBatched(envId: String, runId: String, freshAfter: Int64, demand: Demand?,
                        _ done: @escaping (Result<RunRow?, PGError>) -> Void) {
        done(.success(read(envId, runId, "batched")))
    }

    func readRowFromPrimary(envId: String, runId: String, demand: Demand?,
                            _ done: @escaping (Result<RunRow?, PGError>) -> Void) {
        done(.success(read(envId, runId, "primary")))
    }

    func cachedRow(envId: String, runId: String, freshAfter: Int64) -> RunRow? { nil }
}

/// Memberships and hydrates of list feeds: every row of `rows` is a member of every list asked for (the
/// registry re-checks each against its filter, as it does with real resolves).
final class FakeRunsets: RunsetSource {
    var rows: [RunRow] = []
    private(set) var resolves = 0
    private(set) var hydrates: [[String]] = []

    func runset(_ ctx: AuthContext, _ filter: ListFilter, notBeforeUs: Int64, demand: Demand?,
                _ done: @escaping (Result<Runset, RunsetFailure>) -> Void) {
        resolves += 1
        let now = wallUs()
        let members = rows.filter { $0.envId == ctx.envId && filter.contains($0) }.map { r -> RunRow in
            var r = r
            r.readAtUs = now
            return r
        }
        done(.success(Runset(rows: members, resolvedAtUs: now)))
    }

    func hydrate(envId: String, ids: [String], freshAfter: Int64, demands: QueryDemands?, fromPrimary: Bool,
                 _ done: @escaping (Result<[RunRow], RunsetFailure>) -> Void) {
        hydrates.append(ids)
        let now = wallUs()
        done(.success(ids.compactMap { id in
            rows.first { $0.id == id && $0.envId == envId }.map { r -> RunRow in
                var r = r
                r.readAtUs = now
                return r
            }
        }))
    }
}

/// The shared store of list views, in memory.
final class FakeViews: ListViewStore {
    var stored: [WorkingSetKey: (token: UInt64, view: ListView)] = [:]

    func load(envId: String, handle: String, token: UInt64, _ done: @escaping (ListView?) -> Void) {
        let s = stored[WorkingSetKey(envId: envId, handle: handle)]
        done(s?.token == token ? s?.view : nil)
    }

    func save(envId: String, handle: String, base: UInt64?, baseView: ListView?, token: UInt64, view: ListView,
              viewText: String?, _ done: @escaping (Bool) -> Void) {
        stored[WorkingSetKey(envId: envId, handle: handle)] = (token, view)
        done(true)
    }

    func touch(envId: String, handle: String) {}
}

/// A pub/sub client that confirms nothing by itself and records what is wanted.
final class FakeSubscriber: PubSubClient {
    var onMessage: ((String, String) -> Void)?
    var onSubscriptionChange: ((String, Int64?) -> Void)?
    var log: ((String) -> Void)?
    var trace: ((String) -> Void)?
    var isReady: Bool { true }
    var reconnects: Int { 0 }
    private(set) var wanted: Set<String> = []
    func start() {}
    func subscribe(_ channel: String) { wanted.insert(channel) }
    func unsubscribe(_ channel: String) { wanted.remove(channel) }
    func shutdown() {}
}

/// Records every answer instead of writing it.
final class RecordingAnswers: FeedAnswering {
    private(set) var replies: [FeedReply] = []
    private(set) var failures: [RequestError] = []
    private(set) var parkedCount = 0
    /// Called after each reply (e.g. to stop the loop).
    var onReply: (() -> Void)?

    func parked(_ conn: FastCGIConnection) { parkedCount += 1 }

    @discardableResult
    func answer(_ reply: FeedReply) -> Int {
        replies.append(reply)
        onReply?()
        return 0
    }

    func fail(_ conn: FastCGIConnection, _ error: RequestError) { failures.append(error) }
}

/// The registries of one worker wired to the fakes.
final class FeedHarness {
    let loop = EventLoop()
    let config: ServerConfig
    let subscriber = FakeSubscriber()
    let runRows = FakeRunRows()
    let runsets = FakeRunsets()
    let views = FakeViews()
    let answers = RecordingAnswers()
    let channels: EnvChannels
    let runs: RunFeedRegistry
    let lists: ListFeedRegistry
    private var pipes: [Int32] = []

    init(holdMs: Int64 = 20_000) throws {
        config = try ServerConfig.from(environment: [
            "DATABASE_URL": "postgres://harness@127.0.0.1:1/none",
            "REALTIME_BACKEND_NATIVE_LIVE_POLL_TIMEOUT_MS": String(holdMs),
            "REALTIME_BACKEND_NATIVE_LIVE_POLL_JITTER_RATIO": "0",
            "RUNFEED_CONCURRENCY_LIMIT_ENABLED": "false",
        ])
        let log = RunfeedLogger(level: .error)
        channels = EnvChannels(loop: loop, subscriber: subscriber, config: config)
        runs = RunFeedRegistry(loop: loop, channels: channels, store: runRows, answering: answers, config: config, log: log)
        lists = ListFeedRegistry(loop: loop, channels: channels, runsets: runsets, views: views, rows: runRows,
                                 answering: answers, databaseStalled: { false }, config: config)
        subscriber.onMessage = { [channels] channel, payload in channels.received(channel: channel, payload: payload) }
    }

    deinit {
        for fd in pipes { close(fd) }
    }

    /// A request's connection: the read end of a pipe (the loop watches it for the client leaving).
    func connection(path: String) -> FastCGIConnection {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        pipes.append(contentsOf: fds)
        return FastCGIConnection(fd: fds[0], requestId: 1, keepConnection: false,
                                 info: FastCGIRequestInfo(method: "GET", path: path, queryString: "live=true"))
    }

    func runRequest(env: String, runId: String) -> RunFeedRequest {
        RunFeedRequest(conn: connection(path: "/realtime/v1/runs/run_" + runId), envId: env, runId: runId,
                       columns: .all, legacyHeaderNames: false, apiVersion: nil)
    }

    func tagRequest(env: String, tags: [String], handle: String) -> ListFeedRequest {
        let ctx = AuthContext(envId: env, organizationId: "org", projectId: "proj", scopes: nil, skipColumnsClaim: nil)
        return ListFeedRequest(conn: connection(path: "/realtime/v1/runs"), ctx: ctx,
                               filter: ListFilter(kind: .tags(tags), floorMs: 0), handle: handle, columns: .all,
                               legacyHeaderNames: false, apiVersion: nil, extraHeaders: [])
    }

    /// A change record published on `env`'s channel, as the subscriber hands it over.
    func publish(on env: String, _ record: ChangeRecord) {
        subscriber.onMessage?(Channels.env(env), record.json())
    }

    /// Runs the loop until an answer arrives (or, failing that, `timeoutMs` — the test then fails on what it asserts).
    func runUntilAnswered(timeoutMs: Int64 = 10_000) {
        answers.onReply = { [loop] in loop.stop() }
        loop.schedule(afterMs: timeoutMs) { [loop] in loop.stop() }
        loop.run()
        answers.onReply = nil
    }
}
