import CFastCGI
import CLinux
import RunfeedCore
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP request headers the server reads. The others (host, user agent, cookies …) are not kept: a held poll
/// keeps its request info for the whole hold, so these are plain fields, not a dictionary.
public struct RequestHeaders: Sendable, Equatable {
    public var authorization: String?
    public var origin: String?
    public var accessControlRequestHeaders: String?
    public var triggerBranch: String?
    public var triggerElectricVersion: String?
    public var triggerApiVersion: String?

    public init(authorization: String? = nil, origin: String? = nil, accessControlRequestHeaders: String? = nil,
                triggerBranch: String? = nil, triggerElectricVersion: String? = nil, triggerApiVersion: String? = nil) {
        self.authorization = authorization
        self.origin = origin
        self.accessControlRequestHeaders = accessControlRequestHeaders
        self.triggerBranch = triggerBranch
        self.triggerElectricVersion = triggerElectricVersion
        self.triggerApiVersion = triggerApiVersion
    }

    /// The kept headers of CGI-style params (`x-trigger-branch` arrives as `HTTP_X_TRIGGER_BRANCH`).
    init(params: [String: String]) {
        self.init(authorization: params["HTTP_AUTHORIZATION"], origin: params["HTTP_ORIGIN"],
                  accessControlRequestHeaders: params["HTTP_ACCESS_CONTROL_REQUEST_HEADERS"],
                  triggerBranch: params["HTTP_X_TRIGGER_BRANCH"],
                  triggerElectricVersion: params["HTTP_X_TRIGGER_ELECTRIC_VERSION"],
                  triggerApiVersion: params["HTTP_X_TRIGGER_API_VERSION"])
    }
}

/// What the server needs of one FastCGI request, from its CGI params.
public struct FastCGIRequestInfo: Sendable {
    public var method: String
    /// The decoded path (DOCUMENT_URI, else REQUEST_URI without its query).
    public var path: String
    public var queryString: String
    public var headers: RequestHeaders

    public init(method: String, path: String, queryString: String, headers: RequestHeaders = RequestHeaders()) {
        self.method = method
        self.path = path
        self.queryString = queryString
        self.headers = headers
    }

    /// Builds the info from CGI-style `NAME=value` params.
    public static func fromParams(_ params: [String: String]) -> FastCGIRequestInfo {
        let headers = RequestHeaders(params: params)
        let uri = params["REQUEST_URI"] ?? ""
        var path = params["DOCUMENT_URI"] ?? ""
        if path.isEmpty {
            path = String(uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        }
        var query = params["QUERY_STRING"] ?? ""
        if query.isEmpty, let q = uri.firstIndex(of: "?") { query = String(uri[uri.index(after: q)...]) }
        return FastCGIRequestInfo(method: params["REQUEST_METHOD"] ?? "GET", path: path, queryString: query,
                                  headers: headers)
    }
}

/// One FastCGI request, read by `FastCGIServer` on the event loop. The answer is framed here and written
/// without blocking by the loop's `ResponseWriter`; afterwards the connection carries the web server's next
/// request (`FCGI_KEEP_CONN`) or is closed.
public final class FastCGIConnection {
    public private(set) var info: FastCGIRequestInfo
    /// The upstream connection's socket, watched for EOF while the request is parked.
    public let fd: Int32
    /// Monotonic µs when the request was read (the start of its `runfeed_request_duration_seconds`).
    public let acceptedAtUs: Int64
    /// Set when the client is known to have gone before the answer (nginx closed the upstream
    /// connection of a held poll): the answer is counted as 499. Loop thread only.
    public var clientGone = false
    let requestId: UInt16
    /// The web server keeps the connection for further requests after this one.
    public let keepConnection: Bool
    private var answered = false
    /// Called once the answer is written (true) or abandoned (false); decides whether the connection stays.
    var onAnswered: ((FastCGIConnection, Bool) -> Void)?
    /// Whether the answer was handed to the writer (the connection is then kept or closed). Loop thread only.
    public var isAnswered: Bool { answered }

    /// The request's metric labels (route and mode), classified once when it is read.
    public let labels: RequestLabels

    /// Once the request is authenticated and routed, drops what its answer does not need — the credential
    /// (often the largest thing a poll would hold), the path and the query — so a held poll does not keep them
    /// for the whole hold. `info` keeps the method and the headers answers use (origin, versions).
    public func routed() {
        info.headers.authorization = nil
        info.path = ""
        info.queryString = ""
    }

    init(fd: Int32, requestId: UInt16, keepConnection: Bool, info: FastCGIRequestInfo) {
        self.info = info
        self.labels = RequestLabels(method: info.method, path: info.path, queryString: info.queryString)
        self.fd = fd
        self.requestId = requestId
        self.keepConnection = keepConnection
        self.acceptedAtUs = monotonicUs()
    }

    /// Sends `head` (CGI headers and the blank line) and `body`, then hands the connection back (kept) or closes it.
    /// Loop thread only. Returns false if the request was already answered.
    @discardableResult
    public func respond(head: String, body: String, with writer: ResponseWriter) -> Bool {
        guard !answered else { return false }
        answered = true
        writer.send(fd: fd, FastCGIRecords.response(requestId: requestId, head: head, body: body)) { [self] ok in
            if let done = onAnswered {
                onAnswered = nil
                done(self, ok)
            } else {
                writer.closeConnection(fd)
            }
        }
        return true
    }
}

/// Writes answers on the event loop with non-blocking sockets: a client (or front end) that stops
/// reading stalls only its own connection, which is closed once it has taken nothing for `timeoutMs`.
public final class ResponseWriter {
    private let loop: EventLoop
    private let timeoutMs: Int64
    private var pending: [Int32: Pending] = [:]

    private final class Pending {
        var bytes: [UInt8]
        var offset = 0
        var timer: EventLoop.TimerID?
        let done: (Bool) -> Void
        init(_ b: [UInt8], _ done: @escaping (Bool) -> Void) {
            bytes = b
            self.done = done
        }
    }

    public init(loop: EventLoop, timeoutMs: Int64 = 30_000) {
        self.loop = loop
        self.timeoutMs = timeoutMs
    }

    /// Answers still being written.
    public var inProgress: Int { pending.count }

    /// Writes `bytes`; `done(true)` once all are written, `done(false)` (after closing the socket) when the
    /// peer is gone or took nothing for `timeoutMs`.
    func send(fd: Int32, _ bytes: [UInt8], done: @escaping (Bool) -> Void) {
        loop.mute(fd: fd)
        let p = Pending(bytes, done)
        if let result = flush(fd, p) {
            finish(fd, p, result)
            return
        }
        pending[fd] = p
        p.timer = loop.schedule(afterMs: timeoutMs) { [weak self] in self?.timedOut(fd) }
        loop.watch(fd: fd, events: EV_OUT) { [weak self] _ in
            guard let self, let p = self.pending[fd] else { return }
            if let t = p.timer { self.loop.cancel(t) }
            p.timer = nil
            if let result = self.flush(fd, p) {
                self.pending.removeValue(forKey: fd)
                self.loop.mute(fd: fd)
                self.finish(fd, p, result)
            } else {
                // The timeout counts from the last progress: a slow reader is fine, a stalled one is not.
                p.timer = self.loop.schedule(afterMs: self.timeoutMs) { [weak self] in self?.timedOut(fd) }
            }
        }
    }

    /// Writes what the socket takes: nil while more remains, true when all is written, false when the peer
    /// is gone.
    private func flush(_ fd: Int32, _ p: Pending) -> Bool? {
        while p.offset < p.bytes.count {
            let n = p.bytes.withUnsafeBytes { buf in
                Glibc.send(fd, buf.baseAddress! + p.offset, buf.count - p.offset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                p.offset += n
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return nil }
            if n < 0 && errno == EINTR { continue }
            return false  // EPIPE, ECONNRESET…: the client left
        }
        return true
    }

    private func finish(_ fd: Int32, _ p: Pending, _ ok: Bool) {
        if !ok { closeConnection(fd) }
        p.done(ok)
    }

    private func timedOut(_ fd: Int32) {
        guard let p = pending.removeValue(forKey: fd) else { return }
        loop.unwatch(fd: fd)
        finish(fd, p, false)
    }

    /// Ends a connection: out of the loop's epoll set, half-closed first so the peer reads the whole answer, then closed.
    func closeConnection(_ fd: Int32) {
        loop.unwatch(fd: fd)
        shutdown(fd, Int32(SHUT_WR))
        close(fd)
    }
}

/// The listening socket (a unix path or `host:port`, or one inherited from a supervisor). Opened with
/// libfcgi's `FCGX_OpenSocket`; requests are read by `FastCGIServer` on the event loop.
public final class FastCGIListener {
    public let socketFd: Int32
    public let address: String

    /// Listen backlog of worker sockets: when one change wakes thousands of polls, their clients all
    /// re-arm at once and nginx opens that many upstream connections within milliseconds (without kept
    /// connections); a backlog that overflows makes nginx fail them (EAGAIN on a unix socket → 502/503).
    /// The kernel caps it at `net.core.somaxconn` (4096 on current kernels).
    public static let burstBacklog: Int32 = 65535

    /// Opens `address`: a unix socket path, or `host:port` / `:port` for TCP.
    public init(address: String, backlog: Int32 = FastCGIListener.burstBacklog, socketMode: mode_t = 0o666) throws {
        FastCGIListener.restoreSignals()
        self.address = address
        let isUnix = address.hasPrefix("/") || address.hasPrefix(".")
        if isUnix { unlink(address) }
        let fd = FCGX_OpenSocket(address, backlog)
        guard fd >= 0 else { throw IOError("cannot listen on \(address): errno \(errno)") }
        if isUnix { chmod(address, socketMode) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        socketFd = fd
    }

    /// Adopts an already-listening socket (inherited from a parent or a supervisor).
    public init(inheritedFd: Int32, description: String) throws {
        FastCGIListener.restoreSignals()
        socketFd = inheritedFd
        address = description
    }

    /// SIGPIPE is ignored (a write to a closed upstream fails with EPIPE; sends also pass MSG_NOSIGNAL);
    /// SIGTERM/SIGINT/SIGHUP are blocked and read from a signalfd by the event loop.
    static func restoreSignals() {
        signal(SIGPIPE, SIG_IGN)
    }
}

/// FastCGI on the event loop. Accepts on the listening socket (shared by the pool's workers, which take turns:
/// see `watchListener`), reads each connection's records with `FastCGIRequestParser`, hands every
/// complete request to `onRequest`, and after its answer either waits for the web server's next request on the
/// same connection (`FCGI_KEEP_CONN`: nginx `fastcgi_keep_conn on` with an upstream `keepalive` pool) or
/// closes it. An idle kept connection costs a watched fd and no thread; it is closed after `idleTimeoutMs`, at
/// a drain, or when the web server closes it. Loop thread only.
public final class FastCGIServer {
    private let loop: EventLoop
    private let listenFd: Int32
    private let writer: ResponseWriter
    private let idleTimeoutMs: Int64
    private var onRequest: ((FastCGIConnection) -> Void)?
    private var accepting = false

    private final class Conn {
        var parser = FastCGIRequestParser()
        /// Monotonic ms since when the connection waits for a request (nil while a request is out).
        var idleSinceMs: Int64?
        /// A request is out (being answered): the fd belongs to whoever answers it until then.
        var busy = false
        /// Requests this connection carried.
        var served = 0
    }
    private var conns: [Int32: Conn] = [:]
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 8)

    /// Connections open now, and how many of them wait for a request (kept, idle).
    public var openConnections: Int { conns.count }
    public var idleConnections: Int { conns.values.filter { !$0.busy }.count }
    /// Requests read on a connection that had carried one before (kept connections at work).
    public private(set) var reusedRequests = 0
    public private(set) var acceptedConnections = 0

    public init(loop: EventLoop, listenFd: Int32, writer: ResponseWriter, idleTimeoutMs: Int64 = 75_000) {
        self.loop = loop
        self.listenFd = listenFd
        self.writer = writer
        self.idleTimeoutMs = idleTimeoutMs
    }

    deinit { readBuffer.deallocate() }

    public func start(_ onRequest: @escaping (FastCGIConnection) -> Void) {
        self.onRequest = onRequest
        _ = fcntl(listenFd, F_SETFL, fcntl(listenFd, F_GETFL) | O_NONBLOCK)
        accepting = true
        watchListener()
        scheduleIdleSweep()
    }

    /// One timer for all connections (a timer per request would pile up cancelled entries at high request
    /// rates): every few seconds, connections idle for `idleTimeoutMs` are closed.
    private func scheduleIdleSweep() {
        loop.schedule(afterMs: max(1_000, idleTimeoutMs / 8)) { [weak self] in
            guard let self else { return }
            let cutoff = monotonicMs() - self.idleTimeoutMs
            for (fd, c) in self.conns {
                if let since = c.idleSinceMs, since <= cutoff { self.close(fd, c) }
            }
            self.scheduleIdleSweep()
        }
    }

    /// EPOLLEXCLUSIVE wakes one waiting worker per connection, the first in the socket's queue; re-registering
    /// after each accept puts this worker at the back, so the workers of a pool take turns (without it the
    /// first idle one would take nearly every connection, or all would wake for each).
    private func watchListener() {
        loop.watch(fd: listenFd, events: EV_IN | EV_EXCLUSIVE) { [weak self] _ in self?.acceptPending() }
    }

    /// Stops accepting and closes the idle kept connections (nginx opens fresh ones to the other workers);
    /// connections with a request out are closed after its answer. The socket stays open and listening: in a
    /// pool it is shared with the other workers.
    public func stopAccepting() {
        guard accepting else { return }
        accepting = false
        loop.unwatch(fd: listenFd)
        for (fd, c) in conns where !c.busy && c.parser.isIdle { close(fd, c) }
    }

    public var isAccepting: Bool { accepting }

    private func acceptPending() {
        // What is pending now (at most 32: a burst is shared with the other workers, and cannot starve this
        // loop), then to the back of the queue, so the next connection wakes another worker first.
        defer {
            if accepting {
                loop.unwatch(fd: listenFd)
                watchListener()
            }
        }
        for _ in 0..<32 {
            let fd = runfeed_accept_nonblocking(listenFd)
            guard fd >= 0 else { return }  // EAGAIN: none left (or another worker took it); EMFILE…: next wake
            acceptedConnections += 1
            let c = Conn()
            conns[fd] = c
            waitForRequest(fd, c)
        }
    }

    private func waitForRequest(_ fd: Int32, _ c: Conn) {
        c.busy = false
        // Records already read (a request sent right behind the answer) are handled at once.
        if !c.parser.isIdle, process(fd, c, bytes: []) { return }
        if !accepting && c.parser.isIdle {
            close(fd, c)
            return
        }
        c.idleSinceMs = monotonicMs()
        loop.watch(fd: fd, events: EV_IN | EV_RDHUP) { [weak self] _ in self?.readable(fd) }
    }

    private func readable(_ fd: Int32) {
        guard let c = conns[fd], !c.busy else { return }
        while true {
            let n = read(fd, readBuffer.baseAddress, readBuffer.count)
            if n > 0 {
                if process(fd, c, bytes: UnsafeRawBufferPointer(rebasing: readBuffer[0..<n])) { return }
                if n < readBuffer.count { return }
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            if n < 0 && errno == EINTR { continue }
            close(fd, c)  // EOF or error: the web server closed it
            return
        }
    }

    /// Feeds bytes; true when the fd was handed to a request (or closed) and must not be read any more here.
    private func process<B: Collection>(_ fd: Int32, _ c: Conn, bytes: B) -> Bool where B.Element == UInt8 {
        let events: [FastCGIRequestParser.Event]
        do {
            events = try c.parser.feed(bytes)
        } catch {
            close(fd, c)
            return true
        }
        var outOfBand: [UInt8] = []
        var request: (UInt16, Bool, [String: String])?
        for e in events {
            switch e {
            case .request(let id, let keep, let params):
                guard request == nil else {  // no pipelining: a second request before the first is answered
                    close(fd, c)
                    return true
                }
                request = (id, keep, params)
            case .abort:
                break  // the request was not handed out yet: nothing to cancel
            case .getValues(let names):
                let known: [String: String] = ["FCGI_MPXS_CONNS": "0", "FCGI_MAX_CONNS": "65535", "FCGI_MAX_REQS": "65535"]
                outOfBand += FastCGIRecords.getValuesResult(names.compactMap { n in known[n].map { (n, $0) } })
            case .unknownManagementType(let t):
                outOfBand += FastCGIRecords.unknownType(t)
            }
        }
        if !outOfBand.isEmpty {
            // Management answers are tiny: a blocking-free best effort.
            _ = outOfBand.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        guard let (id, keep, params) = request else { return false }
        c.idleSinceMs = nil
        loop.mute(fd: fd)  // its next owner (a held poll, the writer, the next wait) watches it again
        if c.served > 0 { reusedRequests += 1 }
        c.served += 1
        if !c.parser.isIdle {  // bytes behind the request (pipelining) are not served
            close(fd, c)
            return true
        }
        c.busy = true
        let conn = FastCGIConnection(fd: fd, requestId: id, keepConnection: keep,
                                     info: FastCGIRequestInfo.fromParams(params))
        conn.onAnswered = { [weak self] conn, ok in self?.answered(conn, ok) }
        onRequest?(conn)
        return true
    }

    private func answered(_ conn: FastCGIConnection, _ written: Bool) {
        let fd = conn.fd
        guard let c = conns[fd] else { return }
        // The writer closed the socket already when the peer was gone or stalled.
        guard written else {
            conns.removeValue(forKey: fd)
            return
        }
        // A client that left mid-hold may have made nginx send more (or close): never reuse such a connection.
        guard conn.keepConnection, accepting, !conn.clientGone else {
            close(fd, c)
            return
        }
        waitForRequest(fd, c)
    }

    private func close(_ fd: Int32, _ c: Conn) {
        c.idleSinceMs = nil
        conns.removeValue(forKey: fd)
        writer.closeConnection(fd)
    }
}

public struct IOError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
