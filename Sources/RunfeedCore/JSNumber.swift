// JavaScript Number-to-String conversion (ECMAScript Number::toString, radix 10).

public enum JSNumber {
    /// Formats `d` exactly as JavaScript's `String(d)` does.
    ///
    /// The shortest round-trip digits come from Swift's `description` (also shortest round-trip);
    /// they are re-laid out using the ECMAScript rules: plain decimal for 1e-6 <= |x| < 1e21,
    /// exponent form (`1e+21`, `1.5e-7`) otherwise.
    public static func format(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        if d == 0 { return "0" }  // also -0
        let negative = d < 0
        let (digits, n) = shortestDigits(negative ? -d : d)
        let k = digits.count
        var out: [UInt8] = []
        out.reserveCapacity(k + 8)
        if negative { out.append(UInt8(ascii: "-")) }
        if k <= n && n <= 21 {
            out.append(contentsOf: digits)
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: n - k))
        } else if 0 < n && n <= 21 {
            out.append(contentsOf: digits[0..<n])
            out.append(UInt8(ascii: "."))
            out.append(contentsOf: digits[n...])
        } else if -6 < n && n <= 0 {
            out.append(UInt8(ascii: "0"))
            out.append(UInt8(ascii: "."))
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: -n))
            out.append(contentsOf: digits)
        } else {
            out.append(digits[0])
            if k > 1 {
                out.append(UInt8(ascii: "."))
                out.append(contentsOf: digits[1...])
            }
            out.append(UInt8(ascii: "e"))
            let e = n - 1
            out.append(e < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
            out.append(contentsOf: String(e < 0 ? -e : e).utf8)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// For a finite positive `x`, returns the shortest round-trip decimal digits `s` (no leading or
    /// trailing zeros) and the exponent `n` such that x = 0.s × 10^n.
    static func shortestDigits(_ x: Double) -> (digits: [UInt8], n: Int) {
        let text = Array(x.description.utf8)  // e.g. "100.0", "1.2e-07", "5e-324", "1.7976931348623157e+308"
        var digits: [UInt8] = []
        digits.reserveCapacity(24)
        var pointIndex: Int?
        var exponent = 0
        var i = 0
        while i < text.count {
            let c = text[i]
            if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                exponent = Int(String(decoding: text[(i + 1)...], as: UTF8.self)) ?? 0
                break
            } else if c == UInt8(ascii: ".") {
                pointIndex = digits.count
            } else if c >= 0x30 && c <= 0x39 {
                digits.append(c)
            }
            i += 1
        }
        var n = (pointIndex ?? digits.count) + exponent
        var lead = 0
        while lead < digits.count - 1 && digits[lead] == UInt8(ascii: "0") { lead += 1; n -= 1 }
        var end = digits.count
        while end > lead + 1 && digits[end - 1] == UInt8(ascii: "0") { end -= 1 }
        return (Array(digits[lead..<end]), n)
    }
}
