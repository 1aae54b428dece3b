import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// The parent of a worker pool, like php-fpm's master: it holds the listening socket, starts N worker
/// processes that inherit it (fresh `exec`s of this binary, so no thread is ever forked), restarts a
/// worker that dies, replaces workers one by one on SIGHUP (the new one accepts before the old one
/// drains), and on SIGTERM drains them all. The parent runs no threads; workers die with it
/// (PR_SET_PDEATHSIG).
public final class Supervisor {
    public struct Options {
        public var workers: Int
        /// Arguments for a worker after `<exe>`; the supervisor appends `--listen-fd 3 --ready-fd 4`
        /// and `--worker-index <i>`.
        public var workerArguments: (_ index: Int) -> [String]
        public var drainTimeoutMs: Int64
        public var readyTimeoutMs: Int64 = 15_000

        public init(workers: Int, drainTimeoutMs: Int64, workerArguments: @escaping (Int) -> [String]) {
            self.workers = workers
            self.drainTimeoutMs = drainTimeoutMs
            self.workerArguments = workerArguments
        }
    }

    private struct Worker {
        var pid: pid_t
        var index: Int
        var startedAt: Int64
        var ready: Bool
    }

    private let listenFd: Int32
    private let options: Options
    private let log: (String) -> Void
    private let exe: String
    private var workers: [Int: Worker] = [:]      // by slot index
    private var retiring: Set<pid_t> = []
    private var signalFd: Int32 = -1
    private var restarts = 0

    public init(listenFd: Int32, options: Options, log: @escaping (String) -> Void) {
        self.listenFd = listenFd
        self.options = options
        self.log = log
        // The path the binary was started by (a deploy that flips a symlink or replaces the file is
        // picked up by the next spawn); /proc/self/exe when it was found through PATH.
        let argv0 = CommandLine.arguments[0]
        if argv0.contains("/") {
            exe = argv0
        } else {
            var buf = [CChar](repeating: 0, count: 4096)
            let n = readlink("/proc/self/exe", &buf, buf.count - 1)
            exe = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : argv0
        }
    }

    /// Runs until SIGTERM/SIGINT has drained every worker; returns the exit status.
    public func run() -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGCHLD] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signalFd = signalfd(-1, &set, Int32(SFD_CLOEXEC))
        for i in 1...max(1, options.workers) {
            if let w = spawn(index: i) { workers[i] = w }
        }
        log("supervisor pid \(getpid()): \(workers.count) workers on fd \(listenFd)")
        while true {
            let sig = nextSignal(timeoutMs: 1000)
            switch sig {
            case SIGCHLD:
                reap()
            case SIGHUP:
                rollingRestart()
            case SIGTERM, SIGINT:
                return shutdown()
            default:
                respawnMissing()
            }
        }
    }

    // MARK: signals

    private func nextSignal(timeoutMs: Int32) -> Int32 {
        var pfd = pollfd(fd: signalFd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMs) > 0 else { return 0 }
        var info = signalfd_siginfo()
        let n = read(signalFd, &info, MemoryLayout<signalfd_siginfo>.size)
        return n == MemoryLayout<signalfd_siginfo>.size ? Int32(info.ssi_signo) : 0
    }

    // MARK: workers

    private func spawn(index: Int) -> Worker? {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            log("supervisor: pipe failed: errno \(errno)")
            return nil
        }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        // The child gets the socket on fd 3 and the pipe's write end on fd 4. Duplicate both above
        // the low descriptors first (close-on-exec), so neither dup2 can overwrite the other's source
        // whatever numbers the socket and the pipe happen to have (an inherited socket on fd 0 or 7).
        let sockCopy = fcntl(listenFd, F_DUPFD_CLOEXEC, 10)
        let writeCopy = fcntl(writeEnd, F_DUPFD_CLOEXEC, 10)
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        close(writeEnd)
        defer { close(sockCopy) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, sockCopy, 3)
        posix_spawn_file_actions_adddup2(&actions, writeCopy, 4)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK))
        let args = [exe] + options.workerArguments(index) + ["--listen-fd", "3", "--ready-fd", "4", "--worker-index", String(index)]
        var pid: pid_t = 0
        let cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        let rc = cargs.withUnsafeBufferPointer { argv in
            posix_spawn(&pid, exe, &actions, &attr, argv.baseAddress!, environ)
        }
        posix_spawn_file_actions_destroy(&actions)
        posix_spawnattr_destroy(&attr)
        close(writeCopy)  // the child holds its own copy; ours must go so a dead child reads as EOF
        guard rc == 0 else {
            close(readEnd)
            log("supervisor: cannot start worker \(index): error \(rc)")
            return nil
        }
        let ready = waitReady(readEnd, pid: pid)
        close(readEnd)
        log("supervisor: worker \(index) pid \(pid) \(ready ? "ready" : "did not report ready")")
        return Worker(pid: pid, index: index, startedAt: monotonicMs(), ready: ready)
    }

    /// Waits until the worker writes its readiness byte (it is accepting), exits, or times out.
    private func waitReady(_ fd: Int32, pid: pid_t) -> Bool {
        let deadline = monotonicMs() + options.readyTimeoutMs
        while monotonicMs() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&pfd, 1, 200)
            if n > 0 {
                var b: UInt8 = 0
                return read(fd, &b, 1) == 1
            }
            if kill(pid, 0) != 0 { return false }
        }
        return false
    }

    /// Collects exited workers; restarts the ones that were not retired on purpose.
    private func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { return }
            if retiring.remove(pid) != nil { continue }
            guard let (slot, w) = workers.first(where: { $0.value.pid == pid }) else { continue }
            workers.removeValue(forKey: slot)
            let how = runfeed_wifsignaled(status) != 0 ? "signal \(runfeed_wtermsig(status))" : "status \(runfeed_wexitstatus(status))"
            log("supervisor: worker \(slot) pid \(pid) exited (\(how)) after \(monotonicMs() - w.startedAt) ms")
            respawnSlot(slot, crashedQuickly: monotonicMs() - w.startedAt < 1000)
        }
    }

    private func respawnSlot(_ slot: Int, crashedQuickly: Bool) {
        // A worker that dies right after starting is retried from the 1 s tick, not in a tight loop.
        guard !crashedQuickly else { return }
        restarts += 1
        if let w = spawn(index: slot) { workers[slot] = w }
    }

    private func respawnMissing() {
        for i in 1...max(1, options.workers) where workers[i] == nil {
            if let w = spawn(index: i) { workers[i] = w }
        }
    }

    /// SIGHUP: replace each worker in turn. The replacement is accepting before the old worker is
    /// told to drain, so there is never a moment with no worker accepting.
    private func rollingRestart() {
        log("supervisor: rolling restart of \(workers.count) workers")
        for slot in workers.keys.sorted() {
            guard let old = workers[slot], let fresh = spawn(index: slot) else { continue }
            guard fresh.ready else {
                // A replacement that cannot start (a broken deploy) must not take the pool down: keep
                // the old workers and stop the reload here.
                log("supervisor: reload stopped: the new worker \(fresh.pid) did not start; keeping the running workers")
                kill(fresh.pid, SIGKILL)
                waitExit(fresh.pid, timeoutMs: 1000)
                break
            }
            workers[slot] = fresh
            retiring.insert(old.pid)
            kill(old.pid, SIGTERM)
            waitExit(old.pid, timeoutMs: options.drainTimeoutMs + 5_000)
        }
        reap()
        log("supervisor: rolling restart done")
    }

    private func waitExit(_ pid: pid_t, timeoutMs: Int64) {
        let deadline = monotonicMs() + timeoutMs
        while monotonicMs() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                retiring.remove(pid)
                return
            }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        retiring.remove(pid)
    }

    /// SIGTERM: every worker drains (answers held polls at once, finishes snapshots) and exits.
    private func shutdown() -> Int32 {
        log("supervisor: stopping \(workers.count) workers")
        for w in workers.values { kill(w.pid, SIGTERM) }
        let deadline = monotonicMs() + options.drainTimeoutMs + 5_000
        while !workers.isEmpty && monotonicMs() < deadline {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0 {
                if let slot = workers.first(where: { $0.value.pid == pid })?.key { workers.removeValue(forKey: slot) }
                continue
            }
            usleep(20_000)
        }
        for w in workers.values { kill(w.pid, SIGKILL) }
        log("supervisor: stopped")
        return 0
    }
}

/// Opens a FastCGI listening socket without starting anything else (for the supervisor).
public func openFastCGISocket(_ address: String, backlog: Int32 = FastCGIListener.burstBacklog, socketMode: mode_t = 0o666) throws -> Int32 {
    let l = try FastCGIListener(address: address, backlog: backlog, socketMode: socketMode)
    _ = fcntl(l.socketFd, F_SETFD, 0)  // inheritable through posix_spawn's dup2 either way
    return l.socketFd
}

/// Marks this process to receive `sig` when its parent exits; false if the parent is already gone.
public func dieWithParent(_ sig: Int32) -> Bool {
    _ = runfeed_die_with_parent(sig)
    return getppid() != 1
}

/// True when `fd` is a listening socket.
public func isListeningSocket(_ fd: Int32) -> Bool { runfeed_is_listening_socket(fd) != 0 }

/// Tells the supervisor that this worker is accepting (writes one byte and closes the pipe).
public func signalReady(fd: Int32) {
    var b: UInt8 = 1
    _ = write(fd, &b, 1)
    close(fd)
}
