// The live tag-list or batch poll as a decision machine: events in, actions out. The caller performs the
// resolves, hydrates, timers and answers, and feeds their results back.

/// How a live list poll begins, decided by the caller from the gap rule (`gapCovered`) and the replay buffer.
public enum ListPollStart: Sendable, Equatable {
    /// This worker did not hear the client's whole gap (cold start, a hop, a long gap): resolve in full.
    case resolve
    /// It heard the gap: these runs had change records since the client's view was read.
    case replay(Set<String>)
}

public enum ListPollEvent: Sendable, Equatable {
    /// Change records of these runs may match the feed.
    case records(Set<String>)
    /// The full resolve finished: the member rows (newest first), or nil on failure. `membersReadAtUs`: when
    /// its membership was read, on the database clock (`ListDiff.replace`; 0: when its rows were read).
    case resolved([RunVersion]?, membersReadAtUs: Int64 = 0)
    /// A hydrate of notified runs finished: the rows that still match the filter, or nil on failure.
    case hydrated([RunVersion]?)
    /// Records may have been lost (the subscription was re-established): resolve in full without ending
    /// the poll (after the read in flight, if any).
    case resync
    /// The hold deadline passed.
    case deadline
    /// The client went away (or the worker drains).
    case aborted
}

public enum ListPollAction: Sendable, Equatable {
    /// Keep waiting.
    case hold
    /// Resolve the whole set and hydrate it; feed back `.resolved`.
    case resolve
    /// Read these runs; feed back `.hydrated` with the rows that match the filter.
    case hydrate(Set<String>)
    /// Answer with these rows of the last `.resolved`/`.hydrated` event (then `up-to-date`); the answer
    /// reflects that read (its start is the basis of the client's next offset). The poll is done.
    case answer([ListEmit])
    /// Answer `[up-to-date]`. `fromRead`: after a full resolve that found nothing new (the basis moves to
    /// its start); otherwise the client's view is unchanged. The poll is done.
    case upToDate(fromRead: Bool)
    /// The poll already finished; ignore the event.
    case finishSilently
}

/// One live list poll. `view` is what the client holds (nil: unknown, so the poll resolves in full first
/// and sends every member); it is updated as rows are sent, and after the poll ends it is the view the
/// client will hold once the answer arrives.
///
/// - Records arriving while a read is in flight wait and are read when it ends; a read that finds nothing
///   new goes back to holding (or reads what waited).
/// - The deadline starts the backstop: a full resolve whose result ends the poll (rows or `up-to-date`).
///   A deadline during another read waits for it.
/// - A failed read keeps the view; a failed backstop answers `up-to-date` (the next poll tries again).
public struct ListFeedPoll: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        case idle
        case holding
        /// A full resolve is in flight; `endsPoll` for the backstop.
        case resolving(endsPoll: Bool)
        case hydrating
        case done
    }

    public private(set) var state: State = .idle
    public private(set) var view: ListView?
    /// Runs notified while a read was in flight.
    public private(set) var pending: Set<String> = []
    public private(set) var deadlinePassed = false
    /// A resync waits for the read in flight.
    public private(set) var resyncPending = false
    /// The offset's first segment: `max(floor, updatedAt of every row seen)`.
    public private(set) var offsetMs: Int64
    /// Whether `view` changed since the poll began (a new working set must be stored).
    public private(set) var viewChanged = false

    public init(view: ListView?, floorMs: Int64) {
        self.view = view
        self.offsetMs = max(0, floorMs)
    }

    public var isDone: Bool { state == .done }

    public mutating func start(_ how: ListPollStart) -> ListPollAction {
        guard state == .idle else { return state == .done ? .finishSilently : .hold }
        if view == nil { return beginResolve(endsPoll: false) }
        switch how {
        case .resolve:
            return beginResolve(endsPoll: false)
        case .replay(let runs):
            if runs.isEmpty {
                state = .holding
                return .hold
            }
            state = .hydrating
            return .hydrate(runs)
        }
    }

    public mutating func handle(_ e: ListPollEvent) -> ListPollAction {
        if state == .done { return .finishSilently }
        if state == .idle { state = .holding }
        switch e {
        case .aborted:
            return finish(.upToDate(fromRead: false))
        case .deadline:
            deadlinePassed = true
            if state == .holding { return beginResolve(endsPoll: true) }
            return .hold
        case .resync:
            if state == .holding { return beginResolve(endsPoll: false) }
            resyncPending = true
            return .hold
        case .records(let runs):
            guard state == .holding else {
                pending.formUnion(runs)
                return .hold
            }
            guard !runs.isEmpty else { return .hold }
            state = .hydrating
            return .hydrate(runs)
        case .hydrated(let rows):
            guard state == .hydrating else { return .hold }
            state = .holding
            guard let rows, let view else { return settle() }
            offsetMs = ListDiff.offsetMs(rows, floorMs: offsetMs)
            let emits = ListDiff.diff(rows, view: view)
            guard !emits.isEmpty else { return settle() }
            self.view = ListDiff.merge(view, rows, emits: emits)
            viewChanged = true
            return finish(.answer(emits))
        case .resolved(let rows, let membersReadAtUs):
            guard case .resolving(let endsPoll) = state else { return .hold }
            state = .holding
            guard let rows else {
                return endsPoll ? finish(.upToDate(fromRead: false)) : settle()
            }
            offsetMs = ListDiff.offsetMs(rows, floorMs: offsetMs)
            let emits = ListDiff.diff(rows, view: view)
            let replaced = ListDiff.replace(view, rows, emits: emits, membersReadAtUs: membersReadAtUs)
            if replaced != view {
                view = replaced
                viewChanged = true
            }
            if !emits.isEmpty { return finish(.answer(emits)) }
            return endsPoll ? finish(.upToDate(fromRead: true)) : settle()
        }
    }

    /// After a read that sent nothing: the backstop if the deadline passed, else what waited, else hold.
    private mutating func settle() -> ListPollAction {
        if deadlinePassed { return beginResolve(endsPoll: true) }
        if resyncPending { return beginResolve(endsPoll: false) }
        if !pending.isEmpty {
            let runs = pending
            pending = []
            state = .hydrating
            return .hydrate(runs)
        }
        return .hold
    }

    private mutating func beginResolve(endsPoll: Bool) -> ListPollAction {
        state = .resolving(endsPoll: endsPoll)
        resyncPending = false
        return .resolve
    }

    private mutating func finish(_ a: ListPollAction) -> ListPollAction {
        state = .done
        pending = []
        return a
    }
}
