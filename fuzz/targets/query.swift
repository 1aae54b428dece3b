// FeedQuery.parse(queryString:) and QueryString.decode on arbitrary bytes.
@testable import RunfeedCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let s = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let pairs = QueryString.decode(s)
    // Every decoded pair came from a non-empty `&` piece.
    precondition(pairs.count <= s.utf8.count)
    switch FeedQuery.parse(queryString: s) {
    case .success(let q):
        if q.live { precondition(q.handle != nil && q.offset != .snapshot) }
        if let h = q.handle { precondition(FeedQuery.isValidHandle(h)) }
    case .failure(let e):
        _ = e
    }
    return 0
}
