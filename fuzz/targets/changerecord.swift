// ChangeRecord.parse on arbitrary bytes; a parsed record must survive json() → parse unchanged.
@testable import RunfeedCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let s = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let r = ChangeRecord.parse(s) {
        precondition(!r.runId.isEmpty)
        let j = r.json()
        guard let back = ChangeRecord.parse(j), back == r else {
            preconditionFailure("round trip: \(String(reflecting: r)) -> \(j) -> \(String(reflecting: ChangeRecord.parse(j)))")
        }
    }
    _ = Channels.envId(fromChannel: s)
    return 0
}
