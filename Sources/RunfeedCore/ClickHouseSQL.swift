// ClickHouse run-id resolution and the Postgres membership/hydration statements.

public enum ClickHouseSQL {
    public static let defaultTable = "trigger_dev.task_runs_v2"

    private static let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// The one escaping function for ClickHouse string literals: single-quoted, with `\` → `\\`, `'` → `\'`
    /// and every byte 0x00–0x1f and 0x7f as `\xHH` (uppercase hex). All other bytes, UTF-8 included, are kept.
    public static func literal(_ s: String) -> String {
        var out: [UInt8] = [UInt8(ascii: "'")]
        out.reserveCapacity(s.utf8.count + 2)
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case UInt8(ascii: "'"): out.append(contentsOf: [0x5C, UInt8(ascii: "'")])
            case 0x00..<0x20, 0x7F:
                out.append(contentsOf: [0x5C, UInt8(ascii: "x"), hexDigits[Int(c >> 4)], hexDigits[Int(c & 0xF)]])
            default: out.append(c)
            }
        }
        out.append(UInt8(ascii: "'"))
        return String(decoding: out, as: UTF8.self)
    }

    /// `['a','b']` (each element through `literal`); `[]` when empty.
    public static func arrayLiteral(_ items: [String]) -> String {
        "[" + items.map(literal).joined(separator: ",") + "]"
    }

    /// The run-id query of a list feed, in a shape ClickHouse 18.16 and current versions both accept:
    ///
    /// `SELECT run_id FROM <table> FINAL WHERE organization_id = … AND project_id = … AND environment_id = …`
    /// `[ AND hasAll(tags, [...])][ AND created_at >= toDateTime(<s>)][ AND batch_id = …] AND _is_deleted = 0`
    /// `ORDER BY created_at DESC, run_id DESC LIMIT <limit+1> FORMAT TabSeparated`
    ///
    /// The tags clause appears only for a non-empty list. `fromMs` is floored to whole seconds (never below 0),
    /// which can only include up to one extra second of runs; rows are re-checked after hydration. A negative
    /// `limit` counts as 0. The extra row signals truncation.
    public static func runIdsQuery(organizationId: String, projectId: String, environmentId: String, tags: [String],
                                   fromMs: Int64?, batchId: String?, limit: Int,
                                   table: String = defaultTable) -> String {
        var sql = "SELECT run_id FROM \(table) FINAL WHERE organization_id = " + literal(organizationId)
            + " AND project_id = " + literal(projectId) + " AND environment_id = " + literal(environmentId)
        if !tags.isEmpty { sql += " AND hasAll(tags, " + arrayLiteral(tags) + ")" }
        if let fromMs { sql += " AND created_at >= toDateTime(\(max(0, CreatedAtWindow.bucket(fromMs, 1000) / 1000)))" }
        if let batchId { sql += " AND batch_id = " + literal(batchId) }
        let fetch = max(0, limit) == Int.max ? Int.max : max(0, limit) + 1
        sql += " AND _is_deleted = 0 ORDER BY created_at DESC, run_id DESC LIMIT \(fetch) FORMAT TabSeparated"
        return sql
    }

    /// The values of a one-column `TabSeparated` body, one per line (a final newline is optional). ClickHouse
    /// escapes are undone: `\\ \' \" \t \n \r \b \f \0 \a \v \xHH`; an unknown escape gives the character itself;
    /// a field that is exactly `\N` (NULL) becomes "". Empty lines are kept as empty values.
    public static func parseTabSeparatedColumn(_ body: String) -> [String] {
        let bytes = Array(body.utf8)
        if bytes.isEmpty { return [] }
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        return lines.map(unescapeField)
    }

    static func unescapeField(_ field: ArraySlice<UInt8>) -> String {
        if field.elementsEqual([0x5C, UInt8(ascii: "N")]) { return "" }
        guard field.contains(0x5C) else { return String(decoding: field, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(field.count)
        var i = field.startIndex
        while i < field.endIndex {
            let c = field[i]
            i += 1
            guard c == 0x5C else { out.append(c); continue }
            guard i < field.endIndex else { out.append(0x5C); break }  // trailing lone backslash
            let e = field[i]
            i += 1
            switch e {
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "0"): out.append(0x00)
            case UInt8(ascii: "a"): out.append(0x07)
            case UInt8(ascii: "v"): out.append(0x0B)
            case UInt8(ascii: "x"):
                if field.endIndex - i >= 2, let hi = JSONScanner.hexValue(field[i]), let lo = JSONScanner.hexValue(field[i + 1]) {
                    out.append(UInt8(hi << 4 | lo))
                    i += 2
                } else {
                    out.append(UInt8(ascii: "x"))
                }
            default: out.append(e)  // `\\`, `\'`, `\"`, `\/`, and unknown escapes
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Parameterized Postgres statements for list feeds: membership without ClickHouse, and hydration.
public enum PostgresListSQL {
    /// The 26 wire columns in `RunColumn` order, then `"runtimeEnvironmentId"` and `"batchId"`: exactly the
    /// 28 values `RunRow(raw:)` expects.
    public static let rowColumns = (RunColumn.allCases.map(\.sqlName) + ["\"runtimeEnvironmentId\"", "\"batchId\""])
        .joined(separator: ", ")

    /// When the statement started on the database server (µs since the epoch): one clock for every worker
    /// and host, so versions of a run read anywhere are ordered by it (`RowVersion`). Appended after
    /// `rowColumns` in row reads (`readColumns`); `RunRow.init?(read:)` takes it off.
    public static let readAtColumn = "(extract(epoch from statement_timestamp()) * 1000000)::bigint"
    /// `rowColumns`, then `readAtColumn`.
    public static let readColumns = rowColumns + ", " + readAtColumn

    static func limitPlusOne(_ limit: Int) -> Int { max(0, limit) == Int.max ? Int.max : max(0, limit) + 1 }

    /// Tag-feed membership: runs of the env created at or after `fromMs` that carry all `tags` (no tags clause
    /// when the list is empty), newest first, `limit + 1` rows.
    /// Params: `$1` env id, `$2` the floor as a UTC `timestamp(3)` literal, `$3` the tags as a text[] literal.
    public static func tags(envId: String, tags: [String], fromMs: Int64, limit: Int) -> (sql: String, params: [String?]) {
        var sql = "SELECT \"id\" FROM \"TaskRun\" WHERE \"runtimeEnvironmentId\" = $1 AND \"createdAt\" >= $2::timestamp(3)"
        var params: [String?] = [envId, PGText.epochMsToTimestamp(fromMs)]
        if !tags.isEmpty {
            sql += " AND \"runTags\" @> $3::text[]"
            params.append(PGText.arrayLiteralParam(tags))
        }
        sql += " ORDER BY \"createdAt\" DESC, \"id\" DESC LIMIT \(limitPlusOne(limit))"
        return (sql, params)
    }

    /// Batch-feed membership (no time window, unlike upstream's implicit 7 days, so old batches resolve).
    /// Params: `$1` env id, `$2` internal batch id.
    public static func batch(envId: String, batchId: String, limit: Int) -> (sql: String, params: [String?]) {
        ("SELECT \"id\" FROM \"TaskRun\" WHERE \"runtimeEnvironmentId\" = $1 AND \"batchId\" = $2"
            + " ORDER BY \"createdAt\" DESC, \"id\" DESC LIMIT \(limitPlusOne(limit))",
         [envId, batchId])
    }

    /// Hydration by id: all 28 row values (`rowColumns`) whatever `columns` skips (the encoder drops skipped
    /// columns), then the read time (`readAtColumn`), no ORDER BY. Params: `$1` env id, `$2` the ids as a
    /// text[] literal. Callers skip the query for an empty id list.
    public static func hydrate(envId: String, runIds: [String], columns: ColumnSet) -> (sql: String, params: [String?]) {
        ("SELECT \(readColumns) FROM \"TaskRun\" WHERE \"runtimeEnvironmentId\" = $1 AND \"id\" = ANY($2::text[])",
         [envId, PGText.arrayLiteralParam(runIds)])
    }
}
