// JSON helpers: a small strict parser (for JWT payloads and change records), the
// JSON.stringify-compatible string quoting used for every wire value, and the
// jsonb-text compactor used for the `error` column.

/// A parsed JSON value. Objects are dictionaries (a duplicate key keeps the last value, as in JavaScript).
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Strictly parses one JSON text (surrounding whitespace allowed). Returns nil when malformed.
    public static func parse(_ text: String) -> JSONValue? {
        var scanner = JSONScanner(Array(text.utf8))
        guard let value = scanner.parseValue(depth: 0) else { return nil }
        scanner.skipWhitespace()
        return scanner.atEnd ? value : nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var numberValue: Double? { if case .number(let n) = self { return n }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o }; return nil }

    /// An integral number that fits in Int64 (fractions are truncated toward zero), else nil.
    public var int64Value: Int64? {
        guard case .number(let n) = self, n.isFinite else { return nil }
        let t = n.rounded(.towardZero)
        guard t >= -9.2233720368547748e18, t < 9.2233720368547758e18 else { return nil }
        return Int64(t)
    }

    /// The string elements of an array, only if every element is a string.
    public var stringArrayValue: [String]? {
        guard case .array(let items) = self else { return nil }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard case .string(let s) = item else { return nil }
            out.append(s)
        }
        return out
    }
}

/// JSON text production exactly as JavaScript's JSON.stringify writes strings.
public enum JSONText {
    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    /// A JSON string literal: `"` and `\` escaped, `\b \f \n \r \t`, other control characters below 0x20
    /// as `\u00xx` (lowercase hex); nothing else is escaped (no `/` escaping, non-ASCII stays raw).
    public static func quote(_ s: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count + 2)
        appendQuoted(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the quoted form of `s` (see `quote`) to a UTF-8 buffer.
    public static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x08: out.append(0x5C); out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(0x5C); out.append(UInt8(ascii: "f"))
            case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
            case 0x00..<0x20:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0x0F)]])
            default: out.append(b)
            }
        }
        out.append(0x22)
    }

    /// A JSON array of quoted strings: `["a","b"]`.
    public static func array(_ items: [String]) -> String {
        var out: [UInt8] = [0x5B]
        for (i, item) in items.enumerated() {
            if i > 0 { out.append(0x2C) }
            appendQuoted(item, to: &out)
        }
        out.append(0x5D)
        return String(decoding: out, as: UTF8.self)
    }
}

/// Byte-level JSON scanner shared by the value parser and the compactor.
struct JSONScanner {
    let bytes: [UInt8]
    var pos = 0
    static let maxDepth = 512

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { pos >= bytes.count }
    var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    mutating func consume(_ b: UInt8) -> Bool {
        if pos < bytes.count && bytes[pos] == b { pos += 1; return true }
        return false
    }

    mutating func consumeLiteral(_ lit: StaticString) -> Bool {
        let n = lit.utf8CodeUnitCount
        guard pos + n <= bytes.count else { return false }
        let p = lit.utf8Start
        for i in 0..<n where bytes[pos + i] != p[i] { return false }
        pos += n
        return true
    }

    /// Validates a string literal starting at `pos` (which must be `"`); returns its byte range including quotes.
    mutating func scanString() -> Range<Int>? {
        let start = pos
        guard consume(0x22) else { return nil }
        while pos < bytes.count {
            let b = bytes[pos]
            if b == 0x22 { pos += 1; return start..<pos }
            if b < 0x20 { return nil }
            if b == 0x5C {
                pos += 1
                guard pos < bytes.count else { return nil }
                switch bytes[pos] {
                case 0x22, 0x5C, 0x2F, UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
                     UInt8(ascii: "r"), UInt8(ascii: "t"):
                    pos += 1
                case UInt8(ascii: "u"):
                    guard pos + 4 < bytes.count else { return nil }
                    for i in 1...4 where JSONScanner.hexValue(bytes[pos + i]) == nil { return nil }
                    pos += 5
                default:
                    return nil
                }
            } else {
                pos += 1
            }
        }
        return nil
    }

    /// Validates a number per the JSON grammar; returns its byte range.
    mutating func scanNumber() -> Range<Int>? {
        let start = pos
        _ = consume(UInt8(ascii: "-"))
        guard let first = peek, JSONScanner.isDigit(first) else { return nil }
        if first == UInt8(ascii: "0") {
            pos += 1
        } else {
            while let c = peek, JSONScanner.isDigit(c) { pos += 1 }
        }
        if consume(UInt8(ascii: ".")) {
            guard let c = peek, JSONScanner.isDigit(c) else { return nil }
            while let c = peek, JSONScanner.isDigit(c) { pos += 1 }
        }
        if let c = peek, c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            pos += 1
            if let s = peek, s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { pos += 1 }
            guard let d = peek, JSONScanner.isDigit(d) else { return nil }
            while let c = peek, JSONScanner.isDigit(c) { pos += 1 }
        }
        return start..<pos
    }

    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    static func hexValue(_ b: UInt8) -> UInt32? {
        switch b {
        case 0x30...0x39: return UInt32(b - 0x30)
        case 0x41...0x46: return UInt32(b - 0x41 + 10)
        case 0x61...0x66: return UInt32(b - 0x61 + 10)
        default: return nil
        }
    }

    /// Decodes the contents of an already validated string literal range (quotes included).
    func decodeString(_ range: Range<Int>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(range.count)
        var i = range.lowerBound + 1
        let end = range.upperBound - 1
        func hex4(_ at: Int) -> UInt32 {
            var v: UInt32 = 0
            for k in 0..<4 { v = v << 4 | (JSONScanner.hexValue(bytes[at + k]) ?? 0) }
            return v
        }
        func appendScalar(_ v: UInt32) {
            let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
        }
        while i < end {
            let b = bytes[i]
            guard b == 0x5C else { out.append(b); i += 1; continue }
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                let unit = hex4(i)
                i += 4
                if unit >= 0xD800 && unit < 0xDC00, i + 6 <= end, bytes[i] == 0x5C, bytes[i + 1] == UInt8(ascii: "u") {
                    let low = hex4(i + 2)
                    if low >= 0xDC00 && low < 0xE000 {
                        appendScalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                        i += 6
                        continue
                    }
                }
                appendScalar(unit)  // a lone surrogate becomes U+FFFD
            default: out.append(e)  // " \ /
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    mutating func parseValue(depth: Int) -> JSONValue? {
        guard depth < JSONScanner.maxDepth else { return nil }
        skipWhitespace()
        guard let b = peek else { return nil }
        switch b {
        case UInt8(ascii: "{"):
            pos += 1
            var dict: [String: JSONValue] = [:]
            skipWhitespace()
            if consume(UInt8(ascii: "}")) { return .object(dict) }
            while true {
                skipWhitespace()
                guard let keyRange = scanString() else { return nil }
                skipWhitespace()
                guard consume(UInt8(ascii: ":")) else { return nil }
                guard let v = parseValue(depth: depth + 1) else { return nil }
                dict[decodeString(keyRange)] = v
                skipWhitespace()
                if consume(UInt8(ascii: ",")) { continue }
                if consume(UInt8(ascii: "}")) { return .object(dict) }
                return nil
            }
        case UInt8(ascii: "["):
            pos += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if consume(UInt8(ascii: "]")) { return .array(items) }
            while true {
                guard let v = parseValue(depth: depth + 1) else { return nil }
                items.append(v)
                skipWhitespace()
                if consume(UInt8(ascii: ",")) { continue }
                if consume(UInt8(ascii: "]")) { return .array(items) }
                return nil
            }
        case 0x22:
            guard let r = scanString() else { return nil }
            return .string(decodeString(r))
        case UInt8(ascii: "t"): return consumeLiteral("true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return consumeLiteral("false") ? .bool(false) : nil
        case UInt8(ascii: "n"): return consumeLiteral("null") ? .null : nil
        default:
            guard let r = scanNumber() else { return nil }
            guard let d = Double(String(decoding: bytes[r], as: UTF8.self)) else { return nil }
            return .number(d)
        }
    }

    /// Re-emits one value compactly: whitespace outside strings dropped, strings copied byte-for-byte,
    /// numbers normalized through `JSNumber.format` (a non-finite result becomes `null`, like JSON.stringify).
    mutating func compactValue(into out: inout [UInt8], depth: Int) -> Bool {
        guard depth < JSONScanner.maxDepth else { return false }
        skipWhitespace()
        guard let b = peek else { return false }
        switch b {
        case UInt8(ascii: "{"):
            pos += 1
            out.append(b)
            skipWhitespace()
            if consume(UInt8(ascii: "}")) { out.append(UInt8(ascii: "}")); return true }
            while true {
                skipWhitespace()
                guard let keyRange = scanString() else { return false }
                out.append(contentsOf: bytes[keyRange])
                skipWhitespace()
                guard consume(UInt8(ascii: ":")) else { return false }
                out.append(UInt8(ascii: ":"))
                guard compactValue(into: &out, depth: depth + 1) else { return false }
                skipWhitespace()
                if consume(UInt8(ascii: ",")) { out.append(UInt8(ascii: ",")); continue }
                if consume(UInt8(ascii: "}")) { out.append(UInt8(ascii: "}")); return true }
                return false
            }
        case UInt8(ascii: "["):
            pos += 1
            out.append(b)
            skipWhitespace()
            if consume(UInt8(ascii: "]")) { out.append(UInt8(ascii: "]")); return true }
            while true {
                guard compactValue(into: &out, depth: depth + 1) else { return false }
                skipWhitespace()
                if consume(UInt8(ascii: ",")) { out.append(UInt8(ascii: ",")); continue }
                if consume(UInt8(ascii: "]")) { out.append(UInt8(ascii: "]")); return true }
                return false
            }
        case 0x22:
            guard let r = scanString() else { return false }
            out.append(contentsOf: bytes[r])
            return true
        case UInt8(ascii: "t"):
            guard consumeLiteral("true") else { return false }
            out.append(contentsOf: "true".utf8)
            return true
        case UInt8(ascii: "f"):
            guard consumeLiteral("false") else { return false }
            out.append(contentsOf: "false".utf8)
            return true
        case UInt8(ascii: "n"):
            guard consumeLiteral("null") else { return false }
            out.append(contentsOf: "null".utf8)
            return true
        default:
            guard let r = scanNumber(),
                  let d = Double(String(decoding: bytes[r], as: UTF8.self)) else { return false }
            out.append(contentsOf: (d.isFinite ? JSNumber.format(d) : "null").utf8)
            return true
        }
    }
}
