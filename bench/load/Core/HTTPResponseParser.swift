/// Incremental HTTP/1.1 response parser for the load generator: status line, headers, and a body
/// framed by Content-Length or chunked transfer coding. Bodies are counted, not kept: only the first
/// `prefixLimit` bytes are retained (enough to tag an nchan message). Pure: no I/O.
public struct HTTPResponse: Equatable {
    public var status: Int = 0
    /// The headers the generator reads (lower-cased names); only the last value of a repeated one is kept.
    public var headers: [String: String] = [:]
    public var bodyBytes: Int = 0
    public var bodyPrefix: [UInt8] = []
    public var keepAlive = true

    public init() {}
}

public enum HTTPParseError: Error, CustomStringConvertible {
    case headTooLarge, badStatusLine, badChunkSize, badFraming

    public var description: String {
        switch self {
        case .headTooLarge: return "response head over 64 KB"
        case .badStatusLine: return "bad status line"
        case .badChunkSize: return "bad chunk size"
        case .badFraming: return "body without Content-Length or chunked coding"
        }
    }
}

public struct HTTPResponseParser {
    public static let headLimit = 64 * 1024
    public var prefixLimit = 64

    private enum State {
        case head
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd   // the CRLF after a chunk's data
        case trailers
    }

    private var state = State.head
    private var line: [UInt8] = []     // head bytes or the current chunk-size/trailer line
    private var current = HTTPResponse()
    /// True for a response to HEAD or a status without a body (1xx, 204, 304).
    public var expectNoBody = false

    public init(prefixLimit: Int = 64) { self.prefixLimit = prefixLimit }

    /// Feeds bytes; calls `onResponse` for every response completed by them.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ onResponse: (HTTPResponse) -> Void) throws {
        var i = 0
        let n = bytes.count
        while i < n {
            switch state {
            case .head:
                // Accumulate until CRLFCRLF.
                while i < n {
                    line.append(bytes[i]); i += 1
                    let c = line.count
                    if c >= 4 && line[c - 1] == 10 && line[c - 2] == 13 && line[c - 3] == 10 && line[c - 4] == 13 {
                        try parseHead()
                        line.removeAll(keepingCapacity: true)
                        if case .head = state { onResponse(finish()) }
                        break
                    }
                    if c > Self.headLimit { throw HTTPParseError.headTooLarge }
                }
            case .fixed(let remaining):
                let take = min(remaining, n - i)
                absorb(bytes, from: i, count: take)
                i += take
                if remaining - take == 0 {
                    state = .head
                    onResponse(finish())
                } else {
                    state = .fixed(remaining: remaining - take)
                }
            case .chunkSize, .trailers:
                while i < n {
                    let b = bytes[i]; i += 1
                    if b == 10 {
                        let text = String(decoding: line, as: UTF8.self).trimmingCR()
                        line.removeAll(keepingCapacity: true)
                        if case .trailers = state {
                            if text.isEmpty { state = .head; onResponse(finish()) }
                        } else {
                            let sizeText = text.split(separator: ";", maxSplits: 1).first.map(String.init) ?? ""
                            guard let size = Int(sizeText.trimmingSpaces(), radix: 16), size >= 0 else {
                                throw HTTPParseError.badChunkSize
                            }
                            state = size == 0 ? .trailers : .chunkData(remaining: size)
                        }
                        break
                    }
                    line.append(b)
                    if line.count > 4096 { throw HTTPParseError.badChunkSize }
                }
            case .chunkData(let remaining):
                let take = min(remaining, n - i)
                absorb(bytes, from: i, count: take)
                i += take
                state = remaining - take == 0 ? .chunkDataEnd : .chunkData(remaining: remaining - take)
            case .chunkDataEnd:
                // CR then LF; tolerate the two arriving in separate reads.
                let b = bytes[i]; i += 1
                if b == 10 { state = .chunkSize }
            }
        }
    }

    private mutating func absorb(_ bytes: UnsafeRawBufferPointer, from: Int, count: Int) {
        current.bodyBytes += count
        let room = prefixLimit - current.bodyPrefix.count
        if room > 0 {
            let k = min(room, count)
            current.bodyPrefix.append(contentsOf: bytes[from..<(from + k)])
        }
    }

    private mutating func finish() -> HTTPResponse {
        let r = current
        current = HTTPResponse()
        expectNoBody = false
        return r
    }

    /// Header names the generator reads; every other header is skipped without building a String.
    private static let wanted: [[UInt8]] = ["content-length", "transfer-encoding", "connection", "electric-handle",
                                            "electric-offset", "electric-cursor", "last-modified", "etag"].map { Array($0.utf8) }

    private mutating func parseHead() throws {
        try line.withUnsafeBufferPointer { buf in
            let n = buf.count
            // Status line: HTTP/1.x SP code SP reason CRLF
            guard n >= 12, buf[0] == 72, buf[4] == 47, buf[5] == 49, buf[6] == 46, buf[8] == 32 else {
                throw HTTPParseError.badStatusLine
            }
            var code = 0
            for k in 9..<12 {
                let d = Int(buf[k]) - 48
                guard d >= 0 && d <= 9 else { throw HTTPParseError.badStatusLine }
                code = code * 10 + d
            }
            current.status = code
            current.keepAlive = buf[7] == 49
            var i = 12
            while i < n && buf[i] != 10 { i += 1 }
            i += 1
            while i < n {
                var end = i
                while end < n && buf[end] != 10 { end += 1 }
                var lineEnd = end
                if lineEnd > i && buf[lineEnd - 1] == 13 { lineEnd -= 1 }
                if lineEnd > i, let colon = (i..<lineEnd).first(where: { buf[$0] == 58 }) {
                    for name in Self.wanted where name.count == colon - i {
                        var same = true
                        for k in 0..<name.count {
                            var c = buf[i + k]
                            if c >= 65 && c <= 90 { c += 32 }
                            if c != name[k] { same = false; break }
                        }
                        if same {
                            var v = colon + 1
                            while v < lineEnd && (buf[v] == 32 || buf[v] == 9) { v += 1 }
                            var e = lineEnd
                            while e > v && (buf[e - 1] == 32 || buf[e - 1] == 9) { e -= 1 }
                            current.headers[String(decoding: name, as: UTF8.self)] =
                                String(decoding: UnsafeBufferPointer(rebasing: buf[v..<e]), as: UTF8.self)
                            break
                        }
                    }
                }
                i = end + 1
            }
        }
        if let c = current.headers["connection"]?.lowercased() {
            if c.contains("close") { current.keepAlive = false }
            if c.contains("keep-alive") { current.keepAlive = true }
        }
        let status = current.status
        let noBody = expectNoBody || status / 100 == 1 || status == 204 || status == 304
        if noBody {
            state = .head
        } else if current.headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            state = .chunkSize
        } else if let len = current.headers["content-length"].flatMap({ Int($0) }), len >= 0 {
            state = len == 0 ? .head : .fixed(remaining: len)
        } else {
            throw HTTPParseError.badFraming
        }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }

    func trimmingCR() -> String {
        hasSuffix("\r") ? String(dropLast()) : self
    }
}
