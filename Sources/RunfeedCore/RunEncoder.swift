// Row model and the Electric shape-log encoding of TaskRun rows: schema header, change messages and column values.
#if canImport(Glibc)
import Glibc
#endif

/// One TaskRun row as raw libpq text values.
public struct RunRow: Sendable, Equatable {
    /// Index of `runtimeEnvironmentId` in `raw` (after the 26 wire columns).
    public static let envIdIndex = 26
    /// Index of `batchId` in `raw`.
    public static let batchIdIndex = 27
    /// Number of raw values expected by `init?(raw:)`.
    public static let rawCount = 28

    /// 28 entries: the 26 columns in `RunColumn` order, then `runtimeEnvironmentId`, then `batchId`.
    public let raw: [String?]
    public let id: String
    public let friendlyId: String
    /// The run's environment id ("" if the query did not provide it).
    public let envId: String
    public let batchId: String?
    public let status: String
    public let createdAtMs: Int64
    public let updatedAtMs: Int64
    /// The run's tags (NULL or malformed → []; NULL elements dropped).
    public let runTags: [String]
    /// `RunRow.digest(raw:)`: identifies this version of the row on every worker.
    public let digest: UInt64
    /// When the read that produced this row started (wall clock, µs since the epoch; 0 = unknown). Set by
    /// the reader; orders versions of a run (`RowVersion`).
    public var readAtUs: Int64 = 0
    /// Read on the read replica (its `readAtUs` is the replica's watermark, not the statement's start).
    public var fromReplica = false

    /// Nil unless `raw` has 28 entries (26 is also accepted: no env/batch ids) and id, friendlyId, status,
    /// createdAt and updatedAt are present and well-formed.
    public init?(raw: [String?]) {
        guard raw.count == RunRow.rawCount || raw.count == RunColumn.allCases.count else { return nil }
        var full = raw
        while full.count < RunRow.rawCount { full.append(nil) }
        guard let id = full[RunColumn.id.index], !id.isEmpty,
              let friendlyId = full[RunColumn.friendlyId.index],
              let status = full[RunColumn.status.index],
              let created = full[RunColumn.createdAt.index].flatMap(PGText.timestampToEpochMs),
              let updated = full[RunColumn.updatedAt.index].flatMap(PGText.timestampToEpochMs)
        else { return nil }
        let tags = full[RunColumn.runTags.index].flatMap(PGText.parseArray)?.compactMap { $0 } ?? []
        self.raw = full
        self.id = id
        self.friendlyId = friendlyId
        self.envId = full[RunRow.envIdIndex] ?? ""
        self.batchId = full[RunRow.batchIdIndex]
        self.status = status
        self.createdAtMs = created
        self.updatedAtMs = updated
        self.runTags = tags
        self.digest = RunRow.digest(raw: full)
    }

    /// The raw text of one column.
    public subscript(column: RunColumn) -> String? { raw[column.index] }

    public var taskIdentifier: String? { self[.taskIdentifier] }
    /// Whether `completedAt` is set (the SDK closes single-run streams then).
    public var isCompleted: Bool { self[.completedAt] != nil }
}

public enum RunEncoder {
    /// The one-line `electric-schema` JSON for `cols`, in wire order.
    public static func schemaHeader(_ cols: ColumnSet) -> String {
        var out = "{"
        for (i, c) in cols.columns.enumerated() {
            if i > 0 { out += "," }
            out += "\"\(c.rawValue)\":" + c.schemaJSON
        }
        return out + "}"
    }

    /// The encoded wire text of one column value, or nil for a JSON null.
    ///
    /// NULL arrays follow upstream's native serializer: a NULL `realtimeStreams` is sent as `"{}"` (the
    /// Postgres empty-array literal), while `runTags` sends null for both NULL and the empty array.
    public static func wireValue(_ column: RunColumn, _ text: String?) -> String? {
        guard let text else { return column == .realtimeStreams ? "{}" : nil }
        switch column.kind {
        case .text, .int4, .bool:
            return text
        case .timestamp:
            return PGText.timestampToWire(text) ?? text
        case .float8:
            guard let d = parseFloat8(text) else { return text }
            return JSNumber.format(d)
        case .jsonb:
            return PGText.compactJSON(text) ?? text
        case .textArray:
            guard let elems = PGText.parseArray(text) else { return text }
            if elems.isEmpty { return column == .runTags ? nil : "{}" }
            return PGText.encodeArray(elems)
        }
    }

    /// Postgres float8 text (including `NaN`, `Infinity`, `-Infinity`) → Double.
    static func parseFloat8(_ s: String) -> Double? {
        switch s {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return Double(s)
        }
    }

    /// The `value` object: every selected column in wire order, as a JSON string or null.
    public static func valueJSON(_ row: RunRow, columns: ColumnSet) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(256 + (row[.payload]?.utf8.count ?? 0) + (row[.output]?.utf8.count ?? 0))
        out.append(UInt8(ascii: "{"))
        for (i, c) in columns.columns.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(0x22)
            out.append(contentsOf: c.rawValue.utf8)
            out.append(0x22)
            out.append(UInt8(ascii: ":"))
            if let v = wireValue(c, row[c]) {
                JSONText.appendQuoted(v, to: &out)
            } else {
                out.append(contentsOf: "null".utf8)
            }
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    /// The Electric key of a run: `"public"."TaskRun"/"<id>"` (unquoted; JSON-quote it for the body).
    public static func key(runId: String) -> String {
        "\"public\".\"TaskRun\"/\"\(runId)\""
    }

    /// `{"key":…,"value":<valueJSON>,"headers":{"operation":"<operation>"}}`.
    public static func changeMessage(runId: String, valueJSON: String, operation: ChangeOperation) -> String {
        "{\"key\":" + JSONText.quote(key(runId: runId)) + ",\"value\":" + valueJSON
            + ",\"headers\":{\"operation\":" + JSONText.quote(operation.rawValue) + "}}"
    }

    public static let upToDate = "{\"headers\":{\"control\":\"up-to-date\"}}"
    public static let mustRefetch = "{\"headers\":{\"control\":\"must-refetch\"}}"

    /// `[m1,m2,…]`.
    public static func body(_ messages: [String]) -> String {
        "[" + messages.joined(separator: ",") + "]"
    }

    /// The API version that receives raw `DEQUEUED` statuses.
    public static let currentApiVersion = "2025-07-16"

    /// Unless `apiVersion` is exactly `2025-07-16`, rewrites every `"status":"DEQUEUED"` to `"status":"EXECUTING"`.
    public static func rewriteForLegacyApiVersion(_ body: String, apiVersion: String?) -> String {
        if apiVersion == currentApiVersion { return body }
        return replaceAll(body, #""status":"DEQUEUED""#, #""status":"EXECUTING""#)
    }

    static func replaceAll(_ haystack: String, _ needle: String, _ replacement: String) -> String {
        guard !needle.isEmpty, haystack.utf8.count >= needle.utf8.count else { return haystack }
        // Most bodies hold no match: find that out without copying.
        let found: Bool = haystack.utf8.withContiguousStorageIfAvailable { h in
            needle.utf8.withContiguousStorageIfAvailable { n in
                // memchr to each occurrence of an anchor byte, memcmp around it (memmem is a GNU
                // extension). The anchor is the needle's first upper-case letter if it has one: quotes
                // and colons are everywhere in JSON, upper case is rare.
                guard let base = h.baseAddress, let nb = n.baseAddress else { return false }
                let a = (0..<n.count).first { nb[$0] >= 65 && nb[$0] <= 90 } ?? 0
                var p = UnsafeRawPointer(base + a)
                let last = UnsafeRawPointer(base + h.count - n.count + a)  // the last place the anchor can be
                while p <= last {
                    guard let hit = memchr(p, Int32(nb[a]), last - p + 1) else { return false }
                    if memcmp(UnsafeRawPointer(hit) - a, nb, n.count) == 0 { return true }
                    p = UnsafeRawPointer(hit) + 1
                }
                return false
            } ?? true
        } ?? true
        guard found else { return haystack }
        let h = Array(haystack.utf8)
        let n = Array(needle.utf8)
        var out: [UInt8] = []
        var i = 0
        var changed = false
        out.reserveCapacity(h.count)
        let first = n[0]
        while i < h.count {
            if h[i] == first && i + n.count <= h.count && h[i..<(i + n.count)].elementsEqual(n) {
                out.append(contentsOf: replacement.utf8)
                i += n.count
                changed = true
            } else {
                out.append(h[i]); i += 1
            }
        }
        return changed ? String(decoding: out, as: UTF8.self) : haystack
    }
}

/// The `operation` header of a change message: how the client applies the row to what it holds.
public enum ChangeOperation: String, Sendable, Hashable {
    /// A row the client does not hold.
    case insert
    /// A newer version of a row the client holds.
    case update
    /// A row the client holds that left the shape.
    case delete
}
