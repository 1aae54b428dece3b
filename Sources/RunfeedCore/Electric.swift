// Electric shape-protocol requests and responses: query parameters, offsets, errors, CORS and feed replies.

// MARK: Offsets

/// A server-minted offset `<updatedAtMs>_<tail>`.
///
/// The tail is `<basisMs>` (an offset minted before version tokens, or typed by hand: 1…19 digits) or
/// `<basisMs><token>` with the token as exactly 20 digits (21…39 digits in all). `basisMs` is the wall-clock
/// time the client's view was read (records that arrived after it may not be in the view); the token is the
/// digest of the row a single-run client holds (0: none), or the id of a list connection's working set
/// (0: none stored). The client only echoes the offset, which still looks like `<number>_<number>`.
public struct Offset: Hashable, Sendable {
    public var updatedAtMs: Int64
    /// `basisMs`: when the view the client holds was read (wall ms).
    public var tail: Int64
    /// nil for an offset without a token.
    public var token: UInt64?

    public init(updatedAtMs: Int64, tail: Int64, token: UInt64? = nil) {
        self.updatedAtMs = updatedAtMs
        self.tail = tail
        self.token = token
    }

    public var basisMs: Int64 { tail }

    public var text: String {
        guard let token else { return "\(updatedAtMs)_\(tail)" }
        let t = String(token)
        return "\(updatedAtMs)_\(max(0, tail))" + String(repeating: "0", count: 20 - t.utf8.count) + t
    }

    /// The offset floor: the first segment, with non-positive values counting as 0.
    public var floorMs: Int64 { max(0, updatedAtMs) }

    /// Accepts `<digits>_<digits>`: 1…19 digits fitting in Int64 first; then 1…19 digits (no token) or
    /// 21…39 digits (the last 20 are the token, fitting in UInt64). Signs, spaces and anything else are
    /// rejected.
    public static func parse(_ s: String) -> Offset? {
        let parts = s.utf8.split(separator: UInt8(ascii: "_"), maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 2, let a = parseDigits(parts[0]) else { return nil }
        let tail = parts[1]
        if tail.count <= 19 {
            guard let b = parseDigits(tail) else { return nil }
            return Offset(updatedAtMs: a, tail: b)
        }
        guard tail.count >= 21, tail.count <= 39 else { return nil }
        let split = tail.index(tail.endIndex, offsetBy: -20)
        guard let b = parseDigits(tail[..<split]), let t = parseUInt64(tail[split...]) else { return nil }
        return Offset(updatedAtMs: a, tail: b, token: t)
    }

    /// 1…19 ASCII digits fitting in Int64.
    static func parseDigits<C: Collection>(_ bytes: C) -> Int64? where C.Element == UInt8 {
        guard bytes.count <= 19, let v = parseUInt64(bytes), v <= UInt64(Int64.max) else { return nil }
        return Int64(v)
    }

    /// 1…20 ASCII digits fitting in UInt64 (offsets and handles).
    static func parseUInt64<C: Collection>(_ bytes: C) -> UInt64? where C.Element == UInt8 {
        guard !bytes.isEmpty, bytes.count <= 20 else { return nil }
        var v: UInt64 = 0
        for c in bytes {
            guard c >= 0x30, c <= 0x39 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (r, o2) = m.addingReportingOverflow(UInt64(c - 0x30))
            guard !o1, !o2 else { return nil }
            v = r
        }
        return v
    }
}

extension Offset: CustomStringConvertible {
    public var description: String { text }
}

public enum OffsetParam: Equatable, Sendable {
    /// `-1` or missing: the initial snapshot.
    case snapshot
    case at(Offset)

    /// The offset floor in ms (0 for a snapshot).
    public var floorMs: Int64 {
        switch self {
        case .snapshot: return 0
        case .at(let o): return o.floorMs
        }
    }
}

// MARK: Errors

/// One zod-like validation issue: `{"message":"…","path":["offset"]}`.
public struct ValidationIssue: Sendable, Equatable {
    public var message: String
    public var path: [String]

    public init(_ message: String, path: [String] = []) {
        self.message = message
        self.path = path
    }

    public var json: String { "{\"message\":" + JSONText.quote(message) + ",\"path\":" + JSONText.array(path) + "}" }
}

/// An error reply: status, JSON body and extra headers.
public struct RequestError: Error, Sendable {
    public var status: Int
    public var body: String
    public var extraHeaders: [(String, String)]

    public init(status: Int, body: String, extraHeaders: [(String, String)] = []) {
        self.status = status
        self.body = body
        self.extraHeaders = extraHeaders
    }

    /// `{"error":"<message>"}` with the given status.
    public static func simple(_ status: Int, _ message: String) -> RequestError {
        RequestError(status: status, body: "{\"error\":" + JSONText.quote(message) + "}")
    }

    static func validation(_ title: String, _ issues: [ValidationIssue]) -> RequestError {
        RequestError(status: 400, body: "{\"error\":" + JSONText.quote(title) + ",\"details\":["
                     + issues.map(\.json).joined(separator: ",") + "]}")
    }

    /// 400 `{"error":"Query Error","details":[{"message":…,"path":[]},…]}`.
    public static func queryError(details: [String]) -> RequestError {
        validation("Query Error", details.map { ValidationIssue($0) })
    }

    public static func queryError(issues: [ValidationIssue]) -> RequestError { validation("Query Error", issues) }

    /// 400 `{"error":"Params Error","details":[…]}`.
    public static func paramsError(details: [String]) -> RequestError {
        validation("Params Error", details.map { ValidationIssue($0) })
    }

    public static func paramsError(issues: [ValidationIssue]) -> RequestError { validation("Params Error", issues) }

    public static let missingKey = simple(401, "Invalid or Missing API key")
    public static let invalidKey = simple(401, "Invalid API key")
    public static let branchRequired = simple(401, "x-trigger-branch header required for preview env")
    public static let noBranchEnv = simple(401, "No matching branch env")
    public static let invalidPublicToken = simple(401, "Invalid Public Access Token")
    public static let publicTokenInvalid = simple(401, "Public Access Token is invalid")

    /// 404 `{"error":"Not found"}` with `x-should-retry`.
    public static func notFound(shouldRetry: Bool) -> RequestError {
        RequestError(status: 404, body: #"{"error":"Not found"}"#,
                     extraHeaders: [("x-should-retry", shouldRetry ? "true" : "false")])
    }

    /// 403 for a failed scope check.
    public static let unauthorized = RequestError(
        status: 403, body: #"{"error":"Unauthorized","code":"unauthorized","param":"access_token","type":"authorization"}"#)
    /// 403 with a custom message (suspended account, IP block).
    public static func forbidden(_ message: String) -> RequestError { simple(403, message) }
    public static let tooMany = simple(429, "Too many concurrent requests")
    public static let limitLookupFailed = simple(500, "Failed to get concurrency limit")
    public static let `internal` = simple(500, "Internal Server Error")
    public static let methodNotAllowed = simple(405, "Method Not Allowed")
}

// MARK: Requests

/// The Electric query parameters of a feed request.
public struct FeedQuery: Sendable, Equatable {
    public var offset: OffsetParam
    /// `handle`, or the legacy `shape_id` (an empty value counts as absent).
    public var handle: String?
    public var live: Bool
    public var skipColumns: String?
    public var tags: String?
    public var createdAt: String?
    public var cursor: String?

    public init(offset: OffsetParam = .snapshot, handle: String? = nil, live: Bool = false, skipColumns: String? = nil,
                tags: String? = nil, createdAt: String? = nil, cursor: String? = nil) {
        self.offset = offset; self.handle = handle; self.live = live; self.skipColumns = skipColumns
        self.tags = tags; self.createdAt = createdAt; self.cursor = cursor
    }

    public static let maxHandleLength = 200

    /// Parses a raw query string (no leading `?`). The first occurrence of a parameter wins; unknown
    /// parameters are ignored. Errors are 400 "Query Error" with one issue per invalid parameter.
    public static func parse(queryString: String) -> Result<FeedQuery, RequestError> {
        var params: [String: String] = [:]
        for (name, value) in QueryString.decode(queryString) where params[name] == nil {
            params[name] = value
        }
        var issues: [ValidationIssue] = []
        var q = FeedQuery()

        switch params["offset"] {
        case nil, "-1": q.offset = .snapshot
        case let raw?:
            if let o = Offset.parse(raw) { q.offset = .at(o) } else { issues.append(ValidationIssue("Invalid offset", path: ["offset"])) }
        }

        let handle = nonEmpty(params["handle"]) ?? nonEmpty(params["shape_id"])
        if let handle {
            if isValidHandle(handle) {
                q.handle = handle
            } else {
                issues.append(ValidationIssue("Invalid handle", path: ["handle"]))
            }
        }

        switch params["live"] {
        case nil, "", "false": q.live = false
        case "true": q.live = true
        default: issues.append(ValidationIssue("Invalid live value, expected \"true\" or \"false\"", path: ["live"]))
        }

        if q.live && issues.isEmpty {
            if handle == nil { issues.append(ValidationIssue("A live request requires a handle", path: ["handle"])) }
            if q.offset == .snapshot { issues.append(ValidationIssue("A live request requires an offset", path: ["offset"])) }
        }

        if !issues.isEmpty { return .failure(.queryError(issues: issues)) }
        q.skipColumns = params["skipColumns"]
        q.tags = params["tags"]
        q.createdAt = params["createdAt"]
        q.cursor = params["cursor"]
        return .success(q)
    }

    /// 1…200 characters of `[A-Za-z0-9_-]`.
    public static func isValidHandle(_ h: String) -> Bool {
        let u = h.utf8
        guard !u.isEmpty, u.count <= maxHandleLength else { return false }
        for c in u {
            switch c {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, UInt8(ascii: "_"), UInt8(ascii: "-"): continue
            default: return false
            }
        }
        return true
    }

    private static func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }
}

/// `application/x-www-form-urlencoded` query-string decoding (as URLSearchParams does it).
public enum QueryString {
    /// Splits on `&`, then on the first `=`; percent-decodes names and values with `+` → space.
    /// Invalid `%` sequences are kept literally. Empty pieces are skipped.
    public static func decode(_ query: String) -> [(String, String)] {
        var out: [(String, String)] = []
        for piece in query.utf8.split(separator: UInt8(ascii: "&")) {
            if let eq = piece.firstIndex(of: UInt8(ascii: "=")) {
                out.append((percentDecode(piece[piece.startIndex..<eq]),
                            percentDecode(piece[piece.index(after: eq)...])))
            } else {
                out.append((percentDecode(piece[...]), ""))
            }
        }
        return out
    }

    public static func percentDecode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let b = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "+") {
                out.append(0x20); i += 1
            } else if c == UInt8(ascii: "%"), i + 2 < b.count,
                      let hi = JSONScanner.hexValue(b[i + 1]), let lo = JSONScanner.hexValue(b[i + 2]) {
                out.append(UInt8(hi << 4 | lo)); i += 3
            } else {
                out.append(c); i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

// MARK: Responses

/// A complete HTTP response for the FastCGI layer.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: String

    public init(status: Int, headers: [(String, String)] = [], body: String = "") {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 204: return "No Content"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 409: return "Conflict"
        case 429: return "Too Many Requests"
        case 500: return "Internal Server Error"
        case 503: return "Service Unavailable"
        default: return "Unknown"
        }
    }

    /// The first value of a header (case-insensitive name).
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.0.lowercased() == lower }?.1
    }

    /// CGI-style response text: `Status: 200 OK`, the headers, `Content-Length` (UTF-8 bytes, unless already
    /// present), a blank line, then the body. CR and LF are stripped from header names and values.
    public func fastCGIText() -> String { fastCGIHead() + body }

    /// The CGI header block (status, headers, a `Content-Length` unless given, the blank line); the body follows it.
    public func fastCGIHead() -> String {
        var out = "Status: \(status) \(HTTPResponse.reasonPhrase(status))\r\n"
        var hasLength = false
        for (name, value) in headers {
            let n = HTTPResponse.stripLineBreaks(name)
            let v = HTTPResponse.stripLineBreaks(value)
            if n.lowercased() == "content-length" { hasLength = true }
            out += v.isEmpty ? "\(n):\r\n" : "\(n): \(v)\r\n"
        }
        if !hasLength { out += "Content-Length: \(body.utf8.count)\r\n" }
        out += "\r\n"
        return out
    }

    static func stripLineBreaks(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A }) else { return s }
        return String(decoding: s.utf8.filter { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self)
    }
}

public enum ElectricResponse {
    /// A 200 shape-log response (modern or legacy header names). Pass `schema` on non-live replies and `cursor` on live ones.
    public static func feed(handle: String, offset: String, cursor: String?, live: Bool, schema: String?, body: String,
                            upToDate: Bool, legacyHeaderNames: Bool) -> HTTPResponse {
        var h: [(String, String)] = [
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
            ("access-control-allow-origin", "*"),
            ("access-control-expose-headers", "*"),
            ("electric-handle", handle),
            ("electric-offset", offset),
        ]
        if legacyHeaderNames {
            h.append(("electric-shape-id", handle))
            h.append(("electric-chunk-last-offset", offset))
        }
        if let schema { h.append(("electric-schema", schema)) }
        if let cursor { h.append(("electric-cursor", cursor)) }
        if upToDate { h.append(("electric-up-to-date", "")) }
        return HTTPResponse(status: 200, headers: h, body: body)
    }

    /// The CORS headers for errors and preflights: the origin echoed with `vary: Origin`, or none.
    /// Only a syntactically valid origin is echoed (see `isValidOrigin`); anything else gets no CORS headers.
    static func corsEcho(_ origin: String?) -> [(String, String)] {
        guard let origin, isValidOrigin(origin) else { return [] }
        return [("access-control-allow-origin", origin), ("vary", "Origin")]
    }

    /// An `Origin` header value worth echoing: the literal `null`, or `scheme://host[:port]` in printable
    /// ASCII (RFC 6454 §7: scheme per RFC 3986; host a reg-name, IPv4 or bracketed IPv6; no path, query,
    /// fragment, userinfo, spaces or control characters).
    public static func isValidOrigin(_ origin: String) -> Bool {
        if origin == "null" { return true }
        let b = Array(origin.utf8)
        guard b.count <= 2048 else { return false }
        func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) >= UInt8(ascii: "a") && (c | 0x20) <= UInt8(ascii: "z") }
        func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
        // scheme
        var i = 0
        guard i < b.count, isAlpha(b[i]) else { return false }
        while i < b.count, isAlpha(b[i]) || isDigit(b[i]) || b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")
                || b[i] == UInt8(ascii: ".") { i += 1 }
        guard b.count - i > 3, b[i] == UInt8(ascii: ":"), b[i + 1] == UInt8(ascii: "/"), b[i + 2] == UInt8(ascii: "/")
        else { return false }
        i += 3
        // host
        if b[i] == UInt8(ascii: "[") {
            i += 1
            let start = i
            while i < b.count, isDigit(b[i]) || ((b[i] | 0x20) >= UInt8(ascii: "a") && (b[i] | 0x20) <= UInt8(ascii: "f"))
                    || b[i] == UInt8(ascii: ":") || b[i] == UInt8(ascii: ".") { i += 1 }
            guard i > start, i < b.count, b[i] == UInt8(ascii: "]") else { return false }
            i += 1
        } else {
            let start = i
            // unreserved / pct-encoded / sub-delims minus ',' (a list separator in headers) and '\'' '(' ')'
            let extra = Set("-._~%!$&*+;=".utf8)
            while i < b.count, isAlpha(b[i]) || isDigit(b[i]) || extra.contains(b[i]) { i += 1 }
            guard i > start else { return false }
        }
        // port
        if i < b.count {
            guard b[i] == UInt8(ascii: ":") else { return false }
            i += 1
            let start = i
            while i < b.count, isDigit(b[i]) { i += 1 }
            guard i > start, i - start <= 5 else { return false }
        }
        return i == b.count
    }

    /// Printable ASCII only (what may be echoed into a response header).
    static func isPrintableASCII(_ s: String) -> Bool {
        s.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    /// A JSON error reply with the error's extra headers and echoed CORS.
    public static func error(_ e: RequestError, origin: String?) -> HTTPResponse {
        var h: [(String, String)] = [("content-type", "application/json")]
        h.append(contentsOf: e.extraHeaders)
        let cors = corsEcho(origin)
        if !cors.isEmpty {
            h.append(contentsOf: cors)
            h.append(("access-control-expose-headers", "x-trigger-jwt,x-trigger-jwt-claims"))
        }
        return HTTPResponse(status: e.status, headers: h, body: e.body)
    }

    /// The unauthenticated `OPTIONS` preflight reply: 200 `{}` with the CORS headers when there is an Origin.
    public static func options(origin: String?, requestHeaders: String?) -> HTTPResponse {
        var h: [(String, String)] = [("content-type", "application/json")]
        let cors = corsEcho(origin)
        // Like remix-utils' cors: without an Origin there is no CORS to answer.
        guard !cors.isEmpty else { return HTTPResponse(status: 200, headers: h, body: "{}") }
        h.append(contentsOf: cors)
        h.append(("access-control-allow-methods", "GET,HEAD,PUT,PATCH,POST,DELETE"))
        if let requestHeaders, !requestHeaders.isEmpty, isPrintableASCII(requestHeaders) {
            h.append(("access-control-allow-headers", requestHeaders))
        }
        h.append(("access-control-max-age", "300"))
        return HTTPResponse(status: 200, headers: h, body: "{}")
    }

    /// Any non-empty `x-trigger-electric-version` selects the modern header names.
    public static func isModernClient(electricVersionHeader: String?) -> Bool {
        guard let v = electricVersionHeader else { return false }
        return !v.isEmpty
    }
}
