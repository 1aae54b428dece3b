import RunfeedLoadCore
import RunfeedIO
#if canImport(Glibc)
import Glibc
#endif

/// What each connection plays.
enum Protocol: String {
    /// @electric-sql/client 1.0.14: snapshot (`offset=-1`), then `live=true` with the returned
    /// handle, offset and cursor, again after every response.
    case electric
    /// nchan long-poll: GET, then GET with `If-Modified-Since` / `If-None-Match` from the last message.
    case nchan
    /// The same GET back to back on a keep-alive connection (throughput; latency per request).
    case rate
}

struct ClientSettings {
    var proto: Protocol
    var host: String
    var port: UInt16
    var paths: [String]
    var headers: [String]
    var connections: Int
    var rampPerSec: Int
    var durationS: Int
    var warmupS: Int
    var printResponses: Bool
    /// Local address to connect from (a loopback address other than 127.0.0.1 gives another ~28,000
    /// ephemeral ports towards the same nginx port); nil: the kernel's choice.
    var source: String? = nil
}

/// Totals over the whole run (printed as the `END` line).
struct Totals {
    var responses = 0
    var errors = 0
    var reconnects = 0
    var bytes = 0
    var held = 0          // requests in flight right now
}

/// One HTTP/1.1 keep-alive connection and the request sequence its protocol plays.
final class ClientConnection {
    let id: Int
    let path: String
    unowned let driver: LoadDriver

    var fd: Int32 = -1
    private var connected = false
    private var out: [UInt8] = []
    private var outOffset = 0
    private var parser = HTTPResponseParser(prefixLimit: 48)
    private var inFlight = false
    private var sentAtUs: Int64 = 0
    private var kind: Character = "s"

    // electric state
    private var handle: String?
    private var offset: String?
    private var cursor: String?
    // nchan state
    private var lastModified: String?
    private var etag: String?

    init(id: Int, path: String, driver: LoadDriver) {
        self.id = id
        self.path = path
        self.driver = driver
    }

    func open() {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            driver.error(self, "socket: errno \(errno)")
            driver.loop.schedule(afterMs: 1000) { [self] in open() }
            return
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if var src = driver.sourceAddress {
            let bound = withUnsafePointer(to: &src) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound != 0 {
                let e = errno
                close(fd); fd = -1
                driver.error(self, "bind: errno \(e)")
                driver.loop.schedule(afterMs: 1000) { [self] in open() }
                return
            }
        }
        var addr = driver.address
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 && errno != EINPROGRESS {
            let e = errno
            close(fd); fd = -1
            driver.error(self, "connect: errno \(e)")
            driver.loop.schedule(afterMs: 1000) { [self] in open() }
            return
        }
        connected = false
        parser = HTTPResponseParser(prefixLimit: 48)
        driver.loop.watch(fd: fd, events: EV_OUT | EV_IN) { [unowned self] ev in self.onEvents(ev) }
    }

    private func reconnect(afterMs: Int64) {
        closeSocket()
        driver.totals.reconnects += 1
        driver.loop.schedule(afterMs: afterMs) { [self] in open() }
    }

    func closeSocket() {
        if fd >= 0 {
            driver.loop.unwatch(fd: fd)
            close(fd)
            fd = -1
        }
        if inFlight { inFlight = false; driver.totals.held -= 1 }
        connected = false
    }

    private func onEvents(_ ev: UInt32) {
        if !connected {
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                driver.error(self, "connect: errno \(err)")
                reconnect(afterMs: 1000)
                return
            }
            if ev & EV_OUT == 0 { return }
            connected = true
            sendNext()
            return
        }
        if ev & EV_OUT != 0 { flushOut() }
        if fd >= 0 && ev & (EV_IN | EV_HUP | EV_ERR) != 0 { readAvailable() }
    }

    /// Builds and writes the next request of the sequence.
    func sendNext() {
        guard fd >= 0, connected else { return }
        var target = path
        let sep = target.contains("?") ? "&" : "?"
        switch driver.settings.proto {
        case .electric:
            if let handle, let offset {
                target += "\(sep)handle=\(handle)&offset=\(offset)&live=true"
                if let cursor { target += "&cursor=\(cursor)" }
                kind = "l"
            } else {
                target += "\(sep)offset=-1"
                kind = "s"
            }
        case .nchan:
            kind = "n"
        case .rate:
            kind = "r"
        }
        var req = "GET \(target) HTTP/1.1\r\nHost: \(driver.settings.host)\r\n"
        for h in driver.settings.headers { req += h + "\r\n" }
        if driver.settings.proto == .nchan {
            if let lastModified { req += "If-Modified-Since: \(lastModified)\r\n" }
            if let etag { req += "If-None-Match: \(etag)\r\n" }
        }
        req += "\r\n"
        out = Array(req.utf8)
        outOffset = 0
        sentAtUs = monotonicUs()
        inFlight = true
        driver.totals.held += 1
        flushOut()
    }

    private func flushOut() {
        while outOffset < out.count {
            let n = out.withUnsafeBytes { write(fd, $0.baseAddress! + outOffset, $0.count - outOffset) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR {
                    driver.loop.modify(fd: fd, events: EV_IN | EV_OUT)
                    return
                }
                driver.error(self, "write: errno \(errno)")
                reconnect(afterMs: 100)
                return
            }
            outOffset += n
        }
        out.removeAll(keepingCapacity: true)
        outOffset = 0
        driver.loop.modify(fd: fd, events: EV_IN)
    }

    private func readAvailable() {
        while fd >= 0 {
            let n = read(fd, driver.readBuffer.baseAddress!, driver.readBuffer.count)
            if n > 0 {
                driver.totals.bytes += n
                do {
                    var completed: [HTTPResponse] = []
                    try parser.feed(UnsafeRawBufferPointer(start: driver.readBuffer.baseAddress, count: n)) { completed.append($0) }
                    for r in completed { onResponse(r) }
                } catch {
                    driver.error(self, "parse: \(error)")
                    reconnect(afterMs: 100)
                    return
                }
                if n < driver.readBuffer.count { return }
            } else if n == 0 {
                if inFlight { driver.error(self, "closed by peer mid-request") }
                reconnect(afterMs: inFlight ? 100 : 0)
                return
            } else {
                if errno == EAGAIN || errno == EINTR { return }
                driver.error(self, "read: errno \(errno)")
                reconnect(afterMs: 100)
                return
            }
        }
    }

    private func onResponse(_ r: HTTPResponse) {
        let now = monotonicUs()
        if inFlight { inFlight = false; driver.totals.held -= 1 }
        driver.totals.responses += 1
        let proto = driver.settings.proto
        var retryAfterMs: Int64 = 0
        var tag = "-"
        switch proto {
        case .electric:
            if r.status == 200 {
                handle = r.headers["electric-handle"] ?? handle
                offset = r.headers["electric-offset"] ?? offset
                cursor = r.headers["electric-cursor"] ?? cursor
                tag = r.headers["electric-offset"] ?? "-"
            } else if r.status == 409 {
                handle = nil; offset = nil; cursor = nil
            } else {
                driver.error(self, "status \(r.status)")
                retryAfterMs = 1000
                if r.status / 100 == 4 && r.status != 429 { handle = nil; offset = nil; cursor = nil }
            }
        case .nchan:
            if r.status == 200 {
                lastModified = r.headers["last-modified"] ?? lastModified
                etag = r.headers["etag"] ?? etag
                tag = Self.token(r.bodyPrefix)
            } else if r.status != 304 && r.status != 408 {
                driver.error(self, "status \(r.status)")
                retryAfterMs = 1000
            }
        case .rate:
            if r.status != 200 { driver.error(self, "status \(r.status)"); retryAfterMs = 100 }
            driver.recordRate(latencyUs: now - sentAtUs, bodyBytes: r.bodyBytes, at: now)
        }
        if driver.settings.printResponses {
            driver.log.line("R \(id) \(now) \(r.status) \(r.bodyBytes) \(kind) \(tag)")
        }
        guard !driver.stopping else { return }
        if !r.keepAlive {
            closeSocket()
            driver.loop.schedule(afterMs: retryAfterMs) { [self] in open() }
        } else if retryAfterMs > 0 {
            driver.loop.schedule(afterMs: retryAfterMs) { [self] in sendNext() }
        } else {
            sendNext()
        }
    }

    /// The first whitespace-delimited printable token of a body (an nchan message's round marker).
    static func token(_ prefix: [UInt8]) -> String {
        var out: [UInt8] = []
        for b in prefix {
            if b <= 32 || b >= 127 { break }
            out.append(b)
        }
        return out.isEmpty ? "-" : String(decoding: out, as: UTF8.self)
    }
}

/// Owns the event loop and every connection; ramps connections up, prints a status line every
/// second, stops at the time limit or when stdin closes.
final class LoadDriver {
    let settings: ClientSettings
    let loop = EventLoop()
    let log = EventLog()
    var totals = Totals()
    var stopping = false
    var address = sockaddr_in()
    var sourceAddress: sockaddr_in?
    let readBuffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 256 * 1024)
    private var connections: [ClientConnection] = []
    private var startUs: Int64 = 0
    private var rateLatencies = Samples()
    private var rateBodyBytes = 0
    private var rateFirstUs: Int64 = 0
    private var rateLastUs: Int64 = 0
    private var errorsPrinted = 0

    init(settings: ClientSettings) {
        self.settings = settings
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = settings.port.bigEndian
        inet_pton(AF_INET, settings.host, &address.sin_addr)
        if let source = settings.source {
            var src = sockaddr_in()
            src.sin_family = sa_family_t(AF_INET)
            inet_pton(AF_INET, source, &src.sin_addr)
            sourceAddress = src
        }
    }

    func error(_ c: ClientConnection, _ what: String) {
        totals.errors += 1
        if errorsPrinted < 200 {
            errorsPrinted += 1
            log.line("E \(c.id) \(monotonicUs()) \(what)")
        }
    }

    func recordRate(latencyUs: Int64, bodyBytes: Int, at now: Int64) {
        guard now - startUs >= Int64(settings.warmupS) * 1_000_000 else { return }
        if rateFirstUs == 0 { rateFirstUs = now }
        rateLastUs = now
        rateLatencies.add(latencyUs)
        rateBodyBytes += bodyBytes
    }

    func run() {
        startUs = monotonicUs()
        var next = 0
        let perTick = max(1, settings.rampPerSec / 100)
        func ramp() {
            var k = 0
            while next < settings.connections && k < perTick {
                let c = ClientConnection(id: next, path: settings.paths[next % settings.paths.count], driver: self)
                connections.append(c)
                c.open()
                next += 1; k += 1
            }
            if next < settings.connections { loop.schedule(afterMs: 10, ramp) }
        }
        ramp()

        func status() {
            log.line("H \(monotonicUs()) open=\(connections.count) held=\(totals.held) responses=\(totals.responses) errors=\(totals.errors) reconnects=\(totals.reconnects)")
            log.flush()
            loop.schedule(afterMs: 1000, status)
        }
        loop.schedule(afterMs: 1000, status)
        func flusher() { log.flush(); loop.schedule(afterMs: 20, flusher) }
        loop.schedule(afterMs: 20, flusher)

        loop.schedule(afterMs: Int64(settings.durationS) * 1000) { [self] in shutdown() }
        // The driver stops a generator by closing its stdin.
        let flags = fcntl(0, F_GETFL)
        _ = fcntl(0, F_SETFL, flags | O_NONBLOCK)
        loop.watch(fd: 0, events: EV_IN) { [self] _ in
            var scratch = [UInt8](repeating: 0, count: 256)
            let n = read(0, &scratch, scratch.count)
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) {
                loop.unwatch(fd: 0)
                shutdown()
            }
        }
        loop.run()

        for c in connections { c.closeSocket() }
        if settings.proto == .rate {
            let secs = Double(max(1, rateLastUs - rateFirstUs)) / 1e6
            log.line("RATE requests=\(rateLatencies.count) seconds=\(fixed(secs, 3)) rps=\(fixed(Double(rateLatencies.count) / secs, 1)) body_bytes=\(rateBodyBytes) p50_us=\(rateLatencies.percentile(50)) p99_us=\(rateLatencies.percentile(99)) max_us=\(rateLatencies.percentile(100))")
        }
        log.line("END responses=\(totals.responses) errors=\(totals.errors) reconnects=\(totals.reconnects) bytes=\(totals.bytes)")
        log.flush()
    }

    private func shutdown() {
        guard !stopping else { return }
        stopping = true
        loop.stop()
    }
}
