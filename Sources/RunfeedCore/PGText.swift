// Conversions from and to PostgreSQL text-format values (as libpq returns them).

/// A broken-down zone-less timestamp. `year` is astronomical (1 BC = 0, 2 BC = -1).
public struct CivilTimestamp: Sendable, Equatable {
    public var year: Int64
    public var month: Int
    public var day: Int
    public var hour: Int
    public var minute: Int
    public var second: Int
    public var microsecond: Int

    public init(year: Int64, month: Int, day: Int, hour: Int, minute: Int, second: Int, microsecond: Int) {
        self.year = year; self.month = month; self.day = day
        self.hour = hour; self.minute = minute; self.second = second; self.microsecond = microsecond
    }

    public var millisecond: Int { microsecond / 1000 }
}

public enum PGText {
    // MARK: Timestamps

    /// libpq text of a `timestamp` without time zone (`2026-06-11 08:15:02.12`) → the wire form
    /// `2026-06-11T08:15:02.120`: always three fractional digits (truncated beyond ms), no zone suffix.
    /// Years outside 0…9999 (and BC dates) use the ECMAScript expanded form `±YYYYYY`.
    /// `infinity` / `-infinity` are returned unchanged; anything unparseable gives nil.
    public static func timestampToWire(_ s: String) -> String? {
        if s == "infinity" || s == "-infinity" { return s }
        guard let t = parseTimestamp(s) else { return nil }
        var out = ""
        out.reserveCapacity(24)
        if t.year >= 0 && t.year <= 9999 {
            out += pad(t.year, 4)
        } else {
            out += (t.year < 0 ? "-" : "+") + pad(t.year < 0 ? -t.year : t.year, 6)
        }
        out += "-" + pad(t.month, 2) + "-" + pad(t.day, 2)
        out += "T" + pad(t.hour, 2) + ":" + pad(t.minute, 2) + ":" + pad(t.second, 2)
        out += "." + pad(t.millisecond, 3)
        return out
    }

    /// The same input interpreted as UTC → milliseconds since the Unix epoch (nil if unparseable or infinite).
    public static func timestampToEpochMs(_ s: String) -> Int64? {
        guard let t = parseTimestamp(s) else { return nil }
        let days = daysFromCivil(year: t.year, month: t.month, day: t.day)
        let secondsOfDay = Int64(t.hour * 3600 + t.minute * 60 + t.second)
        return (days * 86_400 + secondsOfDay) * 1000 + Int64(t.millisecond)
    }

    /// Epoch milliseconds → a UTC literal Postgres parses: `2026-06-11 08:15:02.120` (` BC` suffix before year 1).
    public static func epochMsToTimestamp(_ ms: Int64) -> String {
        let msPerDay: Int64 = 86_400_000
        var days = ms / msPerDay
        var rem = ms % msPerDay
        if rem < 0 { rem += msPerDay; days -= 1 }
        let (y, m, d) = civilFromDays(days)
        let secs = Int(rem / 1000)
        let millis = Int(rem % 1000)
        let bc = y <= 0
        var out = pad(bc ? 1 - y : y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2)
        out += " " + pad(secs / 3600, 2) + ":" + pad(secs / 60 % 60, 2) + ":" + pad(secs % 60, 2)
        out += "." + pad(millis, 3)
        if bc { out += " BC" }
        return out
    }

    /// Epoch milliseconds → UTC ISO 8601 with milliseconds, `2026-06-11T08:15:02.120Z` (log lines; years 1–9999):
    /// `epochMsToTimestamp` with the ISO separator and zone.
    public static func epochMsToISO8601(_ ms: Int64) -> String {
        var t = Array(epochMsToTimestamp(ms).utf8)
        t[10] = UInt8(ascii: "T")
        return String(decoding: t, as: UTF8.self) + "Z"
    }

    /// Parses `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]` (a `T` separator is also accepted). Nil when malformed
    /// or out of range. Fractional digits beyond microseconds are truncated.
    public static func parseTimestamp(_ s: String) -> CivilTimestamp? {
        let b = Array(s.utf8)
        var i = 0
        func digits(_ minCount: Int, _ maxCount: Int) -> Int64? {
            var v: Int64 = 0
            var count = 0
            while i < b.count, count < maxCount, b[i] >= 0x30, b[i] <= 0x39 {
                v = v * 10 + Int64(b[i] - 0x30)
                i += 1; count += 1
            }
            return count >= minCount ? v : nil
        }
        func expect(_ c: UInt8) -> Bool {
            if i < b.count && b[i] == c { i += 1; return true }
            return false
        }
        guard let year = digits(4, 7), expect(UInt8(ascii: "-")),
              let month = digits(2, 2), expect(UInt8(ascii: "-")),
              let day = digits(2, 2) else { return nil }
        guard expect(UInt8(ascii: " ")) || expect(UInt8(ascii: "T")) else { return nil }
        guard let hour = digits(2, 2), expect(UInt8(ascii: ":")),
              let minute = digits(2, 2), expect(UInt8(ascii: ":")),
              let second = digits(2, 2) else { return nil }
        var micro = 0
        if expect(UInt8(ascii: ".")) {
            var count = 0
            guard i < b.count, b[i] >= 0x30, b[i] <= 0x39 else { return nil }
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                if count < 6 { micro = micro * 10 + Int(b[i] - 0x30) }
                count += 1; i += 1
            }
            for _ in min(count, 6)..<6 { micro *= 10 }
        }
        var astronomicalYear = year
        if i < b.count {
            guard b.count - i == 3, b[i] == 0x20, b[i + 1] == UInt8(ascii: "B"), b[i + 2] == UInt8(ascii: "C"),
                  year >= 1 else { return nil }
            astronomicalYear = 1 - year
            i += 3
        }
        guard month >= 1, month <= 12, day >= 1, day <= Int64(daysInMonth(year: astronomicalYear, month: Int(month))),
              hour <= 23, minute <= 59, second <= 59 else { return nil }
        return CivilTimestamp(year: astronomicalYear, month: Int(month), day: Int(day),
                              hour: Int(hour), minute: Int(minute), second: Int(second), microsecond: micro)
    }

    /// Days since 1970-01-01 for a proleptic Gregorian date (astronomical year numbering).
    public static func daysFromCivil(year: Int64, month: Int, day: Int) -> Int64 {
        // Count from 0000-03-01 so that the leap day falls at the end of each shifted year.
        let y = month <= 2 ? year - 1 : year
        let cycle = (y >= 0 ? y : y - 399) / 400                       // 400-year Gregorian cycle
        let yearOfCycle = y - cycle * 400                               // 0...399
        let shiftedMonth = Int64(month > 2 ? month - 3 : month + 9)     // March = 0
        let dayOfYear = (153 * shiftedMonth + 2) / 5 + Int64(day) - 1   // 0...365
        let dayOfCycle = yearOfCycle * 365 + yearOfCycle / 4 - yearOfCycle / 100 + dayOfYear
        return cycle * 146_097 + dayOfCycle - 719_468                   // 719468 = days from 0000-03-01 to 1970-01-01
    }

    /// Inverse of `daysFromCivil`.
    public static func civilFromDays(_ days: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = days + 719_468
        let cycle = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfCycle = z - cycle * 146_097                                                   // 0...146096
        let yearOfCycle = (dayOfCycle - dayOfCycle / 1460 + dayOfCycle / 36_524 - dayOfCycle / 146_096) / 365
        let dayOfYear = dayOfCycle - (365 * yearOfCycle + yearOfCycle / 4 - yearOfCycle / 100)  // 0...365
        let shiftedMonth = (5 * dayOfYear + 2) / 153                                           // March = 0
        let day = Int(dayOfYear - (153 * shiftedMonth + 2) / 5 + 1)
        let month = Int(shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9)
        let year = yearOfCycle + cycle * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    static func isLeap(_ y: Int64) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

    static func daysInMonth(year: Int64, month: Int) -> Int {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    static func pad<T: BinaryInteger>(_ v: T, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    // MARK: Arrays

    /// Parses one-dimensional Postgres array text output. Unquoted `NULL` (any case) → nil; a quoted
    /// `"NULL"` stays a string; backslash escapes are honoured; unquoted elements are trimmed.
    /// An optional dimension decoration (`[1:2]={…}`) is skipped. Nil when malformed or multi-dimensional.
    public static func parseArray(_ literal: String) -> [String?]? {
        let b = Array(literal.utf8)
        var i = 0
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == 0x0B || c == 0x0C }
        func skipSpace() { while i < b.count && isSpace(b[i]) { i += 1 } }
        skipSpace()
        if i < b.count && b[i] == UInt8(ascii: "[") {
            while i < b.count && b[i] != UInt8(ascii: "=") { i += 1 }
            guard i < b.count else { return nil }
            i += 1
            skipSpace()
        }
        guard i < b.count, b[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        skipSpace()
        var result: [String?] = []
        if i < b.count && b[i] == UInt8(ascii: "}") {
            i += 1
        } else {
            while true {
                skipSpace()
                guard i < b.count else { return nil }
                var buf: [UInt8] = []
                if b[i] == 0x22 {
                    i += 1
                    var closed = false
                    while i < b.count {
                        let c = b[i]
                        if c == 0x5C {
                            i += 1
                            guard i < b.count else { return nil }
                            buf.append(b[i]); i += 1
                        } else if c == 0x22 {
                            i += 1; closed = true; break
                        } else {
                            buf.append(c); i += 1
                        }
                    }
                    guard closed else { return nil }
                    skipSpace()
                    result.append(String(decoding: buf, as: UTF8.self))
                } else {
                    var escaped = false
                    var keep = 0  // length without trailing unescaped whitespace
                    while i < b.count, b[i] != UInt8(ascii: ","), b[i] != UInt8(ascii: "}") {
                        let c = b[i]
                        if c == 0x5C {
                            i += 1
                            guard i < b.count else { return nil }
                            buf.append(b[i]); escaped = true; keep = buf.count
                        } else if c == 0x22 || c == UInt8(ascii: "{") {
                            return nil
                        } else {
                            buf.append(c)
                            if !isSpace(c) { keep = buf.count }
                        }
                        i += 1
                    }
                    buf.removeSubrange(keep...)
                    guard !buf.isEmpty else { return nil }
                    let text = String(decoding: buf, as: UTF8.self)
                    if !escaped && text.uppercased() == "NULL" {
                        result.append(nil)
                    } else {
                        result.append(text)
                    }
                }
                guard i < b.count else { return nil }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; break }
                return nil
            }
        }
        skipSpace()
        return i == b.count ? result : nil
    }

    /// `{"a","b"}`: every element double-quoted with `\` → `\\` and `"` → `\"`; nil → unquoted `NULL`; no spaces.
    public static func encodeArray(_ elems: [String?]) -> String {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (idx, e) in elems.enumerated() {
            if idx > 0 { out.append(UInt8(ascii: ",")) }
            guard let e else { out.append(contentsOf: "NULL".utf8); continue }
            out.append(0x22)
            for c in e.utf8 {
                if c == 0x22 || c == 0x5C { out.append(0x5C) }
                out.append(c)
            }
            out.append(0x22)
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    /// A double-quoted SQL identifier (`"` doubled), for the replication commands that take no parameters.
    public static func quoteIdentifier(_ s: String) -> String {
        "\"" + s.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\""
    }

    /// `s` with `'` doubled: the inside of a single-quoted SQL string literal.
    public static func quoteLiteralBody(_ s: String) -> String {
        s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "''")
    }

    /// A literal suitable to bind as a `$n::text[]` parameter.
    public static func arrayLiteralParam(_ elems: [String]) -> String {
        encodeArray(elems)
    }

    // MARK: JSON

    /// Postgres json/jsonb text → compact JSON.stringify-equivalent text: whitespace outside strings dropped,
    /// string literals kept byte-for-byte, key order kept, numbers normalized via `JSNumber.format`.
    /// Nil if malformed.
    public static func compactJSON(_ text: String) -> String? {
        var scanner = JSONScanner(Array(text.utf8))
        var out: [UInt8] = []
        out.reserveCapacity(scanner.bytes.count)
        guard scanner.compactValue(into: &out, depth: 0) else { return nil }
        scanner.skipWhitespace()
        guard scanner.atEnd else { return nil }
        return String(decoding: out, as: UTF8.self)
    }
}
