// Per-process index of waiting list feeds, for matching change records to the feeds they can wake.

/// The list feeds of one process, indexed per environment so that a change record reaches only the feeds it
/// may concern:
///
/// - batch feeds by exact batch id (a partial record, or one without a batch id, reaches every batch feed of
///   the env);
/// - tag feeds keyed by their first (byte-wise smallest) tag: a full record looks up each of its tags and keeps
///   the feeds whose whole tag list it carries, plus the unfiltered tag feeds; a partial record reaches every
///   tag feed of the env.
///
/// `candidates` returns exactly the feeds of the env whose `ListFilter.mayMatch` is true. Nothing crosses envs.
public struct WakeIndex<FeedID: Hashable & Sendable>: Sendable {
    struct Entry: Sendable {
        var envId: String
        var filter: ListFilter
        /// The filter's tags as UTF-8 (byte-exact keys).
        var tagKeys: [[UInt8]]
    }

    struct EnvFeeds: Sendable {
        var batchById: [[UInt8]: Set<FeedID>] = [:]
        var allBatch: Set<FeedID> = []
        var tagsByFirst: [[UInt8]: Set<FeedID>] = [:]
        var unfiltered: Set<FeedID> = []
        var allTags: Set<FeedID> = []
        var count: Int { allBatch.count + allTags.count }
    }

    private var entries: [FeedID: Entry] = [:]
    private var envs: [String: EnvFeeds] = [:]

    public init() {}

    public var isEmpty: Bool { entries.isEmpty }
    /// Feeds in all envs.
    public var count: Int { entries.count }

    /// Feeds of one env.
    public func count(envId: String) -> Int { envs[envId]?.count ?? 0 }

    /// Envs with at least one feed.
    public var envIds: [String] { Array(envs.keys) }

    public func contains(_ id: FeedID) -> Bool { entries[id] != nil }

    public func filter(of id: FeedID) -> ListFilter? { entries[id]?.filter }

    public func envId(of id: FeedID) -> String? { entries[id]?.envId }

    /// Adds (or re-registers, replacing the previous env and filter) a feed.
    public mutating func add(_ id: FeedID, envId: String, filter: ListFilter) {
        if entries[id] != nil { remove(id) }
        let keys = filter.tags.map { Array($0.utf8) }
        entries[id] = Entry(envId: envId, filter: filter, tagKeys: keys)
        var e = envs[envId] ?? EnvFeeds()
        switch filter.kind {
        case .batch(let b):
            e.batchById[Array(b.utf8), default: []].insert(id)
            e.allBatch.insert(id)
        case .tags:
            e.allTags.insert(id)
            if let first = keys.first {
                e.tagsByFirst[first, default: []].insert(id)
            } else {
                e.unfiltered.insert(id)
            }
        }
        envs[envId] = e
    }

    /// Removes a feed (no-op when unknown).
    public mutating func remove(_ id: FeedID) {
        guard let entry = entries.removeValue(forKey: id), var e = envs[entry.envId] else { return }
        switch entry.filter.kind {
        case .batch(let b):
            let key = Array(b.utf8)
            e.batchById[key]?.remove(id)
            if e.batchById[key]?.isEmpty == true { e.batchById.removeValue(forKey: key) }
            e.allBatch.remove(id)
        case .tags:
            e.allTags.remove(id)
            if let first = entry.tagKeys.first {
                e.tagsByFirst[first]?.remove(id)
                if e.tagsByFirst[first]?.isEmpty == true { e.tagsByFirst.removeValue(forKey: first) }
            } else {
                e.unfiltered.remove(id)
            }
        }
        envs[entry.envId] = e.count == 0 ? nil : e
    }

    /// The feeds of `envId` that `record` may concern (the channel's env; the record's own `envId` is ignored).
    public func candidates(envId: String, record: ChangeRecord) -> Set<FeedID> {
        guard let e = envs[envId] else { return [] }
        var out = Set<FeedID>()
        if record.isFull {
            // A full record states the run's batch; null means the run is in none.
            if let b = record.batchId, let s = e.batchById[Array(b.utf8)] { out.formUnion(s) }
        } else {
            out.formUnion(e.allBatch)
        }
        if let tags = record.tags {
            out.formUnion(e.unfiltered)
            if !e.tagsByFirst.isEmpty {
                let recordKeys = Set(tags.map { Array($0.utf8) })
                for k in recordKeys {
                    guard let bucket = e.tagsByFirst[k] else { continue }
                    for id in bucket where entries[id]!.tagKeys.allSatisfy(recordKeys.contains) {
                        out.insert(id)
                    }
                }
            }
        } else {
            out.formUnion(e.allTags)
        }
        return out
    }
}
