// Redis change records and channel names.

public struct ChangeRecord: Sendable, Equatable {
    public var v: Int
    /// The internal TaskRun id.
    public var runId: String
    public var envId: String
    /// Present (even empty) means a full record; nil means partial (tag feeds must hydrate the run).
    public var tags: [String]?
    public var batchId: String?
    public var updatedAtMs: Int64?

    public init(v: Int = 1, runId: String, envId: String, tags: [String]? = nil, batchId: String? = nil,
                updatedAtMs: Int64? = nil) {
        self.v = v; self.runId = runId; self.envId = envId; self.tags = tags
        self.batchId = batchId; self.updatedAtMs = updatedAtMs
    }

    public var isFull: Bool { tags != nil }

    /// Decodes one pub/sub frame. A frame starting with `{` that parses as a JSON object gives its fields
    /// (`v` missing → 0; a missing or empty `runId` → nil). Any other non-empty frame is a bare run id:
    /// `{v:0, runId:<trimmed frame>, envId:""}`. An empty (or blank) frame → nil.
    public static func parse(_ frame: String) -> ChangeRecord? {
        let trimmed = Credential.trim(frame)
        if trimmed.isEmpty { return nil }
        if trimmed.hasPrefix("{"), let obj = JSONValue.parse(trimmed)?.objectValue {
            guard let runId = obj["runId"]?.stringValue, !runId.isEmpty else { return nil }
            let v = obj["v"]?.int64Value.flatMap { Int(exactly: $0) } ?? 0
            let tags = obj["tags"]?.arrayValue.map { $0.compactMap(\.stringValue) }
            return ChangeRecord(v: v, runId: runId, envId: obj["envId"]?.stringValue ?? "", tags: tags,
                                batchId: obj["batchId"]?.stringValue, updatedAtMs: obj["updatedAtMs"]?.int64Value)
        }
        return ChangeRecord(v: 0, runId: trimmed, envId: "")
    }

    /// Compact JSON: `v`, `runId`, `envId`, `tags` (omitted when nil), `batchId` (null when nil),
    /// `updatedAtMs` (omitted when nil).
    public func json() -> String {
        var out = "{\"v\":\(v),\"runId\":" + JSONText.quote(runId) + ",\"envId\":" + JSONText.quote(envId)
        if let tags { out += ",\"tags\":" + JSONText.array(tags) }
        out += ",\"batchId\":" + (batchId.map(JSONText.quote) ?? "null")
        if let updatedAtMs { out += ",\"updatedAtMs\":\(updatedAtMs)" }
        return out + "}"
    }
}

public enum Channels {
    static let envPrefix = "realtime:env:{"

    /// `realtime:env:{<envId>}` (the braces are a cluster hash tag).
    public static func env(_ envId: String) -> String { envPrefix + envId + "}" }

    /// The env id of an env channel, or nil for any other channel.
    public static func envId(fromChannel channel: String) -> String? {
        guard channel.hasPrefix(envPrefix), channel.hasSuffix("}") else { return nil }
        let inner = channel.dropFirst(envPrefix.count).dropLast()
        return inner.isEmpty ? nil : String(inner)
    }
}
