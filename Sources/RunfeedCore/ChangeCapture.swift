// Change capture's decisions (issue 16): pgoutput messages in, change records to publish and the WAL position
// the slot may be confirmed to out. Pure: the replication connection and the Redis client live in RunfeedIO.
//
// At-least-once: a transaction's records are queued at its Commit; the confirmed (flushed) position moves past a
// transaction only once every record queued up to it was published. A crash replays from the slot's confirmed
// position, so records may repeat but are never lost. Memory is bounded: `wantsData` turns false while
// `maxBacklog` records wait to be published (the reader stops reading, the server's send buffer fills and
// it waits), except inside a transaction, which must be read to its Commit.

public struct ChangeCaptureSettings: Sendable, Equatable {
    /// Stop reading while this many committed records wait for publishing.
    public var maxBacklog: Int
    /// A standby status update at least this often (the server's `wal_sender_timeout` is 60 s by default).
    public var statusIntervalUs: Int64
    /// The table whose changes become records (any schema).
    public var table: String

    public init(maxBacklog: Int = 100_000, statusIntervalUs: Int64 = 10_000_000, table: String = "TaskRun") {
        self.maxBacklog = maxBacklog; self.statusIntervalUs = statusIntervalUs; self.table = table
    }
}

public struct ChangeCapture: Sendable {
    /// Where a column the records need sits in a relation's tuples.
    struct ColumnMap: Sendable {
        var id: Int?
        var env: Int?
        var tags: Int?
        var batch: Int?
        var updatedAt: Int?
    }

    private enum Entry: Sendable {
        case record(ChangeRecord)
        /// Every record before this entry published → the slot may be confirmed up to `lsn`.
        case confirm(LSN, commitTimeUs: Int64)
    }

    public struct Counters: Sendable, Equatable {
        public var transactions: Int64 = 0
        public var changes: Int64 = 0
        public var published: Int64 = 0
        /// Changes that could not become a record (no env id: a DELETE without REPLICA IDENTITY FULL).
        public var skipped: Int64 = 0
        public var truncates: Int64 = 0
        public var malformed: Int64 = 0
        public init() {}
    }

    public let settings: ChangeCaptureSettings
    private var relations: [UInt32: ColumnMap] = [:]
    /// The open transaction (Begin seen, Commit not yet): its records, one per run (the last change wins).
    private var txn: (records: [ChangeRecord], index: [String: Int], commitTimeUs: Int64)?
    private var queue: [Entry] = []
    private var queueHead = 0
    public private(set) var backlog = 0
    /// The position confirmed (reported as flushed) to the server.
    public private(set) var confirmed: LSN
    /// The latest end of WAL the server reported.
    public private(set) var serverWalEnd: LSN = .zero
    /// Commit time (µs since 2000) of the oldest transaction with unpublished records; nil when none wait.
    public var oldestUnpublishedCommitUs: Int64? {
        guard backlog > 0 else { return nil }
        for e in queue[queueHead...] { if case .confirm(_, let t) = e { return t } }
        return nil
    }
    /// Commit time of the last transaction whose records were all published.
    public private(set) var lastPublishedCommitUs: Int64?
    public private(set) var counters = Counters()
    private var replyRequested = false
    private var lastStatusUs: Int64 = .min
    private var lastReported: LSN?

    public init(settings: ChangeCaptureSettings = .init(), startAt: LSN = .zero) {
        self.settings = settings
        confirmed = startAt
    }

    /// Whether the reader should read more from the server now.
    public var wantsData: Bool { txn != nil || backlog < settings.maxBacklog }

    /// Bytes of WAL the server holds for this slot beyond the confirmed position (as far as this process knows).
    public var lagBytes: UInt64 { serverWalEnd.value > confirmed.value ? serverWalEnd.value - confirmed.value : 0 }

    // MARK: input

    /// One CopyData frame from the server.
    public mutating func receive(frame bytes: [UInt8]) throws {
        let frame: ReplicationFrame
        do { frame = try ReplicationFrame.parse(bytes) } catch { counters.malformed += 1; throw error }
        switch frame {
        case .keepalive(let end, _, let reply):
            serverWalEnd = max(serverWalEnd, end)
            if reply { replyRequested = true }
            // Nothing open and nothing waiting: everything the server sent before `end` is done with.
            if txn == nil, backlog == 0, queueHead == queue.count, end > confirmed { confirmed = end }
        case .xlogData(_, let end, _, let payload):
            serverWalEnd = max(serverWalEnd, end)
            let message: PGOutputMessage
            do { message = try PGOutputMessage.parse(payload) } catch { counters.malformed += 1; throw error }
            try apply(message)
        }
    }

    mutating func apply(_ message: PGOutputMessage) throws {
        switch message {
        case .begin(_, let t, _):
            txn = ([], [:], t)
        case .commit(_, let commitLSN, let endLSN, let t):
            let records = txn?.records ?? []
            txn = nil
            counters.transactions += 1
            let lsnText = commitLSN.description
            for var r in records {
                r.lsn = lsnText
                queue.append(.record(r))
            }
            backlog += records.count
            if backlog == 0, queueHead == queue.count {
                // Nothing to publish: confirm straight away.
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
                if endLSN > confirmed { confirmed = endLSN }
                lastPublishedCommitUs = t
            } else {
                queue.append(.confirm(endLSN, commitTimeUs: t))
            }
        case .relation(let rel):
            guard rel.name == settings.table else { relations[rel.id] = nil; return }
            var map = ColumnMap()
            for (i, c) in rel.columns.enumerated() {
                switch c.name {
                case "id": map.id = i
                case "runtimeEnvironmentId": map.env = i
                case "runTags": map.tags = i
                case "batchId": map.batch = i
                case "updatedAt": map.updatedAt = i
                default: break
                }
            }
            relations[rel.id] = map
        case .insert(let rel, let new):
            change(rel, new: new, old: nil)
        case .update(let rel, let old, let new):
            change(rel, new: new, old: old)
        case .delete(let rel, let old):
            change(rel, new: old, old: nil)
        case .truncate:
            counters.truncates += 1
        case .origin, .type, .other:
            break
        }
    }

    private mutating func change(_ relationId: UInt32, new: [TupleValue], old: [TupleValue]?) {
        guard let map = relations[relationId] else { return }  // another table (or no Relation yet)
        counters.changes += 1
        func value(_ i: Int?) -> TupleValue? {
            guard let i else { return nil }
            let v = i < new.count ? new[i] : .null
            if v == .unchangedToast, let old, i < old.count { return old[i] }
            return v
        }
        guard let runId = value(map.id)?.text, let envId = value(map.env)?.text, !runId.isEmpty, !envId.isEmpty else {
            counters.skipped += 1
            return
        }
        var tags: [String]?
        switch value(map.tags) {
        case .text(let lit)?: tags = PGText.parseArray(lit).map { $0.compactMap { $0 } }  // nil → partial record
        case .null?: tags = []
        default: tags = nil  // not in the publication's column list, or an unchanged TOASTed value: partial
        }
        let record = ChangeRecord(v: 1, runId: runId, envId: envId, tags: tags, batchId: value(map.batch)?.text,
                                  updatedAtMs: value(map.updatedAt)?.text.flatMap(PGText.timestampToEpochMs))
        if txn == nil { txn = ([], [:], 0) }  // a change outside Begin/Commit: kept until the next Commit
        if let i = txn!.index[runId] {
            txn!.records[i] = record
        } else {
            txn!.index[runId] = txn!.records.count
            txn!.records.append(record)
        }
    }

    // MARK: publishing

    /// Up to `max` records waiting to be published, oldest first (the same ones again until `published` is called).
    public func pending(max: Int) -> [ChangeRecord] {
        var out: [ChangeRecord] = []
        var i = queueHead
        while i < queue.count, out.count < max {
            if case .record(let r) = queue[i] { out.append(r) }
            i += 1
        }
        return out
    }

    /// The first `count` pending records were published (acknowledged by Redis): drops them and moves the
    /// confirmable position past every transaction now fully published.
    public mutating func published(_ count: Int) {
        var left = count
        while queueHead < queue.count {
            switch queue[queueHead] {
            case .record:
                guard left > 0 else { return compact() }
                left -= 1
                backlog -= 1
                counters.published += 1
            case .confirm(let lsn, let t):
                if lsn > confirmed { confirmed = lsn }
                lastPublishedCommitUs = t
            }
            queueHead += 1
        }
        compact()
    }

    private mutating func compact() {
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: queue.count < 65_536)
            queueHead = 0
        } else if queueHead > 4096, queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
    }

    // MARK: standby status

    /// Whether a standby status update should be sent now: the server asked, the confirmed position moved,
    /// or `statusIntervalUs` passed since the last one.
    public func statusDue(nowUs: Int64) -> Bool {
        replyRequested || lastReported != confirmed || nowUs - lastStatusUs >= settings.statusIntervalUs
    }

    /// The update to send (written = flushed = applied = the confirmed position); records that it was sent.
    public mutating func statusUpdate(nowUs: Int64, clockUs: Int64) -> [UInt8] {
        replyRequested = false
        lastStatusUs = nowUs
        lastReported = confirmed
        return ReplicationFrame.standbyStatusUpdate(written: confirmed, flushed: confirmed, applied: confirmed,
                                                    clockUs: clockUs)
    }

    /// A fresh stream (after a reconnect) resumes from the slot: the open transaction and the unpublished records
    /// are dropped (the server sends them again from the confirmed position), relations are sent again.
    public mutating func restart(at slotConfirmed: LSN) {
        txn = nil
        queue.removeAll()
        queueHead = 0
        backlog = 0
        relations.removeAll()
        replyRequested = false
        lastReported = nil
        if slotConfirmed > confirmed { confirmed = slotConfirmed }
    }
}
