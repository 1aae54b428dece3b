import CHiredis
import CLinux
import CTLS
import RunfeedCore
#if canImport(Glibc)
import Glibc
#endif

// The bytes between runfeed and Redis: TCP (with keepalive and a user timeout) or TLS over it (OpenSSL's libssl,
// certificate and host-name verification, SNI), non-blocking. hiredis stays the protocol library: its reader
// parses replies from bytes of any transport, `redisFormatCommandArgv` formats commands. Used by the blocking
// client (`RedisClient`, on its own threads) and the event-loop subscriber (`RedisSubscriber`).

/// An OpenSSL client context with its trust store and client certificate loaded. Built once per endpoint and
/// shared (read-only after setup: safe across threads).
public final class TLSClientContext: @unchecked Sendable {
    let ctx: OpaquePointer
    public let settings: RedisTLS

    public init(_ settings: RedisTLS) throws {
        self.settings = settings
        guard let c = SSL_CTX_new(TLS_client_method()) else { throw IOError("TLS: \(TLSClientContext.lastError())") }
        ctx = c
        runfeed_ssl_ctx_set_modes(c)
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nil)
        guard SSL_CTX_set_default_verify_paths(c) == 1 else {
            SSL_CTX_free(c)
            throw IOError("TLS: cannot load the system trust store: \(TLSClientContext.lastError())")
        }
        if let ca = settings.caFile {
            guard SSL_CTX_load_verify_locations(c, ca, nil) == 1 else {
                SSL_CTX_free(c)
                throw IOError("TLS: cannot load CA file \(ca): \(TLSClientContext.lastError())")
            }
        }
        if let cert = settings.certFile {
            guard SSL_CTX_use_certificate_chain_file(c, cert) == 1 else {
                SSL_CTX_free(c)
                throw IOError("TLS: cannot load client certificate \(cert): \(TLSClientContext.lastError())")
            }
            guard SSL_CTX_use_PrivateKey_file(c, settings.keyFile ?? cert, SSL_FILETYPE_PEM) == 1,
                  SSL_CTX_check_private_key(c) == 1 else {
                SSL_CTX_free(c)
                throw IOError("TLS: cannot load client key \(settings.keyFile ?? cert): \(TLSClientContext.lastError())")
            }
        }
    }

    deinit { SSL_CTX_free(ctx) }

    static func lastError() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        runfeed_ssl_error_text(&buf, buf.count)
        let s = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return s.isEmpty ? "unknown error" : s
    }
}

/// A resolved address to connect to.
struct SocketAddress: Sendable {
    var family: Int32
    var bytes: [UInt8]

    /// Blocking DNS (getaddrinfo): never call on the event loop.
    static func resolve(host: String, port: Int) throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw IOError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var out: [SocketAddress] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if let a = ai.pointee.ai_addr {
                let raw = UnsafeRawBufferPointer(start: a, count: Int(ai.pointee.ai_addrlen))
                out.append(SocketAddress(family: ai.pointee.ai_family, bytes: Array(raw)))
            }
            p = ai.pointee.ai_next
        }
        if out.isEmpty { throw IOError("cannot resolve \(host): no address") }
        return out
    }
}

func errnoText(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

/// One connection's bytes: a non-blocking socket, with TLS on top when configured.
final class RedisStream {
    enum IO {
        case done(Int)
        case wantRead
        case wantWrite
        case closed
        case failed(String)
    }

    let fd: Int32
    private var ssl: OpaquePointer?
    private let peer: String

    /// Starts a non-blocking connect. Returns the stream (connect in progress or done); `finishConnect` tells.
    init(address: SocketAddress, peer: String) throws {
        let s = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw IOError("\(peer): socket: \(errnoText())") }
        fd = s
        self.peer = peer
        RedisStream.tune(s)
        let rc = address.bytes.withUnsafeBytes { b in
            connect(s, b.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.bytes.count))
        }
        if rc != 0 && errno != EINPROGRESS {
            let e = errnoText()
            Glibc.close(s)
            throw IOError("\(peer): connect: \(e)")
        }
    }

    deinit { close() }

    /// TCP_NODELAY; keepalive probes after 10 s idle, every 5 s, 3 of them (a silent peer is dropped by the kernel
    /// within ~25 s even if PING is not yet due); unacknowledged writes fail after 20 s (TCP_USER_TIMEOUT).
    private static func tune(_ s: Int32) {
        var one: Int32 = 1
        setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
        var idle: Int32 = 10, intvl: Int32 = 5, cnt: Int32 = 3, userTimeout: UInt32 = 20_000
        setsockopt(s, Int32(IPPROTO_TCP), TCP_KEEPIDLE, &idle, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(s, Int32(IPPROTO_TCP), TCP_KEEPINTVL, &intvl, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(s, Int32(IPPROTO_TCP), TCP_KEEPCNT, &cnt, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(s, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, &userTimeout, socklen_t(MemoryLayout<UInt32>.size))
    }

    /// After the socket turned writable: nil when connected, else why not.
    func connectError() -> String? {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { return "\(peer): getsockopt: \(errnoText())" }
        return err == 0 ? nil : "\(peer): connect: \(errnoText(err))"
    }

    /// Starts TLS on the connected socket (verifying the certificate for `host`).
    func startTLS(_ context: TLSClientContext, host: String) throws {
        guard let s = SSL_new(context.ctx) else { throw IOError("\(peer): TLS: \(TLSClientContext.lastError())") }
        ssl = s
        SSL_set_fd(s, fd)
        SSL_set_connect_state(s)
        let name = context.settings.serverName ?? host
        var probe = in6_addr()
        let isIP = inet_pton(AF_INET, name, &probe) == 1 || inet_pton(AF_INET6, name, &probe) == 1
        if isIP {
            guard runfeed_ssl_set_verify_ip(s, name) == 1 else { throw IOError("\(peer): TLS: bad address \(name)") }
        } else {
            guard SSL_set1_host(s, name) == 1 else { throw IOError("\(peer): TLS: bad host name \(name)") }
            _ = runfeed_ssl_set_sni(s, name)
        }
    }

    var isTLS: Bool { ssl != nil }

    /// Advances the TLS handshake: `.done(0)` when finished.
    func handshake() -> IO {
        guard let s = ssl else { return .done(0) }
        ERR_clear_error()
        let rc = SSL_do_handshake(s)
        if rc == 1 { return .done(0) }
        switch SSL_get_error(s, rc) {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        default:
            let verify = SSL_get_verify_result(s)
            if verify != X509_V_OK {
                return .failed("\(peer): TLS certificate not trusted: \(String(cString: X509_verify_cert_error_string(verify)))")
            }
            let detail = TLSClientContext.lastError()
            return .failed("\(peer): TLS handshake failed: \(detail == "unknown error" ? "connection closed (is this a TLS port?)" : detail)")
        }
    }

    func read(_ buf: UnsafeMutableRawBufferPointer) -> IO {
        if let s = ssl {
            ERR_clear_error()
            let n = SSL_read(s, buf.baseAddress, Int32(buf.count))
            if n > 0 { return .done(Int(n)) }
            return tlsResult(s, n, op: "read")
        }
        let n = Glibc.read(fd, buf.baseAddress, buf.count)
        if n > 0 { return .done(n) }
        if n == 0 { return .closed }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return .wantRead }
        return .failed("\(peer): read: \(errnoText())")
    }

    func write(_ buf: UnsafeRawBufferPointer) -> IO {
        guard buf.count > 0 else { return .done(0) }
        if let s = ssl {
            ERR_clear_error()
            let n = SSL_write(s, buf.baseAddress, Int32(buf.count))
            if n > 0 { return .done(Int(n)) }
            return tlsResult(s, n, op: "write")
        }
        let n = send(fd, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL))
        if n >= 0 { return .done(n) }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return .wantWrite }
        return .failed("\(peer): write: \(errnoText())")
    }

    private func tlsResult(_ s: OpaquePointer, _ rc: Int32, op: String) -> IO {
        let e = SSL_get_error(s, rc)
        switch e {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            let saved = errno
            if rc == 0 || saved == 0 { return .closed }
            return .failed("\(peer): TLS \(op): \(errnoText(saved))")
        default:
            return .failed("\(peer): TLS \(op): \(TLSClientContext.lastError())")
        }
    }

    func close() {
        if let s = ssl {
            SSL_free(s)
            ssl = nil
        }
        if fd >= 0 { Glibc.close(fd) }
    }

    // MARK: blocking use

    /// Waits until the socket is ready for `events` (POLLIN/POLLOUT) or `deadlineMs` (monotonic) passes.
    func waitReady(_ events: Int16, deadlineMs: Int64) throws {
        while true {
            let left = deadlineMs - monotonicMs()
            if left <= 0 { throw IOError("\(peer): timed out") }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&p, 1, Int32(min(left, Int64(Int32.max))))
            if rc > 0 { return }
            if rc < 0 && errno != EINTR { throw IOError("\(peer): poll: \(errnoText())") }
        }
    }

    /// Connects (TCP, then TLS when `tls` is set) with a deadline, blocking the calling thread.
    static func connectBlocking(host: String, port: Int, tls: TLSClientContext?, timeoutMs: Int) throws -> RedisStream {
        let deadline = monotonicMs() + Int64(timeoutMs)
        var lastError = "no address"
        for address in try SocketAddress.resolve(host: host, port: port) {
            do {
                let stream = try RedisStream(address: address, peer: "redis \(host):\(port)")
                try stream.waitReady(Int16(POLLOUT), deadlineMs: deadline)
                if let e = stream.connectError() { throw IOError(e) }
                if let tls {
                    try stream.startTLS(tls, host: host)
                    loop: while true {
                        switch stream.handshake() {
                        case .done: break loop
                        case .wantRead: try stream.waitReady(Int16(POLLIN), deadlineMs: deadline)
                        case .wantWrite: try stream.waitReady(Int16(POLLOUT), deadlineMs: deadline)
                        case .closed: throw IOError("redis \(host):\(port): TLS handshake: connection closed")
                        case .failed(let m): throw IOError(m)
                        }
                    }
                }
                return stream
            } catch {
                lastError = "\(error)"
            }
        }
        throw IOError(lastError)
    }

    func writeAllBlocking(_ bytes: [UInt8], deadlineMs: Int64) throws {
        var off = 0
        while off < bytes.count {
            let r = bytes.withUnsafeBytes { b in write(UnsafeRawBufferPointer(rebasing: b[off...])) }
            switch r {
            case .done(let n): off += n
            case .wantWrite: try waitReady(Int16(POLLOUT), deadlineMs: deadlineMs)
            case .wantRead: try waitReady(Int16(POLLIN), deadlineMs: deadlineMs)
            case .closed: throw IOError("\(peer): connection closed")
            case .failed(let m): throw IOError(m)
            }
        }
    }

    /// Reads at least one byte (blocking until `deadlineMs`) into the reader.
    func readSomeBlocking(into reader: RESPReader, deadlineMs: Int64) throws {
        var buf = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let r = buf.withUnsafeMutableBytes { read($0) }
            switch r {
            case .done(let n):
                try reader.feed(buf, count: n)
                return
            case .wantRead: try waitReady(Int16(POLLIN), deadlineMs: deadlineMs)
            case .wantWrite: try waitReady(Int16(POLLOUT), deadlineMs: deadlineMs)
            case .closed: throw IOError("\(peer): connection closed")
            case .failed(let m): throw IOError(m)
            }
        }
    }
}

/// hiredis's RESP reader over bytes from any transport.
final class RESPReader {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        reader = redisReaderCreate()
    }

    deinit { redisReaderFree(reader) }

    func feed(_ bytes: [UInt8], count: Int) throws {
        let rc = bytes.withUnsafeBytes { b in
            redisReaderFeed(reader, b.baseAddress!.assumingMemoryBound(to: CChar.self), count)
        }
        if rc != REDIS_OK { throw IOError("redis: protocol error: \(errorText)") }
    }

    /// The next complete reply, nil when more bytes are needed.
    func next() throws -> RedisReply? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
            throw IOError("redis: protocol error: \(errorText)")
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return RedisReply(raw.assumingMemoryBound(to: redisReply.self))
    }

    private var errorText: String {
        withUnsafeBytes(of: reader.pointee.errstr) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    }
}

enum RESPCommand {
    /// The RESP encoding of one command (binary-safe arguments).
    static func format(_ args: [String]) -> [UInt8] {
        var target: UnsafeMutablePointer<CChar>?
        let n = withArgv(args) { argc, argv, lens in redisFormatCommandArgv(&target, argc, argv, lens) }
        guard n > 0, let t = target else { return [] }
        defer { redisFreeCommand(t) }
        return Array(UnsafeRawBufferPointer(start: t, count: Int(n)))
    }
}
