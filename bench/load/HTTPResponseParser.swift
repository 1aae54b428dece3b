/// Incremental HTTP/1.1 response parser for the load generator: status line, headers, and a body
/// framed by Content-Length or chunked transfer coding. Bodies are counted, not kept: only the first
/// `prefixLimit` bytes are retained (enough to tag an nchan message). Pure: no I/O.
struct HTTPResponse {
    var status: Int = 0
    /// Lower-cased names; only the last value of a repeated header is kept.
    var headers: [String: String] = [:]
    var bodyBytes: Int = 0
    var bodyPrefix: [UInt8] = []
    var keepAlive = true
}

enum HTTPParseError: Error, CustomStringConvertible {
    case headTooLarge, badStatusLine, badChunkSize, badFraming

    var description: String {
        switch self {
        case .headTooLarge: return "response head over 64 KB"
        case .badStatusLine: return "bad status line"
        case .badChunkSize: return "bad chunk size"
        case .badFraming: return "body without Content-Length or chunked coding"
        }
    }
}

struct HTTPResponseParser {
    static let headLimit = 64 * 1024
    var prefixLimit = 64

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
    var expectNoBody = false

    init(prefixLimit: Int = 64) { self.prefixLimit = prefixLimit }

    /// Feeds bytes; calls `onResponse` for every response completed by them.
    mutating func feed(_ bytes: UnsafeRawBufferPointer, _ onResponse: (HTTPResponse) -> Void) throws {
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

    private mutating func parseHead() throws {
        let text = String(decoding: line, as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: true)
        guard !lines.isEmpty else { throw HTTPParseError.badStatusLine }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw HTTPParseError.badStatusLine
        }
        current.status = status
        current.keepAlive = parts[0] == "HTTP/1.1"
        for l in lines {
            guard let colon = l.firstIndex(of: ":") else { continue }
            let name = l[..<colon].lowercased()
            let value = String(l[l.index(after: colon)...]).trimmingSpaces()
            current.headers[name] = value
        }
        if let c = current.headers["connection"]?.lowercased() {
            if c.contains("close") { current.keepAlive = false }
            if c.contains("keep-alive") { current.keepAlive = true }
        }
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
