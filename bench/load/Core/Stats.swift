/// Small pure helpers of the load generator: latency samples and number formatting.

/// Latencies in microseconds, kept whole (a bench run is bounded in count).
public struct Samples {
    public private(set) var values: [Int64] = []

    public init() {}

    public mutating func add(_ v: Int64) { values.append(v) }

    public var count: Int { values.count }

    public func percentile(_ p: Double) -> Int64 {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
        return sorted[max(0, min(sorted.count - 1, rank))]
    }
}

/// `d` with `places` decimals, without Foundation.
public func fixed(_ d: Double, _ places: Int) -> String {
    var scale = 1.0
    for _ in 0..<places { scale *= 10 }
    let v = (d * scale).rounded()
    let neg = v < 0
    let whole = Int64(abs(v))
    let s = String(whole)
    guard places > 0 else { return (neg ? "-" : "") + s }
    let padded = String(repeating: "0", count: max(0, places + 1 - s.count)) + s
    let cut = padded.index(padded.endIndex, offsetBy: -places)
    return (neg ? "-" : "") + padded[..<cut] + "." + padded[cut...]
}
