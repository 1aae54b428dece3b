/// `CLICKHOUSE_URL` as trigger.dev's self-hosting files write it, turned into what the HTTP client needs.
///
/// Upstream's docker-compose sets `http://default:password@clickhouse:8123?secure=false` and its Helm chart
/// `<http|https>://user:pass@host:port?secure=<true|false>`. Upstream strips `secure` before use (the scheme
/// alone decides TLS) and hands the rest to the ClickHouse client, so here:
/// - `secure` is dropped (a warning when it contradicts the scheme, e.g. `secure=true` with `http`);
/// - `user:password@` is taken out of the URL and percent-decoded (sent as HTTP basic auth);
/// - `clickhouse_setting_<name>=v` and `ch_<name>=v` (the Node client's spelling of settings) become `<name>=v`;
/// - the Node client's own options (`request_timeout`, `max_open_connections`, … — runfeed has its own
///   variables for these) are dropped with a warning;
/// - every other parameter (`database`, `max_execution_time`, …) is kept: ClickHouse's HTTP interface
///   takes settings as query parameters.
public struct ClickHouseURL: Equatable, Sendable {
    /// `scheme://host[:port][/path][?settings]`, without credentials, `secure` or a fragment.
    public var url: String
    public var user: String?
    public var password: String?
    /// Things worth a log line (nothing secret in them).
    public var warnings: [String]

    public init(url: String, user: String?, password: String?, warnings: [String]) {
        self.url = url; self.user = user; self.password = password; self.warnings = warnings
    }

    public var isTLS: Bool { url.hasPrefix("https://") }

    /// Parameters of the Node ClickHouse client's URL that configure the client itself, not ClickHouse.
    static let clientOptions: Set<String> = [
        "application", "pathname", "session_id", "request_timeout", "max_open_connections",
        "compression_request", "compression_response", "log_level", "keep_alive_enabled",
        "access_token", "username", "password",
    ]

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    public static func parse(_ raw: String) throws -> ClickHouseURL {
        let trimmed = raw.trimmingSpaces()
        guard let colon = trimmed.firstIndex(of: ":"), trimmed[colon...].hasPrefix("://") else {
            throw ParseError(description: "CLICKHOUSE_URL must start with http:// or https://")
        }
        let scheme = trimmed[..<colon].lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw ParseError(description: "CLICKHOUSE_URL scheme must be http or https, not \(scheme)")
        }
        var rest = trimmed[trimmed.index(colon, offsetBy: 3)...]
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var authority = rest
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[slash...]
        }
        var user: String?
        var password: String?
        if let at = authority.lastIndex(of: "@") {
            let userinfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            let u: Substring, p: Substring?
            if let colon = userinfo.firstIndex(of: ":") {
                u = userinfo[..<colon]
                p = userinfo[userinfo.index(after: colon)...]
            } else {
                u = userinfo
                p = nil
            }
            let du = percentDecode(u)
            let dp = p.flatMap { percentDecode($0) }
            guard let du, p == nil || dp != nil else {
                throw ParseError(description: "CLICKHOUSE_URL has a malformed percent-escape in its user or password")
            }
            user = du.isEmpty ? nil : du
            password = dp
        }
        guard !authority.isEmpty else {
            throw ParseError(description: "CLICKHOUSE_URL has no host")
        }

        var warnings: [String] = []
        var kept: [Substring] = []
        for item in query.split(separator: "&", omittingEmptySubsequences: true) {
            let eq = item.firstIndex(of: "=")
            let rawKey = eq.map { item[..<$0] } ?? item
            let rawValue = eq.map { item[item.index(after: $0)...] } ?? ""
            let key = percentDecode(rawKey) ?? String(rawKey)
            let value = (percentDecode(rawValue) ?? String(rawValue)).lowercased()
            if key == "secure" {
                if scheme == "http" && (value == "true" || value == "1") {
                    warnings.append("CLICKHOUSE_URL has secure=true but an http:// scheme: connecting without TLS "
                        + "(the scheme decides; use https:// for TLS)")
                } else if scheme == "https" && (value == "false" || value == "0") {
                    warnings.append("CLICKHOUSE_URL has secure=false but an https:// scheme: connecting with TLS "
                        + "(the scheme decides)")
                }
                continue
            }
            if clientOptions.contains(key) {
                warnings.append("CLICKHOUSE_URL parameter \(key) configures the Node ClickHouse client; ignored "
                    + "(runfeed has its own settings)")
                continue
            }
            if let prefix = ["clickhouse_setting_", "ch_"].first(where: { key.hasPrefix($0) && key.count > $0.count }) {
                kept.append(Substring(key.dropFirst(prefix.count) + (eq == nil ? "" : "=" + rawValue)))
            } else {
                kept.append(item)
            }
        }
        var url = scheme + "://" + authority + path
        if !kept.isEmpty { url += "?" + kept.joined(separator: "&") }
        return ClickHouseURL(url: url, user: user, password: password, warnings: warnings)
    }

    /// `%XX` → byte (UTF-8); nil for a malformed escape. `+` is left alone (userinfo is not form-encoded).
    static func percentDecode<S: StringProtocol>(_ s: S) -> String? {
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            guard b == UInt8(ascii: "%") else { out.append(b); continue }
            guard bytes.count >= 2, let hi = hexValue(bytes[bytes.startIndex]),
                  let lo = hexValue(bytes[bytes.startIndex + 1]) else { return nil }
            out.append(hi << 4 | lo)
            bytes = bytes.dropFirst(2)
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

private extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}
