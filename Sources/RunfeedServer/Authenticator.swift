import RunfeedCore
import RunfeedIO

/// Who is asking: the environment a request acts as, and what its token allows.
struct AuthContext {
    var envId: String
    var organizationId: String
    var projectId: String
    /// nil for root secret keys (everything in the environment); the JWT's or the additional API key's scopes
    /// otherwise.
    var scopes: ScopeSet?
    /// The JWT's `realtime.skipColumns` claim, when present.
    var skipColumnsClaim: [String]?
}

/// An environment row as auth needs it.
struct EnvRecord {
    var id: String
    var type: String
    var organizationId: String
    var projectId: String
    var parentEnvironmentId: String?
    var projectDeleted: Bool
    /// Key that signs this environment's public tokens (the parent's for branch envs).
    var signingKey: String
    /// When the credential that found this record stops being valid (epoch ms): the end of a rotated key's grace
    /// period, an additional key's expiry. nil: no end.
    var validUntilMs: Int64?
}

/// An additional API key (`"ApiKey"` row) as auth needs it.
struct AdditionalKeyRecord {
    var keyId: String
    /// Stored scopes (`action:type[:id]`, bare `admin` = everything); empty grants nothing.
    var scopes: [String]
    var lastUsedAtMs: Int64?
    var env: EnvRecord
}

/// Resolves credentials to an `AuthContext`, caching environment lookups briefly. Runs on the loop.
final class Authenticator {
    private let db: LoopDatabase
    private let ttlMs: Int64
    private var byKey: BoundedTTLCache<String, EnvRecord?>
    /// Key lookups in flight (nil: the database failed).
    private var keyFlights = SingleFlight<String, EnvRecord??>()
    private var byId: BoundedTTLCache<String, EnvRecord?>
    /// Preview-branch environments by parent environment and branch name (nil: no such branch).
    private var branches: BoundedTTLCache<BranchKey, String?>
    /// Revoked keys of an environment (by id) with when their grace period ends (epoch ms).
    private var graceKeys: BoundedTTLCache<String, [(key: String, endsMs: Int64)]>
    /// Additional API keys by key hash, and their lookups in flight.
    private var additionalKeys: BoundedTTLCache<String, AdditionalKeyRecord?>
    private var additionalFlights = SingleFlight<String, AdditionalKeyRecord??>()
    /// Who waits for each key lookup in flight.
    private var flightDemands: [CredentialFlight: QueryDemands] = [:]
    /// Additional keys whose `"lastUsedAt"` this worker refreshed within the refresh interval (by key id).
    private var usesRecorded: BoundedTTLCache<String, Bool>
    /// Off: every additional key is refused (upstream's kill switch for the additional-key lookup).
    private let additionalKeysEnabled: Bool
    private var warnedNoApiKeyTable = false
    private let log: RunfeedLogger?
    /// Unknown keys and ids are remembered for a shorter time than known ones.
    private let negativeTtlMs: Int64 = 1_000

    init(db: LoopDatabase, ttlMs: Int64, maxEntries: Int, additionalKeysEnabled: Bool = true, log: RunfeedLogger? = nil) {
        self.db = db
        self.ttlMs = ttlMs
        self.additionalKeysEnabled = additionalKeysEnabled
        self.log = log
        additionalKeys = BoundedTTLCache(ttlMs: ttlMs, maxEntries: maxEntries)
        usesRecorded = BoundedTTLCache(ttlMs: AdditionalApiKey.lastUsedRefreshMs, maxEntries: maxEntries)
        byKey = BoundedTTLCache(ttlMs: ttlMs, maxEntries: maxEntries)
        byId = BoundedTTLCache(ttlMs: ttlMs, maxEntries: maxEntries)
        branches = BoundedTTLCache(ttlMs: ttlMs, maxEntries: maxEntries)
        graceKeys = BoundedTTLCache(ttlMs: ttlMs, maxEntries: maxEntries)
    }

    private static let envColumns = """
        e."id", e."type"::text, e."organizationId", e."projectId", e."parentEnvironmentId",
        (p."deletedAt" IS NOT NULL)::text
        """

    func purgeExpired(nowMs: Int64) {
        byKey.purgeExpired(nowMs: nowMs)
        byId.purgeExpired(nowMs: nowMs)
        branches.purgeExpired(nowMs: nowMs)
        graceKeys.purgeExpired(nowMs: nowMs)
        additionalKeys.purgeExpired(nowMs: nowMs)
        usesRecorded.purgeExpired(nowMs: nowMs)
    }

    func authenticate(_ info: FastCGIRequestInfo, demand: Demand? = nil, _ done: @escaping (Result<AuthContext, RequestError>) -> Void) {
        switch Credential.classify(authorization: info.headers.authorization) {
        case .missing:
            done(.failure(.missingKey))
        case .publishableKey:
            done(.failure(.invalidKey))
        case .secretKey(let key) where AdditionalApiKey.looksValid(key):
            additionalKey(key, branchHeader: info.headers.triggerBranch, demand: demand, done)
        case .secretKey(let key):
            secretKey(key, branchHeader: info.headers.triggerBranch, demand: demand, done)
        case .publicToken(let token):
            publicToken(token, demand: demand, done)
        }
    }

    // MARK: secret keys

    private func secretKey(_ key: String, branchHeader: String?, demand: Demand?, _ done: @escaping (Result<AuthContext, RequestError>) -> Void) {
        let now = wallMs()
        if let cached = byKey.get(key, nowMs: monotonicMs()), cached == nil || (cached!.validUntilMs ?? Int64.max) > now {
            finishSecret(cached, branchHeader: branchHeader, demand: demand, done)
            return
        }
        let joined = keyFlights.join(key) { [self] outcome in
            guard let record = outcome else { return done(.failure(.unavailable)) }
            finishSecret(record, branchHeader: branchHeader, demand: demand, done)
        }
        guard joined else {
            flightDemands[.secretKey(key)]?.add(demand)
            return
        }
        let demands = QueryDemands(demand)
        flightDemands[.secretKey(key)] = demands
        let sql = """
            SELECT * FROM (
              SELECT 0 AS src, \(Self.envColumns), e."apiKey", NULL::text AS grace
              FROM "RuntimeEnvironment" e JOIN "Project" p ON p."id" = e."projectId"
              WHERE e."apiKey" = $1
              UNION ALL
              SELECT 1 AS src, \(Self.envColumns), e."apiKey", r."expiresAt"::text
              FROM "RevokedApiKey" r
              JOIN "RuntimeEnvironment" e ON e."id" = r."runtimeEnvironmentId"
              JOIN "Project" p ON p."id" = e."projectId"
              WHERE r."apiKey" = $1 AND r."expiresAt" > (now() AT TIME ZONE 'UTC')
            ) k ORDER BY src, grace DESC LIMIT 1
            """
        db.lookup(sql, [key], demands: demands) { [self] result in
            flightDemands.removeValue(forKey: .secretKey(key))
            let outcome: EnvRecord??
            switch result {
            case .failure:
                outcome = .none
            case .success(let rows):
                var record: EnvRecord?
                if let r = rows.rows.first {
                    record = EnvRecord(id: r[1] ?? "", type: r[2] ?? "", organizationId: r[3] ?? "",
                                       projectId: r[4] ?? "", parentEnvironmentId: r[5],
                                       projectDeleted: r[6] == "true", signingKey: r[7] ?? "",
                                       validUntilMs: r[8].flatMap { PGText.timestampToEpochMs($0) })
                }
                byKey.set(key, record, nowMs: monotonicMs() - (record == nil ? ttlMs - negativeTtlMs : 0))
                outcome = .some(record)
            }
            for w in keyFlights.complete(key) { w(outcome) }
        }
    }

    // MARK: additional API keys

    private func additionalKey(_ key: String, branchHeader: String?, demand: Demand?, _ done: @escaping (Result<AuthContext, RequestError>) -> Void) {
        guard additionalKeysEnabled else {
            done(.failure(.invalidKey))
            return
        }
        let hash = AdditionalApiKey.keyHash(key)
        if let cached = additionalKeys.get(hash, nowMs: monotonicMs()),
           cached == nil || (cached!.env.validUntilMs ?? Int64.max) > wallMs() {
            finishAdditional(cached, branchHeader: branchHeader, demand: demand, done)
            return
        }
        let joined = additionalFlights.join(hash) { [self] outcome in
            guard let record = outcome else { return done(.failure(.unavailable)) }
            finishAdditional(record, branchHeader: branchHeader, demand: demand, done)
        }
        guard joined else {
            flightDemands[.additionalKey(hash)]?.add(demand)
            return
        }
        let demands = QueryDemands(demand)
        flightDemands[.additionalKey(hash)] = demands
        // Revoked and expired keys are never found. Branch rules are the root key's (finishSecret).
        let sql = """
            SELECT k."id", k."scopes"::text, k."lastUsedAt"::text, k."expiresAt"::text, \(Self.envColumns), e."apiKey"
            FROM "ApiKey" k
            JOIN "RuntimeEnvironment" e ON e."id" = k."runtimeEnvironmentId"
            JOIN "Project" p ON p."id" = e."projectId"
            WHERE k."keyHash" = $1 AND k."revokedAt" IS NULL
              AND (k."expiresAt" IS NULL OR k."expiresAt" > (now() AT TIME ZONE 'UTC'))
            LIMIT 1
            """
        db.lookup(sql, [hash], demands: demands) { [self] result in
            flightDemands.removeValue(forKey: .additionalKey(hash))
            let outcome: AdditionalKeyRecord??
            switch result {
            case .failure(let e) where e.isUndefinedObject:
                // A database from before additional keys: there are none to find.
                if !warnedNoApiKeyTable {
                    warnedNoApiKeyTable = true
                    log?.warning("additional API keys refused: this database has no \"ApiKey\" table (\(e.description))")
                }
                additionalKeys.set(hash, nil, nowMs: monotonicMs())
                outcome = .some(nil)
            case .failure:
                outcome = .none
            case .success(let rows):
                var record: AdditionalKeyRecord?
                if let r = rows.rows.first {
                    let env = EnvRecord(id: r[4] ?? "", type: r[5] ?? "", organizationId: r[6] ?? "",
                                        projectId: r[7] ?? "", parentEnvironmentId: r[8],
                                        projectDeleted: r[9] == "true", signingKey: r[10] ?? "",
                                        validUntilMs: r[3].flatMap { PGText.timestampToEpochMs($0) })
                    let scopes = r[1].flatMap { PGText.parseArray($0) }?.compactMap { $0 } ?? []
                    record = AdditionalKeyRecord(keyId: r[0] ?? "", scopes: scopes,
                                                 lastUsedAtMs: r[2].flatMap { PGText.timestampToEpochMs($0) }, env: env)
                }
                additionalKeys.set(hash, record, nowMs: monotonicMs() - (record == nil ? ttlMs - negativeTtlMs : 0))
                outcome = .some(record)
            }
            for w in additionalFlights.complete(hash) { w(outcome) }
        }
    }

    private func finishAdditional(_ record: AdditionalKeyRecord?, branchHeader: String?, demand: Demand?,
                                  _ done: @escaping (Result<AuthContext, RequestError>) -> Void) {
        guard let record else {
            done(.failure(.invalidKey))
            return
        }
        finishSecret(record.env, branchHeader: branchHeader, scopes: ScopeSet(record.scopes), demand: demand) { [self] result in
            // Only a key that authenticated (its branch included) counts as used.
            if case .success = result { recordUse(record) }
            done(result)
        }
    }

    /// Best effort, as upstream does it: `"lastUsedAt"` at most once per refresh interval per key and worker (the
    /// statement's own condition keeps several workers from writing more often); a failure never fails the request.
    private func recordUse(_ record: AdditionalKeyRecord) {
        let nowMono = monotonicMs()
        guard usesRecorded.get(record.keyId, nowMs: nowMono) == nil,
              AdditionalApiKey.shouldRecordUse(lastUsedAtMs: record.lastUsedAtMs, nowMs: wallMs()) else { return }
        usesRecorded.set(record.keyId, true, nowMs: nowMono)
        let sql = """
            UPDATE "ApiKey" SET "lastUsedAt" = (now() AT TIME ZONE 'UTC')
            WHERE "id" = $1 AND "revokedAt" IS NULL
              AND ("expiresAt" IS NULL OR "expiresAt" > (now() AT TIME ZONE 'UTC'))
              AND ("lastUsedAt" IS NULL OR "lastUsedAt" < (now() AT TIME ZONE 'UTC') - $2::interval)
            """
        db.query(sql, [record.keyId, "\(AdditionalApiKey.lastUsedRefreshMs) milliseconds"], .primary) { [log] result in
            if case .failure(let e) = result {
                log?.debug("additional API key: lastUsedAt not recorded: \(e.description)")
            }
        }
    }

    private func finishSecret(_ record: EnvRecord?, branchHeader: String?, scopes: ScopeSet? = nil, demand: Demand? = nil,
                              _ done: @escaping (Result<AuthContext, RequestError>) -> Void) {
        guard let env = record, !env.projectDeleted else {
            done(.failure(.invalidKey))
            return
        }
        let ctx = AuthContext(envId: env.id, organizationId: env.organizationId, projectId: env.projectId,
                              scopes: scopes, skipColumnsClaim: nil)

        let branch: String
        switch env.type {
        case "PREVIEW":
            guard let b = GitBranch.normalize(branchHeader) else {
                done(.failure(.branchRequired))
                return
            }
            branch = b
        case "DEVELOPMENT":
            // No branch, or `default`: the root dev env; a branch that sanitised to "": no such env.
            guard let b = GitBranch.sanitize(branchHeader), b != "default" else {
                done(.success(ctx))
                return
            }
            guard !b.isEmpty else {
                done(.failure(.noBranchEnv))
                return
            }
            branch = b
        default:
            done(.success(ctx))
            return
        }
        let cacheKey = BranchKey(parentEnvId: env.id, branch: branch)
        if let cached = branches.get(cacheKey, nowMs: monotonicMs()) {
            finishBranch(ctx, childId: cached, done)
            return
        }
        let sql = """
            SELECT "id" FROM "RuntimeEnvironment"
            WHERE "parentEnvironmentId" = $1 AND "branchName" = $2 AND "archivedAt" IS NULL
            ORDER BY "createdAt" ASC, "id" ASC LIMIT 1
            """
        db.lookup(sql, [env.id, branch], demands: QueryDemands(demand)) { [self] result in
            switch result {
            case .failure:
                done(.failure(.unavailable))
            case .success(let rows):
                let child = rows.rows.first?[0] ?? nil
                branches.set(cacheKey, child, nowMs: monotonicMs() - (child == nil ? ttlMs - negativeTtlMs : 0))
                finishBranch(ctx, childId: child, done)
            }
        }
    }

    private func finishBranch(_ parent: AuthContext, childId: String?, _ done: (Result<AuthContext, RequestError>) -> Void) {
        guard let childId else {
            done(.failure(.noBranchEnv))
            return
        }
        var ctx = parent
        ctx.envId = childId
        done(.success(ctx))
    }

    // MARK: public access tokens

    private func publicToken(_ token: String, demand: Demand?, _ done: @escaping (Result<AuthContext, RequestError>) -> Void) {
        guard let sub = JWT.unverifiedSubject(token), !sub.isEmpty else {
            done(.failure(.invalidPublicToken))
            return
        }
        if let cached = byId.get(sub, nowMs: monotonicMs()) {
            finishToken(token, cached, demand: demand, done)
            return
        }
        let sql = """
            SELECT \(Self.envColumns), COALESCE(parent."apiKey", e."apiKey")
            FROM "RuntimeEnvironment" e
            JOIN "Project" p ON p."id" = e."projectId"
            LEFT JOIN "RuntimeEnvironment" parent ON parent."id" = e."parentEnvironmentId"
            WHERE e."id" = $1 LIMIT 1
            """
        db.lookup(sql, [sub], demands: QueryDemands(demand)) { [self] result in
            switch result {
            case .failure:
                done(.failure(.unavailable))
            case .success(let rows):
                var record: EnvRecord?
                if let r = rows.rows.first {
                    record = EnvRecord(id: r[0] ?? "", type: r[1] ?? "", organizationId: r[2] ?? "",
                                       projectId: r[3] ?? "", parentEnvironmentId: r[4],
                                       projectDeleted: r[5] == "true", signingKey: r[6] ?? "", validUntilMs: nil)
                }
                byId.set(sub, record, nowMs: monotonicMs() - (record == nil ? ttlMs - negativeTtlMs : 0))
                finishToken(token, record, demand: demand, done)
            }
        }
    }

    private func finishToken(_ token: String, _ record: EnvRecord?, demand: Demand?, _ done: @escaping (Result<AuthContext, RequestError>) -> Void) {
        guard let env = record, !env.projectDeleted, !env.signingKey.isEmpty else {
            done(.failure(.invalidPublicToken))
            return
        }
        let result = JWT.verify(token, key: Array(env.signingKey.utf8), nowSeconds: wallMs() / 1000)
        guard case .failure(.badSignature) = result else {
            return finishClaims(result, env, done)
        }
        // Only a bad signature is retried: with each revoked key of the signing environment still in its grace period.
        let signingEnvId = env.parentEnvironmentId ?? env.id
        if let cached = graceKeys.get(signingEnvId, nowMs: monotonicMs()) {
            return finishClaims(Self.verifyWithGraceKeys(token, cached, fallback: result), env, done)
        }
        let sql = """
            SELECT "apiKey", "expiresAt"::text FROM "RevokedApiKey"
            WHERE "runtimeEnvironmentId" = $1 AND "expiresAt" > (now() AT TIME ZONE 'UTC')
            ORDER BY "expiresAt" DESC, "id" ASC
            """
        db.lookup(sql, [signingEnvId], demands: QueryDemands(demand), found: { _ in true }) { [self] dbResult in
            switch dbResult {
            case .failure:
                done(.failure(.unavailable))
            case .success(let rows):
                let keys = rows.rows.compactMap { r -> (key: String, endsMs: Int64)? in
                    guard let k = r[0], let ends = r[1].flatMap({ PGText.timestampToEpochMs($0) }) else { return nil }
                    return (key: k, endsMs: ends)
                }
                graceKeys.set(signingEnvId, keys, nowMs: monotonicMs() - (keys.isEmpty ? ttlMs - negativeTtlMs : 0))
                finishClaims(Self.verifyWithGraceKeys(token, keys, fallback: result), env, done)
            }
        }
    }

    private static func verifyWithGraceKeys(_ token: String, _ keys: [(key: String, endsMs: Int64)],
                                            fallback: Result<JWTClaims, JWTError>) -> Result<JWTClaims, JWTError> {
        let now = wallMs()
        var last = fallback
        for k in keys where k.endsMs > now && !k.key.isEmpty {
            let r = JWT.verify(token, key: Array(k.key.utf8), nowSeconds: now / 1000)
            if case .success = r { return r }
            if case .failure(.badSignature) = r { continue }
            last = r
        }
        return last
    }

    private func finishClaims(_ result: Result<JWTClaims, JWTError>, _ env: EnvRecord,
                              _ done: (Result<AuthContext, RequestError>) -> Void) {
        switch result {
        case .failure(let e):
            done(.failure(e == .noSubject ? .invalidPublicToken : .publicTokenInvalid))
        case .success(let claims):
            guard claims.sub == env.id else {
                done(.failure(.invalidPublicToken))
                return
            }
            done(.success(AuthContext(envId: env.id, organizationId: env.organizationId, projectId: env.projectId,
                                      scopes: ScopeSet(claims.scopes), skipColumnsClaim: claims.skipColumns)))
        }
    }
}

/// A preview branch of an environment.
struct BranchKey: Hashable {
    let parentEnvId: String
    let branch: String
}

/// A credential lookup in flight: a secret key's environment lookup, or an additional key's record by key hash.
private enum CredentialFlight: Hashable {
    case secretKey(String)
    case additionalKey(String)
}
