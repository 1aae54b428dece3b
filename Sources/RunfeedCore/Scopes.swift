// Scope grammar and matching for public access tokens.

/// A resource a request touches: `type` with an id, or the collection (`id == nil`).
public struct Resource: Sendable, Equatable, Hashable {
    public var type: String
    public var id: String?

    public init(type: String, id: String? = nil) {
        self.type = type
        self.id = id
    }
}

/// One parsed scope `action:type[:id]` (split on the first two colons only).
public struct Scope: Sendable, Equatable {
    public var action: String
    public var type: String?
    public var id: String?

    public init(_ text: String) {
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        action = String(parts[0])
        type = parts.count > 1 ? String(parts[1]) : nil
        id = parts.count > 2 ? String(parts[2]) : nil
    }

    /// Bare `admin` matches everything. Otherwise the action must be `read` or `*`, the type must equal the
    /// resource's or be `all`; a scope without an id matches every id and the collection, a scope with an id
    /// matches only that exact id (an empty id therefore matches nothing real) and never the collection.
    public func matches(_ r: Resource) -> Bool {
        // Byte comparison throughout, like JavaScript's ===: Swift's == would equate canonically
        // equivalent strings (a composed and a decomposed accent), which name different tags.
        func same(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }
        if same(action, "admin") && type == nil { return true }
        guard same(action, "read") || same(action, "*") else { return false }
        guard let type, same(type, r.type) || same(type, "all") else { return false }
        guard let id else { return true }
        guard let rid = r.id else { return false }
        return same(id, rid)
    }
}

public struct ScopeSet: Sendable {
    public let scopes: [Scope]

    public init(_ scopes: [String]) {
        self.scopes = scopes.map(Scope.init)
    }

    /// True if any scope matches any of the resources. An empty scope list authorizes nothing.
    public func authorizes(any resources: [Resource]) -> Bool {
        for s in scopes {
            for r in resources where s.matches(r) { return true }
        }
        return false
    }
}

/// The resources each route checks with action `read`; any one match grants access.
public enum RouteResources {
    public static func run(friendlyId: String, taskIdentifier: String, runTags: [String],
                           batchFriendlyId: String?) -> [Resource] {
        var out = [Resource(type: "runs", id: friendlyId), Resource(type: "tasks", id: taskIdentifier)]
        out.append(contentsOf: runTags.map { Resource(type: "tags", id: $0) })
        if let batchFriendlyId { out.append(Resource(type: "batch", id: batchFriendlyId)) }
        return out
    }

    public static func tagFeed(tags: [String]) -> [Resource] {
        [Resource(type: "runs"), Resource(type: "tags")] + tags.map { Resource(type: "tags", id: $0) }
    }

    public static func batch(friendlyId: String) -> [Resource] {
        [Resource(type: "batch", id: friendlyId), Resource(type: "runs")]
    }
}
