import XCTest
@testable import RunfeedCore

final class ClickHouseLiteralTests: XCTestCase {
    /// A reference reader of a ClickHouse single-quoted literal (the escapes `literal` emits): returns the
    /// decoded bytes and the index just past the closing quote, or nil if the literal is unterminated.
    private func readLiteral(_ s: String) -> (value: [UInt8], end: Int)? {
        let b = Array(s.utf8)
        guard b.first == UInt8(ascii: "'") else { return nil }
        var out: [UInt8] = []
        var i = 1
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\\") {
                guard i + 1 < b.count else { return nil }
                let e = b[i + 1]
                if e == UInt8(ascii: "x") {
                    out.append(UInt8(String(decoding: b[(i + 2)..<(i + 4)], as: UTF8.self), radix: 16)!)
                    i += 4
                } else {
                    out.append(e)
                    i += 2
                }
            } else if c == UInt8(ascii: "'") {
                return (out, i + 1)
            } else {
                out.append(c)
                i += 1
            }
        }
        return nil
    }

    private func assertRoundTrip(_ s: String, file: StaticString = #filePath, line: UInt = #line) {
        let lit = ClickHouseSQL.literal(s)
        guard let r = readLiteral(lit) else { return XCTFail("unterminated: \(lit)", file: file, line: line) }
        XCTAssertEqual(r.end, lit.utf8.count, "literal ends early: \(lit)", file: file, line: line)
        XCTAssertEqual(r.value, Array(s.utf8), file: file, line: line)
        XCTAssertFalse(lit.utf8.contains { $0 < 0x20 || $0 == 0x7F }, "raw control byte in \(lit)", file: file, line: line)
    }

    func testPlain() {
        XCTAssertEqual(ClickHouseSQL.literal("abc"), "'abc'")
        XCTAssertEqual(ClickHouseSQL.literal(""), "''")
        XCTAssertEqual(ClickHouseSQL.literal("user:42 é😀"), "'user:42 é😀'")
        XCTAssertEqual(ClickHouseSQL.literal("\"double\""), "'\"double\"'")
    }

    func testEscapes() {
        XCTAssertEqual(ClickHouseSQL.literal("it's"), #"'it\'s'"#)
        XCTAssertEqual(ClickHouseSQL.literal(#"a\b"#), #"'a\\b'"#)
        XCTAssertEqual(ClickHouseSQL.literal("a\nb"), #"'a\x0Ab'"#)
        XCTAssertEqual(ClickHouseSQL.literal("\u{0}"), #"'\x00'"#)
        XCTAssertEqual(ClickHouseSQL.literal("\u{1F}\u{7F}\t\r"), #"'\x1F\x7F\x09\x0D'"#)
        XCTAssertEqual(ClickHouseSQL.literal("\u{80}"), "'\u{80}'")  // non-ASCII passes through
    }

    func testInjectionAttempts() {
        XCTAssertEqual(ClickHouseSQL.literal("' OR 1=1 --"), #"'\' OR 1=1 --'"#)
        XCTAssertEqual(ClickHouseSQL.literal(#"\'"#), #"'\\\''"#)
        XCTAssertEqual(ClickHouseSQL.literal("x\\"), "'x\\\\'")
        XCTAssertEqual(ClickHouseSQL.literal("'; DROP TABLE t; --"), #"'\'; DROP TABLE t; --'"#)
        for s in ["' OR 1=1 --", #"\'"#, "\\", "x\\", "\\\\'", "'", "''", "\u{0}' OR '1'='1", "a\nFORMAT JSON\n",
                  "\\x27", "\\\u{0}", "-- '", "😀'\\", "\u{7F}'\u{1}", #"\\\"#, "') UNION ALL SELECT 1 --"] {
            assertRoundTrip(s)
        }
    }

    func testExhaustiveSingleBytes() {
        for c in 0..<0x80 { assertRoundTrip(String(decoding: [UInt8(c)], as: UTF8.self)) }
        assertRoundTrip(String(decoding: (0..<0x80).map { UInt8($0) }, as: UTF8.self))
    }

    func testArrayLiteral() {
        XCTAssertEqual(ClickHouseSQL.arrayLiteral([]), "[]")
        XCTAssertEqual(ClickHouseSQL.arrayLiteral(["a", "b"]), "['a','b']")
        XCTAssertEqual(ClickHouseSQL.arrayLiteral(["it's", "x]y"]), #"['it\'s','x]y']"#)
    }
}

final class ClickHouseQueryTests: XCTestCase {
    func testTagQuery() {
        let sql = ClickHouseSQL.runIdsQuery(organizationId: "org1", projectId: "proj1", environmentId: "env1",
                                            tags: ["a", "b"], fromMs: 1_759_996_500_999, batchId: nil, limit: 1000)
        XCTAssertEqual(sql, "SELECT run_id FROM trigger_dev.task_runs_v2 FINAL WHERE organization_id = 'org1' AND project_id = 'proj1' AND environment_id = 'env1' AND hasAll(tags, ['a','b']) AND created_at >= toDateTime(1759996500) AND _is_deleted = 0 ORDER BY created_at DESC, run_id DESC LIMIT 1001 FORMAT TabSeparated")
    }

    func testUnfilteredTagQueryHasNoTagsClause() {
        let sql = ClickHouseSQL.runIdsQuery(organizationId: "o", projectId: "p", environmentId: "e", tags: [],
                                            fromMs: 60_000, batchId: nil, limit: 10)
        XCTAssertEqual(sql, "SELECT run_id FROM trigger_dev.task_runs_v2 FINAL WHERE organization_id = 'o' AND project_id = 'p' AND environment_id = 'e' AND created_at >= toDateTime(60) AND _is_deleted = 0 ORDER BY created_at DESC, run_id DESC LIMIT 11 FORMAT TabSeparated")
        XCTAssertFalse(sql.contains("hasAll"))
    }

    func testBatchQuery() {
        let sql = ClickHouseSQL.runIdsQuery(organizationId: "o", projectId: "p", environmentId: "e", tags: [],
                                            fromMs: nil, batchId: "cmb1", limit: 1000, table: "db.runs")
        XCTAssertEqual(sql, "SELECT run_id FROM db.runs FINAL WHERE organization_id = 'o' AND project_id = 'p' AND environment_id = 'e' AND batch_id = 'cmb1' AND _is_deleted = 0 ORDER BY created_at DESC, run_id DESC LIMIT 1001 FORMAT TabSeparated")
    }

    func testAllClausesInOrder() {
        let sql = ClickHouseSQL.runIdsQuery(organizationId: "o", projectId: "p", environmentId: "e", tags: ["t"],
                                            fromMs: 2_000, batchId: "b", limit: 0)
        XCTAssertTrue(sql.contains("AND hasAll(tags, ['t']) AND created_at >= toDateTime(2) AND batch_id = 'b' AND _is_deleted = 0"))
        XCTAssertTrue(sql.hasSuffix("LIMIT 1 FORMAT TabSeparated"))
    }

    func testSecondsAreFloored() {
        func from(_ ms: Int64) -> String {
            ClickHouseSQL.runIdsQuery(organizationId: "o", projectId: "p", environmentId: "e", tags: [], fromMs: ms,
                                      batchId: nil, limit: 1)
        }
        XCTAssertTrue(from(1_999).contains("toDateTime(1)"))
        XCTAssertTrue(from(2_000).contains("toDateTime(2)"))
        XCTAssertTrue(from(0).contains("toDateTime(0)"))
        XCTAssertTrue(from(-1).contains("toDateTime(0)"))
        XCTAssertTrue(from(Int64.min).contains("toDateTime(0)"))
        XCTAssertTrue(from(Int64.max).contains("toDateTime(9223372036854775)"))
    }

    func testLimitEdges() {
        func lim(_ n: Int) -> String {
            ClickHouseSQL.runIdsQuery(organizationId: "o", projectId: "p", environmentId: "e", tags: [], fromMs: nil,
                                      batchId: nil, limit: n)
        }
        XCTAssertTrue(lim(-5).hasSuffix("LIMIT 1 FORMAT TabSeparated"))
        XCTAssertTrue(lim(Int.max).hasSuffix("LIMIT \(Int.max) FORMAT TabSeparated"))
    }

    func testValuesAreEscaped() {
        let sql = ClickHouseSQL.runIdsQuery(organizationId: "o'", projectId: "p\\", environmentId: "e\n",
                                            tags: ["' OR 1=1 --"], fromMs: nil, batchId: "b'", limit: 1)
        XCTAssertTrue(sql.contains(#"organization_id = 'o\''"#))
        XCTAssertTrue(sql.contains(#"project_id = 'p\\'"#))
        XCTAssertTrue(sql.contains(#"environment_id = 'e\x0A'"#))
        XCTAssertTrue(sql.contains(#"hasAll(tags, ['\' OR 1=1 --'])"#))
        XCTAssertTrue(sql.contains(#"batch_id = 'b\''"#))
        XCTAssertFalse(sql.contains("\n"))
    }
}

final class TabSeparatedTests: XCTestCase {
    func testLines() {
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn(""), [])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn("a\n"), ["a"])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn("a\nb\n"), ["a", "b"])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn("a\nb"), ["a", "b"])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn("\n"), [""])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn("a\n\nb\n"), ["a", "", "b"])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn("cm5q0x1y20003\ncm5q0x1y20004\n"),
                       ["cm5q0x1y20003", "cm5q0x1y20004"])
    }

    func testUnescape() {
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn(#"a\\b"# + "\n"), [#"a\b"#])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn(#"a\tb\nc"#), ["a\tb\nc"])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn(#"it\'s"#), ["it's"])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn(#"\0x"#), ["\u{0}x"])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn(#"\r\b\f\a\v"#), ["\r\u{8}\u{C}\u{7}\u{B}"])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn(#"\x41\x7f\x4"#), ["A\u{7F}x4"])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn(#"\"q\" \/ \z"#), [#""q" / z"#])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn("trail\\"), ["trail\\"])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn(#"\N"# + "\n" + #"\\N"#), ["", #"\N"#])
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn("é😀\\n"), ["é😀\n"])
    }

    func testEscapedNewlineDoesNotSplit() {
        XCTAssertEqual(ClickHouseSQL.parseTabSeparatedColumn(#"one\ntwo"# + "\n" + "three\n"), ["one\ntwo", "three"])
    }
}

final class PostgresListSQLTests: XCTestCase {
    func testTags() {
        let q = PostgresListSQL.tags(envId: "env1", tags: ["a", "it's"], fromMs: 1_759_996_500_000, limit: 1000)
        XCTAssertEqual(q.sql, #"SELECT "id" FROM "TaskRun" WHERE "runtimeEnvironmentId" = $1 AND "createdAt" >= $2::timestamp(3) AND "runTags" @> $3::text[] ORDER BY "createdAt" DESC, "id" DESC LIMIT 1001"#)
        XCTAssertEqual(q.params, ["env1", "2025-10-09 07:55:00.000", #"{"a","it's"}"#])
    }

    func testTagsWithoutFilter() {
        let q = PostgresListSQL.tags(envId: "env1", tags: [], fromMs: 0, limit: 5)
        XCTAssertEqual(q.sql, #"SELECT "id" FROM "TaskRun" WHERE "runtimeEnvironmentId" = $1 AND "createdAt" >= $2::timestamp(3) ORDER BY "createdAt" DESC, "id" DESC LIMIT 6"#)
        XCTAssertEqual(q.params, ["env1", "1970-01-01 00:00:00.000"])
    }

    func testTagParamEscaping() {
        let q = PostgresListSQL.tags(envId: "e", tags: ["a,b", "{x}", "NULL", " sp "], fromMs: 0, limit: 1)
        XCTAssertEqual(q.params[2], #"{"a,b","{x}","NULL"," sp "}"#)
        XCTAssertEqual(PGText.parseArray(q.params[2]!), ["a,b", "{x}", "NULL", " sp "])
    }

    func testBatch() {
        let q = PostgresListSQL.batch(envId: "env1", batchId: "cmb1", limit: 1000)
        XCTAssertEqual(q.sql, #"SELECT "id" FROM "TaskRun" WHERE "runtimeEnvironmentId" = $1 AND "batchId" = $2 ORDER BY "createdAt" DESC, "id" DESC LIMIT 1001"#)
        XCTAssertEqual(q.params, ["env1", "cmb1"])
    }

    func testHydrateSelectsAllRowColumnsRegardlessOfSkip() {
        let skip = ColumnSet(skipping: [.payload, .output, .metadata])
        let q = PostgresListSQL.hydrate(envId: "env1", runIds: ["r1", "r2"], columns: skip)
        XCTAssertEqual(q.sql, PostgresListSQL.hydrate(envId: "env1", runIds: ["r1", "r2"], columns: .all).sql)
        XCTAssertEqual(q.params, ["env1", #"{"r1","r2"}"#])
        XCTAssertTrue(q.sql.hasPrefix(#"SELECT "id", "taskIdentifier", "createdAt", "updatedAt", "#))
        XCTAssertTrue(q.sql.hasSuffix(#""runTags", "error", "realtimeStreams", "runtimeEnvironmentId", "batchId", (extract(epoch from statement_timestamp()) * 1000000)::bigint FROM "TaskRun" WHERE "runtimeEnvironmentId" = $1 AND "id" = ANY($2::text[])"#))
        XCTAssertTrue(q.sql.contains(#""payload""#))
    }

    func testRowColumnsMatchRunRow() {
        let names = PostgresListSQL.rowColumns.components(separatedBy: ", ")
        XCTAssertEqual(names.count, RunRow.rawCount)
        XCTAssertEqual(Array(names.prefix(26)), RunColumn.allCases.map(\.sqlName))
        XCTAssertEqual(names[RunRow.envIdIndex], #""runtimeEnvironmentId""#)
        XCTAssertEqual(names[RunRow.batchIdIndex], #""batchId""#)
        // A row of exactly these values decodes.
        XCTAssertNotNil(RunRow(raw: sampleRaw(batchId: "b1")))
    }

    func testRowReadCarriesTheServersReadTime() {
        var values = [String?](repeating: nil, count: RunRow.rawCount + 1)
        values[RunColumn.id.index] = "r1"
        values[RunColumn.friendlyId.index] = "run_1"
        values[RunColumn.status.index] = "EXECUTING"
        values[RunColumn.createdAt.index] = "2026-01-01 00:00:00.000"
        values[RunColumn.updatedAt.index] = "2026-01-01 00:00:01.000"
        values[RunRow.rawCount] = "1767225601123456"
        let row = RunRow(read: values, fallbackReadAtUs: 7)
        XCTAssertEqual(row?.readAtUs, 1_767_225_601_123_456)
        XCTAssertEqual(row?.digest, RunRow(raw: Array(values.prefix(RunRow.rawCount)))?.digest, "the read time is not part of the row")
        values[RunRow.rawCount] = nil
        XCTAssertEqual(RunRow(read: values, fallbackReadAtUs: 7)?.readAtUs, 7)
        values[RunRow.rawCount] = "soon"
        XCTAssertEqual(RunRow(read: values, fallbackReadAtUs: 7)?.readAtUs, 7)
        XCTAssertNil(RunRow(read: Array(values.prefix(RunRow.rawCount)), fallbackReadAtUs: 7), "a row without the read time column")
    }

    func testHydrateEmptyIds() {
        XCTAssertEqual(PostgresListSQL.hydrate(envId: "e", runIds: [], columns: .all).params, ["e", "{}"])
    }
}
