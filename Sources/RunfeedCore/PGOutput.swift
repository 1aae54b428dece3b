// PostgreSQL logical replication: the COPY BOTH framing of a replication stream (XLogData, primary keepalive,
// standby status update) and the messages of the built-in `pgoutput` plugin, protocol version 1.
// Pure: bytes in, values out. Every length is checked; malformed input is an error, never a trap.

/// A WAL position (`pg_lsn`), printed as PostgreSQL does: `16/B374D848`.
public struct LSN: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public static let zero = LSN(0)
    public static func < (a: LSN, b: LSN) -> Bool { a.value < b.value }
    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }
    /// Parses `X/Y` (hex halves, each at most 8 digits).
    public init?(text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...8).contains(parts[0].count), (1...8).contains(parts[1].count),
              let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16) else { return nil }
        value = hi << 32 | lo
    }
}

public struct PGOutputError: Error, Equatable, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's epoch) ↔ Unix epoch.
public enum PGEpoch {
    public static let unixOffsetUs: Int64 = 946_684_800_000_000
    public static func toUnixMs(_ pgUs: Int64) -> Int64 { (pgUs + unixOffsetUs) / 1000 }
    public static func fromUnixUs(_ unixUs: Int64) -> Int64 { unixUs - unixOffsetUs }
}

/// One message of the COPY BOTH stream sent by the server (`CopyData` payloads).
public enum ReplicationFrame: Sendable, Equatable {
    /// `w`: WAL data starting at `start`; `payload` is one pgoutput message.
    case xlogData(start: LSN, end: LSN, sendTimeUs: Int64, payload: [UInt8])
    /// `k`: the server's WAL end; `replyRequested` asks for a standby status update now.
    case keepalive(end: LSN, sendTimeUs: Int64, replyRequested: Bool)

    public static func parse(_ bytes: [UInt8]) throws -> ReplicationFrame {
        var r = PGByteReader(bytes)
        switch try r.u8() {
        case UInt8(ascii: "w"):
            let start = LSN(try r.u64()), end = LSN(try r.u64()), t = try r.i64()
            return .xlogData(start: start, end: end, sendTimeUs: t, payload: r.rest())
        case UInt8(ascii: "k"):
            let end = LSN(try r.u64()), t = try r.i64(), reply = try r.u8()
            guard r.atEnd else { throw PGOutputError("keepalive: trailing bytes") }
            return .keepalive(end: end, sendTimeUs: t, replyRequested: reply != 0)
        case let c:
            throw PGOutputError("unknown replication frame type \(c)")
        }
    }

    /// `r`: the standby status update the client sends (written/flushed/applied positions).
    public static func standbyStatusUpdate(written: LSN, flushed: LSN, applied: LSN, clockUs: Int64,
                                           replyRequested: Bool = false) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "r")]
        out.reserveCapacity(34)
        for v in [written.value, flushed.value, applied.value, UInt64(bitPattern: clockUs)] { PGByteReader.put(v, into: &out) }
        out.append(replyRequested ? 1 : 0)
        return out
    }
}

/// A column of a tuple: null, unchanged TOASTed value (not sent), text, or binary.
public enum TupleValue: Sendable, Equatable {
    case null
    case unchangedToast
    case text(String)
    case binary([UInt8])

    public var text: String? { if case .text(let s) = self { return s } else { return nil } }
}

public struct RelationColumn: Sendable, Equatable {
    public var isKey: Bool
    public var name: String
    public var typeOid: UInt32
    public var typeModifier: Int32
    public init(isKey: Bool, name: String, typeOid: UInt32, typeModifier: Int32) {
        self.isKey = isKey; self.name = name; self.typeOid = typeOid; self.typeModifier = typeModifier
    }
}

public struct Relation: Sendable, Equatable {
    public var id: UInt32
    public var namespace: String
    public var name: String
    /// `d` default, `n` nothing, `f` full, `i` index.
    public var replicaIdentity: UInt8
    public var columns: [RelationColumn]
    public init(id: UInt32, namespace: String, name: String, replicaIdentity: UInt8, columns: [RelationColumn]) {
        self.id = id; self.namespace = namespace; self.name = name
        self.replicaIdentity = replicaIdentity; self.columns = columns
    }
}

/// One pgoutput message (protocol version 1; `b` binary values of later versions are read too).
public enum PGOutputMessage: Sendable, Equatable {
    case begin(finalLSN: LSN, commitTimeUs: Int64, xid: UInt32)
    case commit(flags: UInt8, commitLSN: LSN, endLSN: LSN, commitTimeUs: Int64)
    case origin(lsn: LSN, name: String)
    case relation(Relation)
    case type(oid: UInt32, namespace: String, name: String)
    case insert(relationId: UInt32, new: [TupleValue])
    /// `old` is the key (`K`) or full old row (`O`) when the server sends it.
    case update(relationId: UInt32, old: [TupleValue]?, new: [TupleValue])
    case delete(relationId: UInt32, old: [TupleValue])
    case truncate(options: UInt8, relationIds: [UInt32])
    /// `M` (logical decoding message) and other kinds this reader skips.
    case other(kind: UInt8)

    /// Bounds against hostile input: no tuple or relation claims more columns than a table may have.
    static let maxColumns = 1664

    public static func parse(_ bytes: [UInt8]) throws -> PGOutputMessage {
        var r = PGByteReader(bytes)
        let kind = try r.u8()
        let msg: PGOutputMessage
        switch kind {
        case UInt8(ascii: "B"):
            msg = .begin(finalLSN: LSN(try r.u64()), commitTimeUs: try r.i64(), xid: try r.u32())
        case UInt8(ascii: "C"):
            msg = .commit(flags: try r.u8(), commitLSN: LSN(try r.u64()), endLSN: LSN(try r.u64()), commitTimeUs: try r.i64())
        case UInt8(ascii: "O"):
            msg = .origin(lsn: LSN(try r.u64()), name: try r.cString())
        case UInt8(ascii: "R"):
            let id = try r.u32(), ns = try r.cString(), name = try r.cString(), ident = try r.u8()
            let n = Int(try r.i16())
            guard n >= 0, n <= maxColumns else { throw PGOutputError("relation: bad column count \(n)") }
            var cols: [RelationColumn] = []
            cols.reserveCapacity(n)
            for _ in 0..<n {
                let flags = try r.u8(), cname = try r.cString(), oid = try r.u32(), mod = try r.i32()
                cols.append(RelationColumn(isKey: flags & 1 != 0, name: cname, typeOid: oid, typeModifier: mod))
            }
            msg = .relation(Relation(id: id, namespace: ns, name: name, replicaIdentity: ident, columns: cols))
        case UInt8(ascii: "Y"):
            msg = .type(oid: try r.u32(), namespace: try r.cString(), name: try r.cString())
        case UInt8(ascii: "I"):
            let rel = try r.u32()
            guard try r.u8() == UInt8(ascii: "N") else { throw PGOutputError("insert: expected N") }
            msg = .insert(relationId: rel, new: try r.tuple())
        case UInt8(ascii: "U"):
            let rel = try r.u32()
            var old: [TupleValue]?
            var tag = try r.u8()
            if tag == UInt8(ascii: "K") || tag == UInt8(ascii: "O") {
                old = try r.tuple()
                tag = try r.u8()
            }
            guard tag == UInt8(ascii: "N") else { throw PGOutputError("update: expected N") }
            msg = .update(relationId: rel, old: old, new: try r.tuple())
        case UInt8(ascii: "D"):
            let rel = try r.u32()
            let tag = try r.u8()
            guard tag == UInt8(ascii: "K") || tag == UInt8(ascii: "O") else { throw PGOutputError("delete: expected K or O") }
            msg = .delete(relationId: rel, old: try r.tuple())
        case UInt8(ascii: "T"):
            let n = Int(try r.i32())
            let options = try r.u8()
            guard n >= 0, n <= r.remaining / 4 else { throw PGOutputError("truncate: bad relation count \(n)") }
            var ids: [UInt32] = []
            for _ in 0..<n { ids.append(try r.u32()) }
            msg = .truncate(options: options, relationIds: ids)
        default:
            return .other(kind: kind)
        }
        guard r.atEnd else { throw PGOutputError("message \(Character(Unicode.Scalar(kind))): trailing bytes") }
        return msg
    }
}

/// A bounds-checked big-endian reader.
struct PGByteReader {
    private let bytes: [UInt8]
    private var pos = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { pos == bytes.count }
    var remaining: Int { bytes.count - pos }

    mutating func u8() throws -> UInt8 {
        guard pos < bytes.count else { throw PGOutputError("truncated message") }
        defer { pos += 1 }
        return bytes[pos]
    }

    private mutating func uint(_ n: Int) throws -> UInt64 {
        guard remaining >= n else { throw PGOutputError("truncated message") }
        var v: UInt64 = 0
        for i in 0..<n { v = v << 8 | UInt64(bytes[pos + i]) }
        pos += n
        return v
    }

    mutating func u64() throws -> UInt64 { try uint(8) }
    mutating func i64() throws -> Int64 { Int64(bitPattern: try uint(8)) }
    mutating func u32() throws -> UInt32 { UInt32(try uint(4)) }
    mutating func i32() throws -> Int32 { Int32(bitPattern: UInt32(try uint(4))) }
    mutating func i16() throws -> Int16 { Int16(bitPattern: UInt16(try uint(2))) }

    mutating func cString() throws -> String {
        guard let end = bytes[pos...].firstIndex(of: 0) else { throw PGOutputError("unterminated string") }
        defer { pos = end + 1 }
        return String(decoding: bytes[pos..<end], as: UTF8.self)
    }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, remaining >= n else { throw PGOutputError("truncated value") }
        defer { pos += n }
        return bytes[pos..<pos + n]
    }

    func rest() -> [UInt8] { Array(bytes[pos...]) }

    mutating func tuple() throws -> [TupleValue] {
        let n = Int(try i16())
        guard n >= 0, n <= PGOutputMessage.maxColumns else { throw PGOutputError("tuple: bad column count \(n)") }
        var out: [TupleValue] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            switch try u8() {
            case UInt8(ascii: "n"): out.append(.null)
            case UInt8(ascii: "u"): out.append(.unchangedToast)
            case UInt8(ascii: "t"): out.append(.text(String(decoding: try take(Int(try i32())), as: UTF8.self)))
            case UInt8(ascii: "b"): out.append(.binary(Array(try take(Int(try i32())))))
            case let c: throw PGOutputError("tuple: unknown column kind \(c)")
            }
        }
        return out
    }

    static func put(_ v: UInt64, into out: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }
    static func put32(_ v: UInt32, into out: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }
}

/// Builds pgoutput messages and frames (tests, fuzz seeds, benchmarks): the inverse of the parsers above.
public enum PGOutputEncoder {
    public static func encode(_ m: PGOutputMessage) -> [UInt8] {
        var o: [UInt8] = []
        func u64(_ v: UInt64) { PGByteReader.put(v, into: &o) }
        func u32(_ v: UInt32) { PGByteReader.put32(v, into: &o) }
        func u16(_ v: Int) { o.append(UInt8(truncatingIfNeeded: v >> 8)); o.append(UInt8(truncatingIfNeeded: v)) }
        func str(_ s: String) { o.append(contentsOf: Array(s.utf8)); o.append(0) }
        func tuple(_ t: [TupleValue]) {
            u16(t.count)
            for v in t {
                switch v {
                case .null: o.append(UInt8(ascii: "n"))
                case .unchangedToast: o.append(UInt8(ascii: "u"))
                case .text(let s): o.append(UInt8(ascii: "t")); u32(UInt32(s.utf8.count)); o.append(contentsOf: Array(s.utf8))
                case .binary(let b): o.append(UInt8(ascii: "b")); u32(UInt32(b.count)); o.append(contentsOf: b)
                }
            }
        }
        switch m {
        case .begin(let lsn, let t, let xid):
            o.append(UInt8(ascii: "B")); u64(lsn.value); u64(UInt64(bitPattern: t)); u32(xid)
        case .commit(let flags, let c, let e, let t):
            o.append(UInt8(ascii: "C")); o.append(flags); u64(c.value); u64(e.value); u64(UInt64(bitPattern: t))
        case .origin(let lsn, let name):
            o.append(UInt8(ascii: "O")); u64(lsn.value); str(name)
        case .relation(let r):
            o.append(UInt8(ascii: "R")); u32(r.id); str(r.namespace); str(r.name); o.append(r.replicaIdentity)
            u16(r.columns.count)
            for c in r.columns {
                o.append(c.isKey ? 1 : 0); str(c.name); u32(c.typeOid); u32(UInt32(bitPattern: c.typeModifier))
            }
        case .type(let oid, let ns, let name):
            o.append(UInt8(ascii: "Y")); u32(oid); str(ns); str(name)
        case .insert(let rel, let new):
            o.append(UInt8(ascii: "I")); u32(rel); o.append(UInt8(ascii: "N")); tuple(new)
        case .update(let rel, let old, let new):
            o.append(UInt8(ascii: "U")); u32(rel)
            if let old { o.append(UInt8(ascii: "O")); tuple(old) }
            o.append(UInt8(ascii: "N")); tuple(new)
        case .delete(let rel, let old):
            o.append(UInt8(ascii: "D")); u32(rel); o.append(UInt8(ascii: "K")); tuple(old)
        case .truncate(let options, let ids):
            o.append(UInt8(ascii: "T")); u32(UInt32(ids.count)); o.append(options); ids.forEach(u32)
        case .other(let kind):
            o.append(kind)
        }
        return o
    }

    public static func xlogData(start: LSN, end: LSN, sendTimeUs: Int64 = 0, _ m: PGOutputMessage) -> [UInt8] {
        var o: [UInt8] = [UInt8(ascii: "w")]
        PGByteReader.put(start.value, into: &o); PGByteReader.put(end.value, into: &o)
        PGByteReader.put(UInt64(bitPattern: sendTimeUs), into: &o)
        return o + encode(m)
    }

    public static func keepalive(end: LSN, sendTimeUs: Int64 = 0, replyRequested: Bool) -> [UInt8] {
        var o: [UInt8] = [UInt8(ascii: "k")]
        PGByteReader.put(end.value, into: &o); PGByteReader.put(UInt64(bitPattern: sendTimeUs), into: &o)
        o.append(replyRequested ? 1 : 0)
        return o
    }
}
