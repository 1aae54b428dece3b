import RunfeedLoadCore
import ArgumentParser
import RunfeedIO
#if canImport(Glibc)
import Glibc
#endif

enum LoadError: Error, CustomStringConvertible {
    case usage(String)
    var description: String {
        switch self { case .usage(let s): return s }
    }
}

/// The benchmark load generator (bench/README.md). One process, one epoll loop, no thread per
/// connection; bounded by --connections and --duration; refuses anything but loopback.
@main
struct RunfeedLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runfeed-load",
        abstract: "Load generator for runfeed benchmarks (loopback only).",
        subcommands: [Feeds.self, Naive.self])
}

struct Feeds: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http",
        abstract: "Hold or drive HTTP connections; one event line per response on stdout.",
        discussion: """
        Output lines (stdout):
          R <conn> <t_us> <status> <body_bytes> <kind> <tag>   a response (kind s=snapshot l=live n=nchan r=rate;
                                                              tag = electric-offset, or the first token of an nchan body)
          E <conn> <t_us> <what>                              an error (first 200)
          H <t_us> open=… held=… responses=… errors=… reconnects=…   every second
          RATE requests=… seconds=… rps=… body_bytes=… p50_us=… p99_us=… max_us=…   (--protocol rate)
          END responses=… errors=… reconnects=… bytes=…
        t_us is CLOCK_MONOTONIC in microseconds. Closing stdin stops the generator.
        """)

    @Option(help: "electric | nchan | rate") var `protocol`: String = "electric"
    @Option(help: "Target host (loopback only).") var host: String = "127.0.0.1"
    @Option(help: "Target port (nginx).") var port: UInt16
    @Option(help: "Local loopback address to connect from (e.g. 127.0.0.2: more source ports than one address has).") var source: String?
    @Option(help: "File with one request path per line; connection i uses line i mod count.") var pathsFile: String
    @Option(name: .customLong("header"), help: "Extra request header 'Name: value' (repeatable).") var headers: [String] = []
    @Option(help: "Connections to open (at most 19,000 per process: the fd limit).") var connections: Int
    @Option(help: "Connections opened per second while ramping up.") var rampPerSec: Int = 2000
    @Option(help: "Hard time limit in seconds.") var duration: Int = 60
    @Option(help: "rate: seconds of warm-up not counted.") var warmup: Int = 1
    @Flag(help: "Do not print an R line per response.") var quiet = false

    func run() throws {
        guard let proto = Protocol(rawValue: self.protocol) else { throw LoadError.usage("--protocol: electric, nchan or rate") }
        try requireLoopback(host)
        guard connections >= 1 && connections <= 19_000 else { throw LoadError.usage("--connections must be 1…19000 per process") }
        guard duration >= 1 && duration <= 3600 else { throw LoadError.usage("--duration must be 1…3600 s") }
        let paths = try readLines(pathsFile)
        guard !paths.isEmpty else { throw LoadError.usage("\(pathsFile) has no paths") }
        let limit = raiseOpenFileLimit()
        guard limit > connections + 32 else { throw LoadError.usage("open-file limit \(limit) is too low for \(connections) connections") }
        signal(SIGPIPE, SIG_IGN)
        let driver = LoadDriver(settings: ClientSettings(
            proto: proto, host: host, port: port, paths: paths, headers: headers,
            connections: connections, rampPerSec: max(1, rampPerSec), durationS: duration,
            warmupS: warmup, printResponses: !quiet, source: source))
        driver.run()
    }
}

struct Naive: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "naive-postgres",
        abstract: "Baseline: each subscriber re-reads its run from Postgres once a second.")

    @Option(help: "libpq connection string (loopback only).") var databaseURL: String
    @Option(help: "File with '<runId> <environmentId>' per line.") var runsFile: String
    @Option(help: "Subscribers (one read per second each).") var subscribers: Int
    @Option(help: "Postgres connections in the pool.") var connections: Int = 8
    @Option(help: "Seconds to run.") var duration: Int = 10

    func run() throws {
        guard subscribers >= 1 && subscribers <= 100_000 else { throw LoadError.usage("--subscribers must be 1…100000") }
        guard connections >= 1 && connections <= 64 else { throw LoadError.usage("--connections must be 1…64") }
        guard duration >= 1 && duration <= 600 else { throw LoadError.usage("--duration must be 1…600 s") }
        guard databaseURL.contains("127.0.0.1") || databaseURL.contains("localhost") else {
            throw LoadError.usage("naive-postgres targets loopback only (host 127.0.0.1 or localhost in the URL)")
        }
        let runs: [(id: String, env: String)] = try readLines(runsFile).compactMap { line in
            let parts = line.split(separator: " ")
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        }
        guard !runs.isEmpty else { throw LoadError.usage("\(runsFile) has no '<runId> <environmentId>' lines") }
        try NaivePoller(settings: NaiveSettings(databaseURL: databaseURL, runs: runs, subscribers: subscribers,
                                                connections: connections, durationS: duration)).run()
    }
}

func requireLoopback(_ host: String) throws {
    var addr = in_addr()
    guard inet_pton(AF_INET, host, &addr) == 1 else { throw LoadError.usage("--host must be an IPv4 loopback address") }
    guard UInt32(bigEndian: addr.s_addr) >> 24 == 127 else { throw LoadError.usage("refusing non-loopback target \(host)") }
}

func readLines(_ path: String) throws -> [String] {
    guard let f = fopen(path, "r") else { throw LoadError.usage("cannot read \(path)") }
    defer { fclose(f) }
    var lines: [String] = []
    var buf: UnsafeMutablePointer<CChar>? = nil
    var cap = 0
    while getline(&buf, &cap, f) > 0 {
        var s = String(cString: buf!)
        while s.hasSuffix("\n") || s.hasSuffix("\r") { s.removeLast() }
        if !s.isEmpty { lines.append(s) }
    }
    free(buf)
    return lines
}
