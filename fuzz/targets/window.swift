// CreatedAtWindow.parseDuration / floor / repin and TagsParameter.parse on arbitrary bytes.
// Input layout: 24 bytes (nowMs, maxAgeMs, bucketMs; little-endian Int64) then the text.
@testable import RunfeedCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let all = UnsafeBufferPointer(start: data, count: size)
    func int64(_ at: Int) -> Int64 {
        var v: UInt64 = 0
        for i in 0..<8 where at + i < size { v |= UInt64(all[at + i]) << (8 * UInt64(i)) }
        return Int64(bitPattern: v)
    }
    let nowMs = int64(0), maxAgeMs = int64(8), bucketMs = int64(16)
    let text = String(decoding: size > 24 ? UnsafeBufferPointer(rebasing: all[24...]) : UnsafeBufferPointer(start: data, count: 0),
                      as: UTF8.self)
    let whole = String(decoding: all, as: UTF8.self)

    for s in [text, whole] {
        if let d = CreatedAtWindow.parseDuration(s) {
            precondition(d >= 0, "negative duration")
            precondition(s.utf8.count <= CreatedAtWindow.maxDurationLength)
        }
        _ = TagsParameter.parse(s)
        if case .success(let tags) = TagsParameter.parse(s) {
            precondition(tags.count <= TagsParameter.maxTags)
            precondition(zip(tags, tags.dropFirst()).allSatisfy { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) },
                         "tags not sorted/unique")
        }
    }
    let created: String? = size > 24 ? text : nil
    let (floorMs, clamped) = CreatedAtWindow.floor(createdAt: created, nowMs: nowMs, maxAgeMs: maxAgeMs, bucketMs: bucketMs)
    if !clamped { precondition(CreatedAtWindow.parseDuration(created ?? CreatedAtWindow.defaultDuration) != nil) }
    if bucketMs > 0, floorMs % bucketMs != 0 {
        // Always a bucket multiple, unless rounding down would have underflowed.
        precondition(floorMs.subtractingReportingOverflow(bucketMs).overflow, "floor \(floorMs) not bucketed")
    }
    _ = CreatedAtWindow.repin(floorMs: int64(0) ^ int64(8), nowMs: nowMs, maxAgeMs: maxAgeMs, bucketMs: bucketMs)
    return 0
}
