// Redis Cluster, the pure parts: key → hash slot (CRC16 with hash tags), the slot map from `CLUSTER SLOTS`,
// which argument of a command is its key, and `MOVED` / `ASK` redirections.

/// `host:port` of a cluster node.
public struct RedisNodeAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port` (the last colon separates the port, so IPv6 hosts work); nil when malformed.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public enum RedisSlot {
    public static let count = 16384

    /// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis Cluster uses it.
    public static func crc16<C: Collection>(_ bytes: C) -> UInt16 where C.Element == UInt8 {
        var crc: UInt16 = 0
        for b in bytes {
            crc ^= UInt16(b) << 8
            for _ in 0..<8 {
                crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }

    /// The slot of `key`: only the part between the first `{` and the next `}` is hashed when that part is
    /// not empty (a hash tag), else the whole key.
    public static func of(_ key: String) -> Int {
        let b = Array(key.utf8)
        if let open = b.firstIndex(of: UInt8(ascii: "{")),
           let close = b[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            return Int(crc16(b[(open + 1)..<close]) % UInt16(count))
        }
        return Int(crc16(b) % UInt16(count))
    }
}

/// Which node serves each slot (masters only), as `CLUSTER SLOTS` reports it.
public struct RedisSlotMap: Sendable, Equatable {
    /// Per slot, an index into `masters`; -1: not served.
    private var owner: [Int16]
    public private(set) var masters: [RedisNodeAddress]

    public init() {
        owner = [Int16](repeating: -1, count: RedisSlot.count)
        masters = []
    }

    /// From a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, …], replica…], …]`. A node whose host is empty
    /// (an unknown endpoint) is reached at `fallbackHost` (the address the reply came from).
    public init?(clusterSlots reply: RedisReply, fallbackHost: String) {
        guard case .array(let ranges) = reply else { return nil }
        self.init()
        for r in ranges {
            guard case .array(let items) = r, items.count >= 3, let start = items[0].intValue, let end = items[1].intValue,
                  case .array(let node) = items[2], node.count >= 2, let port = node[1].intValue,
                  0 <= start, start <= end, end < Int64(RedisSlot.count) else { return nil }
            var host = node[0].stringValue ?? ""
            if host.isEmpty || host == "?" { host = fallbackHost }
            assign(Int(start)...Int(end), to: RedisNodeAddress(host: host, port: Int(port)))
        }
    }

    public func node(forSlot slot: Int) -> RedisNodeAddress? {
        guard (0..<RedisSlot.count).contains(slot) else { return nil }
        let i = Int(owner[slot])
        return i >= 0 ? masters[i] : nil
    }

    public func node(forKey key: String) -> RedisNodeAddress? { node(forSlot: RedisSlot.of(key)) }

    /// Every slot has a master.
    public var isComplete: Bool { !owner.contains(-1) }

    /// Records that `slots` moved to `address` (a `MOVED` redirection).
    public mutating func assign(_ slots: ClosedRange<Int>, to address: RedisNodeAddress) {
        let i: Int
        if let existing = masters.firstIndex(of: address) {
            i = existing
        } else {
            masters.append(address)
            i = masters.count - 1
        }
        for s in slots where (0..<RedisSlot.count).contains(s) { owner[s] = Int16(i) }
    }
}

public enum RedisRedirect: Sendable, Equatable {
    /// The slot lives on `address` now: update the map and resend there.
    case moved(slot: Int, address: RedisNodeAddress)
    /// The slot is migrating: resend this one command to `address`, preceded by `ASKING`.
    case ask(slot: Int, address: RedisNodeAddress)

    public init?(error: String) {
        let parts = error.split(separator: " ")
        guard parts.count == 3, let slot = Int(parts[1]), (0..<RedisSlot.count).contains(slot),
              let address = RedisNodeAddress(String(parts[2])) else { return nil }
        switch parts[0] {
        case "MOVED": self = .moved(slot: slot, address: address)
        case "ASK": self = .ask(slot: slot, address: address)
        default: return nil
        }
    }
}

public enum RedisCommandKey {
    /// The key that decides which node runs `args`; nil when any node will do (PUBLISH is broadcast by the
    /// cluster, SCRIPT / PING / AUTH have no key).
    public static func of(_ args: [String]) -> String? {
        guard let verb = args.first?.uppercased() else { return nil }
        switch verb {
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            guard args.count > 3, let n = Int(args[2]), n > 0 else { return nil }
            return args[3]
        case "PUBLISH", "SCRIPT", "PING", "AUTH", "HELLO", "CLUSTER", "INFO", "SUBSCRIBE", "UNSUBSCRIBE", "ASKING",
             "READONLY", "CLIENT", "CONFIG", "DEBUG", "FLUSHALL", "FLUSHDB", "DBSIZE", "TIME", "ECHO":
            return nil
        default:
            return args.count > 1 ? args[1] : nil
        }
    }
}
