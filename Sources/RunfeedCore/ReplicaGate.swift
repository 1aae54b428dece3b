// Reads from a streaming replica without ever sending a client something older than it asked for.
//
// A replica applies the primary's WAL some time after the primary committed it, so a row read there may be
// an older version than the one whose change record just arrived. Instead of guessing that delay, the gate
// measures positions: it samples the primary's WAL insert position together with the primary's clock, and the
// replica's replay position. Once the replica has replayed up to a primary sample's position, every commit
// the primary had made visible when that sample was sent is visible on the replica, for every statement that
// starts afterwards. That moment — the sample's send time on this worker's monotonic clock, and the primary's
// `statement_timestamp()` of the sample — is the replica's *watermark*.
//
// The rule for a replica read: it counts as a read that started at the watermark, not when it was sent. It
// carries the watermark's primary time as its read time (`RunRow.readAtUs`) and the watermark's monotonic time
// as its start (run store freshness, list bases), so a replica read never makes a client believe it holds data
// newer than it does: versions stay ordered by `RowVersion.isSupersededBy`, confirm-before-send and the gap
// rule work unchanged. A read that must see every commit made before a moment X (a change record arrived at
// X; a snapshot may share a read up to 250 ms old) goes to the replica only once the watermark has reached X:
// it waits for that (at most `maxDelayMs`), or goes to the primary at once when the measured lag says the wait
// would be longer.
//
// The watermark is only a lower bound of what a replica read saw (the replica may have applied more by the time
// the statement starts), so it decides freshness, not the order of versions: the read time a replica row carries
// (`RunRow.readAtUs`) is pinned down exactly by `ReplicaLabel`, or the read is done again on the primary.

/// A WAL position (`pg_lsn`, written `16/B374D848`).
public struct WALPosition: Comparable, Hashable, Sendable, CustomStringConvertible {
    public let value: UInt64

    public init(_ value: UInt64) { self.value = value }

    /// Parses `pg_lsn` text: two hex numbers separated by `/` (high and low 32 bits).
    public init?(text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...8).contains(parts[0].count), (1...8).contains(parts[1].count),
              let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16) else { return nil }
        value = hi << 32 | lo
    }

    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xffff_ffff, radix: 16, uppercase: true)
    }

    public static func < (a: WALPosition, b: WALPosition) -> Bool { a.value < b.value }
}

/// The replica gate's settings (`REALTIME_BACKEND_NATIVE_REPLICA_LAG_*`, upstream's names and defaults).
public struct ReplicaGateSettings: Sendable, Equatable {
    /// Off: a read the replica cannot serve fresh enough right now goes to the primary at once (no waiting).
    public var enabled = true
    /// Positions are sampled this often while replica reads happen.
    public var sampleIntervalMs: Int64 = 250
    /// Sampling stops after this long without a replica read.
    public var idleAfterMs: Int64 = 30_000
    /// The lag estimate is the largest lag measured within this window.
    public var windowMs: Int64 = 5_000
    /// The lag assumed while no lag has been measured within the window.
    public var defaultLagMs: Int64 = 30
    /// Added to the lag estimate when deciding whether waiting is worth it; also the interval between replica
    /// checks while a read waits.
    public var marginMs: Int64 = 10
    /// A read waits at most this long for the replica; it goes to the primary at once when the lag estimate plus
    /// the margin exceeds it.
    public var maxDelayMs: Int64 = 1_000
    /// After a read waited `maxDelayMs` in vain, the lag estimate is at least that long for this long.
    public var observedFloorTtlMs: Int64 = 60_000

    public init() {}
}

/// The moment a replica read is worth: the replica has applied every commit the primary had made visible by
/// then. `monoUs` on this worker's monotonic clock, `dbUs` on the primary's clock (µs since the epoch).
public struct ReplicaWatermark: Sendable, Equatable {
    public var monoUs: Int64
    public var dbUs: Int64

    public init(monoUs: Int64, dbUs: Int64) {
        self.monoUs = monoUs
        self.dbUs = dbUs
    }
}

/// Why a read went to the primary.
public enum PrimaryReason: String, Sendable, CaseIterable {
    /// The replica did not answer its last check, or failed a read.
    case down
    /// The measured lag (plus the margin) exceeds the longest wait.
    case lagging
    /// The read waited the longest wait in vain.
    case timedOut = "timed_out"
    /// The gate is off and the replica was not fresh enough at once.
    case gateOff = "gate_off"
    /// WAL positions cannot be read (a managed service without the functions, missing privileges): nothing a
    /// replica returns could be placed in time.
    case positionsUnknown = "positions_unknown"
}

/// Where one read goes.
public enum ReplicaRoute: Sendable, Equatable {
    /// The replica; the read counts as started at the watermark (nil: a lookup, which asks for no freshness, or a
    /// "replica" that is not in recovery, whose reads are current).
    case replica(ReplicaWatermark?)
    /// Not yet: ask again by then, or when a sample arrives.
    case wait(untilUs: Int64)
    case primary(PrimaryReason)
}

/// What the gate wants done next.
public struct ReplicaGateActions: Sendable, Equatable {
    /// Read the primary's clock and WAL insert position now.
    public var samplePrimary = false
    /// Read the replica's replay position now.
    public var sampleReplica = false
    /// Call `actions` again at this monotonic time (nil: only after the next event).
    public var wakeAtUs: Int64?

    public init(samplePrimary: Bool = false, sampleReplica: Bool = false, wakeAtUs: Int64? = nil) {
        self.samplePrimary = samplePrimary
        self.sampleReplica = sampleReplica
        self.wakeAtUs = wakeAtUs
    }
}

/// The replica lag gate: positions in, routes and sampling actions out. Pure; the caller runs the samples
/// (on connections of their own) and the reads.
public struct ReplicaGate: Sendable {
    public enum ReplicaState: Sendable, Equatable {
        /// Not checked yet: lookups may try it, fresh reads wait for a watermark.
        case unknown
        case up
        /// The last check or read failed: everything goes to the primary until a check succeeds.
        case down
        /// Not in recovery (the URL names a primary): its reads are current.
        case notInRecovery
    }

    struct PrimarySample: Equatable {
        var sentUs: Int64
        var dbUs: Int64
        var lsn: WALPosition
        /// A replica check that started after this sample was sent did not find it replayed: the check that
        /// does find it bounds the lag closely.
        var missed = false
    }

    public let settings: ReplicaGateSettings
    public private(set) var state: ReplicaState = .unknown
    public private(set) var watermark: ReplicaWatermark?
    /// WAL positions could not be read on the primary or the replica.
    public private(set) var positionsUnknown = false
    /// Primary samples the replica has not reached yet, oldest first.
    private var pending: [PrimarySample] = []
    /// (measured at, lag) in µs, within the window.
    private var lags: [(atUs: Int64, lagUs: Int64)] = []
    private var floor: (lagUs: Int64, untilUs: Int64)?
    private var lastReplicaReadUs: Int64 = Int64.min / 2
    private var lastPrimarySentUs: Int64 = Int64.min / 2
    private var lastReplicaCheckUs: Int64 = Int64.min / 2
    private var primaryInFlight = false
    private var replicaInFlight = false
    /// The latest moment a waiting read needs the watermark to reach (nil: nobody waits).
    public private(set) var wantedAfterUs: Int64?
    /// When the replica should next be checked for a waiting read.
    private var nextCheckUs: Int64?

    public init(settings: ReplicaGateSettings) {
        self.settings = settings
    }

    // MARK: routing

    /// Where a read goes. `freshAfterUs` (monotonic): the read must see every commit made visible before then
    /// (nil: a lookup, any replica answer will do). `waitingSinceUs`: when this read first asked.
    public func route(freshAfterUs: Int64?, waitingSinceUs: Int64, nowUs: Int64) -> ReplicaRoute {
        switch state {
        case .down:
            return .primary(.down)
        case .notInRecovery:
            return .replica(nil)
        case .unknown, .up:
            break
        }
        guard let asked = freshAfterUs else { return .replica(nil) }
        if positionsUnknown { return .primary(.positionsUnknown) }
        let x = asked
        if let w = watermark, w.monoUs >= x { return .replica(w) }
        guard settings.enabled else { return .primary(.gateOff) }
        if lagEstimateUs(nowUs: nowUs) + settings.marginMs * 1000 > settings.maxDelayMs * 1000 {
            return .primary(.lagging)
        }
        let giveUp = waitingSinceUs + settings.maxDelayMs * 1000
        if nowUs >= giveUp { return .primary(.timedOut) }
        return .wait(untilUs: giveUp)
    }

    /// The lag estimate (µs): the largest measured within the window, at least the observed floor; the default
    /// when nothing was measured.
    public func lagEstimateUs(nowUs: Int64) -> Int64 {
        let recent = lags.filter { $0.atUs >= nowUs - settings.windowMs * 1000 }.map(\.lagUs).max()
        let base = recent ?? settings.defaultLagMs * 1000
        if let f = floor, f.untilUs > nowUs { return max(base, f.lagUs) }
        return base
    }

    // MARK: events

    /// A read asked for the replica (keeps sampling going, also while it is down).
    public mutating func noteRead(nowUs: Int64) {
        lastReplicaReadUs = nowUs
    }

    /// The latest moment that waiting reads need (nil: none waits any more).
    public mutating func setWanted(afterUs: Int64?, nowUs: Int64) {
        wantedAfterUs = afterUs
        if afterUs != nil { lastReplicaReadUs = nowUs }
        if afterUs == nil { nextCheckUs = nil }
    }

    /// A read waited `maxDelayMs` in vain: reads skip the replica for the floor's time.
    public mutating func waitedInVain(waitedUs: Int64, nowUs: Int64) {
        let lag = max(waitedUs, settings.maxDelayMs * 1000 + 1)
        floor = (max(lag, floor.map { $0.untilUs > nowUs ? $0.lagUs : 0 } ?? 0), nowUs + settings.observedFloorTtlMs * 1000)
    }

    public mutating func primarySampleStarted(nowUs: Int64) {
        primaryInFlight = true
        lastPrimarySentUs = nowUs
    }

    /// The primary answered a sample sent at `sentUs` (monotonic): its clock then (`dbUs`) and its WAL insert
    /// position (read during the statement, so at or past every commit visible when it started).
    public mutating func primarySampled(sentUs: Int64, dbUs: Int64, lsn: WALPosition, nowUs: Int64) {
        primaryInFlight = false
        pending.append(PrimarySample(sentUs: sentUs, dbUs: dbUs, lsn: lsn))
        if pending.count > 64 { pending.removeFirst(pending.count - 64) }
        if let x = wantedAfterUs, sentUs >= x {
            // The sample a waiting read needs: check the replica at once (a streaming replica is usually there
            // already), then every margin until it is.
            nextCheckUs = nowUs
        }
    }

    /// The primary sample failed; `unavailable`: the functions cannot be used at all.
    public mutating func primarySampleFailed(unavailable: Bool) {
        primaryInFlight = false
        if unavailable { positionsUnknown = true }
    }

    public mutating func replicaCheckStarted(nowUs: Int64) {
        replicaInFlight = true
        lastReplicaCheckUs = nowUs
    }

    /// The replica answered a check that finished at `doneUs`: its replay position (nil: unknown), and whether it
    /// is in recovery. Statements that start after `doneUs` see at least that position.
    public mutating func replicaChecked(replay: WALPosition?, inRecovery: Bool, doneUs: Int64) {
        replicaInFlight = false
        guard inRecovery else {
            state = .notInRecovery
            pending.removeAll()
            return
        }
        state = .up
        guard let replay else {
            positionsUnknown = true
            return
        }
        var reached: [PrimarySample] = []
        let checkStart = lastReplicaCheckUs
        pending.removeAll { s in
            if s.lsn <= replay {
                reached.append(s)
                return true
            }
            return false
        }
        for i in pending.indices where checkStart >= pending[i].sentUs { pending[i].missed = true }
        for s in reached {
            // A lag is measured only when this check bounds it: an earlier check missed the sample, or this one
            // started soon after it was sent (not after an idle stretch).
            if s.missed || checkStart - s.sentUs <= max(1, settings.sampleIntervalMs) * 1000 {
                lags.append((doneUs, max(0, doneUs - s.sentUs)))
            }
            if watermark.map({ s.sentUs > $0.monoUs }) ?? true {
                watermark = ReplicaWatermark(monoUs: s.sentUs, dbUs: s.dbUs)
            }
        }
        lags.removeAll { $0.atUs < doneUs - settings.windowMs * 1000 }
        if let x = wantedAfterUs, let w = watermark, w.monoUs >= x {
            nextCheckUs = nil
        } else if wantedAfterUs != nil, nextCheckUs != nil {
            nextCheckUs = doneUs + max(1, settings.marginMs) * 1000
        }
    }

    /// The replica check failed (connection, timeout): the replica is down until a check succeeds.
    public mutating func replicaCheckFailed() {
        replicaInFlight = false
        state = .down
    }

    /// A read on the replica failed at the connection: treated as down until the next successful check.
    public mutating func replicaReadFailed() {
        state = .down
    }

    // MARK: sampling

    /// Whether sampling is wanted: a replica read within `idleAfterMs`, or a read waiting.
    public func isActive(nowUs: Int64) -> Bool {
        wantedAfterUs != nil || nowUs - lastReplicaReadUs < settings.idleAfterMs * 1000
    }

    /// What to do now, and when to ask again.
    public func actions(nowUs: Int64) -> ReplicaGateActions {
        var a = ReplicaGateActions()
        let interval = max(1, settings.sampleIntervalMs) * 1000
        let active = isActive(nowUs: nowUs)
        var wake: Int64?
        func due(_ t: Int64) { wake = min(wake ?? Int64.max, t) }
        if positionsUnknown && state != .down {
            // Nothing to sample but whether the replica is alive.
            if active && !replicaInFlight {
                if nowUs - lastReplicaCheckUs >= interval { a.sampleReplica = true } else { due(lastReplicaCheckUs + interval) }
            }
            a.wakeAtUs = wake
            return a
        }
        if !primaryInFlight && state != .notInRecovery {
            let needed = wantedAfterUs.map { x in lastPrimarySentUs < x && !(pending.contains { $0.sentUs >= x }) } ?? false
            if needed || (active && nowUs - lastPrimarySentUs >= interval) {
                a.samplePrimary = true
            } else if active {
                due(lastPrimarySentUs + interval)
            }
        }
        if !replicaInFlight {
            if let t = nextCheckUs, nowUs >= t {
                a.sampleReplica = true
            } else if active && nowUs - lastReplicaCheckUs >= interval && !a.samplePrimary {
                // Periodic check (after the primary sample it follows, when one is due now).
                a.sampleReplica = true
            } else {
                if let t = nextCheckUs { due(t) }
                if active { due(lastReplicaCheckUs + interval) }
            }
        }
        a.wakeAtUs = wake
        return a
    }
}

/// The last line of defence behind the gate (upstream's stale-hydrate rule): a row the replica returned for a
/// change record is re-read on the primary when it is missing, or older than the record's `updatedAtMs`. With
/// the gate on this never happens (the read waited for the replica to apply every commit made before the
/// record arrived); it catches a replica that went back in time (a replaced replica behind the same URL) and a
/// writer that published before committing. A later write stamped earlier than the record also triggers it,
/// which costs one primary read and nothing else.
public enum ReplicaStaleness {
    public static func needsPrimaryRead(fromReplica: Bool, rowUpdatedAtMs: Int64?, recordUpdatedAtMs: Int64?) -> Bool {
        guard fromReplica else { return false }
        guard let row = rowUpdatedAtMs else { return true }
        if let rec = recordUpdatedAtMs, row < rec { return true }
        return false
    }
}

/// The read time of a row read on the replica (the rule in docs/ARCHITECTURE.md, "Read replica"). Freshness comes from
/// the watermark (a lower bound: the replica applied every commit made before it). The label that orders versions
/// (`RunRow.readAtUs`) must be exact, neither older nor newer than what the read saw: a row labelled older than it
/// is could lose to a later read labelled in between that shows an older version; labelled newer, it could beat a
/// newer one. The server reads the commit time of the last transaction the replica had replayed just before and just
/// after the statement, on the same connection: when both are the same, the snapshot holds exactly the commits up
/// to that one, so it equals a primary read at any moment from that commit to the next — the later of that commit
/// time and the watermark (no commit can lie between them: the watermark's position was replayed). When replay moved
/// during the statement (or nothing was replayed yet), the snapshot is not pinned down and the read is done again on
/// the primary.
public enum ReplicaLabel {
    /// The read time for a replica read, or nil when it must be done again on the primary.
    public static func readAtUs(watermarkDbUs: Int64, replayedBeforeUs: Int64?, replayedAfterUs: Int64?) -> Int64? {
        guard let before = replayedBeforeUs, let after = replayedAfterUs, before == after else { return nil }
        return max(watermarkDbUs, before)
    }
}
