// Credentials, HS256 public access tokens and secret keys.

import CCrypto

// MARK: Base64url

public enum Base64URL {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let reverse: [Int8] = {
        var t = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = Int8(i) }
        return t
    }()

    /// Unpadded base64url.
    public static func encode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let b = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity((b.count * 4 + 2) / 3)
        var i = 0
        while i + 3 <= b.count {
            let v = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2])
            out.append(alphabet[Int(v >> 18 & 63)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)]); out.append(alphabet[Int(v & 63)])
            i += 3
        }
        let rest = b.count - i
        if rest == 1 {
            let v = UInt32(b[i]) << 16
            out.append(alphabet[Int(v >> 18 & 63)]); out.append(alphabet[Int(v >> 12 & 63)])
        } else if rest == 2 {
            let v = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8
            out.append(alphabet[Int(v >> 18 & 63)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func encode(_ s: String) -> String { encode(Array(s.utf8)) }

    /// Decodes base64url, with or without `=` padding. Nil on any other character or an impossible length.
    public static func decode(_ s: String) -> [UInt8]? { decode(bytes: Array(s.utf8)) }

    public static func decode<C: Collection>(bytes input: C) -> [UInt8]? where C.Element == UInt8 {
        var chars = Array(input)
        var pad = 0
        while chars.last == UInt8(ascii: "=") { chars.removeLast(); pad += 1 }
        if pad > 0 && ((chars.count + pad) % 4 != 0 || pad > 2) { return nil }
        if chars.count % 4 == 1 { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in chars {
            let v = reverse[Int(c)]
            guard v >= 0 else { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(acc >> UInt32(bits) & 0xFF))
            }
        }
        return out
    }
}

// MARK: HMAC

public enum HMACSHA256 {
    /// HMAC-SHA256 of `data` under `key` (32 bytes).
    public static func mac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let keyBytes = key.isEmpty ? [0] : key  // never pass a NULL key pointer to OpenSSL
        let dataBytes = data.isEmpty ? [0] : data
        let ok = keyBytes.withUnsafeBytes { k in
            dataBytes.withUnsafeBufferPointer { d in
                out.withUnsafeMutableBufferPointer { o in
                    runfeed_hmac_sha256(k.baseAddress, Int32(key.count), d.baseAddress, data.count, o.baseAddress)
                }
            }
        }
        precondition(ok == 1, "HMAC-SHA256 failed")
        return out
    }

    /// Constant-time equality (false when lengths differ).
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in runfeed_memcmp_ct(pa.baseAddress, pb.baseAddress, a.count) == 0 }
        }
    }
}

public enum SHA256 {
    /// SHA-256 of `data`, 32 bytes.
    public static func digest(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let bytes = data.isEmpty ? [0] : data  // never pass a NULL data pointer to OpenSSL
        let ok = bytes.withUnsafeBufferPointer { d in
            out.withUnsafeMutableBufferPointer { o in runfeed_sha256(d.baseAddress, data.count, o.baseAddress) }
        }
        precondition(ok == 1, "SHA-256 failed")
        return out
    }

    /// Lowercase hex SHA-256 of the UTF-8 bytes of `s`: how additional API keys are stored (`"ApiKey"."keyHash"`).
    public static func hex(_ s: String) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in digest(Array(s.utf8)) {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

// MARK: Credentials

public enum Credential: Equatable, Sendable {
    case missing
    case secretKey(String)
    case publicToken(String)
    case publishableKey

    /// Classifies an `Authorization` header value: strips a case-insensitive `Bearer ` prefix and trims.
    /// Empty → missing; `pk_…` → publishable key; a three-part token whose middle decodes to a JSON object with
    /// `"pub": true` → public token; anything else → secret key.
    public static func classify(authorization: String?) -> Credential {
        guard var token = authorization.map({ trim($0) }) else { return .missing }
        if token.utf8.count >= 6, token.prefix(6).lowercased() == "bearer",
           token.utf8.count == 6 || token.dropFirst(6).first?.isWhitespace == true {
            token = trim(String(token.dropFirst(6)))
        }
        if token.isEmpty { return .missing }
        if token.hasPrefix("pk_") { return .publishableKey }
        if JWT.isPublicTokenShape(token) { return .publicToken(token) }
        return .secretKey(token)
    }

    static func trim(_ s: String) -> String {
        var sub = Substring(s)
        while let f = sub.first, f.isWhitespace { sub.removeFirst() }
        while let l = sub.last, l.isWhitespace { sub.removeLast() }
        return String(sub)
    }
}

public enum GitBranch {
    static let strippedPrefixes = ["refs/heads/", "refs/remotes/", "refs/tags/", "refs/pull/", "refs/merge/", "refs/release/"]

    /// Normalizes an `x-trigger-branch` value (before the preview branch is looked up): one known `refs/…/` prefix is stripped; any other
    /// `refs/…` value, or an empty result, is nil.
    public static func normalize(_ header: String?) -> String? {
        guard let b = sanitize(header), !b.isEmpty else { return nil }
        return b
    }

    /// Upstream's `sanitizeBranchName`: missing or empty → nil; exactly one known `refs/…/` prefix is stripped
    /// (the result may be ""); any other `refs/…` value → nil; anything else verbatim (trimmed).
    public static func sanitize(_ header: String?) -> String? {
        guard let header else { return nil }
        let value = Credential.trim(header)
        if value.isEmpty { return nil }
        for p in strippedPrefixes where value.hasPrefix(p) {
            return String(value.dropFirst(p.count))
        }
        if value.hasPrefix("refs/") { return nil }
        return value
    }
}

/// `tr_<dev|prod|stg|preview>_<infix>` followed by `length` of `[0-9a-zA-Z]`: the shapes of trigger.dev's keys.
enum KeyShape {
    static func matches(_ k: String, infix: String, length: Int) -> Bool {
        let b = Array(k.utf8)
        for slug in ["dev", "prod", "stg", "preview"] {
            let prefix = Array("tr_\(slug)_\(infix)".utf8)
            guard b.count == prefix.count + length, b.starts(with: prefix) else { continue }
            return b[prefix.count...].allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
            }
        }
        return false
    }
}

public enum SecretKey {
    /// `tr_(dev|prod|stg|preview)_` followed by 20 of `[0-9a-zA-Z]`. Informative only: the database lookup decides.
    public static func looksValid(_ k: String) -> Bool { KeyShape.matches(k, infix: "", length: 20) }
}

/// Additional environment API keys (`tr_<env>_sk_` + 24 of `[0-9a-zA-Z]`): several per environment, stored only as a
/// SHA-256 hash with their own scopes, revocation and expiry. The format only routes the lookup (an additional key
/// is never looked up as a root key, nor a root key in the additional keys); the stored hash decides.
public enum AdditionalApiKey {
    public static func looksValid(_ k: String) -> Bool { KeyShape.matches(k, infix: "sk_", length: 24) }

    /// The stored `"keyHash"` of a key: lowercase hex SHA-256 of its UTF-8 bytes.
    public static func keyHash(_ k: String) -> String { SHA256.hex(k) }

    /// `"lastUsedAt"` is refreshed at most this often per key (a write per request would load the primary).
    public static let lastUsedRefreshMs: Int64 = 300_000

    /// Whether a successful authentication should refresh `"lastUsedAt"` (nil: never used).
    public static func shouldRecordUse(lastUsedAtMs: Int64?, nowMs: Int64) -> Bool {
        guard let last = lastUsedAtMs else { return true }
        return last < nowMs - lastUsedRefreshMs
    }
}

// MARK: JWT

public struct JWTClaims: Sendable, Equatable {
    public var sub: String
    public var scopes: [String]
    /// `realtime.skipColumns` when present as an array of strings.
    public var skipColumns: [String]?
    public var exp: Int64?
    public var nbf: Int64?

    public init(sub: String, scopes: [String], skipColumns: [String]? = nil, exp: Int64? = nil, nbf: Int64? = nil) {
        self.sub = sub; self.scopes = scopes; self.skipColumns = skipColumns; self.exp = exp; self.nbf = nbf
    }
}

public enum JWTError: Error, Sendable, Equatable {
    case malformed, badAlgorithm, badSignature, badIssuer, badAudience, expired, notYetValid, noSubject

    /// `noSubject` → "Invalid Public Access Token"; everything else → "Public Access Token is invalid".
    public var requestError: RequestError {
        self == .noSubject ? .invalidPublicToken : .publicTokenInvalid
    }
}

public enum JWT {
    public static let issuer = "https://id.trigger.dev"
    public static let audience = "https://api.trigger.dev"

    /// The decoded JSON object of one base64url segment.
    static func decodeSegment<S: StringProtocol>(_ segment: S) -> [String: JSONValue]? {
        guard let bytes = Base64URL.decode(bytes: segment.utf8) else { return nil }
        return JSONValue.parse(String(decoding: bytes, as: UTF8.self))?.objectValue
    }

    static func segments(_ token: String) -> [Substring]? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 3 ? parts : nil
    }

    /// Three dot-separated parts whose middle is a JSON object with `"pub": true`.
    public static func isPublicTokenShape(_ token: String) -> Bool {
        guard let parts = segments(token), let payload = decodeSegment(parts[1]) else { return false }
        return payload["pub"] == .bool(true)
    }

    /// The unverified `sub` claim, if it is a string.
    public static func unverifiedSubject(_ token: String) -> String? {
        guard let parts = segments(token), let payload = decodeSegment(parts[1]) else { return nil }
        return payload["sub"]?.stringValue
    }

    /// Verifies an HS256 token: algorithm, signature (constant time), `iss`, `aud` (string or array), `exp`
    /// (expired when now >= exp, no leeway), `nbf` (fails when in the future) and a string `sub`.
    public static func verify(_ token: String, key: [UInt8], nowSeconds: Int64) -> Result<JWTClaims, JWTError> {
        guard let parts = segments(token), let header = decodeSegment(parts[0]) else { return .failure(.malformed) }
        guard header["alg"] == .string("HS256") else { return .failure(.badAlgorithm) }
        guard let signature = Base64URL.decode(bytes: parts[2].utf8) else { return .failure(.badSignature) }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        let expected = HMACSHA256.mac(key: key, data: signingInput)
        guard HMACSHA256.constantTimeEqual(signature, expected) else { return .failure(.badSignature) }
        guard let payload = decodeSegment(parts[1]) else { return .failure(.malformed) }

        guard payload["iss"] == .string(issuer) else { return .failure(.badIssuer) }
        switch payload["aud"] {
        case .string(let a)? where a == audience: break
        case .array(let items)? where items.contains(.string(audience)): break
        default: return .failure(.badAudience)
        }
        let now = Double(nowSeconds)
        var exp: Int64?
        if let raw = payload["exp"] {
            guard let e = raw.numberValue, e.isFinite else { return .failure(.malformed) }
            if now >= e { return .failure(.expired) }
            exp = raw.int64Value
        }
        var nbf: Int64?
        if let raw = payload["nbf"] {
            guard let n = raw.numberValue, n.isFinite else { return .failure(.malformed) }
            if n > now { return .failure(.notYetValid) }
            nbf = raw.int64Value
        }
        guard let sub = payload["sub"]?.stringValue else { return .failure(.noSubject) }
        let scopes = payload["scopes"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let skip = payload["realtime"]?.objectValue?["skipColumns"]?.stringArrayValue
        return .success(JWTClaims(sub: sub, scopes: scopes, skipColumns: skip, exp: exp, nbf: nbf))
    }

    /// Mints an HS256 token with header `{"alg":"HS256","typ":"JWT"}` over the given payload JSON text.
    public static func sign(payloadJSON: String, key: [UInt8]) -> String {
        let input = Base64URL.encode(#"{"alg":"HS256","typ":"JWT"}"#) + "." + Base64URL.encode(payloadJSON)
        return input + "." + Base64URL.encode(HMACSHA256.mac(key: key, data: Array(input.utf8)))
    }
}
