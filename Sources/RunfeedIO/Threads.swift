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

/// A FIFO of jobs consumed by a fixed set of OS threads.
public final class JobQueue<Job>: @unchecked Sendable {
    private var m = pthread_mutex_t()
    private var c = pthread_cond_t()
    private var jobs: [Job] = []
    private var head = 0
    private var closed = false

    public init() {
        pthread_mutex_init(&m, nil)
        pthread_cond_init(&c, nil)
    }

    public func push(_ job: Job) {
        pthread_mutex_lock(&m)
        jobs.append(job)
        pthread_cond_signal(&c)
        pthread_mutex_unlock(&m)
    }

    /// Blocks until a job is available; nil once closed and empty.
    public func pop() -> Job? { popBatch(max: 1)?.first }

    /// Blocks until a job is available, then takes up to `max` of them; nil once closed and empty.
    public func popBatch(max: Int) -> [Job]? {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        while head >= jobs.count {
            if closed { return nil }
            pthread_cond_wait(&c, &m)
        }
        let end = Swift.min(jobs.count, head + Swift.max(1, max))
        let batch = Array(jobs[head..<end])
        head = end
        if head > 1024 && head * 2 > jobs.count {
            jobs.removeFirst(head)
            head = 0
        }
        return batch
    }

    public var pending: Int {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return jobs.count - head
    }

    public func close() {
        pthread_mutex_lock(&m)
        closed = true
        pthread_cond_broadcast(&c)
        pthread_mutex_unlock(&m)
    }
}
