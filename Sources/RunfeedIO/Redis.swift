import CLinux
import CHiredis
import RunfeedCore
#if canImport(Glibc)
import Glibc
#endif

public struct RedisEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public init(host: String, port: Int, username: String? = nil, password: String? = nil) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
    }

    var authArgs: [String]? {
        guard let password, !password.isEmpty else { return nil }
        if let username, !username.isEmpty { return ["AUTH", username, password] }
        return ["AUTH", password]
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

/// Blocking Redis client for one-shot commands (`runfeed publish`, limits). Not for the event loop.
public final class RedisClient {
    private var ctx: UnsafeMutablePointer<redisContext>?
    private let endpoint: RedisEndpoint
    private let timeoutMs: Int

    public init(endpoint: RedisEndpoint, timeoutMs: Int = 2000) {
        self.endpoint = endpoint
        self.timeoutMs = timeoutMs
    }

    deinit { if let c = ctx { redisFree(c) } }

    private func connect() throws {
        if let c = ctx { redisFree(c); ctx = nil }
        let tv = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
        guard let c = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), tv) else {
            throw IOError("redis: out of memory")
        }
        if c.pointee.err != 0 {
            let msg = withUnsafeBytes(of: c.pointee.errstr) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            redisFree(c)
            throw IOError("redis \(endpoint.host):\(endpoint.port): \(msg)")
        }
        redisSetTimeout(c, tv)
        ctx = c
        if let auth = endpoint.authArgs {
            if case .error(let e) = try pipelineOnce([auth])[0] { throw IOError("redis AUTH: \(e)") }
        }
    }

    /// Sends one command; reconnects once if the connection is gone.
    public func command(_ args: [String]) throws -> RedisReply {
        try pipeline([args])[0]
    }

    /// Sends several commands in one write and reads their replies in order (one round trip);
    /// reconnects and resends once if the connection is gone, so the commands must be safe to repeat.
    public func pipeline(_ commands: [[String]]) throws -> [RedisReply] {
        if ctx == nil { try connect() }
        do {
            return try pipelineOnce(commands)
        } catch {
            try connect()
            return try pipelineOnce(commands)
        }
    }

    private func pipelineOnce(_ commands: [[String]]) throws -> [RedisReply] {
        guard let c = ctx else { throw IOError("redis: not connected") }
        for args in commands {
            let rc = withArgv(args) { argc, argv, lens in redisAppendCommandArgv(c, argc, argv, lens) }
            if rc != REDIS_OK { redisFree(c); ctx = nil; throw IOError("redis: out of memory") }
        }
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(c, &raw) == REDIS_OK, let raw else {
                redisFree(c)
                ctx = nil
                throw IOError("redis: connection lost")
            }
            replies.append(RedisReply(raw.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(raw)
        }
        return replies
    }

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

/// The worker's one pub/sub connection, driven by hiredis's async API on our event loop.
/// Keeps a desired set of channels: (re)subscribes them after every (re)connect, with backoff.
public final class RedisSubscriber {
    public enum State: Sendable { case disconnected, connecting, ready }

    private let loop: EventLoop
    private let endpoint: RedisEndpoint
    private let sharded: Bool
    private var ctx: UnsafeMutablePointer<redisAsyncContext>?
    private var readInterest = false
    private var writeInterest = false
    private var watchedFd: Int32 = -1
    private var backoffMs: Int64 = 100
    private var reconnectTimer: EventLoop.TimerID?
    private var shuttingDown = false

    private var desired: Set<String> = []
    /// UNSUBSCRIBEs sent and not yet confirmed. hiredis 0.14 drops a channel's callback when its
    /// unsubscribe reply arrives, so a SUBSCRIBE for that channel must wait for the reply.
    private var unsubscribing: Set<String> = []
    /// A channel of this connection alone, subscribed for its whole life: the subscription count never
    /// drops to 0, so hiredis 0.14 never leaves subscribed mode while another SUBSCRIBE is in flight
    /// (which would make it treat that reply as a regular one and abort).
    private let anchorChannel = "runfeed:anchor:\(getpid()):\(UInt32.random(in: 0...UInt32.max))"
    /// Channels whose SUBSCRIBE was confirmed, with the wall-clock time of the confirmation.
    public private(set) var confirmed: [String: Int64] = [:]
    public private(set) var state: State = .disconnected
    public private(set) var reconnects = 0

    /// Called on the loop thread for each message: (channel, payload).
    public var onMessage: ((String, String) -> Void)?
    /// Called on the loop thread when a channel's subscription is confirmed or lost (nil time).
    public var onSubscriptionChange: ((String, Int64?) -> Void)?
    public var log: ((String) -> Void)?
    /// Every (un)subscribe sent and confirmed, for debugging.
    public var trace: ((String) -> Void)?

    public init(loop: EventLoop, endpoint: RedisEndpoint, sharded: Bool = false) {
        self.loop = loop
        self.endpoint = endpoint
        self.sharded = sharded
    }

    public func start() { connect() }

    public func subscribe(_ channel: String) {
        guard desired.insert(channel).inserted else { return }
        // While an UNSUBSCRIBE is in flight, its reply re-subscribes (see `received`).
        if state == .ready, !unsubscribing.contains(channel) { send([sharded ? "SSUBSCRIBE" : "SUBSCRIBE", channel]) }
    }

    public func unsubscribe(_ channel: String) {
        guard desired.remove(channel) != nil else { return }
        if state == .ready, confirmed[channel] != nil, !unsubscribing.contains(channel) {
            unsubscribing.insert(channel)
            send([sharded ? "SUNSUBSCRIBE" : "UNSUBSCRIBE", channel])
        }
    }

    public var subscribedChannels: Int { confirmed.count }

    /// Closes the connection and stops reconnecting.
    public func shutdown() {
        shuttingDown = true
        if let t = reconnectTimer { loop.cancel(t) }
        reconnectTimer = nil
        desired.removeAll()
        if let c = ctx { redisAsyncDisconnect(c) }
    }

    // MARK: connection lifecycle

    private func connect() {
        reconnectTimer = nil
        state = .connecting
        guard let c = redisAsyncConnect(endpoint.host, Int32(endpoint.port)) else {
            scheduleReconnect("out of memory")
            return
        }
        if c.pointee.err != 0 {
            let msg = String(cString: c.pointee.errstr)
            redisAsyncFree(c)
            scheduleReconnect(msg)
            return
        }
        ctx = c
        c.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        c.pointee.ev.data = Unmanaged.passUnretained(self).toOpaque()
        c.pointee.ev.addRead = { p in RedisSubscriber.from(p).setInterest(read: true) }
        c.pointee.ev.delRead = { p in RedisSubscriber.from(p).setInterest(read: false) }
        c.pointee.ev.addWrite = { p in RedisSubscriber.from(p).setInterest(write: true) }
        c.pointee.ev.delWrite = { p in RedisSubscriber.from(p).setInterest(write: false) }
        c.pointee.ev.cleanup = { p in RedisSubscriber.from(p).cleanup() }
        redisAsyncSetConnectCallback(c) { ac, status in
            guard let ac, let data = ac.pointee.data else { return }
            Unmanaged<RedisSubscriber>.fromOpaque(data).takeUnretainedValue().connected(status: status)
        }
        redisAsyncSetDisconnectCallback(c) { ac, status in
            guard let ac, let data = ac.pointee.data else { return }
            let me = Unmanaged<RedisSubscriber>.fromOpaque(data).takeUnretainedValue()
            let msg = ac.pointee.errstr.map { String(cString: $0) } ?? "closed"
            me.disconnected(status: status, reason: msg)
        }
        // Like hiredis's own adapters: watch both directions at once; the first writable event
        // completes the non-blocking connect.
        setInterest(read: true, write: true)
    }

    private static func from(_ p: UnsafeMutableRawPointer?) -> RedisSubscriber {
        Unmanaged<RedisSubscriber>.fromOpaque(p!).takeUnretainedValue()
    }

    private func connected(status: Int32) {
        guard status == REDIS_OK else {
            // hiredis frees the context after this callback without calling onDisconnect.
            ctx = nil
            scheduleReconnect("connect failed")
            return
        }
        backoffMs = 100
        if let auth = endpoint.authArgs { send(auth, callback: false) }
        state = .ready
        log?("redis subscriber connected to \(endpoint.host):\(endpoint.port)")
        send(["SUBSCRIBE", anchorChannel])
        for ch in desired { send([sharded ? "SSUBSCRIBE" : "SUBSCRIBE", ch]) }
    }

    private func disconnected(status: Int32, reason: String) {
        ctx = nil
        state = .disconnected
        unsubscribing.removeAll()
        let lost = confirmed.keys
        confirmed.removeAll()
        for ch in lost { onSubscriptionChange?(ch, nil) }
        if shuttingDown { return }
        scheduleReconnect(reason)
    }

    private func scheduleReconnect(_ reason: String) {
        state = .disconnected
        log?("redis subscriber disconnected (\(reason)); reconnecting in \(backoffMs) ms")
        reconnects += 1
        let delay = backoffMs
        backoffMs = min(backoffMs * 2, 5000)
        reconnectTimer = loop.schedule(afterMs: delay) { [weak self] in self?.connect() }
    }

    // MARK: event adapter

    private func setInterest(read: Bool? = nil, write: Bool? = nil) {
        if let read { readInterest = read }
        if let write { writeInterest = write }
        guard let c = ctx else { return }
        let fd = c.pointee.c.fd
        var mask: UInt32 = 0
        if readInterest { mask |= EV_IN }
        if writeInterest { mask |= EV_OUT }
        if mask == 0 {
            if watchedFd >= 0 { loop.unwatch(fd: watchedFd); watchedFd = -1 }
            return
        }
        if watchedFd == fd {
            loop.modify(fd: fd, events: mask)
        } else {
            if watchedFd >= 0 { loop.unwatch(fd: watchedFd) }
            watchedFd = fd
            loop.watch(fd: fd, events: mask) { [weak self] ev in self?.ready(ev) }
        }
    }

    private func cleanup() {
        if watchedFd >= 0 { loop.unwatch(fd: watchedFd) }
        watchedFd = -1
        readInterest = false
        writeInterest = false
    }

    private func ready(_ events: UInt32) {
        guard let c = ctx else { return }
        if events & (EV_IN | EV_HUP | EV_ERR) != 0 {
            redisAsyncHandleRead(c)
        }
        // The read may have freed the context (disconnect); only write while it is still ours.
        if let c2 = ctx, c2 == c, events & EV_OUT != 0 {
            redisAsyncHandleWrite(c2)
        }
    }

    // MARK: commands and replies

    private func send(_ args: [String], callback: Bool = true) {
        guard let c = ctx else { return }
        if callback { trace?("redis -> \(args.joined(separator: " "))") }
        let fn: (@convention(c) (UnsafeMutablePointer<redisAsyncContext>?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void)? = callback ? { ac, reply, _ in
            guard let ac, let data = ac.pointee.data, let reply else { return }
            let r = RedisReply(reply.assumingMemoryBound(to: redisReply.self))
            Unmanaged<RedisSubscriber>.fromOpaque(data).takeUnretainedValue().received(r)
        } : nil
        _ = withArgv(args) { argc, argv, lens in
            argv.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: Int(argc)) { a in
                redisAsyncCommandArgv(c, fn, nil, argc, a, lens)
            }
        }
    }

    private func received(_ reply: RedisReply) {
        guard case .array(let items) = reply, items.count >= 3, let kind = items[0].stringValue?.lowercased(),
              let channel = items[1].stringValue, channel != anchorChannel else { return }
        if kind != "message" && kind != "smessage" { trace?("redis <- \(kind) \(channel)") }
        switch kind {
        case "message", "smessage":
            onMessage?(channel, items[2].stringValue ?? "")
        case "subscribe", "ssubscribe":
            if desired.contains(channel) {
                let now = wallMs()
                confirmed[channel] = now
                onSubscriptionChange?(channel, now)
            } else if !unsubscribing.contains(channel) {
                // Unsubscribed while the SUBSCRIBE was in flight.
                unsubscribing.insert(channel)
                send([sharded ? "SUNSUBSCRIBE" : "UNSUBSCRIBE", channel])
            }
        case "unsubscribe", "sunsubscribe":
            unsubscribing.remove(channel)
            confirmed.removeValue(forKey: channel)
            onSubscriptionChange?(channel, nil)
            // A listener came back while the UNSUBSCRIBE was in flight: subscribe again.
            if desired.contains(channel) { send([sharded ? "SSUBSCRIBE" : "SUBSCRIBE", channel]) }
        default:
            break
        }
    }
}
