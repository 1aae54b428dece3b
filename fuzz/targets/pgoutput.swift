// ReplicationFrame.parse, PGOutputMessage.parse and the ChangeCapture state machine on arbitrary bytes.
// The input is a sequence of chunks, each `<u16 big-endian length><bytes>`: every chunk is parsed as a frame and
// as a bare pgoutput message (what parses must re-encode to the same message), and fed to a ChangeCapture, which
// publishes part of its backlog after each chunk (the chunk's last byte says how much).
@testable import RunfeedCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var capture = ChangeCapture(settings: ChangeCaptureSettings(maxBacklog: 64))
    var i = 0
    var lastConfirmed = capture.confirmed
    while i + 2 <= bytes.count {
        let n = Int(bytes[i]) << 8 | Int(bytes[i + 1])
        i += 2
        let chunk = Array(bytes[i..<min(bytes.count, i + n)])
        i += n
        if let m = try? PGOutputMessage.parse(chunk) {
            if case .other = m {} else {
                let again = try? PGOutputMessage.parse(PGOutputEncoder.encode(m))
                precondition(again == m, "pgoutput round trip: \(m)")
            }
        }
        if let f = try? ReplicationFrame.parse(chunk), case .keepalive(let end, let t, let reply) = f {
            let again = try? ReplicationFrame.parse(PGOutputEncoder.keepalive(end: end, sendTimeUs: t, replyRequested: reply))
            precondition(again == f, "keepalive round trip")
        }
        try? capture.receive(frame: chunk)
        let pending = capture.pending(max: Int.max)
        precondition(pending.count == capture.backlog, "backlog \(capture.backlog) vs \(pending.count) pending")
        if let last = chunk.last { capture.published(Int(last) % (pending.count + 1)) }
        precondition(capture.confirmed >= lastConfirmed, "confirmed went back")
        lastConfirmed = capture.confirmed
        for r in pending { precondition(ChangeRecord.parse(r.json()) == r, "record round trip") }
        _ = capture.statusUpdate(nowUs: 0, clockUs: 0)
    }
    return 0
}
