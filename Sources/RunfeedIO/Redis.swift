import CLinux
import CHiredis
import RunfeedCore
#if canImport(Glibc)
import Glibc
#endif

extension RedisEndpoint {
    /// The shared TLS context of this endpoint's settings (nil without TLS). Certificates load once per process.
    public func tlsContext() throws -> TLSClientContext? {
        guard let tls else { return nil }
        return try TLSContexts.context(for: tls)
    }
}

/// TLS client contexts by settings, built once per process.
public enum TLSContexts {
    private static let contexts = Lock<[RedisTLS: TLSClientContext]>([:])

    public static func context(for settings: RedisTLS) throws -> TLSClientContext {
        try contexts.withLock { contexts in
            if let c = contexts[settings] { return c }
            let c = try TLSClientContext(settings)
            contexts[settings] = c
            return c
        }
    }
}

extension RedisReply {
    init(_ r: UnsafeMutablePointer<redisReply>) {
        switch Int32(r.pointee.type) {
        case REDIS_REPLY_STRING:
            self = .string(RedisReply.text(r))
        case REDIS_REPLY_STATUS:
            self = .status(RedisReply.text(r))
        case REDIS_REPLY_ERROR:
            self = .error(RedisReply.text(r))
        case REDIS_REPLY_INTEGER:
            self = .integer(Int64(r.pointee.integer))
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            for i in 0..<Int(r.pointee.elements) {
                if let e = r.pointee.element[i] { items.append(RedisReply(e)) } else { items.append(.null) }
            }
            self = .array(items)
        default:
            self = .null
        }
    }

    private static func text(_ r: UnsafeMutablePointer<redisReply>) -> String {
        guard let p = r.pointee.str else { return "" }
        let buf = UnsafeRawBufferPointer(start: p, count: Int(r.pointee.len))
        return String(decoding: buf, as: UTF8.self)
    }
}

/// Blocking Redis client (`runfeed publish`, the limiter's and shared views' threads): plain TCP or TLS, AUTH on
/// every (re)connect. Never used on the event loop.
public final class RedisClient {
    private var stream: RedisStream?
    private let reader = RESPReaderBox()
    private let endpoint: RedisEndpoint
    private let timeoutMs: Int

    public init(endpoint: RedisEndpoint, timeoutMs: Int = 2000) {
        self.endpoint = endpoint
        self.timeoutMs = timeoutMs
    }

    private func connect() throws {
        stream = nil
        reader.reset()
        let s = try RedisStream.connectBlocking(host: endpoint.host, port: endpoint.port, tls: endpoint.tlsContext(),
                                                timeoutMs: timeoutMs)
        stream = s
        if let auth = endpoint.authArgs {
            if case .error(let e) = try pipelineOnce([auth])[0] {
                stream = nil
                throw IOError("redis \(endpoint.host):\(endpoint.port): AUTH refused: \(e)")
            }
        }
    }

    /// Sends one command; reconnects once if the connection is gone.
    public func command(_ args: [String]) throws -> RedisReply {
        try pipeline([args])[0]
    }

    /// Sends several commands in one write and reads their replies in order (one round trip);
    /// reconnects and resends once if the connection is gone, so the commands must be safe to repeat.
    public func pipeline(_ commands: [[String]]) throws -> [RedisReply] {
        if stream == nil { try connect() }
        do {
            return try pipelineOnce(commands)
        } catch {
            try connect()
            return try pipelineOnce(commands)
        }
    }

    private func pipelineOnce(_ commands: [[String]]) throws -> [RedisReply] {
        guard let s = stream else { throw IOError("redis: not connected") }
        let deadline = monotonicMs() + Int64(timeoutMs)
        var bytes: [UInt8] = []
        for args in commands { bytes.append(contentsOf: RESPCommand.format(args)) }
        do {
            try s.writeAllBlocking(bytes, deadlineMs: deadline)
            var replies: [RedisReply] = []
            replies.reserveCapacity(commands.count)
            while replies.count < commands.count {
                if let r = try reader.reader.next() {
                    replies.append(r)
                } else {
                    try s.readSomeBlocking(into: reader.reader, deadlineMs: deadline)
                }
            }
            return replies
        } catch {
            // The stream is in an unknown state (a reply may be half read): never reuse it.
            stream = nil
            reader.reset()
            throw error
        }
    }
}

/// A reader that can be replaced after a connection is dropped.
final class RESPReaderBox {
    private(set) var reader = RESPReader()
    func reset() { reader = RESPReader() }
}

/// Calls `body` with argc/argv/argvlen for hiredis's *Argv functions (binary-safe).
func withArgv<R>(_ args: [String], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
    let bytes = args.map { Array($0.utf8) }
    let ptrs: [UnsafeMutablePointer<CChar>] = bytes.map { b in
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, b.count))
        b.withUnsafeBufferPointer { src in
            src.baseAddress.map { UnsafeMutableRawPointer(p).copyMemory(from: $0, byteCount: b.count) }
        }
        return p
    }
    defer { ptrs.forEach { $0.deallocate() } }
    var argv: [UnsafePointer<CChar>?] = ptrs.map { UnsafePointer($0) }
    let lens: [Int] = bytes.map { $0.count }
    return argv.withUnsafeMutableBufferPointer { a in
        lens.withUnsafeBufferPointer { l in body(Int32(args.count), a.baseAddress!, l.baseAddress!) }
    }
}

/// The worker's pub/sub connection to one Redis node, on the event loop: non-blocking connect (DNS on a helper
/// thread), TLS handshake, AUTH, (S)SUBSCRIBE of every wanted channel after each (re)connect, PING liveness.
/// Protocol decisions are `PubSubSession`'s; this class moves bytes and runs its actions.
public final class RedisSubscriber {
    public enum State: Sendable { case disconnected, connecting, ready }

    private enum Phase { case idle, resolving, connecting, handshaking, open }

    private let loop: EventLoop
    private let endpoint: RedisEndpoint
    private var session: PubSubSession
    private var stream: RedisStream?
    private var reader = RESPReader()
    private var phase: Phase = .idle
    /// Bytes formatted and not yet written.
    private var outgoing: [UInt8] = []
    private var outgoingOffset = 0
    private var watchedFd: Int32 = -1
    /// A connection attempt's number: completions of an abandoned attempt (DNS) are ignored.
    private var attempt = 0
    private var addressIndex = 0
    private var reconnectTimer: EventLoop.TimerID?
    private var tickTimer: EventLoop.TimerID?
    private var shuttingDown = false
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 1)

    public private(set) var state: State = .disconnected
    public private(set) var reconnects = 0
    /// Why the last connection ended (nil: none ended yet).
    public private(set) var lastFailure: String?

    /// Called on the loop thread for each message: (channel, payload).
    public var onMessage: ((String, String) -> Void)?
    /// Called on the loop thread when a channel's subscription is confirmed or lost (nil time).
    public var onSubscriptionChange: ((String, Int64?) -> Void)?
    /// Called when the server moves a sharded channel away (slot migration, MOVED): route it again.
    public var onChannelMoved: ((String, String?) -> Void)?
    /// Called when a connection ends (before the reconnect is scheduled).
    public var onConnectionLost: (() -> Void)?
    public var log: ((String) -> Void)?
    /// Every (un)subscribe sent and confirmed, for debugging.
    public var trace: ((String) -> Void)?

    public init(loop: EventLoop, endpoint: RedisEndpoint, sharded: Bool = false,
                pingIntervalMs: Int64 = 5_000, pongTimeoutMs: Int64 = 5_000, connectTimeoutMs: Int64 = 10_000) {
        self.loop = loop
        self.endpoint = endpoint
        session = PubSubSession(sharded: sharded, auth: endpoint.authArgs, pingIntervalMs: pingIntervalMs,
                                pongTimeoutMs: pongTimeoutMs, connectTimeoutMs: connectTimeoutMs)
    }

    deinit { readBuffer.deallocate() }

    public func start() {
        scheduleTick()
        connect()
    }

    public func subscribe(_ channel: String) { run(session.want(channel)) }

    public func unsubscribe(_ channel: String) { run(session.drop(channel)) }

    /// Closes the connection and stops reconnecting.
    public func shutdown() {
        shuttingDown = true
        if let t = reconnectTimer { loop.cancel(t) }
        if let t = tickTimer { loop.cancel(t) }
        reconnectTimer = nil
        tickTimer = nil
        closeStream()
        _ = session.closed()
        state = .disconnected
    }

    // MARK: connection lifecycle

    private func connect() {
        reconnectTimer = nil
        guard !shuttingDown else { return }
        attempt += 1
        let mine = attempt
        state = .connecting
        phase = .resolving
        session.started(nowMs: monotonicMs())
        let host = endpoint.host, port = endpoint.port
        // Only the loop thread touches `self`: the resolver thread carries it opaquely and hands it back.
        let me = LoopBox(self, loop: loop)
        startThread(name: "redis-dns") { [loop] in
            let result = Result { try SocketAddress.resolve(host: host, port: port) }
            loop.execute { me.value.resolved(result, attempt: mine) }
        }
    }

    private func resolved(_ result: Result<[SocketAddress], Error>, attempt mine: Int) {
        guard attempt == mine, phase == .resolving else { return }
        switch result {
        case .success(let addresses): open(addresses)
        case .failure(let e): fail("\(e)")
        }
    }

    private func open(_ addresses: [SocketAddress]) {
        // Several addresses (IPv4 and IPv6, DNS round robin): each attempt tries the next.
        let address = addresses[addressIndex % addresses.count]
        addressIndex += 1
        do {
            stream = try RedisStream(address: address, peer: "redis \(endpoint.host):\(endpoint.port)")
        } catch {
            fail("\(error)")
            return
        }
        phase = .connecting
        setInterest(EV_OUT)
    }

    private func connected() {
        guard let s = stream else { return }
        if let e = s.connectError() {
            fail(e)
            return
        }
        do {
            if let tls = try endpoint.tlsContext() {
                try s.startTLS(tls, host: endpoint.host)
                phase = .handshaking
                handshake()
                return
            }
        } catch {
            fail("\(error)")
            return
        }
        established()
    }

    private func handshake() {
        guard let s = stream else { return }
        switch s.handshake() {
        case .done: established()
        case .wantRead: setInterest(EV_IN)
        case .wantWrite: setInterest(EV_IN | EV_OUT)
        case .closed: fail("redis \(endpoint.host):\(endpoint.port): TLS handshake: connection closed")
        case .failed(let m): fail(m)
        }
    }

    private func established() {
        phase = .open
        setInterest(EV_IN)
        run(session.opened(nowMs: monotonicMs()))
    }

    /// Ends the connection and schedules the next attempt.
    private func fail(_ reason: String) {
        guard !shuttingDown else { return }
        var reason = reason
        if endpoint.tls == nil, state != .ready, phase == .open || phase == .handshaking {
            reason += " (a TLS-only port? TLS is off: …_TLS_DISABLED=true)"
        }
        closeStream()
        lastFailure = reason
        run(session.failed())
    }

    private func closeStream() {
        if watchedFd >= 0 { loop.unwatch(fd: watchedFd) }
        watchedFd = -1
        stream?.close()
        stream = nil
        phase = .idle
        reader = RESPReader()
        outgoing.removeAll()
        outgoingOffset = 0
    }

    private func scheduleTick() {
        tickTimer = loop.schedule(afterMs: 1000) { [weak self] in
            guard let self, !self.shuttingDown else { return }
            self.run(self.session.tick(nowMs: monotonicMs()))
            self.scheduleTick()
        }
    }

    // MARK: events

    private func setInterest(_ mask: UInt32) {
        guard let s = stream else { return }
        if watchedFd == s.fd {
            loop.modify(fd: s.fd, events: mask)
        } else {
            if watchedFd >= 0 { loop.unwatch(fd: watchedFd) }
            watchedFd = s.fd
            loop.watch(fd: s.fd, events: mask) { [weak self] ev in self?.ready(ev) }
        }
    }

    private func ready(_ events: UInt32) {
        switch phase {
        case .connecting:
            connected()
        case .handshaking:
            handshake()
        case .open:
            if events & (EV_IN | EV_HUP | EV_ERR) != 0 { readAvailable() }
            if phase == .open { flush() }
        case .idle, .resolving:
            break
        }
    }

    private func readAvailable() {
        while let s = stream, phase == .open {
            let r = s.read(readBuffer)
            switch r {
            case .done(let n):
                do {
                    try reader.feed(Array(readBuffer.prefix(n)), count: n)
                    while phase == .open, let reply = try reader.next() {
                        run(session.received(reply, nowMs: monotonicMs()))
                    }
                } catch {
                    fail("\(error)")
                    return
                }
                if n < readBuffer.count { return }
            case .wantRead:
                return
            case .wantWrite, .closed, .failed:
                stalled(r)
                return
            }
        }
    }

    /// A read or write that could not go on: wait for the socket (TLS may need to write while reading, and the
    /// other way round), or end the connection.
    private func stalled(_ r: RedisStream.IO) {
        switch r {
        case .wantRead, .wantWrite:
            setInterest(EV_IN | EV_OUT)
        case .closed:
            fail("connection closed by \(endpoint.host):\(endpoint.port)")
        case .failed(let m):
            fail(m)
        case .done:
            break
        }
    }

    private func flush() {
        guard let s = stream, phase == .open else { return }
        while outgoingOffset < outgoing.count {
            let r = outgoing.withUnsafeBytes { b in s.write(UnsafeRawBufferPointer(rebasing: b[outgoingOffset...])) }
            switch r {
            case .done(let n):
                outgoingOffset += n
            case .wantWrite, .wantRead, .closed, .failed:
                stalled(r)
                return
            }
        }
        outgoing.removeAll(keepingCapacity: outgoing.count < 1 << 20)
        outgoingOffset = 0
        setInterest(EV_IN)
    }

    // MARK: session actions

    private func run(_ actions: [PubSubSession.Action]) {
        var wrote = false
        for a in actions {
            switch a {
            case .send(let args):
                if args.first != "PING" && args.first != "AUTH" { trace?("redis -> \(args.joined(separator: " "))") }
                outgoing.append(contentsOf: RESPCommand.format(args))
                wrote = true
            case .ready:
                state = .ready
                log?("redis subscriber connected to \(endpoint.description)\(endpoint.authArgs == nil ? "" : " (AUTH)")")
            case .confirmed(let ch, let at):
                trace?("redis <- subscribed \(ch)")
                _ = at  // monotonic; the worker is told the wall-clock time
                onSubscriptionChange?(ch, wallMs())
            case .lost(let ch):
                onSubscriptionChange?(ch, nil)
            case .message(let ch, let payload):
                onMessage?(ch, payload)
            case .evicted(let ch):
                log?("redis: the server ended the subscription of \(ch) (slot moved)")
                onChannelMoved?(ch, nil)
            case .moved(let ch, _, let address):
                log?("redis: \(ch) belongs to \(address) (MOVED)")
                onChannelMoved?(ch, address)
            case .fail(let reason):
                fail(reason)
                return
            case .reconnect(let delay):
                state = .disconnected
                reconnects += 1
                onConnectionLost?()
                log?("redis subscriber disconnected (\(lastFailure ?? "")); reconnecting in \(delay) ms")
                if let t = reconnectTimer { loop.cancel(t) }
                reconnectTimer = loop.schedule(afterMs: delay) { [weak self] in self?.connect() }
            }
        }
        if wrote, phase == .open { flush() }
    }
}
