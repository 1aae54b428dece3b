// FastCGIRequestParser on arbitrary bytes, fed in chunks whose sizes come from the input itself: never traps;
// the same bytes fed whole or in chunks give the same events (or the same failure).
@testable import RunfeedCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let chunk = Int(data[0]) + 1
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))

    var whole = FastCGIRequestParser()
    let wholeResult: Result<[FastCGIRequestParser.Event], FastCGIRequestParser.Failure>
    do { wholeResult = .success(try whole.feed(bytes)) } catch { wholeResult = .failure(error) }

    var parts = FastCGIRequestParser()
    var events: [FastCGIRequestParser.Event] = []
    var failure: FastCGIRequestParser.Failure?
    var i = 0
    while i < bytes.count {
        let end = min(i + chunk, bytes.count)
        do { events += try parts.feed(bytes[i..<end]) } catch { failure = error; break }
        i = end
    }
    switch wholeResult {
    case .success(let e):
        precondition(failure == nil && e == events, "chunked feeding changed the events")
    case .failure(let f):
        // The chunked parser fails the same way, possibly after handing out the events before the bad record.
        precondition(failure == f, "chunked feeding changed the failure: \(f) vs \(String(describing: failure))")
    }
    return 0
}
