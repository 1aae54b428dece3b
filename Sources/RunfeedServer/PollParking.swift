import RunfeedCore
import RunfeedIO

/// How a held live poll waits, the same for single-run, tag and batch feeds: its environment's channel
/// stays subscribed, a hold deadline (with jitter) is armed, and its upstream connection is watched —
/// nginx closes it when the client goes away, and stdin was drained, so any readability means EOF.
/// Loop thread only.
final class PollParking {
    private let loop: EventLoop
    private let channels: EnvChannels
    private let envId: String
    private let fd: Int32
    private var timer: EventLoop.TimerID?
    private var parked = false

    init(loop: EventLoop, channels: EnvChannels, envId: String, fd: Int32) {
        self.loop = loop
        self.channels = channels
        self.envId = envId
        self.fd = fd
    }

    /// True from `park` until the hold deadline fires or the poll ends.
    var deadlinePending: Bool { timer != nil }

    /// Keeps the environment's channel subscribed (call it before deciding whether the client's gap is
    /// covered, so a lingering subscription is kept).
    func retainChannel() {
        guard !parked else { return }
        parked = true
        channels.retain(envId)
    }

    /// The database work of this poll (its reads, its share of hydrates): wanted until the poll is answered, at
    /// most until the hold deadline plus `backstopBudgetMs` (the backstop read's own time).
    private(set) var demand = Demand(deadlineUs: Int64.max)

    /// The backstop read at the hold deadline gets this long (or the statement timeout, if shorter); past it the
    /// poll is answered on what its client holds.
    static let backstopBudgetMs: Int64 = 2_000

    /// Arms the hold deadline and the watch for the client going away.
    func arm(_ config: ServerConfig, onDeadline: @escaping () -> Void, onGone: @escaping () -> Void) {
        retainChannel()
        let hold = HoldTiming.holdMs(baseMs: config.holdMs, jitterRatio: config.jitterRatio, unit: Double.random(in: 0..<1))
        let budget = config.pgStatementTimeoutMs > 0 ? min(Self.backstopBudgetMs, config.pgStatementTimeoutMs) : Self.backstopBudgetMs
        demand = Demand(deadlineUs: monotonicUs() + (hold + budget) * 1000)
        timer = loop.schedule(afterMs: hold) { [weak self] in
            self?.timer = nil
            onDeadline()
        }
        loop.watch(fd: fd, events: EV_IN | EV_RDHUP) { [demand] _ in
            demand.end(clientGone: true)
            onGone()
        }
    }

    /// Ends the wait: cancels the deadline, stops watching, releases the channel. Idempotent.
    func unpark() {
        guard parked else { return }
        parked = false
        demand.end()
        if let t = timer { loop.cancel(t) }
        timer = nil
        loop.mute(fd: fd)  // the answer's writer or the kept connection's next wait takes it over
        channels.release(envId)
    }
}
