/// FastCGI record framing for a responder's answer (FastCGI 1.0 §3.3, §5.3, §5.5): the CGI response as
/// STDOUT records of at most 65,535 bytes each, padded to a multiple of 8, an empty STDOUT record, and
/// END_REQUEST with application status 0 and FCGI_REQUEST_COMPLETE.
public enum FastCGIRecords {
    static let version: UInt8 = 1
    static let stdout: UInt8 = 6
    static let endRequest: UInt8 = 3
    static let maxContent = 65_535

    public static func response(requestId: UInt16, stdout body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(body.count + (body.count / maxContent + 3) * 16)
        var start = 0
        while start < body.count {
            let end = min(start + maxContent, body.count)
            append(&out, type: stdout, requestId: requestId, content: body[start..<end])
            start = end
        }
        append(&out, type: stdout, requestId: requestId, content: [])
        // appStatus (4 bytes, big-endian) = 0, protocolStatus = FCGI_REQUEST_COMPLETE (0), 3 reserved.
        append(&out, type: endRequest, requestId: requestId, content: [0, 0, 0, 0, 0, 0, 0, 0])
        return out
    }

    static func append<C: Collection>(_ out: inout [UInt8], type: UInt8, requestId: UInt16, content: C) where C.Element == UInt8 {
        let length = content.count
        let padding = (8 - length % 8) % 8
        out += [version, type, UInt8(requestId >> 8), UInt8(requestId & 0xff),
                UInt8(length >> 8), UInt8(length & 0xff), UInt8(padding), 0]
        out += content
        out += repeatElement(0, count: padding)
    }
}
