// The 26 TaskRun columns served on the wire, column sets and skipColumns resolution.

public enum RunColumn: String, CaseIterable, Sendable {
    case id, taskIdentifier, createdAt, updatedAt, startedAt, delayUntil, queuedAt, expiredAt, completedAt
    case friendlyId, number, isTest, status, usageDurationMs, costInCents, baseCostInCents, ttl
    case payload, payloadType, metadata, metadataType, output, outputType, runTags, error, realtimeStreams

    /// How a value of this column is encoded on the wire.
    public enum Kind: Sendable, Equatable {
        case text, timestamp, int4, bool, float8, jsonb, textArray
    }

    public var kind: Kind {
        switch self {
        case .createdAt, .updatedAt, .startedAt, .delayUntil, .queuedAt, .expiredAt, .completedAt: return .timestamp
        case .number, .usageDurationMs: return .int4
        case .isTest: return .bool
        case .costInCents, .baseCostInCents: return .float8
        case .error: return .jsonb
        case .runTags, .realtimeStreams: return .textArray
        default: return .text
        }
    }

    /// Zero-based position in wire order.
    public var index: Int { RunColumn.indexByColumn[self]! }
    private static let indexByColumn: [RunColumn: Int] =
        Dictionary(uniqueKeysWithValues: RunColumn.allCases.enumerated().map { ($1, $0) })

    /// The `electric-schema` entry for this column (never `not_null`, never `int8`).
    public var schemaJSON: String {
        switch kind {
        case .text: return #"{"type":"text"}"#
        case .timestamp: return #"{"type":"timestamp"}"#
        case .int4: return #"{"type":"int4"}"#
        case .bool: return #"{"type":"bool"}"#
        case .float8: return #"{"type":"float8"}"#
        case .jsonb: return #"{"type":"jsonb"}"#
        case .textArray: return #"{"type":"text","dims":1}"#
        }
    }

    /// The quoted SQL identifier, e.g. `"createdAt"`.
    public var sqlName: String { "\"\(rawValue)\"" }
}

/// An ordered subset of the run columns (always in wire order).
public struct ColumnSet: Hashable, Sendable {
    public let columns: [RunColumn]
    /// Sorted skipped column names joined by `,` (empty when nothing is skipped). Stable cache-key material,
    /// computed once (it keys the encoded-row cache, looked up once per row of every answer).
    public let signature: String

    public static let all = ColumnSet(skipping: [])

    /// All columns except `skipping`, in wire order.
    public init(skipping: Set<RunColumn>) {
        columns = RunColumn.allCases.filter { !skipping.contains($0) }
        signature = RunColumn.allCases.filter { skipping.contains($0) }.map(\.rawValue).sorted().joined(separator: ",")
    }

    /// The columns left out, in wire order.
    public var skipped: [RunColumn] {
        let present = Set(columns)
        return RunColumn.allCases.filter { !present.contains($0) }
    }

    public func contains(_ c: RunColumn) -> Bool { columns.contains(c) }

    /// Comma-separated quoted SQL names, e.g. `"id","taskIdentifier",…`.
    public var sqlSelectList: String { columns.map(\.sqlName).joined(separator: ",") }
}

public enum SkipColumns {
    /// Columns that may never be skipped. Upstream reserves id, taskIdentifier, friendlyId, status and
    /// createdAt; updatedAt is added as hardening because the SDK's schema requires it.
    public static let reserved: Set<RunColumn> = [.id, .taskIdentifier, .friendlyId, .status, .createdAt, .updatedAt]

    /// The JWT claim `realtime.skipColumns` wins when present (even `[]`); otherwise the query parameter is split
    /// on `,`. Entries are trimmed; empty, reserved and unknown names are dropped.
    public static func resolve(jwtClaim: [String]?, query: String?) -> ColumnSet {
        let names: [Substring]
        if let jwtClaim {
            names = jwtClaim.map { Substring($0) }
        } else if let query {
            names = query.split(separator: ",", omittingEmptySubsequences: false)
        } else {
            return .all
        }
        var skip = Set<RunColumn>()
        for name in names {
            guard let col = RunColumn(rawValue: trimSpaces(name)), !reserved.contains(col) else { continue }
            skip.insert(col)
        }
        return skip.isEmpty ? .all : ColumnSet(skipping: skip)
    }

    static func trimSpaces(_ s: Substring) -> String {
        var sub = s
        while let f = sub.first, f.isWhitespace { sub.removeFirst() }
        while let l = sub.last, l.isWhitespace { sub.removeLast() }
        return String(sub)
    }
}
