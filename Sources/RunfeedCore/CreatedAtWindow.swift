// The tag feed's `createdAt` look-back window: duration grammar, clamp, bucketing and handle re-pinning.

public enum CreatedAtWindow {
    /// The default look-back when the request has no `createdAt`.
    public static let defaultDuration = "24h"
    /// Longest accepted duration text.
    public static let maxDurationLength = 100

    static let msPerSecond: Int64 = 1_000
    static let msPerMinute: Int64 = 60_000
    static let msPerHour: Int64 = 3_600_000
    static let msPerDay: Int64 = 86_400_000
    static let msPerWeek: Int64 = 604_800_000

    /// Parses `^(\d+(w|d|hr|h|m|s))+$` (at most 100 characters) into milliseconds.
    ///
    /// Units: `w` (7 days), `d`, `h`/`hr` (one unit), `m` (minutes), `s`. Only the first term of each unit counts
    /// (`1h2h` is one hour; `1h30m` is 90 minutes). Arithmetic saturates at `Int64.max`. Nil when the text does
    /// not match the grammar.
    public static func parseDuration(_ s: String) -> Int64? {
        let b = Array(s.utf8)
        guard !b.isEmpty, b.count <= maxDurationLength else { return nil }
        // Unit slots: 0 w, 1 d, 2 h/hr, 3 m, 4 s.
        var firstValue: [Int64?] = [nil, nil, nil, nil, nil]
        var i = 0
        while i < b.count {
            // One or more ASCII digits, saturating.
            var value: Int64 = 0
            let start = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                value = saturatingAdd(saturatingMul(value, 10), Int64(b[i] - 0x30))
                i += 1
            }
            guard i > start, i < b.count else { return nil }
            let slot: Int
            switch b[i] {
            case UInt8(ascii: "w"): slot = 0
            case UInt8(ascii: "d"): slot = 1
            case UInt8(ascii: "h"):
                slot = 2
                if i + 1 < b.count, b[i + 1] == UInt8(ascii: "r") { i += 1 }
            case UInt8(ascii: "m"): slot = 3
            case UInt8(ascii: "s"): slot = 4
            default: return nil
            }
            i += 1
            if firstValue[slot] == nil { firstValue[slot] = value }
        }
        let unitMs: [Int64] = [msPerWeek, msPerDay, msPerHour, msPerMinute, msPerSecond]
        var total: Int64 = 0
        for (slot, v) in firstValue.enumerated() {
            if let v { total = saturatingAdd(total, saturatingMul(v, unitMs[slot])) }
        }
        return total
    }

    /// The window floor for a request: `now − parse(createdAt ?? "24h")`. When the text is unparseable,
    /// or the floor would be older than `now − maxAgeMs`, the floor becomes `now − maxAgeMs` and `clamped` is
    /// true. The result is then floored to a multiple of `bucketMs` (≤ 0 disables bucketing). A negative
    /// `maxAgeMs` counts as 0.
    public static func floor(createdAt: String?, nowMs: Int64, maxAgeMs: Int64,
                             bucketMs: Int64) -> (floorMs: Int64, clamped: Bool) {
        let oldest = saturatingSub(nowMs, max(0, maxAgeMs))
        var floorMs: Int64
        var clamped = false
        if let d = parseDuration(createdAt ?? defaultDuration) {
            floorMs = saturatingSub(nowMs, d)
            if floorMs < oldest {
                floorMs = oldest
                clamped = true
            }
        } else {
            floorMs = oldest
            clamped = true
        }
        return (bucket(floorMs, bucketMs), clamped)
    }

    /// Re-validates a floor recovered from a `runs_` handle: raised to at least `now − maxAgeMs`, lowered to at
    /// most `now` (a floor can never legitimately lie in the future), then re-bucketed. The result is always
    /// within `[bucket(now − maxAgeMs), now]`, so a stale or crafted handle can never widen the window beyond
    /// what a fresh request could get.
    public static func repin(floorMs: Int64, nowMs: Int64, maxAgeMs: Int64, bucketMs: Int64) -> Int64 {
        let oldest = saturatingSub(nowMs, max(0, maxAgeMs))
        let f = min(max(floorMs, oldest), max(nowMs, oldest))
        return bucket(f, bucketMs)
    }

    /// `ms` floored (towards −∞) to a multiple of `bucketMs`; unchanged when `bucketMs ≤ 0`.
    public static func bucket(_ ms: Int64, _ bucketMs: Int64) -> Int64 {
        guard bucketMs > 0 else { return ms }
        var r = ms % bucketMs
        if r < 0 { r += bucketMs }
        let (down, overflow) = ms.subtractingReportingOverflow(r)
        return overflow ? ms + (bucketMs - r) : down  // round up only where rounding down would underflow
    }

    static func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (r, o) = a.addingReportingOverflow(b)
        return o ? (b > 0 ? Int64.max : Int64.min) : r
    }

    static func saturatingSub(_ a: Int64, _ b: Int64) -> Int64 {
        let (r, o) = a.subtractingReportingOverflow(b)
        return o ? (b > 0 ? Int64.min : Int64.max) : r
    }

    static func saturatingMul(_ a: Int64, _ b: Int64) -> Int64 {
        let (r, o) = a.multipliedReportingOverflow(by: b)
        return o ? ((a < 0) != (b < 0) ? Int64.min : Int64.max) : r
    }
}
