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

    /// `response(requestId:stdout:)` of `head` followed by `body` (the CGI header block and the content), copied
    /// once into the records: a large answer is not first concatenated and converted to bytes.
    public static func response(requestId: UInt16, head: String, body: String) -> [UInt8] {
        var head = head
        var body = body
        return head.withUTF8 { h in
            body.withUTF8 { b in
                let total = h.count + b.count
                let records = (total + maxContent - 1) / maxContent
                let capacity = total + records * 15 + 16 + 16
                return [UInt8](unsafeUninitializedCapacity: capacity) { out, count in
                    var at = 0
                    func header(_ type: UInt8, _ length: Int, _ padding: Int) {
                        out[at] = version; out[at + 1] = type
                        out[at + 2] = UInt8(requestId >> 8); out[at + 3] = UInt8(requestId & 0xff)
                        out[at + 4] = UInt8(length >> 8); out[at + 5] = UInt8(length & 0xff)
                        out[at + 6] = UInt8(padding); out[at + 7] = 0
                        at += 8
                    }
                    // Copies `n` bytes of the logical stream head + body starting at `from`.
                    func copy(from: Int, _ n: Int) {
                        var from = from, n = n
                        while n > 0 {
                            let (src, offset) = from < h.count ? (UnsafeRawBufferPointer(h), from) : (UnsafeRawBufferPointer(b), from - h.count)
                            let take = min(n, src.count - offset)
                            UnsafeMutableRawPointer(out.baseAddress! + at).copyMemory(from: src.baseAddress! + offset, byteCount: take)
                            at += take; from += take; n -= take
                        }
                    }
                    var start = 0
                    while start < total {
                        let length = min(maxContent, total - start)
                        let padding = (8 - length % 8) % 8
                        header(stdout, length, padding)
                        copy(from: start, length)
                        for _ in 0..<padding { out[at] = 0; at += 1 }
                        start += length
                    }
                    header(stdout, 0, 0)
                    header(endRequest, 8, 0)
                    for _ in 0..<8 { out[at] = 0; at += 1 }
                    count = at
                }
            }
        }
    }

    /// The answer to a GET_VALUES management record: the values this side knows, as name-value pairs.
    public static func getValuesResult(_ values: [(String, String)]) -> [UInt8] {
        var body: [UInt8] = []
        for (k, v) in values {
            for part in [k, v] {
                let n = part.utf8.count
                if n < 128 { body.append(UInt8(n)) } else {
                    body += [UInt8(n >> 24 & 0x7f) | 0x80, UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)]
                }
            }
            body += Array(k.utf8) + Array(v.utf8)
        }
        var out: [UInt8] = []
        append(&out, type: FastCGIRecordType.getValuesResult, requestId: 0, content: body)
        return out
    }

    /// The answer to a management record of an unknown type.
    public static func unknownType(_ type: UInt8) -> [UInt8] {
        var out: [UInt8] = []
        append(&out, type: FastCGIRecordType.unknownType, requestId: 0, content: [type, 0, 0, 0, 0, 0, 0, 0])
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
