// JSNumber.format: for every finite double (the first 8 input bytes, little-endian bit pattern),
// Double(format(x)) == x.
@testable import RunfeedCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var bits: UInt64 = 0
    for i in 0..<min(size, 8) { bits |= UInt64(data[i]) << (8 * UInt64(i)) }
    let x = Double(bitPattern: bits)
    let s = JSNumber.format(x)
    if x.isFinite {
        guard let back = Double(s), back == x else { preconditionFailure("format(\(x)) = \(s) does not round-trip") }
    }
    // Also the text form: any decimal the fuzzer writes that Swift parses.
    if size > 8, let y = Double(String(decoding: UnsafeBufferPointer(start: data + 8, count: size - 8), as: UTF8.self)),
       y.isFinite {
        precondition(Double(JSNumber.format(y)) == y, "format(\(y)) = \(JSNumber.format(y))")
    }
    return 0
}
