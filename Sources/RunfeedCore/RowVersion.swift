// Row versions that see content, not only time.
//
// `updatedAt` cannot tell two versions of a run apart: trigger.dev stamps it on the app server's clock when
// the statement is built and commits later, on many app instances, so two writes can share a millisecond and
// a later commit can carry an earlier stamp. A version is therefore identified by a digest of the whole row,
// and ordered by when the read that produced it started (a read that starts later sees every commit an
// earlier read saw). Both travel with the client: a single-run offset carries the digest of the row the
// client holds; a list offset names a working set of digests kept in Redis.

/// FNV-1a, 64 bits: the same on every worker and host (Swift's `Hasher` is seeded per process and cannot be
/// used for anything that leaves the process).
public struct FNV1a64: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func add<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        var h = value
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        value = h
    }

    public mutating func add(_ v: UInt64) {
        withUnsafeBytes(of: v.littleEndian) { add($0) }
    }
}

extension RunRow {
    /// The digest of a row's raw values (all 26 wire columns, the environment and the batch): equal digests
    /// mean equal rows on every worker. Never 0 (0 stands for "no row" in offsets).
    public static func digest(raw: [String?]) -> UInt64 {
        var h = FNV1a64()
        h.add(UInt64(raw.count))
        for v in raw {
            if let v {
                // Length-prefixed, so no two different rows give the same byte stream.
                h.add(UInt64(v.utf8.count) &+ 1)
                h.add(v.utf8)
            } else {
                h.add(0)
            }
        }
        return h.value == 0 ? 1 : h.value
    }

    /// A row read with `PostgresListSQL.readColumns`: the 28 row values, then the statement's start on the
    /// database server in µs (`readAtUs`; `fallbackReadAtUs` when it is missing or malformed).
    public init?(read values: [String?], fallbackReadAtUs: Int64) {
        guard values.count == RunRow.rawCount + 1 else { return nil }
        self.init(raw: Array(values.prefix(RunRow.rawCount)))
        readAtUs = values[RunRow.rawCount].flatMap { Int64($0) } ?? fallbackReadAtUs
    }

    /// This row's version as a list working set records it.
    public var version: RowVersion { RowVersion(digest: digest, readAtUs: readAtUs) }
}

/// One version of a run as a client was sent it: the row's digest and when the read that produced it
/// started (wall clock, µs since the epoch; 0 = unknown, older than any read).
public struct RowVersion: Sendable, Hashable {
    public var digest: UInt64
    public var readAtUs: Int64

    public init(digest: UInt64, readAtUs: Int64) {
        self.digest = digest
        self.readAtUs = readAtUs
    }

    /// Whether `candidate` should replace this version at the client: a different row read by a read that
    /// started later. A different row from a read that started earlier is an older version (served from a
    /// cache, or a read that raced a newer one): sending it would move the client backwards, so it waits for a
    /// newer read.
    public func isSupersededBy(_ candidate: RowVersion) -> Bool {
        candidate.digest != digest && candidate.readAtUs > readAtUs
    }
}

/// What a single-run client holds, from its offset.
public enum RunClientView: Sendable, Equatable {
    /// The digest of the row the client holds (nil: it holds no row — the run was missing when it last asked).
    case digest(UInt64?)
    /// An offset without a digest (minted before digests, or typed by hand): only its floor is known, and
    /// a row counts as new when its `updatedAt` is later (the upstream rule).
    case floor(Int64)

    public init(_ offset: Offset) {
        if let t = offset.token {
            self = .digest(t == 0 ? nil : t)
        } else {
            self = .floor(offset.floorMs)
        }
    }

    /// Whether the row read (nil: no row) should be sent to this client.
    public func isNew(updatedAtMs: Int64, digest: UInt64) -> Bool {
        switch self {
        case .digest(let d): return d != digest
        case .floor(let f): return updatedAtMs > f
        }
    }

    /// The offset token of this view: the digest (0: no row), or nil for a floor-only view.
    public var token: UInt64? {
        switch self {
        case .digest(let d): return d ?? 0
        case .floor: return nil
        }
    }
}
