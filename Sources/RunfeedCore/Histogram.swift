/// A Prometheus-style cumulative histogram. Not thread-safe: the owner confines it to one thread.
public struct Histogram: Sendable {
    public let bounds: [Double]
    public private(set) var counts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    /// Default bounds in milliseconds, from 0.5 ms to 10 s.
    public static let millisecondBounds: [Double] = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]

    public init(bounds: [Double] = Histogram.millisecondBounds) {
        self.bounds = bounds.sorted()
        counts = Array(repeating: 0, count: bounds.count)
    }

    public mutating func observe(_ v: Double) {
        guard v.isFinite else { return }
        sum += v
        count += 1
        if let i = bounds.firstIndex(where: { v <= $0 }) { counts[i] += 1 }
    }

    /// Prometheus text lines (`_bucket{le=…}` cumulative, `_sum`, `_count`); `labels` without braces.
    public func render(name: String, labels: String = "") -> String {
        let sep = labels.isEmpty ? "" : labels + ","
        var out = ""
        var cumulative: UInt64 = 0
        for (i, b) in bounds.enumerated() {
            cumulative += counts[i]
            out += "\(name)_bucket{\(sep)le=\"\(JSNumber.format(b))\"} \(cumulative)\n"
        }
        out += "\(name)_bucket{\(sep)le=\"+Inf\"} \(count)\n"
        let l = labels.isEmpty ? "" : "{\(labels)}"
        out += "\(name)_sum\(l) \(JSNumber.format(sum))\n"
        out += "\(name)_count\(l) \(count)\n"
        return out
    }
}
