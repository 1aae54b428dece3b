// PGText.parseArray / encodeArray, PGText.compactJSON, PGText.parseTimestamp and JSONValue.parse on arbitrary bytes.
@testable import RunfeedCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let s = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let elems = PGText.parseArray(s) {
        let lit = PGText.encodeArray(elems)
        guard PGText.parseArray(lit) == elems else {
            preconditionFailure("array round trip: \(String(reflecting: elems)) -> \(lit)")
        }
    }
    if let c = PGText.compactJSON(s) {
        precondition(PGText.compactJSON(c) == c, "compactJSON not idempotent: \(c)")
        precondition(JSONValue.parse(c) != nil, "compactJSON output does not parse: \(c)")
    }
    _ = JSONValue.parse(s)
    if PGText.parseTimestamp(s) != nil { _ = PGText.timestampToWire(s); _ = PGText.timestampToEpochMs(s) }
    return 0
}
