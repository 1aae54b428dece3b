import RunfeedCore
import RunfeedIO

/// One run-feed request after auth and lookup: everything needed to answer it.
final class RunFeedRequest {
    let conn: FastCGIConnection
    let envId: String
    let runId: String
    /// The request's database deadline until it is held (then dropped: a held poll has its own).
    var demand: Demand?
    let columns: ColumnSet
    let legacyHeaderNames: Bool
    let apiVersion: String?
    var handle: String { "run-" + runId }

    init(conn: FastCGIConnection, envId: String, runId: String, demand: Demand? = nil, columns: ColumnSet,
         legacyHeaderNames: Bool, apiVersion: String?) {
        self.conn = conn
        self.demand = demand
        self.envId = envId
        self.runId = runId
        self.columns = columns
        self.legacyHeaderNames = legacyHeaderNames
        self.apiVersion = apiVersion
    }

    /// The answer with `rows` (then `up-to-date`) at `offset`.
    func reply(rows: [(RunRow, ChangeOperation)], offset: Offset, live: Bool) -> FeedReply {
        FeedReply(conn: conn, handle: handle, offset: offset, columns: columns, legacyHeaderNames: legacyHeaderNames,
                  apiVersion: apiVersion, rows: rows, live: live)
    }

    /// The answer to a live poll: the row if the client does not hold it, else `up-to-date` with the client's
    /// view (its basis moved to `readBasisMs` when a read confirmed it).
    func liveReply(offset: Offset, row: RunRow?, readBasisMs: Int64?) -> FeedReply {
        let view = RunClientView(offset)
        if let row, view.isNew(updatedAtMs: row.updatedAtMs, digest: row.digest) {
            return reply(rows: [(row, .update)],
                         offset: Offset(updatedAtMs: row.updatedAtMs, tail: row.readAtUs / 1000, token: row.digest), live: true)
        }
        return reply(rows: [], offset: Offset(updatedAtMs: offset.updatedAtMs, tail: readBasisMs ?? offset.basisMs, token: view.token),
                     live: true)
    }
}

/// A parked live poll of one run.
final class LiveRunFeed {
    let id: UInt64
    let request: RunFeedRequest
    /// The client's offset: what it holds and when that was read.
    let offset: Offset
    var machine: RunFeedPoll
    let parking: PollParking
    /// The row the last read found, if any. Boxed: a `RunRow` is ~150 bytes inline, and most held polls have
    /// read nothing yet.
    var lastRow: RunRow? {
        get { lastRowBox?.row }
        set { lastRowBox = newValue.map(RowBox.init) }
    }
    private var lastRowBox: RowBox?

    private final class RowBox {
        let row: RunRow
        init(_ row: RunRow) { self.row = row }
    }
    /// When the last read of this poll started (database clock, ms), if it found a row.
    var lastReadBasisMs: Int64?
    /// The newest `updatedAtMs` of the change records that woke this poll: a replica row older than that is
    /// read again on the primary (`ReplicaStaleness`).
    var recordUpdatedAtMs: Int64?
    /// The read in flight (or the last one) was started by the hold deadline, not by a change record.
    var readIsBackstop = false

    init(id: UInt64, request: RunFeedRequest, offset: Offset, machine: RunFeedPoll, parking: PollParking) {
        self.id = id
        self.request = request
        self.offset = offset
        self.machine = machine
        self.parking = parking
    }
}

/// The worker's held live polls of single runs, indexed by environment and run. A change record wakes
/// only the feeds of its run; the row read is shared by all of them (the run store single-flights it).
final class RunFeedRegistry {
    private let loop: EventLoop
    private let channels: EnvChannels
    private let store: RunRowSource
    private let answering: FeedAnswering
    private let config: ServerConfig
    private let log: RunfeedLogger

    private var feeds: [UInt64: LiveRunFeed] = [:]
    private var byRun: [RunKey: Set<UInt64>] = [:]
    private var byEnv: [String: Set<UInt64>] = [:]
    private var nextId: UInt64 = 1

    init(loop: EventLoop, channels: EnvChannels, store: RunRowSource, answering: FeedAnswering, config: ServerConfig,
         log: RunfeedLogger) {
        self.loop = loop
        self.channels = channels
        self.store = store
        self.answering = answering
        self.config = config
        self.log = log
        channels.onRecord.append { [weak self] env, record in self?.received(env: env, record: record) }
        channels.onResubscribed.append { [weak self] env in self?.wakeAll(env: env) }
    }

    var count: Int { feeds.count }

    // MARK: feeds

    func startLive(_ request: RunFeedRequest, offset: Offset) {
        // Answered meanwhile (its deadline passed, its client left): its socket is no longer ours.
        guard !request.conn.isAnswered else { return }
        answering.parked(request.conn)
        request.demand = nil
        let env = request.envId
        let parking = PollParking(loop: loop, channels: channels, envId: env, fd: request.conn.fd)
        parking.retainChannel()
        let covered = channels.covers(env, sinceMs: offset.tail)
        let freshAfter = channels.gapReadFreshAfter(env, runId: request.runId, sinceMs: offset.tail, covered: covered,
                                                    nowUs: monotonicUs())
        let feed = LiveRunFeed(id: nextId, request: request, offset: offset,
                               machine: RunFeedPoll(view: RunClientView(offset), needsGapRead: freshAfter != nil),
                               parking: parking)
        nextId += 1
        feeds[feed.id] = feed
        byRun[RunKey(envId: env, runId: request.runId), default: []].insert(feed.id)
        byEnv[env, default: []].insert(feed.id)

        parking.arm(config, onDeadline: { [weak self] in self?.event(feed, .deadline) },
                    onGone: { [weak self] in self?.event(feed, .aborted) })
        act(feed, feed.machine.start(), freshAfter: freshAfter ?? monotonicUs())
    }

    /// Whether `row`, which the client does not hold, may be sent as it is: only if it was read after the
    /// read behind the client's view (both times from the database server's clock, the basis in whole ms).
    /// An older read (a cached row, a read in flight) could show an older version than the one the client
    /// holds; such a row is confirmed by a read started now before anything is sent.
    private func readAfterClientsView(_ feed: LiveRunFeed, _ row: RunRow) -> Bool {
        row.readAtUs > feed.offset.basisMs * 1000 + 999
    }

    /// `notifiedAt`: for `.notified`, when the record arrived (monotonic µs); every read that started
    /// after it will do, so all the feeds one record wakes share one read.
    private func event(_ feed: LiveRunFeed, _ e: RunFeedEvent, notifiedAt: Int64? = nil, recordUpdatedAtMs: Int64? = nil) {
        guard feeds[feed.id] != nil else { return }
        switch e {
        case .deadline: WorkerMetrics.shared.runBackstop.increment()
        case .aborted:
            feed.request.conn.clientGone = true
            WorkerMetrics.shared.runAbort.increment()
            log.debug("live poll aborted by client run=\(feed.request.runId) held=\(feeds.count - 1)")
        case .notified:
            WorkerMetrics.shared.runNotify.increment()
            if let u = recordUpdatedAtMs { feed.recordUpdatedAtMs = max(feed.recordUpdatedAtMs ?? u, u) }
        default: break
        }
        let freshAfter = e == .notified ? (notifiedAt ?? monotonicUs()) : monotonicUs() - config.runCacheTtlMs * 1000
        act(feed, feed.machine.handle(e), freshAfter: freshAfter)
    }

    private func act(_ feed: LiveRunFeed, _ action: RunFeedAction, freshAfter: Int64) {
        switch action {
        case .hold, .finishSilently:
            return
        case .readRow:
            let r = feed.request
            feed.readIsBackstop = feed.machine.state == .reading(.backstop)
            let read = feed.readIsBackstop ? store.readRowBatched : store.readRow
            read(r.envId, r.runId, freshAfter, feed.parking.demand) { [weak self, store] result in
                guard let self, self.feeds[feed.id] != nil else { return }
                if case .success(let row?) = result,
                   feed.machine.view.isNew(updatedAtMs: row.updatedAtMs, digest: row.digest),
                   !self.readAfterClientsView(feed, row) {
                    WorkerMetrics.shared.confirmingReads.increment()
                    store.readRow(envId: r.envId, runId: r.runId, freshAfter: monotonicUs(), demand: feed.parking.demand) { [weak self] result in
                        self?.completeRead(feed, result, freshAfter: freshAfter)
                    }
                    return
                }
                if case .success(let row?) = result, self.config.staleRowRereads,
                   ReplicaStaleness.needsPrimaryRead(fromReplica: row.fromReplica, rowUpdatedAtMs: row.updatedAtMs,
                                                     recordUpdatedAtMs: feed.recordUpdatedAtMs) {
                    // Older on the replica than the change record says: the primary has it.
                    WorkerMetrics.shared.replicaFallback(.stale).increment()
                    store.readRowFromPrimary(envId: r.envId, runId: r.runId, demand: feed.parking.demand) { [weak self] result in
                        self?.completeRead(feed, result, freshAfter: freshAfter)
                    }
                    return
                }
                self.completeRead(feed, result, freshAfter: freshAfter)
            }
        case .emitRow:
            // Found by the deadline's re-read (a record's read that ends after the deadline does not count).
            if !feed.parking.deadlinePending && feed.readIsBackstop { WorkerMetrics.shared.runBackstopDelivered.increment() }
            finish(feed, row: feed.lastRow)
        case .emitUpToDate:
            finish(feed, row: nil)
        }
    }

    private func completeRead(_ feed: LiveRunFeed, _ result: Result<RunRow?, PGError>, freshAfter: Int64) {
        guard feeds[feed.id] != nil else { return }
        var found: RunReadResult?
        if case .success(let row) = result, let row {
            feed.lastRow = row
            feed.lastReadBasisMs = row.readAtUs / 1000
            found = RunReadResult(updatedAtMs: row.updatedAtMs, digest: row.digest)
        }
        act(feed, feed.machine.handle(.rowRead(found)), freshAfter: freshAfter)
    }

    private func finish(_ feed: LiveRunFeed, row: RunRow?) {
        remove(feed)
        answering.answer(feed.request.liveReply(offset: feed.offset, row: row, readBasisMs: feed.lastReadBasisMs))
    }

    private func remove(_ feed: LiveRunFeed) {
        guard feeds.removeValue(forKey: feed.id) != nil else { return }
        feed.parking.unpark()
        let env = feed.request.envId
        let key = RunKey(envId: env, runId: feed.request.runId)
        byRun[key]?.remove(feed.id)
        if byRun[key]?.isEmpty == true { byRun.removeValue(forKey: key) }
        byEnv[env]?.remove(feed.id)
        if byEnv[env]?.isEmpty == true { byEnv.removeValue(forKey: env) }
    }

    /// Answers every held poll with `up-to-date` now (drain).
    func answerAll() {
        for feed in Array(feeds.values) { finish(feed, row: nil) }
    }

    /// Subscribed again after a loss: records may have been missed meanwhile, so every run this
    /// worker holds for the environment is re-read now instead of at the backstop.
    private func wakeAll(env: String) {
        let now = monotonicUs()
        for id in byEnv[env] ?? [] {
            if let feed = feeds[id] { event(feed, .notified, notifiedAt: now) }
        }
    }

    private func received(env: String, record: ChangeRecord) {
        guard let ids = byRun[RunKey(envId: env, runId: record.runId)] else { return }
        let now = monotonicUs()
        for id in ids {
            if let feed = feeds[id] { event(feed, .notified, notifiedAt: now, recordUpdatedAtMs: record.updatedAtMs) }
        }
    }
}

/// A run of an environment (run ids are unique, but a record's channel, not its run id, names the environment).
struct RunKey: Hashable {
    let envId: String
    let runId: String
}
