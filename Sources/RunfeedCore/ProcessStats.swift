/// Process metrics from Linux's `/proc`, parsed without I/O (the server reads the files at scrape time).

/// The fields of `/proc/self/stat` that process metrics need (proc(5)).
public struct ProcSelfStat: Equatable, Sendable {
    /// utime and stime (fields 14 and 15), in clock ticks.
    public var userTicks: UInt64
    public var systemTicks: UInt64
    /// starttime (field 22): clock ticks after boot.
    public var startTicks: UInt64
    /// vsize (field 23), in bytes.
    public var virtualBytes: UInt64
    /// rss (field 24), in pages.
    public var residentPages: UInt64

    public init(userTicks: UInt64, systemTicks: UInt64, startTicks: UInt64, virtualBytes: UInt64, residentPages: UInt64) {
        self.userTicks = userTicks
        self.systemTicks = systemTicks
        self.startTicks = startTicks
        self.virtualBytes = virtualBytes
        self.residentPages = residentPages
    }

    /// Parses the one line of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
    /// itself hold spaces and parentheses, so fields are counted from the last `)`.
    public static func parse(_ text: String) -> ProcSelfStat? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let rest = text[text.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
        // rest[0] is field 3 (state): field n is rest[n - 3].
        func field(_ n: Int) -> UInt64? {
            let i = n - 3
            guard i < rest.count else { return nil }
            return UInt64(rest[i])
        }
        guard let utime = field(14), let stime = field(15), let start = field(22),
              let vsize = field(23) else { return nil }
        // rss is signed in the kernel's format; a negative value never occurs for a live process.
        guard rest.count > 21, let rss = Int64(rest[21]) else { return nil }
        return ProcSelfStat(userTicks: utime, systemTicks: stime, startTicks: start, virtualBytes: vsize,
                            residentPages: UInt64(max(0, rss)))
    }
}

public enum ProcStat {
    /// `btime` from `/proc/stat`: boot time in seconds since the epoch.
    public static func bootTimeSeconds(_ text: String) -> Int64? {
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Int64(line.dropFirst("btime ".count).trimmingSpaces())
        }
        return nil
    }
}

/// One scrape's process metrics, in base units (seconds, bytes).
public struct ProcessSample: Equatable, Sendable {
    public var cpuSeconds: Double
    public var residentBytes: Double
    public var virtualBytes: Double
    public var startTimeSeconds: Double
    public var openFds: Double
    public var maxFds: Double

    public init(cpuSeconds: Double, residentBytes: Double, virtualBytes: Double, startTimeSeconds: Double,
                openFds: Double, maxFds: Double) {
        self.cpuSeconds = cpuSeconds
        self.residentBytes = residentBytes
        self.virtualBytes = virtualBytes
        self.startTimeSeconds = startTimeSeconds
        self.openFds = openFds
        self.maxFds = maxFds
    }

    /// From `/proc/self/stat`, the boot time, `sysconf(_SC_CLK_TCK)` and `sysconf(_SC_PAGESIZE)`.
    public init(stat: ProcSelfStat, bootTimeSeconds: Int64, ticksPerSecond: Int, pageSize: Int, openFds: Int, maxFds: Int) {
        let hz = Double(max(1, ticksPerSecond))
        cpuSeconds = Double(stat.userTicks + stat.systemTicks) / hz
        residentBytes = Double(stat.residentPages) * Double(pageSize)
        virtualBytes = Double(stat.virtualBytes)
        startTimeSeconds = Double(bootTimeSeconds) + Double(stat.startTicks) / hz
        self.openFds = Double(openFds)
        self.maxFds = Double(maxFds)
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " || s.last == "\r" { s = s.dropLast() }
        return s
    }
}
