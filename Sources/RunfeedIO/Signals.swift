import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Delivers SIGTERM, SIGINT and SIGHUP to the event loop through a signalfd. Call `blockProcessSignals`
/// on the main thread before any other thread starts, so no thread receives them asynchronously.
public enum ProcessSignals {
    public static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP]

    public static func blockProcessSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handled { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Watches the signals on `loop`; `handler` runs on the loop thread with the signal number.
    public static func watch(on loop: EventLoop, _ handler: @escaping (Int32) -> Void) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handled { sigaddset(&set, s) }
        let fd = signalfd(-1, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        precondition(fd >= 0, "signalfd failed: \(errno)")
        loop.watch(fd: fd, events: EV_IN) { _ in
            var info = signalfd_siginfo()
            while read(fd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                handler(Int32(info.ssi_signo))
            }
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit (each held poll costs one fd) and
/// returns the new soft limit.
@discardableResult
public func raiseOpenFileLimit() -> Int {
    var lim = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 else { return -1 }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
    }
    return Int(clamping: lim.rlim_cur)
}
