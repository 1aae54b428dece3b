#if canImport(Glibc)
import Glibc
#endif
import RunfeedCore

/// Reads this process's metrics from `/proc` (Linux) when asked: nothing runs in between. The parsing
/// is `ProcSelfStat` / `ProcStat` in RunfeedCore.
public final class ProcessStatsReader {
    private let ticksPerSecond = Int(sysconf(Int32(_SC_CLK_TCK)))
    private let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    /// Boot time does not change: read once.
    private lazy var bootTime: Int64? = Self.readFile("/proc/stat").flatMap(ProcStat.bootTimeSeconds)

    public init() {}

    /// Nil where `/proc` is not there or cannot be parsed.
    public func sample() -> ProcessSample? {
        guard let text = Self.readFile("/proc/self/stat"), let stat = ProcSelfStat.parse(text),
              let boot = bootTime else { return nil }
        var limit = rlimit()
        let maxFds = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Int(clamping: limit.rlim_cur) : 0
        return ProcessSample(stat: stat, bootTimeSeconds: boot, ticksPerSecond: ticksPerSecond, pageSize: pageSize,
                             openFds: Self.openFds(), maxFds: maxFds)
    }

    /// Entries of `/proc/self/fd`, less the one `opendir` holds while counting.
    static func openFds() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(dir) }
        var n = 0
        while let entry = readdir(dir) {
            let first = withUnsafeBytes(of: entry.pointee.d_name) { $0.first ?? 0 }
            if first != UInt8(ascii: ".") { n += 1 }
        }
        return max(0, n - 1)
    }

    /// A small file of `/proc` (their size is 0 to stat, so read to EOF).
    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
            if out.count > 1 << 20 { break }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
