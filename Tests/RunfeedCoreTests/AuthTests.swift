import Foundation
import XCTest
@testable import RunfeedCore

final class Base64URLTests: XCTestCase {
    func testEncode() {
        XCTAssertEqual(Base64URL.encode([UInt8]()), "")
        XCTAssertEqual(Base64URL.encode("f"), "Zg")
        XCTAssertEqual(Base64URL.encode("fo"), "Zm8")
        XCTAssertEqual(Base64URL.encode("foo"), "Zm9v")
        XCTAssertEqual(Base64URL.encode("foobar"), "Zm9vYmFy")
        XCTAssertEqual(Base64URL.encode([0xFB, 0xFF, 0x00, 0x01, 0x02]), "-_8AAQI")
    }

    func testDecode() {
        XCTAssertEqual(Base64URL.decode("-_8AAQI"), [0xFB, 0xFF, 0x00, 0x01, 0x02])
        XCTAssertEqual(Base64URL.decode("Zm8"), Array("fo".utf8))
        XCTAssertEqual(Base64URL.decode("Zm8="), Array("fo".utf8))
        XCTAssertEqual(Base64URL.decode("Zg=="), Array("f".utf8))
        XCTAssertEqual(Base64URL.decode(""), [])
    }

    func testDecodeRejects() {
        for bad in ["Z", "Zm9v+", "Zm9v/", "Zm 9", "Zg===", "Zm8==", "Zm9vY", "é"] {
            XCTAssertNil(Base64URL.decode(bad), bad)
        }
    }

    func testRoundTrip() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(($0 * 37 + n) & 0xFF) }
            XCTAssertEqual(Base64URL.decode(Base64URL.encode(bytes)), bytes)
        }
    }
}

final class HMACTests: XCTestCase {
    func testKnownVector() {
        let mac = HMACSHA256.mac(key: Array("key".utf8), data: Array("The quick brown fox jumps over the lazy dog".utf8))
        XCTAssertEqual(mac.map { String(format: "%02x", $0) }.joined(), "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    }

    func testEmptyKeyAndData() {
        // RFC 4231-independent check: HMAC-SHA256("", "") is a well-known constant.
        let mac = HMACSHA256.mac(key: [], data: [])
        XCTAssertEqual(mac.map { String(format: "%02x", $0) }.joined(), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }

    func testConstantTimeEqual() {
        XCTAssertTrue(HMACSHA256.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(HMACSHA256.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(HMACSHA256.constantTimeEqual([1, 2, 3], [1, 2]))
        XCTAssertTrue(HMACSHA256.constantTimeEqual([], []))
    }
}

final class CredentialTests: XCTestCase {
    static let key = Array("tr_dev_abcdefghij0123456789".utf8)
    static func token(_ payload: String) -> String { JWT.sign(payloadJSON: payload, key: key) }

    func testMissing() {
        XCTAssertEqual(Credential.classify(authorization: nil), .missing)
        XCTAssertEqual(Credential.classify(authorization: ""), .missing)
        XCTAssertEqual(Credential.classify(authorization: "Bearer "), .missing)
        XCTAssertEqual(Credential.classify(authorization: "  bearer   "), .missing)
    }

    func testSecretKey() {
        XCTAssertEqual(Credential.classify(authorization: "Bearer tr_dev_abcdefghij0123456789"), .secretKey("tr_dev_abcdefghij0123456789"))
        XCTAssertEqual(Credential.classify(authorization: "BEARER  tr_prod_x  "), .secretKey("tr_prod_x"))
        XCTAssertEqual(Credential.classify(authorization: "tr_dev_raw"), .secretKey("tr_dev_raw"))
        XCTAssertEqual(Credential.classify(authorization: "Bearertr_dev_x"), .secretKey("Bearertr_dev_x"))
    }

    func testPublishableKey() {
        XCTAssertEqual(Credential.classify(authorization: "Bearer pk_dev_123"), .publishableKey)
    }

    func testPublicToken() {
        let t = CredentialTests.token(#"{"sub":"env_1","pub":true}"#)
        XCTAssertEqual(Credential.classify(authorization: "Bearer " + t), .publicToken(t))
    }

    func testJWTWithoutPubIsSecretKey() {
        for payload in [#"{"sub":"env_1"}"#, #"{"sub":"env_1","pub":1}"#, #"{"sub":"env_1","pub":"true"}"#, #"[1]"#] {
            let t = CredentialTests.token(payload)
            XCTAssertEqual(Credential.classify(authorization: "Bearer " + t), .secretKey(t), payload)
        }
        XCTAssertEqual(Credential.classify(authorization: "a.b"), .secretKey("a.b"))
        XCTAssertEqual(Credential.classify(authorization: "a.!!!.c"), .secretKey("a.!!!.c"))
    }

    func testSecretKeyFormat() {
        XCTAssertTrue(SecretKey.looksValid("tr_dev_abcdefghij0123456789"))
        XCTAssertTrue(SecretKey.looksValid("tr_preview_ABCDEFGHIJ0123456789"))
        XCTAssertTrue(SecretKey.looksValid("tr_stg_abcdefghij0123456789"))
        XCTAssertTrue(SecretKey.looksValid("tr_prod_abcdefghij0123456789"))
        XCTAssertFalse(SecretKey.looksValid("tr_dev_abcdefghij012345678"))
        XCTAssertFalse(SecretKey.looksValid("tr_dev_abcdefghij01234567890"))
        XCTAssertFalse(SecretKey.looksValid("tr_test_abcdefghij0123456789"))
        XCTAssertFalse(SecretKey.looksValid("tr_dev_abcdefghij012345678_"))
        XCTAssertFalse(SecretKey.looksValid(""))
    }

    func testAdditionalKeyFormat() {
        XCTAssertTrue(AdditionalApiKey.looksValid("tr_dev_sk_abcdefghij0123456789ABCD"))
        XCTAssertTrue(AdditionalApiKey.looksValid("tr_prod_sk_0123456789abcdefghijklmn"))
        XCTAssertTrue(AdditionalApiKey.looksValid("tr_stg_sk_0123456789abcdefghijklmn"))
        XCTAssertTrue(AdditionalApiKey.looksValid("tr_preview_sk_0123456789abcdefghijklmn"))
        XCTAssertFalse(AdditionalApiKey.looksValid("tr_prod_sk_0123456789abcdefghijklm"), "23 characters")
        XCTAssertFalse(AdditionalApiKey.looksValid("tr_prod_sk_0123456789abcdefghijklmno"), "25 characters")
        XCTAssertFalse(AdditionalApiKey.looksValid("tr_prod_sk_0123456789abcdefghijklm-"))
        XCTAssertFalse(AdditionalApiKey.looksValid("tr_test_sk_0123456789abcdefghijklmn"))
        XCTAssertFalse(AdditionalApiKey.looksValid("tr_dev_DemoKey0123456789abc"), "a root key")
        XCTAssertFalse(AdditionalApiKey.looksValid(""))
        // Root-key format and additional-key format never overlap: each has its own lookup.
        XCTAssertFalse(SecretKey.looksValid("tr_prod_sk_0123456789abcdefghijklmn"))
    }

    func testAdditionalKeyHashIsLowercaseHexSHA256() {
        // sha256("abc") and sha256("") from FIPS 180-2 / common test vectors.
        XCTAssertEqual(SHA256.hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(AdditionalApiKey.keyHash("tr_dev_sk_DemoAdminKey0123456789ab").count, 64)
    }

    func testLastUsedRefreshIsThrottled() {
        let now: Int64 = 1_000_000_000
        XCTAssertTrue(AdditionalApiKey.shouldRecordUse(lastUsedAtMs: nil, nowMs: now))
        XCTAssertTrue(AdditionalApiKey.shouldRecordUse(lastUsedAtMs: now - 300_001, nowMs: now))
        XCTAssertFalse(AdditionalApiKey.shouldRecordUse(lastUsedAtMs: now - 300_000, nowMs: now))
        XCTAssertFalse(AdditionalApiKey.shouldRecordUse(lastUsedAtMs: now - 1, nowMs: now))
    }
}

final class GitBranchTests: XCTestCase {
    func testNormalize() {
        XCTAssertEqual(GitBranch.normalize("feature/x"), "feature/x")
        XCTAssertEqual(GitBranch.normalize("refs/heads/main"), "main")
        XCTAssertEqual(GitBranch.normalize("refs/remotes/origin/dev"), "origin/dev")
        XCTAssertEqual(GitBranch.normalize("refs/tags/v1"), "v1")
        XCTAssertEqual(GitBranch.normalize("refs/pull/12/merge"), "12/merge")
        XCTAssertEqual(GitBranch.normalize("refs/merge/x"), "x")
        XCTAssertEqual(GitBranch.normalize("refs/release/r1"), "r1")
        XCTAssertEqual(GitBranch.normalize("refs/heads/refs/heads/x"), "refs/heads/x")
    }

    func testNormalizeRejects() {
        XCTAssertNil(GitBranch.normalize(nil))
        XCTAssertNil(GitBranch.normalize(""))
        XCTAssertNil(GitBranch.normalize("  "))
        XCTAssertNil(GitBranch.normalize("refs/other/x"))
        XCTAssertNil(GitBranch.normalize("refs/heads/"))
    }

    func testSanitizeKeepsAnEmptyStrippedBranch() {
        XCTAssertNil(GitBranch.sanitize(nil))
        XCTAssertNil(GitBranch.sanitize(""))
        XCTAssertNil(GitBranch.sanitize("refs/other/x"))
        XCTAssertEqual(GitBranch.sanitize("refs/heads/"), "")
        XCTAssertEqual(GitBranch.sanitize("refs/heads/dev-feature"), "dev-feature")
        XCTAssertEqual(GitBranch.sanitize("default"), "default")
    }
}

final class JWTTests: XCTestCase {
    let key = Array("tr_dev_abcdefghij0123456789".utf8)
    let now: Int64 = 1_760_000_000
    let nodeToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJlbnZfMSIsInB1YiI6dHJ1ZSwic2NvcGVzIjpbInJlYWQ6cnVuczpydW5fMSJdLCJpc3MiOiJodHRwczovL2lkLnRyaWdnZXIuZGV2IiwiYXVkIjoiaHR0cHM6Ly9hcGkudHJpZ2dlci5kZXYiLCJleHAiOjIwMDAwMDAwMDAsInJlYWx0aW1lIjp7InNraXBDb2x1bW5zIjpbInBheWxvYWQiXX19.qombeNhZytHm-ADGqiL1eXGqcHHVz7P5Xo5QPPt45ao"

    func payload(_ extra: String = "", exp: Int64? = nil) -> String {
        var p = #"{"sub":"env_1","pub":true,"iss":"https://id.trigger.dev","aud":"https://api.trigger.dev","scopes":["read:runs"]"#
        if let exp { p += ",\"exp\":\(exp)" }
        return p + extra + "}"
    }

    func verify(_ token: String, key: [UInt8]? = nil) -> Result<JWTClaims, JWTError> {
        JWT.verify(token, key: key ?? self.key, nowSeconds: now)
    }

    func testVerifiesTokenMintedByNode() {
        let claims = try! verify(nodeToken).get()
        XCTAssertEqual(claims, JWTClaims(sub: "env_1", scopes: ["read:runs:run_1"], skipColumns: ["payload"], exp: 2_000_000_000))
    }

    func testSignMatchesNode() {
        let p = #"{"sub":"env_1","pub":true,"scopes":["read:runs:run_1"],"iss":"https://id.trigger.dev","aud":"https://api.trigger.dev","exp":2000000000,"realtime":{"skipColumns":["payload"]}}"#
        XCTAssertEqual(JWT.sign(payloadJSON: p, key: key), nodeToken)
    }

    func testValidToken() {
        let claims = try! verify(JWT.sign(payloadJSON: payload(exp: now + 900), key: key)).get()
        XCTAssertEqual(claims.sub, "env_1")
        XCTAssertEqual(claims.scopes, ["read:runs"])
        XCTAssertNil(claims.skipColumns)
        XCTAssertEqual(claims.exp, now + 900)
    }

    func testWrongKey() {
        let t = JWT.sign(payloadJSON: payload(), key: key)
        XCTAssertEqual(verify(t, key: Array("other".utf8)), .failure(.badSignature))
    }

    func testTamperedPayload() {
        let t = JWT.sign(payloadJSON: payload(), key: key)
        let parts = t.split(separator: ".").map(String.init)
        let forged = parts[0] + "." + Base64URL.encode(payload(#","scopes":["admin"]"#)) + "." + parts[2]
        XCTAssertEqual(verify(forged), .failure(.badSignature))
        XCTAssertEqual(verify(parts[0] + "." + parts[1] + "." + "AAAA"), .failure(.badSignature))
        XCTAssertEqual(verify(parts[0] + "." + parts[1] + "." + "!!"), .failure(.badSignature))
        XCTAssertEqual(verify(parts[0] + "." + parts[1] + "."), .failure(.badSignature))
    }

    func testAlgorithmPinned() {
        let body = Base64URL.encode(payload())
        let none = Base64URL.encode(#"{"alg":"none"}"#) + "." + body + "."
        XCTAssertEqual(verify(none), .failure(.badAlgorithm))
        let hs512Input = Base64URL.encode(#"{"alg":"HS512"}"#) + "." + body
        let hs512 = hs512Input + "." + Base64URL.encode(HMACSHA256.mac(key: key, data: Array(hs512Input.utf8)))
        XCTAssertEqual(verify(hs512), .failure(.badAlgorithm))
        let noAlg = Base64URL.encode(#"{"typ":"JWT"}"#) + "." + body + ".x"
        XCTAssertEqual(verify(noAlg), .failure(.badAlgorithm))
    }

    func testMalformed() {
        XCTAssertEqual(verify("abc"), .failure(.malformed))
        XCTAssertEqual(verify("a.b"), .failure(.malformed))
        XCTAssertEqual(verify("a.b.c.d"), .failure(.malformed))
        XCTAssertEqual(verify("!!.b.c"), .failure(.malformed))
        // A correctly signed non-object payload.
        XCTAssertEqual(verify(JWT.sign(payloadJSON: "[1]", key: key)), .failure(.malformed))
        XCTAssertEqual(verify(JWT.sign(payloadJSON: payload(#","exp":"soon""#), key: key)), .failure(.malformed))
    }

    func testIssuerAndAudience() {
        let badIss = #"{"sub":"e","iss":"https://evil","aud":"https://api.trigger.dev"}"#
        XCTAssertEqual(verify(JWT.sign(payloadJSON: badIss, key: key)), .failure(.badIssuer))
        let noIss = #"{"sub":"e","aud":"https://api.trigger.dev"}"#
        XCTAssertEqual(verify(JWT.sign(payloadJSON: noIss, key: key)), .failure(.badIssuer))
        let badAud = #"{"sub":"e","iss":"https://id.trigger.dev","aud":"https://other"}"#
        XCTAssertEqual(verify(JWT.sign(payloadJSON: badAud, key: key)), .failure(.badAudience))
        let arrAud = #"{"sub":"e","iss":"https://id.trigger.dev","aud":["x","https://api.trigger.dev"]}"#
        XCTAssertEqual(try? verify(JWT.sign(payloadJSON: arrAud, key: key)).get().sub, "e")
        let arrAudMissing = #"{"sub":"e","iss":"https://id.trigger.dev","aud":["x"]}"#
        XCTAssertEqual(verify(JWT.sign(payloadJSON: arrAudMissing, key: key)), .failure(.badAudience))
    }

    func testExpiryNoLeeway() {
        XCTAssertEqual(verify(JWT.sign(payloadJSON: payload(exp: now), key: key)), .failure(.expired))
        XCTAssertEqual(verify(JWT.sign(payloadJSON: payload(exp: now - 1), key: key)), .failure(.expired))
        XCTAssertNotNil(try? verify(JWT.sign(payloadJSON: payload(exp: now + 1), key: key)).get())
    }

    func testNotBefore() {
        XCTAssertEqual(verify(JWT.sign(payloadJSON: payload(",\"nbf\":\(now + 1)"), key: key)), .failure(.notYetValid))
        XCTAssertEqual(try? verify(JWT.sign(payloadJSON: payload(",\"nbf\":\(now)"), key: key)).get().nbf, now)
    }

    func testSubjectRequired() {
        let p = #"{"sub":42,"iss":"https://id.trigger.dev","aud":"https://api.trigger.dev"}"#
        XCTAssertEqual(verify(JWT.sign(payloadJSON: p, key: key)), .failure(.noSubject))
        XCTAssertEqual(JWTError.noSubject.requestError.body, RequestError.invalidPublicToken.body)
        for e in [JWTError.malformed, .badAlgorithm, .badSignature, .badIssuer, .badAudience, .expired, .notYetValid] {
            XCTAssertEqual(e.requestError.body, RequestError.publicTokenInvalid.body)
            XCTAssertEqual(e.requestError.status, 401)
        }
    }

    func testScopesAndSkipColumnsClaims() {
        let notArray = payload().replacingOccurrences(of: #""scopes":["read:runs"]"#, with: #""scopes":"read:runs""#)
        XCTAssertEqual(try? verify(JWT.sign(payloadJSON: notArray, key: key)).get().scopes, [])
        let empty = payload(#","realtime":{"skipColumns":[]}"#)
        XCTAssertEqual(try? verify(JWT.sign(payloadJSON: empty, key: key)).get().skipColumns, [])
        let mixed = payload(#","realtime":{"skipColumns":["payload",1]}"#)
        XCTAssertEqual(try? verify(JWT.sign(payloadJSON: mixed, key: key)).get().skipColumns, .some(nil))
    }

    func testUnverifiedSubject() {
        XCTAssertEqual(JWT.unverifiedSubject(nodeToken), "env_1")
        XCTAssertNil(JWT.unverifiedSubject(JWT.sign(payloadJSON: #"{"sub":1}"#, key: key)))
        XCTAssertNil(JWT.unverifiedSubject("x.y.z"))
    }
}
