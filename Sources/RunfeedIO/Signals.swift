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
