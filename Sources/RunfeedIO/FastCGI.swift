import CFastCGI
import CLinux
import RunfeedCore
#if canImport(Glibc)
import Glibc
#endif

/// What the server needs of one FastCGI request, copied out of libfcgi's params.
public struct FastCGIRequestInfo: Sendable {
    public var method: String
    /// The decoded path (DOCUMENT_URI, else REQUEST_URI without its query).
    public var path: String
    public var queryString: String
    /// HTTP request headers, lower-cased with dashes (`HTTP_X_TRIGGER_BRANCH` → `x-trigger-branch`).
    public var headers: [String: String]
    public var remoteAddr: String?

    public init(method: String, path: String, queryString: String, headers: [String: String], remoteAddr: String? = nil) {
        self.method = method
        self.path = path
        self.queryString = queryString
        self.headers = headers
        self.remoteAddr = remoteAddr
    }

    /// Builds the info from CGI-style `NAME=value` params.
    public static func fromParams(_ params: [String: String]) -> FastCGIRequestInfo {
        var headers: [String: String] = [:]
        for (k, v) in params where k.hasPrefix("HTTP_") {
            headers[String(k.dropFirst(5)).lowercased().replacingUnderscores()] = v
        }
        if let ct = params["CONTENT_TYPE"], !ct.isEmpty { headers["content-type"] = ct }
        let uri = params["REQUEST_URI"] ?? ""
        var path = params["DOCUMENT_URI"] ?? ""
        if path.isEmpty {
            path = String(uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        }
        var query = params["QUERY_STRING"] ?? ""
        if query.isEmpty, let q = uri.firstIndex(of: "?") { query = String(uri[uri.index(after: q)...]) }
        return FastCGIRequestInfo(method: params["REQUEST_METHOD"] ?? "GET", path: path, queryString: query,
                                  headers: headers, remoteAddr: params["REMOTE_ADDR"])
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String {
        String(self.map { $0 == "_" ? "-" : $0 })
    }
}

/// One accepted FastCGI request. libfcgi's buffers and params are released as soon as the params are
/// copied and stdin is drained, so a parked request holds only its socket; the answer is framed here
/// and written without blocking by the event loop's `ResponseWriter`.
public final class FastCGIConnection: @unchecked Sendable {
    public let info: FastCGIRequestInfo
    /// The upstream connection's socket, watched for EOF while the request is parked.
    public let fd: Int32
    /// Monotonic µs when the request was accepted (the start of its `runfeed_request_duration_seconds`).
    public let acceptedAtUs: Int64
    /// Set when the client is known to have gone before the answer (nginx closed the upstream
    /// connection of a held poll): the answer is counted as 499. Loop thread only.
    public var clientGone = false
    let requestId: UInt16
    private var answered = false
    /// Whether the answer was handed to the writer (the socket is then closed, or about to be). Loop thread only.
    public var isAnswered: Bool { answered }

    init(request: UnsafeMutablePointer<FCGX_Request>, info: FastCGIRequestInfo) {
        self.info = info
        self.fd = request.pointee.ipcFd
        self.requestId = UInt16(truncatingIfNeeded: request.pointee.requestId)
        self.acceptedAtUs = monotonicUs()
        FCGX_Free(request, 0)  // streams and params; the socket stays open
        request.deallocate()
    }

    /// Sends `text` (CGI headers, blank line, body) and closes the connection. Loop thread only.
    /// Returns false if the request was already answered.
    @discardableResult
    public func respond(_ text: String, with writer: ResponseWriter) -> Bool {
        guard !answered else { return false }
        answered = true
        writer.send(fd: fd, FastCGIRecords.response(requestId: requestId, stdout: Array(text.utf8)))
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
        init(_ b: [UInt8]) { bytes = b }
    }

    public init(loop: EventLoop, timeoutMs: Int64 = 30_000) {
        self.loop = loop
        self.timeoutMs = timeoutMs
    }

    /// Answers still being written.
    public var inProgress: Int { pending.count }

    func send(fd: Int32, _ bytes: [UInt8]) {
        loop.unwatch(fd: fd)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let p = Pending(bytes)
        if flush(fd, p) { return }
        pending[fd] = p
        p.timer = loop.schedule(afterMs: timeoutMs) { [weak self] in self?.finish(fd) }
        loop.watch(fd: fd, events: EV_OUT) { [weak self] _ in
            guard let self, let p = self.pending[fd] else { return }
            if let t = p.timer { self.loop.cancel(t) }
            p.timer = nil
            if self.flush(fd, p) {
                self.pending.removeValue(forKey: fd)
            } else {
                // The timeout counts from the last progress: a slow reader is fine, a stalled one is not.
                p.timer = self.loop.schedule(afterMs: self.timeoutMs) { [weak self] in self?.finish(fd) }
            }
        }
    }

    /// Writes what the socket takes; true when the answer is done (written, or the peer is gone) and
    /// the connection closed.
    private func flush(_ fd: Int32, _ p: Pending) -> Bool {
        while p.offset < p.bytes.count {
            let n = p.bytes.withUnsafeBytes { buf in
                write(fd, buf.baseAddress! + p.offset, buf.count - p.offset)
            }
            if n > 0 {
                p.offset += n
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return false }
            if n < 0 && errno == EINTR { continue }
            break  // EPIPE, ECONNRESET…: the client left
        }
        closeConnection(fd)
        return true
    }

    private func finish(_ fd: Int32) {
        guard pending.removeValue(forKey: fd) != nil else { return }
        closeConnection(fd)
    }

    private func closeConnection(_ fd: Int32) {
        loop.unwatch(fd: fd)
        shutdown(fd, Int32(SHUT_WR))
        close(fd)
    }
}

/// The listening socket and the acceptor thread. The acceptor blocks in `FCGX_Accept_r`, copies the
/// params, drains stdin and hands the request on; it never holds a request.
public final class FastCGIListener: @unchecked Sendable {
    public let socketFd: Int32
    public let address: String
    private let stopFlag = Mutex()
    private var stopped = false
    private var acceptorThread: pthread_t?
    private var acceptorExited = false
    /// Written by `stopAccepting` to wake the acceptor's poll.
    private let stopEvent = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))

    /// Opens `address`: a unix socket path, or `host:port` / `:port` for TCP.
    /// Listen backlog of worker sockets: when one change wakes thousands of polls, their clients all
    /// re-arm at once and nginx opens that many upstream connections within milliseconds; a backlog
    /// that overflows makes nginx fail them (EAGAIN on a unix socket → 502/503). The kernel caps it at
    /// `net.core.somaxconn` (4096 on current kernels).
    public static let burstBacklog: Int32 = 65535

    public init(address: String, backlog: Int32 = FastCGIListener.burstBacklog, socketMode: mode_t = 0o666) throws {
        guard FCGX_Init() == 0 else { throw IOError("FCGX_Init failed") }
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
        guard FCGX_Init() == 0 else { throw IOError("FCGX_Init failed") }
        FastCGIListener.restoreSignals()
        socketFd = inheritedFd
        address = description
    }

    /// libfcgi installs its own SIGTERM/SIGPIPE/SIGUSR1 handlers in FCGX_Init: put ours back.
    /// SIGPIPE is ignored (a write to a closed upstream fails with EPIPE); SIGTERM/SIGINT/SIGHUP are
    /// blocked and read from a signalfd by the event loop.
    static func restoreSignals() {
        signal(SIGPIPE, SIG_IGN)
        signal(SIGUSR1, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        _ = runfeed_install_interrupt_handler(runfeed_interrupt_signal())
    }

    /// Starts the acceptor thread. `onRequest` runs on that thread.
    public func startAccepting(_ onRequest: @escaping @Sendable (FastCGIConnection) -> Void) {
        let sock = socketFd
        startThread(name: "fcgi-accept") { [self] in
            self.stopFlag.withLock { self.acceptorThread = pthread_self() }
            var fds = [pollfd(fd: sock, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: self.stopEvent, events: Int16(POLLIN), revents: 0)]
            while !self.isStopped {
                // Sleep until a connection is pending or a stop is requested (no idle wake-ups).
                let ready = poll(&fds, 2, -1)
                if self.isStopped { break }
                if ready <= 0 || fds[0].revents == 0 { continue }
                let req = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
                // Fail (instead of retrying) when accept() is interrupted: that is how stopAccepting wakes us.
                FCGX_InitRequest(req, sock, Int32(FCGI_FAIL_ACCEPT_ON_INTR))
                if FCGX_Accept_r(req) < 0 {
                    req.deallocate()
                    if self.isStopped { break }
                    usleep(10_000)
                    continue
                }
                let info = FastCGIRequestInfo.fromParams(Self.params(of: req))
                Self.drainStdin(req)
                onRequest(FastCGIConnection(request: req, info: info))
            }
            self.stopFlag.withLock { self.acceptorExited = true }
        }
    }

    /// True once the acceptor thread has ended (after `stopAccepting`): no request can arrive any more.
    public var hasStoppedAccepting: Bool { stopFlag.withLock { acceptorExited } }

    private var isStopped: Bool { stopFlag.withLock { stopped } }

    /// Stops accepting: the acceptor thread wakes from its poll and ends. The socket itself stays open
    /// and listening: in a pool it is shared with the other workers (shutdown() on it would stop them all).
    public func stopAccepting() {
        stopFlag.withLock { stopped = true }
        var one: UInt64 = 1
        _ = write(stopEvent, &one, 8)
    }

    /// If the acceptor is still blocked in accept() (another worker took the connection it was woken
    /// for), interrupts the call with a signal. Call a little after `stopAccepting`, so the signal
    /// cannot land while a request's params are being read.
    public func interruptAcceptor() {
        let thread = stopFlag.withLock { acceptorExited ? nil : acceptorThread }
        if let thread { pthread_kill(thread, runfeed_interrupt_signal()) }
    }

    private static func params(of req: UnsafeMutablePointer<FCGX_Request>) -> [String: String] {
        var out: [String: String] = [:]
        guard var p = req.pointee.envp else { return out }
        out.reserveCapacity(32)
        while let entry = p.pointee {
            // "NAME=value" as bytes: found with strchr/strlen, decoded once per part (Character-wise
            // String search showed up in profiles of re-arm bursts).
            if let eq = strchr(entry, 61) {
                let nameLen = entry.distance(to: eq)
                let value = eq + 1
                let valueLen = strlen(value)
                let name = entry.withMemoryRebound(to: UInt8.self, capacity: nameLen) {
                    String(decoding: UnsafeBufferPointer(start: $0, count: nameLen), as: UTF8.self)
                }
                out[name] = value.withMemoryRebound(to: UInt8.self, capacity: valueLen) {
                    String(decoding: UnsafeBufferPointer(start: $0, count: valueLen), as: UTF8.self)
                }
            }
            p += 1
        }
        return out
    }

    /// Reads stdin to EOF (nginx sends an empty STDIN record at once for a GET), so that afterwards
    /// any readability of the socket means the upstream connection was closed.
    private static func drainStdin(_ req: UnsafeMutablePointer<FCGX_Request>) {
        var buf = [CChar](repeating: 0, count: 4096)
        var total = 0
        while total < 1 << 20 {
            let n = buf.withUnsafeMutableBufferPointer { FCGX_GetStr($0.baseAddress, 4096, req.pointee.in) }
            if n <= 0 { break }
            total += Int(n)
        }
    }
}

public struct IOError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
