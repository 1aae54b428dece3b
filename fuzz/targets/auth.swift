// JWT.verify, JWT.unverifiedSubject and Credential.classify on arbitrary bytes.
// The first byte picks a mode: odd → the rest is `<header JSON>\n<payload JSON>` that gets encoded and signed with
// the test key (so the fuzzer reaches the claim checks behind the signature); even → the rest is the raw token.
@testable import RunfeedCore

let key = Array("tr_dev_abcdefghij0123456789".utf8)
let now: Int64 = 1_760_000_000

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let body = UnsafeBufferPointer(rebasing: UnsafeBufferPointer(start: data, count: size)[1...])
    let text = String(decoding: body, as: UTF8.self)
    let token: String
    if data[0] & 1 == 1 {
        let nl = body.firstIndex(of: 0x0A) ?? body.endIndex
        let header = Array(body[body.startIndex..<nl])
        let payload = nl < body.endIndex ? Array(body[(nl + 1)...]) : []
        let input = Base64URL.encode(header) + "." + Base64URL.encode(payload)
        token = input + "." + Base64URL.encode(HMACSHA256.mac(key: key, data: Array(input.utf8)))
        if case .failure(.badSignature) = JWT.verify(token, key: key, nowSeconds: now) {
            preconditionFailure("a correctly signed token failed its signature check")
        }
    } else {
        token = text
    }
    switch JWT.verify(token, key: key, nowSeconds: now) {
    case .success(let claims):
        precondition(JWT.unverifiedSubject(token) == claims.sub)
        if let exp = claims.exp { precondition(exp >= now) }
    case .failure:
        break
    }
    _ = JWT.unverifiedSubject(token)
    _ = JWT.isPublicTokenShape(token)
    for header in [text, "Bearer " + token, token] {
        switch Credential.classify(authorization: header) {
        case .secretKey(let t), .publicToken(let t):
            precondition(!t.isEmpty)
        case .missing, .publishableKey:
            break
        }
    }
    if let bytes = Base64URL.decode(text) {
        precondition(Base64URL.decode(Base64URL.encode(bytes)) == bytes, "base64url round trip")
    }
    return 0
}
