// One Redis pub/sub connection's protocol state (RESP2), as a pure state machine: events in (connection
// established, reply parsed, channel wanted or dropped, clock tick, connection lost), actions out (commands
// to send, subscriptions confirmed or lost, messages, failures, when to reconnect). It owns the channel set:
// wanted (`desired`), confirmed, in flight either way, and what is subscribed again after a reconnect. The I/O
// adapter (RedisSubscriber) owns the socket and runs the actions; everything here is testable without one.

public struct PubSubSession: Sendable {
    public enum Action: Sendable, Equatable {
        /// Write this command.
        case send([String])
        /// The server answered the connection's first command (AUTH, else PING). Health reports Redis up from here.
        case ready
        /// A subscription was confirmed by the server at `atMs` (wall clock).
        case confirmed(String, atMs: Int64)
        /// A confirmed subscription ended (unsubscribed, or the connection is gone).
        case lost(String)
        case message(channel: String, payload: String)
        /// The server dropped a sharded subscription on its own (its slot moved to another node); the channel
        /// is no longer wanted on this connection: route it again.
        case evicted(String)
        /// SSUBSCRIBE answered `MOVED <slot> <host:port>`: the channel belongs to another node.
        case moved(String, slot: Int, address: String)
        /// Close the connection (and reconnect): the reason says why.
        case fail(String)
        /// The connection failed (`failed()`): connect again after this long.
        case reconnect(afterMs: Int64)
    }

    /// A command whose reply is still due, in the order sent.
    enum Pending: Sendable, Equatable {
        case auth, ping, subscribe(String), unsubscribe(String)
    }

    public let sharded: Bool
    public let auth: [String]?
    public let pingIntervalMs: Int64
    public let pongTimeoutMs: Int64
    public let connectTimeoutMs: Int64
    /// The wait before the first reconnect after a connection that reached `.ready`; doubled after each failed
    /// attempt, up to `maxBackoffMs`.
    public static let initialBackoffMs: Int64 = 100
    public static let maxBackoffMs: Int64 = 5_000

    public private(set) var desired: Set<String> = []
    public private(set) var confirmed: [String: Int64] = [:]
    private var subscribing: Set<String> = []
    private var unsubscribing: Set<String> = []
    private var pending: [Pending] = []
    private var pendingHead = 0
    /// nil: no connection attempt under way.
    private var startedMs: Int64?
    public private(set) var established = false
    public private(set) var isReady = false
    private var lastReplyMs: Int64 = 0
    private var pingSentMs: Int64?
    /// The wait before the next reconnect.
    public private(set) var backoffMs: Int64 = PubSubSession.initialBackoffMs

    public init(sharded: Bool, auth: [String]?, pingIntervalMs: Int64 = 5_000, pongTimeoutMs: Int64 = 5_000,
                connectTimeoutMs: Int64 = 10_000) {
        self.sharded = sharded
        self.auth = auth
        self.pingIntervalMs = pingIntervalMs
        self.pongTimeoutMs = pongTimeoutMs
        self.connectTimeoutMs = connectTimeoutMs
    }

    private var subVerb: String { sharded ? "SSUBSCRIBE" : "SUBSCRIBE" }
    private var unsubVerb: String { sharded ? "SUNSUBSCRIBE" : "UNSUBSCRIBE" }

    // MARK: events

    /// A connection attempt began (DNS, TCP, TLS handshake).
    public mutating func started(nowMs: Int64) {
        startedMs = nowMs
        established = false
        isReady = false
    }

    /// The transport is open (TCP connected, TLS handshake done): authenticate and subscribe everything wanted.
    public mutating func opened(nowMs: Int64) -> [Action] {
        established = true
        lastReplyMs = nowMs
        pingSentMs = nil
        // The server must answer before the connection counts as up: AUTH, or a PING when there is none (a
        // black-holed connect is not "up"). The probe's deadline is the PING deadline.
        var out: [Action] = []
        if let auth {
            out.append(.send(auth))
            push(.auth)
        } else {
            out.append(.send(["PING"]))
            push(.ping)
        }
        pingSentMs = nowMs
        // Pipelined after AUTH: if AUTH fails, these fail too and the connection is closed on the AUTH error.
        for ch in desired.sorted() { out.append(contentsOf: sendSubscribe(ch)) }
        return out
    }

    /// The channel is wanted: subscribed now when connected (and not already), else on the next `opened`.
    public mutating func want(_ channel: String) -> [Action] {
        guard desired.insert(channel).inserted, established else { return [] }
        // While an unsubscribe is in flight, its reply subscribes again.
        guard !unsubscribing.contains(channel), !subscribing.contains(channel), confirmed[channel] == nil else { return [] }
        return sendSubscribe(channel)
    }

    /// The channel is no longer wanted: unsubscribed when subscribed or being subscribed (an unsubscribe already
    /// in flight is enough), and not subscribed again on a reconnect.
    public mutating func drop(_ channel: String) -> [Action] {
        guard desired.remove(channel) != nil, established else { return [] }
        guard confirmed[channel] != nil || subscribing.contains(channel), !unsubscribing.contains(channel) else { return [] }
        unsubscribing.insert(channel)
        push(.unsubscribe(channel))
        return [.send([unsubVerb, channel])]
    }

    /// The connection is gone (closed, failed, or abandoned after `.fail`). Every confirmed subscription is lost;
    /// the wanted set stays, to be subscribed again on the next `opened`.
    public mutating func closed() -> [Action] {
        let lost = confirmed.keys.sorted()
        confirmed.removeAll()
        subscribing.removeAll()
        unsubscribing.removeAll()
        pending.removeAll()
        pendingHead = 0
        established = false
        isReady = false
        startedMs = nil
        pingSentMs = nil
        return lost.map { .lost($0) }
    }

    /// The connection failed (closed by the server, an I/O error, or `.fail`): as `closed()`, then when to
    /// connect again (backing off while attempts keep failing; reset once a connection answers).
    public mutating func failed() -> [Action] {
        var out = closed()
        out.append(.reconnect(afterMs: backoffMs))
        backoffMs = min(backoffMs * 2, Self.maxBackoffMs)
        return out
    }

    /// Liveness: a connection that does not open in time, or does not answer a PING in time, fails. A PING goes
    /// out after `pingIntervalMs` without any reply.
    public mutating func tick(nowMs: Int64) -> [Action] {
        if !established {
            if let s = startedMs, nowMs - s >= connectTimeoutMs {
                startedMs = nil
                return [.fail("not connected within \(connectTimeoutMs) ms")]
            }
            return []
        }
        if let sent = pingSentMs {
            if nowMs - sent >= pongTimeoutMs {
                return [.fail(isReady ? "no reply to PING within \(pongTimeoutMs) ms"
                                      : "no reply to \(auth == nil ? "PING" : "AUTH") within \(pongTimeoutMs) ms of connecting")]
            }
            return []
        }
        if nowMs - lastReplyMs >= pingIntervalMs {
            pingSentMs = nowMs
            push(.ping)
            return [.send(["PING"])]
        }
        return []
    }

    /// One parsed reply (in arrival order).
    public mutating func received(_ reply: RedisReply, nowMs: Int64) -> [Action] {
        lastReplyMs = nowMs
        if case .array(let items) = reply, let kind = items.first?.stringValue?.lowercased() {
            switch kind {
            case "message", "smessage":
                guard items.count >= 3, let ch = items[1].stringValue else { return [] }
                return [.message(channel: ch, payload: items[2].stringValue ?? "")]
            case "pmessage":
                return []
            case "subscribe", "ssubscribe":
                guard items.count >= 2, let ch = items[1].stringValue else { return [.fail("malformed \(kind) reply")] }
                guard popPending(.subscribe(ch)) else { return [.fail("unexpected \(kind) reply for \(ch)")] }
                return subscribeConfirmed(ch, nowMs: nowMs)
            case "unsubscribe", "sunsubscribe":
                guard items.count >= 2, let ch = items[1].stringValue else { return [.fail("malformed \(kind) reply")] }
                if popPending(.unsubscribe(ch)) { return unsubscribeConfirmed(ch) }
                // Not ours: the server ended a sharded subscription (its slot moved).
                guard kind == "sunsubscribe" else { return [.fail("unexpected unsubscribe reply for \(ch)")] }
                subscribing.remove(ch)
                var out: [Action] = []
                if confirmed.removeValue(forKey: ch) != nil { out.append(.lost(ch)) }
                if desired.remove(ch) != nil { out.append(.evicted(ch)) }
                return out
            case "pong":
                return pong()
            default:
                break
            }
        }
        switch reply {
        case .status(let s) where s.uppercased() == "PONG":
            return pong()
        case .status(let s) where s.uppercased() == "OK":
            guard popPending(.auth) else { return [.fail("unexpected reply \(s)")] }
            pingSentMs = nil
            isReady = true
            backoffMs = Self.initialBackoffMs
            return [.ready]
        case .error(let e):
            guard let head = popAny() else { return [.fail("unexpected error reply: \(e)")] }
            switch head {
            case .auth:
                return [.fail("AUTH refused: \(e)")]
            case .ping:
                return [.fail("PING refused: \(e)")]
            case .subscribe(let ch):
                subscribing.remove(ch)
                if let (slot, address) = Self.parseMoved(e) {
                    desired.remove(ch)
                    unsubscribing.remove(ch)
                    return [.moved(ch, slot: slot, address: address)]
                }
                return [.fail("\(subVerb) \(ch) refused: \(e)")]
            case .unsubscribe(let ch):
                unsubscribing.remove(ch)
                return [.fail("\(unsubVerb) \(ch) refused: \(e)")]
            }
        default:
            return [.fail("unexpected reply")]
        }
    }

    // MARK: helpers

    private mutating func sendSubscribe(_ ch: String) -> [Action] {
        subscribing.insert(ch)
        push(.subscribe(ch))
        return [.send([subVerb, ch])]
    }

    private mutating func subscribeConfirmed(_ ch: String, nowMs: Int64) -> [Action] {
        subscribing.remove(ch)
        if desired.contains(ch) {
            // A repeated confirmation (already confirmed) keeps the first time: nothing was missed since.
            if confirmed[ch] != nil { return [] }
            confirmed[ch] = nowMs
            return [.confirmed(ch, atMs: nowMs)]
        }
        // Dropped while the SUBSCRIBE was in flight: the UNSUBSCRIBE sent by `drop` (if any) follows.
        if unsubscribing.contains(ch) { return [] }
        unsubscribing.insert(ch)
        push(.unsubscribe(ch))
        return [.send([unsubVerb, ch])]
    }

    private mutating func unsubscribeConfirmed(_ ch: String) -> [Action] {
        unsubscribing.remove(ch)
        var out: [Action] = []
        if confirmed.removeValue(forKey: ch) != nil { out.append(.lost(ch)) }
        // Wanted again while the UNSUBSCRIBE was in flight: subscribe again.
        if desired.contains(ch) { out.append(contentsOf: sendSubscribe(ch)) }
        return out
    }

    private mutating func pong() -> [Action] {
        guard popPending(.ping) else { return [.fail("unexpected PONG")] }
        pingSentMs = nil
        if !isReady {
            isReady = true
            backoffMs = Self.initialBackoffMs
            return [.ready]
        }
        return []
    }

    private mutating func push(_ p: Pending) { pending.append(p) }

    /// Pops the oldest pending command if it is `p`.
    private mutating func popPending(_ p: Pending) -> Bool {
        guard pendingHead < pending.count, pending[pendingHead] == p else { return false }
        _ = popAny()
        return true
    }

    private mutating func popAny() -> Pending? {
        guard pendingHead < pending.count else { return nil }
        let p = pending[pendingHead]
        pendingHead += 1
        if pendingHead > 64, pendingHead * 2 > pending.count {
            pending.removeFirst(pendingHead)
            pendingHead = 0
        }
        return p
    }

    /// `MOVED <slot> <host:port>` → (slot, "host:port").
    public static func parseMoved(_ error: String) -> (Int, String)? {
        let parts = error.split(separator: " ")
        guard parts.count == 3, parts[0] == "MOVED", let slot = Int(parts[1]), (0..<16384).contains(slot) else { return nil }
        return (slot, String(parts[2]))
    }
}
