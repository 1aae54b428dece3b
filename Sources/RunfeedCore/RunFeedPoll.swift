// Hold timing (the hold with its jitter) and the single-run live-poll decision machine.

public enum HoldTiming {
    /// `base × (1 − jitter + 2·jitter·unit)`, rounded to the nearest ms; `unit` is a U(0,1) sample.
    /// Inputs are clamped (jitter and unit to 0…1, result ≥ 0). Default: 20000 × (0.85 + 0.30·U) = 17–23 s.
    public static func holdMs(baseMs: Int64, jitterRatio: Double, unit: Double) -> Int64 {
        let j = jitterRatio.isFinite ? min(max(jitterRatio, 0), 1) : 0
        let u = unit.isFinite ? min(max(unit, 0), 1) : 0.5
        let ms = (Double(max(baseMs, 0)) * (1 - j + 2 * j * u)).rounded()
        return ms >= 9.2e18 ? Int64.max : Int64(ms)
    }
}

/// Inputs to a live single-run poll.
public enum RunFeedEvent: Sendable, Equatable {
    /// A row read finished; nil means the run is gone (or not visible).
    case rowRead(RunReadResult?)
    /// A change record for the run arrived.
    case notified
    /// The hold deadline passed.
    case deadline
    /// The client went away.
    case aborted
}

/// What a row read found: the version of the run's row.
public struct RunReadResult: Sendable, Equatable {
    public var updatedAtMs: Int64
    public var digest: UInt64

    public init(updatedAtMs: Int64, digest: UInt64) {
        self.updatedAtMs = updatedAtMs
        self.digest = digest
    }
}

/// What the caller should do next.
public enum RunFeedAction: Sendable, Equatable {
    /// Keep waiting (nothing to do now).
    case hold
    /// Start a fresh row read and feed its result back as `.rowRead`.
    case readRow
    /// Reply with the row just read (newer than the floor). The poll is done.
    case emitRow
    /// Reply `[up-to-date]`. The poll is done.
    case emitUpToDate
    /// The poll already finished; ignore the event.
    case finishSilently
}

/// The decision machine of one live single-run long-poll. Pure: the caller performs the reads, timers and replies.
///
/// - A read result the client does not hold (`view`: a different digest, or for an offset without one a
///   later `updatedAt` than its floor) ends the poll with `.emitRow`. Same-millisecond writes and writes
///   stamped earlier than the version the client holds are new rows like any other.
/// - Otherwise a read made for the deadline (the backstop) ends it with `.emitUpToDate`; other reads go back to
///   holding — unless a notification arrived while that read was in flight, in which case it is read again
///   (the in-flight read may predate the notified write).
/// - `.deadline` while holding starts the backstop read; while a read is in flight it marks that read as the
///   backstop.
/// - `.aborted` ends the poll with `.emitUpToDate`; every event after the end gives `.finishSilently`.
public struct RunFeedPoll: Sendable, Equatable {
    public typealias Event = RunFeedEvent
    public typealias Action = RunFeedAction

    public enum ReadReason: Sendable, Equatable {
        /// The initial read covering the gap since the client's offset.
        case gap
        /// A read triggered by a change notification.
        case notify
        /// The deadline re-check; its result always ends the poll.
        case backstop
    }

    public enum State: Sendable, Equatable {
        case idle
        case holding
        case reading(ReadReason)
        case done
    }

    /// What the client holds.
    public let view: RunClientView
    public let needsGapRead: Bool
    public private(set) var state: State = .idle
    /// A notification arrived during a non-backstop read; re-read if that read shows nothing new.
    public private(set) var notifiedDuringRead = false

    public init(view: RunClientView, needsGapRead: Bool) {
        self.view = view
        self.needsGapRead = needsGapRead
    }

    /// A poll whose client is known only by its offset floor.
    public init(floorMs: Int64, needsGapRead: Bool) {
        self.init(view: .floor(floorMs), needsGapRead: needsGapRead)
    }

    private func isNew(_ r: RunReadResult?) -> Bool {
        guard let r else { return false }
        return view.isNew(updatedAtMs: r.updatedAtMs, digest: r.digest)
    }

    public var isDone: Bool { state == .done }

    /// Begins the poll: `.readRow` (gap read) when `needsGapRead`, else `.hold`.
    public mutating func start() -> RunFeedAction {
        guard state == .idle else { return state == .done ? .finishSilently : .hold }
        if needsGapRead {
            state = .reading(.gap)
            return .readRow
        }
        state = .holding
        return .hold
    }

    public mutating func handle(_ e: RunFeedEvent) -> RunFeedAction {
        switch state {
        case .done:
            return .finishSilently
        case .idle:
            // Events before start(): treat the poll as started without a gap read.
            state = .holding
            return handle(e)
        case .holding:
            switch e {
            case .aborted: return finish(.emitUpToDate)
            case .notified: return beginRead(.notify)
            case .deadline: return beginRead(.backstop)
            case .rowRead(let u):
                // An unsolicited result is still data: emit it if it advances, else keep holding.
                if isNew(u) { return finish(.emitRow) }
                return .hold
            }
        case .reading(let reason):
            switch e {
            case .aborted:
                return finish(.emitUpToDate)
            case .notified:
                if reason != .backstop { notifiedDuringRead = true }
                return .hold
            case .deadline:
                state = .reading(.backstop)
                notifiedDuringRead = false
                return .hold
            case .rowRead(let u):
                if isNew(u) { return finish(.emitRow) }
                if reason == .backstop { return finish(.emitUpToDate) }
                if notifiedDuringRead { return beginRead(.notify) }
                state = .holding
                return .hold
            }
        }
    }

    private mutating func beginRead(_ reason: ReadReason) -> RunFeedAction {
        state = .reading(reason)
        notifiedDuringRead = false
        return .readRow
    }

    private mutating func finish(_ a: RunFeedAction) -> RunFeedAction {
        state = .done
        notifiedDuringRead = false
        return a
    }
}
