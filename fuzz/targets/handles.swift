// Offset.parse, ListHandle.parse, FeedQuery.isValidHandle, Route.match and the shared working-set entry
// codec (ListViewCodec) on arbitrary bytes.
@testable import RunfeedCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let s = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let o = Offset.parse(s) {
        precondition(o.updatedAtMs >= 0 && o.tail >= 0)
        precondition(Offset.parse(o.text) == o, "offset round trip")
        // A token is exactly 20 digits at the end; without one the offset reads as before.
        let tailDigits = o.text.utf8.split(separator: UInt8(ascii: "_"))[1].count
        precondition((o.token != nil) == (tailDigits > 19), "a token is exactly the last 20 of 21…39 tail digits")
        if case .digest(let d) = RunClientView(o) { precondition(o.token == (d ?? 0)) }
    }
    if let v = ListViewCodec.decode(s) {
        precondition(ListViewCodec.decode(ListViewCodec.encode(v)) == v, "view entry round trip")
    }
    if let h = ListHandle.parse(s) {
        precondition(ListHandle.isValidNonce(h.nonce))
        precondition(ListHandle.parse(h.text) == h, "handle round trip")
    }
    if FeedQuery.isValidHandle(s) {
        precondition(!s.isEmpty && s.utf8.count <= FeedQuery.maxHandleLength)
    }
    switch Route.match(path: s) {
    case .run(let id)?, .batch(let id)?:
        precondition(!id.isEmpty && id.utf8.count <= 128 && !id.contains("/"))
    case .tagFeed?, nil:
        break
    }
    return 0
}
