import RunfeedLoadCore
#if canImport(Glibc)
import Glibc
#endif

/// Microseconds on CLOCK_MONOTONIC: the same clock as Python's `time.monotonic_ns()`, so the
/// driver can compare its publish time with the arrival times the generator prints.
func monotonicUs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

/// Line-oriented event output on stdout, buffered and written in large blocks (flushed by a timer
/// and at exit), so that printing one line per response costs no system call per response.
final class EventLog {
    private var buffer: [UInt8] = []

    init() { buffer.reserveCapacity(1 << 16) }

    func line(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        buffer.append(10)
        if buffer.count > 1 << 20 { flush() }
    }

    func flush() {
        var off = 0
        while off < buffer.count {
            let n = buffer.withUnsafeBytes { write(1, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { usleep(1000); continue }
                break
            }
            off += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
