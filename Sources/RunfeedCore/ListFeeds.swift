// Tag-list and batch feeds: tag parameter, handles, filters and the working-set diff.
//
// Tags are compared byte-wise (UTF-8), like Postgres `@>` and ClickHouse `hasAll` do. Swift's `String` equality
// is canonical equivalence (NFC "é" == NFD "é"), which would merge tags the database keeps apart, so tag
// sets, sorting, hashing and cache keys here never rely on it.

// MARK: Byte-wise tag sets

enum TagBytes {
    static func less(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }
    static func equal(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    /// Sorted byte-wise, exact duplicates removed.
    static func normalize(_ tags: [String]) -> [String] {
        let sorted = tags.sorted(by: less)
        var out: [String] = []
        out.reserveCapacity(sorted.count)
        for t in sorted where out.last.map({ !equal($0, t) }) ?? true { out.append(t) }
        return out
    }

    /// Whether every element of `needles` occurs (byte-exactly) in `haystack`.
    static func isSubset(_ needles: [String], of haystack: [String]) -> Bool {
        if needles.isEmpty { return true }
        if haystack.count <= 8 {
            return needles.allSatisfy { n in haystack.contains { equal($0, n) } }
        }
        let set = Set(haystack.map { Array($0.utf8) })
        return needles.allSatisfy { set.contains(Array($0.utf8)) }
    }
}

// MARK: Tags parameter

public enum TagsParameter {
    public static let maxTags = 100
    /// Per tag, in Unicode scalars.
    public static let maxTagLength = 500

    /// Parses the `tags` query parameter (validated the same for HEAD and GET): split on `,` with no trimming; nil or
    /// empty means no filter (`[]`). An empty element, or one containing 0x00–0x1f, 0x7f, `\` or `"`, is a 400
    /// "Query Error" with the issue `Invalid tag: "<t>"` (the tag JSON-quoted). More than 100 elements, or an
    /// element longer than 500 characters, is also a 400. The result is sorted byte-wise and deduplicated.
    public static func parse(_ raw: String?) -> Result<[String], RequestError> {
        guard let raw, !raw.isEmpty else { return .success([]) }
        let parts = raw.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        if parts.count > maxTags {
            return .failure(.queryError(issues: [ValidationIssue("Too many tags: at most \(maxTags) are allowed",
                                                                 path: ["tags"])]))
        }
        var issues: [ValidationIssue] = []
        var tags: [String] = []
        tags.reserveCapacity(parts.count)
        for part in parts {
            let tag = String(decoding: part, as: UTF8.self)
            let issue: ValidationIssue?
            if !isValid(tag) {
                issue = ValidationIssue("Invalid tag: " + JSONText.quote(tag), path: ["tags"])
            } else if tag.unicodeScalars.count > maxTagLength {
                issue = ValidationIssue("Tag too long: at most \(maxTagLength) characters are allowed", path: ["tags"])
            } else {
                issue = nil
            }
            if let issue {
                if !issues.contains(issue) { issues.append(issue) }
            } else {
                tags.append(tag)
            }
        }
        if !issues.isEmpty { return .failure(.queryError(issues: issues)) }
        return .success(TagBytes.normalize(tags))
    }

    /// Non-empty and free of 0x00–0x1f, 0x7f, `\` and `"` (single quotes are allowed).
    public static func isValid(_ tag: String) -> Bool {
        guard !tag.utf8.isEmpty else { return false }
        for c in tag.utf8 {
            if c < 0x20 || c == 0x7F || c == UInt8(ascii: "\\") || c == UInt8(ascii: "\"") { return false }
        }
        return true
    }
}

// MARK: Handles

/// A list-feed handle: `runs_<floorMs>_<seq>_<nonce>` pins the tag feed's window;
/// `batch_<batchId>_<seq>_<nonce>` names one batch connection. The nonce is 8 lowercase hex digits.
public enum ListHandle: Equatable, Sendable {
    case tagFeed(floorMs: Int64, seq: UInt64, nonce: String)
    case batch(batchId: String, seq: UInt64, nonce: String)

    public var text: String {
        switch self {
        case .tagFeed(let f, let s, let n): return "runs_\(f)_\(s)_\(n)"
        case .batch(let b, let s, let n): return "batch_\(b)_\(s)_\(n)"
        }
    }

    public var seq: UInt64 {
        switch self {
        case .tagFeed(_, let s, _), .batch(_, let s, _): return s
        }
    }

    public var nonce: String {
        switch self {
        case .tagFeed(_, _, let n), .batch(_, _, let n): return n
        }
    }

    /// A `runs_` handle. A negative floor is stored as 0 and an invalid nonce is replaced by a random one, so
    /// the text always parses back.
    public static func mintTagFeed(floorMs: Int64, seq: UInt64, nonce: String = randomNonce()) -> ListHandle {
        .tagFeed(floorMs: max(0, floorMs), seq: seq, nonce: isValidNonce(nonce) ? nonce : randomNonce())
    }

    /// A `batch_` handle (`batchId` is the internal id). An invalid nonce is replaced by a random one.
    public static func mintBatch(batchId: String, seq: UInt64, nonce: String = randomNonce()) -> ListHandle {
        .batch(batchId: batchId, seq: seq, nonce: isValidNonce(nonce) ? nonce : randomNonce())
    }

    /// 8 lowercase hex digits from the system CSPRNG.
    public static func randomNonce() -> String {
        var rng = SystemRandomNumberGenerator()
        return hex8(rng.next() as UInt32)
    }

    static func hex8(_ v: UInt32) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { out[7 - i] = digits[Int((v >> (4 * UInt32(i))) & 0xF)] }
        return String(decoding: out, as: UTF8.self)
    }

    public static func isValidNonce(_ s: String) -> Bool {
        s.utf8.count == 8 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Parses a handle from the right: the last `_` segment is the nonce, the one before it the seq; the rest
    /// after the `runs_`/`batch_` prefix is the floor (digits only, fits Int64) or the batch id (non-empty; may
    /// contain `_`). Anything else (signs, overflow, a wrong nonce) gives nil.
    public static func parse(_ s: String) -> ListHandle? {
        let u = Array(s.utf8)
        guard let lastSep = u.lastIndex(of: UInt8(ascii: "_")), lastSep > 0 else { return nil }
        let nonceBytes = u[(lastSep + 1)...]
        guard let seqSep = u[..<lastSep].lastIndex(of: UInt8(ascii: "_")) else { return nil }
        let seqBytes = u[(seqSep + 1)..<lastSep]
        let head = u[..<seqSep]
        let nonce = String(decoding: nonceBytes, as: UTF8.self)
        guard isValidNonce(nonce), let seq = parseUInt64(seqBytes) else { return nil }
        let runsPrefix = Array("runs_".utf8), batchPrefix = Array("batch_".utf8)
        if head.starts(with: runsPrefix) {
            guard let floor = parseUInt64(head.dropFirst(runsPrefix.count)), floor <= UInt64(Int64.max) else { return nil }
            return .tagFeed(floorMs: Int64(floor), seq: seq, nonce: nonce)
        }
        if head.starts(with: batchPrefix) {
            let id = head.dropFirst(batchPrefix.count)
            guard !id.isEmpty else { return nil }
            return .batch(batchId: String(decoding: id, as: UTF8.self), seq: seq, nonce: nonce)
        }
        return nil
    }

    /// 1…20 ASCII digits fitting in UInt64.
    static func parseUInt64(_ bytes: ArraySlice<UInt8>) -> UInt64? { Offset.parseUInt64(bytes) }
}

// MARK: Diff

/// One resolved or hydrated run: its internal id, `updatedAt` in ms (only for the offset's first segment)
/// and its version (digest and read time).
public struct RunVersion: Sendable, Equatable {
    public var runId: String
    public var updatedAtMs: Int64
    public var version: RowVersion

    public init(runId: String, updatedAtMs: Int64, version: RowVersion) {
        self.runId = runId
        self.updatedAtMs = updatedAtMs
        self.version = version
    }

    public init(_ row: RunRow) {
        self.init(runId: row.id, updatedAtMs: row.updatedAtMs, version: row.version)
    }
}

/// One row to send: its index in the rows given to `ListDiff.diff` and the Electric operation.
public struct ListEmit: Sendable, Equatable {
    public var index: Int
    /// `.insert` (the client does not hold the run) or `.update` (it holds an older version).
    public var operation: ChangeOperation

    public init(index: Int, operation: ChangeOperation) {
        self.index = index
        self.operation = operation
    }
}

/// What a list connection's client holds: for every member run it was sent, the version sent; and under
/// `ListDiff.membersKey`, when the membership it reflects was read (which runs are absent from it). Nil where
/// it is unknown (the working set expired, or could not be read after a hop): then every row is sent.
public typealias ListView = [String: RowVersion]

public enum ListDiff {
    /// The view entry (not a run: run ids never start with `#`) whose read time is when the membership the
    /// view reflects was read: a run absent from the view is absent as of then.
    public static let membersKey = "#members"

    /// The rows to send. With a view: a run not in it is an insert; a run whose row differs from the
    /// version sent and was read later than it is an update (same-millisecond and earlier-stamped writes
    /// included); the same row, or an older read of it, is skipped. Without a view every row is an update
    /// (the SDK upserts; nothing can be assumed about what the client holds). A run listed more than once is
    /// judged once, by its latest read (the first of equal ones).
    public static func diff(_ rows: [RunVersion], view: ListView?) -> [ListEmit] {
        var emits: [ListEmit] = []
        for i in latestPerRun(rows) {
            let r = rows[i]
            guard let view else {
                emits.append(ListEmit(index: i, operation: .update))
                continue
            }
            if let prev = view[r.runId] {
                if prev.isSupersededBy(r.version) { emits.append(ListEmit(index: i, operation: .update)) }
            } else {
                emits.append(ListEmit(index: i, operation: .insert))
            }
        }
        return emits
    }

    /// The index of each run's latest read in `rows`, in the order of `rows`.
    static func latestPerRun(_ rows: [RunVersion]) -> [Int] {
        var best: [String: Int] = [:]
        best.reserveCapacity(rows.count)
        for (i, r) in rows.enumerated() {
            if let j = best[r.runId] {
                if r.version.readAtUs > rows[j].version.readAtUs { best[r.runId] = i }
            } else {
                best[r.runId] = i
            }
        }
        return rows.indices.filter { best[rows[$0].runId] == $0 }
    }

    /// The view after sending `emits` of `rows` (a notification's hydrate): the sent versions replace or
    /// join what was there; nothing else changes.
    public static func merge(_ view: ListView, _ rows: [RunVersion], emits: [ListEmit]) -> ListView {
        var v = view
        for e in emits { v[rows[e.index].runId] = rows[e.index].version }
        return v
    }

    /// The view after a full resolve (snapshot, cold resolve, backstop) and sending `emits` of its `rows`:
    /// exactly the members the resolve found, each at the version the client now holds. A run the resolve
    /// did not find stays only if the client's version of it was read after the resolve's rows (the resolve
    /// came from a cache a moment old and cannot speak for it). The membership time (`membersKey`) is set for
    /// a new view and whenever a run drops out — to `membersReadAtUs`, or when that is 0 the earliest read of
    /// the rows — and kept otherwise (so a resolve that changes nothing leaves the view as it was).
    public static func replace(_ view: ListView?, _ rows: [RunVersion], emits: [ListEmit],
                               membersReadAtUs: Int64 = 0) -> ListView {
        var out: ListView = [:]
        out.reserveCapacity(rows.count)
        let emitted = Set(emits.map(\.index))
        for i in latestPerRun(rows) {
            let r = rows[i]
            if emitted.contains(i) || view == nil {
                out[r.runId] = r.version
            } else if let prev = view?[r.runId] {
                out[r.runId] = prev
            }
        }
        let resolvedAt = rows.map(\.version.readAtUs).min() ?? Int64.min
        var dropped = view == nil
        if let view {
            for (id, v) in view where id != membersKey && out[id] == nil {
                if v.readAtUs > resolvedAt && !rows.isEmpty { out[id] = v } else { dropped = true }
            }
        }
        let membersAt = membersReadAtUs != 0 ? membersReadAtUs : (rows.isEmpty ? 0 : resolvedAt)
        if dropped && membersAt != 0 {
            out[membersKey] = RowVersion(digest: 0, readAtUs: max(membersAt, view?[membersKey]?.readAtUs ?? Int64.min))
        } else if let kept = view?[membersKey] {
            out[membersKey] = kept
        }
        return out
    }

    /// The read time (database clock, µs) a row must be read after to be sent as it is to a client holding
    /// `view`: after every read in the view, its membership time included (a run it does not list is absent
    /// as of then). Without a view: after the basis millisecond plus `skewMs` (a list basis can be a worker's
    /// clock — a resolve's start — not the database's) and, when `askedAtMs` (the worker's clock when this poll
    /// asked) is given, after that moment plus `skewMs`: whatever the client holds was read before it asked, while
    /// the reads behind its previous answer may have ended well after that answer's basis (a read that waited for a
    /// lagging replica counts as started when the replica caught up), so the basis alone does not bound them.
    public static func sendFloorUs(basisMs: Int64, view: ListView?, skewMs: Int64, askedAtMs: Int64? = nil) -> Int64 {
        guard let view else {
            let basisFloor = (basisMs + max(0, skewMs)) * 1000 + 999
            guard let asked = askedAtMs else { return basisFloor }
            return max(basisFloor, (asked + max(0, skewMs)) * 1000 + 999)
        }
        return view.values.reduce(Int64.min) { max($0, $1.readAtUs) }
    }

    /// `sendFloorUs` for a poll carrying `offset` (nil: a snapshot, `offset=-1`). A snapshot starts a new shape: the
    /// client holds nothing of it, so any read may be sent (`Int64.min`) — a cached runset a moment old included —
    /// and its offset's basis is that read's time, so its first live poll reads whatever changed since. Only a poll
    /// with an offset can hold a view that a too-old read would regress.
    public static func sendFloorUs(offset: Offset?, view: ListView?, skewMs: Int64, askedAtMs: Int64) -> Int64 {
        guard let offset else { return view.map { sendFloorUs(basisMs: 0, view: $0, skewMs: skewMs) } ?? Int64.min }
        return sendFloorUs(basisMs: offset.basisMs, view: view, skewMs: skewMs, askedAtMs: askedAtMs)
    }

    /// Whether `rows` would send the client something read at or before `floorUs` (`sendFloorUs`): a read that
    /// old (a runset cached a moment ago, a resolve in flight, a cached row) may show a version older than the
    /// client holds — for a run its view no longer lists, or when the view is unknown — so such rows are
    /// confirmed by a read started now before anything is sent.
    public static func needsFresherRead(_ rows: [RunVersion], view: ListView?, floorUs: Int64) -> Bool {
        diff(rows, view: view).contains { rows[$0.index].version.readAtUs <= floorUs }
    }

    /// The offset's first segment after an answer: `max(floor, max updatedAt of the rows)`.
    public static func offsetMs(_ rows: [RunVersion], floorMs: Int64) -> Int64 {
        rows.reduce(floorMs) { max($0, $1.updatedAtMs) }
    }
}

/// The change of a view between two answers, as the shared working-set store applies it.
public struct ListViewDelta: Sendable, Equatable {
    /// Runs added or at a new version, in run-id order.
    public var changed: [(String, RowVersion)]
    public var removed: [String]

    public static func == (a: ListViewDelta, b: ListViewDelta) -> Bool {
        a.removed == b.removed && a.changed.count == b.changed.count
            && zip(a.changed, b.changed).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    public init(changed: [(String, RowVersion)], removed: [String]) {
        self.changed = changed
        self.removed = removed
    }

    /// What turns `old` (nil: nothing stored) into `new`, in run-id order.
    public static func between(_ old: ListView?, _ new: ListView) -> ListViewDelta {
        let changed = new.filter { old?[$0.key] != $0.value }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let removed = (old ?? [:]).keys.filter { new[$0] == nil }.sorted()
        return ListViewDelta(changed: changed, removed: removed)
    }

    public var isEmpty: Bool { changed.isEmpty && removed.isEmpty }
}

/// The shared store's text for views. A view is a hash: `@token` (the answer it belongs to), `@base` (a whole
/// view written at once: a snapshot, or a rewrite) and one field per run changed since the base, whose value
/// is the run's version or `-` for a run no longer in the view.
public enum ListViewCodec {
    /// One version: `<digest hex>:<readAtUs>`.
    public static func encode(_ v: RowVersion) -> String {
        String(v.digest, radix: 16) + ":" + String(v.readAtUs)
    }

    public static func decode(_ s: String) -> RowVersion? {
        let parts = s.utf8.split(separator: UInt8(ascii: ":"), maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count <= 16, let d = UInt64(Substring(parts[0]), radix: 16),
              let r = Int64(Substring(parts[1])) else { return nil }
        return RowVersion(digest: d, readAtUs: r)
    }

    /// The field that names the token the stored view belongs to (run ids never start with `@`).
    public static let tokenField = "@token"
    /// The field holding a whole view (`encodeBase`).
    public static let baseField = "@base"
    /// The value of a run field for a run no longer in the view.
    public static let removed = "-"

    /// A whole view as one value: lines `@<readAtUs>` (the read time of the entries below it) and
    /// `<runId> <digest hex>`. Entries are grouped by read time, so a snapshot (one or a few hydrate reads)
    /// costs about the run id and 17 bytes per member.
    public static func encodeBase(_ view: ListView) -> String {
        var byRead: [Int64: [(String, UInt64)]] = [:]
        for (id, v) in view { byRead[v.readAtUs, default: []].append((id, v.digest)) }
        var out = ""
        out.reserveCapacity(view.count * 40)
        for (at, entries) in byRead.sorted(by: { $0.key < $1.key }) {
            out += "@" + String(at) + "\n"
            for (id, d) in entries { out += id + " " + String(d, radix: 16) + "\n" }
        }
        return out
    }

    /// `encodeBase`'s text back; nil when malformed (an entry before any read time, a bad line).
    public static func decodeBase(_ s: String) -> ListView? {
        var view: ListView = [:]
        var at: Int64?
        for line in s.utf8.split(separator: UInt8(ascii: "\n")) {
            if line.first == UInt8(ascii: "@") {
                guard let t = Int64(Substring(line.dropFirst())) else { return nil }
                at = t
                continue
            }
            let parts = line.split(separator: UInt8(ascii: " "), maxSplits: 2, omittingEmptySubsequences: false)
            guard let at, parts.count == 2, !parts[0].isEmpty, parts[1].count <= 16,
                  let d = UInt64(Substring(parts[1]), radix: 16) else { return nil }
            view[String(Substring(parts[0]))] = RowVersion(digest: d, readAtUs: at)
        }
        return view
    }

    /// A view from `HGETALL` pairs, if it belongs to `token`: the base, then the run fields over it. Nil when it
    /// is another token's, or malformed.
    public static func view(fromPairs pairs: [String], token: UInt64) -> ListView? {
        guard pairs.count % 2 == 0 else { return nil }
        var base: ListView = [:]
        var changes: [(String, RowVersion?)] = []
        var owner: UInt64?
        var i = 0
        while i < pairs.count {
            let k = pairs[i], v = pairs[i + 1]
            i += 2
            switch k {
            case tokenField:
                owner = UInt64(v)
            case baseField:
                guard let b = decodeBase(v) else { return nil }
                base = b
            default:
                if v == removed {
                    changes.append((k, nil))
                } else {
                    guard let rv = decode(v) else { return nil }
                    changes.append((k, rv))
                }
            }
        }
        guard owner == token else { return nil }
        for (k, v) in changes { base[k] = v }
        return base
    }
}

// MARK: Filters

/// What a list feed selects: the runs of an environment carrying any of some tags (created since a floor), or the runs of one batch.
public struct ListFilter: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// Runs carrying all of these tags (sorted byte-wise, deduplicated; `[]` = every run of the env).
        case tags([String])
        /// Runs whose `batchId` is this internal batch id.
        case batch(batchId: String)

        public static func == (a: Kind, b: Kind) -> Bool {
            switch (a, b) {
            case (.tags(let x), .tags(let y)):
                return x.count == y.count && zip(x, y).allSatisfy { TagBytes.equal($0, $1) }
            case (.batch(let x), .batch(let y)):
                return TagBytes.equal(x, y)
            default:
                return false
            }
        }

        public func hash(into h: inout Hasher) {
            switch self {
            case .tags(let t):
                h.combine(0)
                h.combine(t.count)
                for s in t { h.combine(s.utf8.count); for c in s.utf8 { h.combine(c) } }
            case .batch(let id):
                h.combine(1)
                for c in id.utf8 { h.combine(c) }
            }
        }
    }

    public let kind: Kind
    /// The created-at floor in ms (tag feeds); always 0 for batch feeds.
    public let floorMs: Int64

    /// Normalizes: tag lists are sorted and deduplicated; a batch filter's floor is 0.
    public init(kind: Kind, floorMs: Int64) {
        switch kind {
        case .tags(let t):
            self.kind = .tags(TagBytes.normalize(t))
            self.floorMs = floorMs
        case .batch:
            self.kind = kind
            self.floorMs = 0
        }
    }

    public static func tags(_ tags: [String], floorMs: Int64) -> ListFilter {
        ListFilter(kind: .tags(tags), floorMs: floorMs)
    }

    public static func batch(_ batchId: String) -> ListFilter {
        ListFilter(kind: .batch(batchId: batchId), floorMs: 0)
    }

    /// The filter's tags ([] for batch filters).
    public var tags: [String] {
        if case .tags(let t) = kind { return t }
        return []
    }

    /// The batch id, or nil for tag filters.
    public var batchId: String? {
        if case .batch(let b) = kind { return b }
        return nil
    }

    /// Pre-hydration test: false only when the record proves the run cannot match. Tags: a full record must
    /// carry every filter tag (it may carry more); a partial record may match. Batch: a full record with a
    /// batch id must name this batch; a partial record or one without a batch id may match (the row decides).
    public func mayMatch(_ r: ChangeRecord) -> Bool {
        switch kind {
        case .tags(let t):
            guard let recordTags = r.tags else { return true }
            return TagBytes.isSubset(t, of: recordTags)
        case .batch(let b):
            // A full record states the run's batch (null: none); only a partial record leaves it open.
            guard r.isFull else { return true }
            guard let rb = r.batchId else { return false }
            return TagBytes.equal(rb, b)
        }
    }

    /// Authoritative test on a hydrated row. Tags: `createdAt ≥ floor` and every filter tag present.
    /// Batch: the row's `batchId` is this batch.
    public func contains(_ row: RunRow) -> Bool {
        switch kind {
        case .tags(let t):
            return row.createdAtMs >= floorMs && TagBytes.isSubset(t, of: row.runTags)
        case .batch(let b):
            guard let rb = row.batchId else { return false }
            return TagBytes.equal(rb, b)
        }
    }

    /// The runset cache key: `<envId>|<sorted tags JSON>|<batchId or "">|<floorMs>|<limit>|<skip signature>`.
    /// Non-ASCII characters in the tags JSON are `\uXXXX`-escaped so that the key is pure ASCII and therefore
    /// compares byte-exactly even as a Swift `String`.
    public func cacheKey(envId: String, limit: Int, columns: ColumnSet) -> String {
        envId + "|" + ListFilter.asciiJSONArray(tags) + "|" + (batchId ?? "") + "|" + String(floorMs)
            + "|" + String(limit) + "|" + columns.signature
    }

    /// `JSONText.array` with every non-ASCII scalar written as `\uXXXX` (surrogate pairs above U+FFFF).
    static func asciiJSONArray(_ items: [String]) -> String {
        let json = JSONText.array(items)
        guard !json.utf8.allSatisfy({ $0 < 0x80 }) else { return json }
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        func u4(_ v: UInt32) {
            out.append(contentsOf: [0x5C, UInt8(ascii: "u")])
            for shift in stride(from: 12, through: 0, by: -4) { out.append(hex[Int((v >> UInt32(shift)) & 0xF)]) }
        }
        for s in json.unicodeScalars {
            let v = s.value
            if v < 0x80 {
                out.append(UInt8(v))
            } else if v <= 0xFFFF {
                u4(v)
            } else {
                let w = v - 0x10000
                u4(0xD800 + (w >> 10))
                u4(0xDC00 + (w & 0x3FF))
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
