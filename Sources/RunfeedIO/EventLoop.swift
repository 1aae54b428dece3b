import CLinux
#if canImport(Glibc)
import Glibc
#endif

public let EV_IN = RUNFEED_EPOLLIN
public let EV_OUT = RUNFEED_EPOLLOUT
public let EV_RDHUP = RUNFEED_EPOLLRDHUP
public let EV_HUP = RUNFEED_EPOLLHUP
public let EV_ERR = RUNFEED_EPOLLERR
public let EV_EXCLUSIVE = RUNFEED_EPOLLEXCLUSIVE

/// Milliseconds on the monotonic clock (timers, hold deadlines).
public func monotonicMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Microseconds on the monotonic clock (ordering row reads against change-record arrivals).
public func monotonicUs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

/// Milliseconds since the Unix epoch on the wall clock (row timestamps, offsets).
public func wallMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Microseconds since the Unix epoch on the wall clock (when a row read started: versions read on
/// different workers and hosts are ordered by it).
public func wallUs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

/// One epoll loop on one thread. It owns timers, watched file descriptors (parked FastCGI
/// connections, the Redis socket, the signal fd) and a queue of closures posted from other threads.
/// Everything except `execute` and `stop` must be called on the loop thread.
public final class EventLoop: @unchecked Sendable {
    public typealias TimerID = UInt64
    public typealias FDHandler = (UInt32) -> Void

    private let epfd: Int32
    private let wakeFd: Int32
    /// Closures posted from other threads, and whether `stop()` was called.
    private let inbox = Lock<(posted: [@Sendable () -> Void], stopping: Bool)>(([], false))
    private var loopThread: pthread_t?

    private var handlers: [Int32: FDHandler] = [:]
    /// The event mask each fd registered in the epoll set has (muted ones included).
    private var masks: [Int32: UInt32] = [:]
    private var timerHeap = TimerHeap()
    private var timerCallbacks: [TimerID: () -> Void] = [:]
    private var nextTimerID: TimerID = 1

    public init() {
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epfd >= 0, "epoll_create1 failed: \(errno)")
        wakeFd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(wakeFd >= 0, "eventfd failed: \(errno)")
        runfeed_epoll_ctl(epfd, EPOLL_CTL_ADD, wakeFd, EV_IN)
    }

    deinit {
        close(wakeFd)
        close(epfd)
    }

    public var isOnLoop: Bool {
        guard let t = loopThread else { return false }
        return pthread_equal(t, pthread_self()) != 0
    }

    /// Debug builds: stops when called off the loop thread once the loop runs (before `run()`, the thread
    /// setting the loop up may use it).
    @inline(__always)
    public func assertOnLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(loopThread == nil || isOnLoop, "called off the event loop thread", file: file, line: line)
    }

    /// Posts a closure to run on the loop thread. Safe from any thread.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        inbox.withLock { $0.posted.append(work) }
        var one: UInt64 = 1
        _ = write(wakeFd, &one, 8)
    }

    /// Asks `run()` to return after the current iteration. Safe from any thread.
    public func stop() {
        inbox.withLock { $0.stopping = true }
        var one: UInt64 = 1
        _ = write(wakeFd, &one, 8)
    }

    // MARK: timers

    @discardableResult
    public func schedule(afterMs: Int64, _ callback: @escaping () -> Void) -> TimerID {
        assertOnLoop()
        let id = nextTimerID
        nextTimerID &+= 1
        timerCallbacks[id] = callback
        timerHeap.push(deadline: monotonicMs() + max(0, afterMs), id: id)
        return id
    }

    public func cancel(_ id: TimerID) {
        timerCallbacks.removeValue(forKey: id)
    }

    // MARK: file descriptors

    /// Watches `fd` for `events` (EPOLLIN, EPOLLOUT, EPOLLRDHUP …), replacing any earlier watch of it.
    /// An fd registered with the same mask (a muted one included) only gets the new handler: no system call.
    /// Every fd must be unwatched before it is closed (its number is reused by the next socket).
    public func watch(fd: Int32, events: UInt32, _ handler: @escaping FDHandler) {
        assertOnLoop()
        if let mask = masks[fd] {
            if mask != events { runfeed_epoll_ctl(epfd, EPOLL_CTL_MOD, fd, events) }
        } else if runfeed_epoll_ctl(epfd, EPOLL_CTL_ADD, fd, events) != 0 && errno == EEXIST {
            runfeed_epoll_ctl(epfd, EPOLL_CTL_MOD, fd, events)
        }
        masks[fd] = events
        handlers[fd] = handler
    }

    /// Changes the event mask of a watched fd, keeping its handler.
    public func modify(fd: Int32, events: UInt32) {
        guard let mask = masks[fd], mask != events else { return }
        runfeed_epoll_ctl(epfd, EPOLL_CTL_MOD, fd, events)
        masks[fd] = events
    }

    public func unwatch(fd: Int32) {
        assertOnLoop()
        handlers.removeValue(forKey: fd)
        guard masks.removeValue(forKey: fd) != nil else { return }
        runfeed_epoll_ctl(epfd, EPOLL_CTL_DEL, fd, 0)
    }

    /// Stops handling `fd`'s events but leaves it registered, for an owner that will watch it again with the
    /// same mask soon (a kept FastCGI connection between its requests and its held poll): that costs no
    /// system call. An event arriving meanwhile unregisters it (level-triggered events would repeat).
    public func mute(fd: Int32) {
        assertOnLoop()
        guard masks[fd] != nil else { return }
        handlers[fd] = { [unowned self] _ in self.unwatch(fd: fd) }
    }

    // MARK: running

    /// Runs the loop on the calling thread until `stop()`.
    public func run() {
        loopThread = pthread_self()
        var fds = [Int32](repeating: 0, count: 256)
        var masks = [UInt32](repeating: 0, count: 256)
        while true {
            if inbox.withLock({ $0.stopping }) { break }
            let timeout = nextTimeout()
            let n = fds.withUnsafeMutableBufferPointer { f in
                masks.withUnsafeMutableBufferPointer { m in
                    runfeed_epoll_wait(epfd, f.baseAddress, m.baseAddress, 256, timeout)
                }
            }
            if n < 0 && errno != EINTR { fatalError("epoll_wait failed: \(errno)") }
            if n > 0 {
                for i in 0..<Int(n) {
                    let fd = fds[i]
                    let mask = masks[i]
                    if fd == wakeFd {
                        var value: UInt64 = 0
                        _ = read(wakeFd, &value, 8)
                        continue
                    }
                    // A handler may unwatch other fds of this batch: look each one up afresh.
                    if let handler = handlers[fd] { handler(mask) }
                }
            }
            runPosted()
            runDueTimers()
        }
    }

    private func runPosted() {
        let work: [@Sendable () -> Void] = inbox.withLock {
            let w = $0.posted
            $0.posted.removeAll(keepingCapacity: true)
            return w
        }
        for w in work { w() }
    }

    private func runDueTimers() {
        let now = monotonicMs()
        while let top = timerHeap.peek, top.deadline <= now {
            _ = timerHeap.pop()
            if let cb = timerCallbacks.removeValue(forKey: top.id) { cb() }
        }
    }

    private func nextTimeout() -> Int32 {
        if inbox.withLock({ !$0.posted.isEmpty }) { return 0 }
        while let top = timerHeap.peek, timerCallbacks[top.id] == nil { _ = timerHeap.pop() }
        guard let top = timerHeap.peek else { return 1000 }
        let wait = top.deadline - monotonicMs()
        return Int32(max(0, min(wait, 1000)))
    }
}

/// A binary min-heap of (deadline, id). Cancelled ids are dropped lazily.
struct TimerHeap {
    private var items: [(deadline: Int64, id: UInt64)] = []

    var peek: (deadline: Int64, id: UInt64)? { items.first }

    mutating func push(deadline: Int64, id: UInt64) {
        items.append((deadline, id))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if less(i, parent) { items.swapAt(i, parent); i = parent } else { break }
        }
    }

    mutating func pop() -> (deadline: Int64, id: UInt64)? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && less(l, m) { m = l }
                if r < items.count && less(r, m) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        items[a].deadline < items[b].deadline || (items[a].deadline == items[b].deadline && items[a].id < items[b].id)
    }
}
