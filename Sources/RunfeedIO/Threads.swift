import CLinux
#if canImport(Glibc)
import Glibc
#endif

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Starts a detached OS thread (not a Swift concurrency task): blocking C calls run here.
public func startThread(name: String, _ body: @escaping @Sendable () -> Void) {
    let short = String(name.prefix(15))
    let box = Unmanaged.passRetained(ThreadBody({
        runfeed_name_this_thread(short)
        body()
    })).toOpaque()
    var tid = pthread_t()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    pthread_attr_setstacksize(&attr, 512 * 1024)
    let rc = pthread_create(&tid, &attr, { raw in
        let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
        body.run()
        return nil
    }, box)
    pthread_attr_destroy(&attr)
    precondition(rc == 0, "pthread_create failed: \(rc)")
}

/// A value guarded by a pthread mutex: every access goes through `withLock`. The one lock type of the worker.
public final class Lock<State>: @unchecked Sendable {
    private var m = pthread_mutex_t()
    private var state: State

    public init(_ state: State) {
        self.state = state
        pthread_mutex_init(&m, nil)
    }

    deinit { pthread_mutex_destroy(&m) }

    @inline(__always)
    public func withLock<T>(_ body: (inout State) throws -> T) rethrows -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return try body(&state)
    }
}

/// Carries a loop-confined value (a completion, an object) through another thread and back: only the loop
/// thread reads it (checked in debug builds).
public final class LoopBox<T>: @unchecked Sendable {
    private let wrapped: T
    private let loop: EventLoop

    public init(_ value: T, loop: EventLoop) {
        wrapped = value
        self.loop = loop
    }

    public var value: T {
        loop.assertOnLoop()
        return wrapped
    }
}

/// A fixed set of OS threads, each owning one blocking resource (a Postgres connection, a curl handle, a Redis
/// client) it creates itself, behind one bounded FIFO. Work runs on a pool thread with that thread's resource;
/// its completion always runs on the event loop the work was submitted from. Blocking C calls run here, never
/// on the loop or on Swift's cooperative pool.
public final class BlockingPool<Resource>: @unchecked Sendable {
    private struct Job {
        let queuedAtUs: Int64
        let run: (Resource) -> Void
    }

    private var m = pthread_mutex_t()
    private var c = pthread_cond_t()
    // Guarded by `m`.
    private var jobs: [Job] = []
    private var head = 0
    private var busy = 0
    /// When each thread's work started (nil: idle), by thread.
    private var runningSince: [Int64?]

    public let name: String
    public let threads: Int
    /// At most this many jobs wait for a thread (`submit` refuses more).
    public let queueLimit: Int

    /// Starts `threads` threads named `name-<i>`; each calls `makeResource` once, on itself.
    public init(name: String, threads: Int, queueLimit: Int = Int.max,
                makeResource: @escaping @Sendable () -> Resource) {
        self.name = name
        self.threads = max(1, threads)
        self.queueLimit = max(1, queueLimit)
        runningSince = Array(repeating: nil, count: max(1, threads))
        pthread_mutex_init(&m, nil)
        pthread_cond_init(&c, nil)
        for i in 0..<self.threads {
            startThread(name: "\(name)-\(i)") { [self] in
                let resource = makeResource()
                while true {
                    let job = take(thread: i)
                    job.run(resource)
                    finished(thread: i)
                }
            }
        }
    }

    /// Queues `work`, to run on a pool thread with its resource; `done` gets its result on `loop`. Returns false
    /// (and never calls `done`) when the queue is full. Call on `loop`.
    @discardableResult
    public func submit<T: Sendable>(work: @escaping @Sendable (Resource) -> T, on loop: EventLoop,
                                    done: @escaping (T) -> Void) -> Bool {
        let box = LoopBox(done, loop: loop)
        let job = Job(queuedAtUs: monotonicUs()) { resource in
            let result = work(resource)
            loop.execute { box.value(result) }
        }
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        guard jobs.count - head < queueLimit else { return false }
        jobs.append(job)
        pthread_cond_signal(&c)
        return true
    }

    private func take(thread: Int) -> Job {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        while head >= jobs.count { pthread_cond_wait(&c, &m) }
        let job = jobs[head]
        head += 1
        if head > 1024 && head * 2 > jobs.count {
            jobs.removeFirst(head)
            head = 0
        }
        busy += 1
        runningSince[thread] = monotonicUs()
        return job
    }

    private func finished(thread: Int) {
        pthread_mutex_lock(&m)
        busy -= 1
        runningSince[thread] = nil
        pthread_mutex_unlock(&m)
    }

    /// A snapshot of the pool's load.
    public struct Load: Sendable {
        /// Jobs waiting for a thread.
        public var queued: Int
        /// Jobs running.
        public var running: Int
        /// How long the oldest waiting job has waited (µs; 0 when none waits).
        public var oldestWaitUs: Int64
        /// How long the longest-running job has run (µs; 0 when none runs).
        public var longestRunningUs: Int64
    }

    public var load: Load {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        let now = monotonicUs()
        let queued = jobs.count - head
        return Load(queued: queued, running: busy, oldestWaitUs: queued > 0 ? now - jobs[head].queuedAtUs : 0,
                    longestRunningUs: runningSince.compactMap { $0 }.map { now - $0 }.max() ?? 0)
    }
}

/// Operations taken on the loop, run in batches on a `BlockingPool`: what the loop takes during one iteration is
/// handed over together once it has finished what it is doing, and a pool thread takes every batch waiting (up
/// to `maxBatches`) as one run — so a burst becomes one round trip (one pipeline). Each operation's outcome
/// comes back on the loop. Loop-confined, except the hand-over.
public final class LoopBatcher<Resource, Op: Sendable, Outcome: Sendable> {
    private let pool: BlockingPool<Resource>
    private let loop: EventLoop
    private let maxBatches: Int
    private let perform: @Sendable (Resource, [Op]) -> [Outcome]
    /// Taken since the last hand-over (loop only).
    private var gathered: [(op: Op, done: (Outcome) -> Void)] = []
    /// Batches handed over, not yet taken by a pool thread.
    private let handedOver = Lock<[(id: UInt64, ops: [Op])]>([])
    /// The completions of the batches handed over, by batch (loop only).
    private var waiting: [UInt64: [(Outcome) -> Void]] = [:]
    private var nextBatch: UInt64 = 0
    /// Operations taken and not yet answered (loop only).
    public private(set) var pending = 0

    /// `perform` runs on a pool thread and returns one outcome per operation, in order.
    public init(pool: BlockingPool<Resource>, loop: EventLoop, maxBatches: Int = 64,
                perform: @escaping @Sendable (Resource, [Op]) -> [Outcome]) {
        self.pool = pool
        self.loop = loop
        self.maxBatches = maxBatches
        self.perform = perform
    }

    /// Takes one operation; `done` gets its outcome on the loop. Call on the loop.
    public func push(_ op: Op, _ done: @escaping (Outcome) -> Void) {
        loop.assertOnLoop()
        pending += 1
        gathered.append((op, done))
        guard gathered.count == 1 else { return }
        let me = LoopBox(self, loop: loop)
        loop.execute { me.value.handOver() }
    }

    private func handOver() {
        let batch = gathered
        gathered = []
        nextBatch &+= 1
        let id = nextBatch
        waiting[id] = batch.map(\.done)
        handedOver.withLock { $0.append((id, batch.map(\.op))) }
        let handedOver = handedOver, maxBatches = maxBatches, perform = perform
        pool.submit(work: { resource -> [(id: UInt64, outcomes: [Outcome])] in
            // Every batch waiting goes out together (possibly none: an earlier run took this one).
            let taken = handedOver.withLock { queue -> [(id: UInt64, ops: [Op])] in
                let n = min(queue.count, maxBatches)
                let taken = Array(queue.prefix(n))
                queue.removeFirst(n)
                return taken
            }
            guard !taken.isEmpty else { return [] }
            let outcomes = perform(resource, taken.flatMap(\.ops))
            var out: [(id: UInt64, outcomes: [Outcome])] = []
            var at = 0
            for b in taken {
                out.append((b.id, Array(outcomes[at..<at + b.ops.count])))
                at += b.ops.count
            }
            return out
        }, on: loop) { [self] answered in
            for (id, outcomes) in answered {
                guard let dones = waiting.removeValue(forKey: id) else { continue }
                pending -= dones.count
                for (done, outcome) in zip(dones, outcomes) { done(outcome) }
            }
        }
    }
}
