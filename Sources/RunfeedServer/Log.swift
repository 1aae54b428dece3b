#if canImport(Glibc)
import Glibc
#endif
import RunfeedIO

public enum LogLevel: String, Sendable, Comparable {
    case trace, debug, info, warning, error

    var rank: Int {
        switch self {
        case .trace: return 0
        case .debug: return 1
        case .info: return 2
        case .warning: return 3
        case .error: return 4
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rank < b.rank }
}

/// One line per event on stderr: `<iso time> <level> <message> key=value…`.
public final class Logger: @unchecked Sendable {
    public let level: LogLevel
    private let lock = Mutex()

    public init(level: LogLevel) { self.level = level }

    public func log(_ l: LogLevel, _ message: @autoclosure () -> String) {
        guard l >= level else { return }
        let line = "\(Self.timestamp()) \(l.rawValue) pid=\(getpid()) \(message())\n"
        lock.withLock { var bytes = Array(line.utf8); _ = write(2, &bytes, bytes.count) }
    }

    public func debug(_ m: @autoclosure () -> String) { log(.debug, m()) }
    public func info(_ m: @autoclosure () -> String) { log(.info, m()) }
    public func warning(_ m: @autoclosure () -> String) { log(.warning, m()) }
    public func error(_ m: @autoclosure () -> String) { log(.error, m()) }

    private static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func p(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(p(tmv.tm_year + 1900, 4))-\(p(tmv.tm_mon + 1, 2))-\(p(tmv.tm_mday, 2))T\(p(tmv.tm_hour, 2)):\(p(tmv.tm_min, 2)):\(p(tmv.tm_sec, 2)).\(p(Int32(ts.tv_nsec / 1_000_000), 3))Z"
    }
}
