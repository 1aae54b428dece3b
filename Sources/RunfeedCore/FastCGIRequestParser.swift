// Reading FastCGI requests from a byte stream (the responder side of the protocol, as nginx speaks it):
// BEGIN_REQUEST (role, keep-connection flag), the PARAMS stream of name-value pairs, the STDIN stream (read
// and dropped: runfeed serves GET), ABORT_REQUEST, and management records (GET_VALUES). Pure: the event loop
// feeds it whatever a non-blocking read returned and acts on the events; a kept connection carries one
// request after another through the same parser.

public enum FastCGIRecordType {
    public static let beginRequest: UInt8 = 1
    public static let abortRequest: UInt8 = 2
    public static let endRequest: UInt8 = 3
    public static let params: UInt8 = 4
    public static let stdin: UInt8 = 5
    public static let stdout: UInt8 = 6
    public static let stderr: UInt8 = 7
    public static let data: UInt8 = 8
    public static let getValues: UInt8 = 9
    public static let getValuesResult: UInt8 = 10
    public static let unknownType: UInt8 = 11
}

public struct FastCGIRequestParser: Sendable {
    public enum Event: Sendable, Equatable {
        /// A complete request: its params and the end of its stdin have arrived.
        case request(id: UInt16, keepConnection: Bool, params: [String: String])
        /// The web server abandoned request `id`.
        case abort(id: UInt16)
        /// A management query (request id 0): answer with `FastCGIRecords.getValuesResult`.
        case getValues([String])
        /// A management record of a type this side does not know: answer `FCGI_UNKNOWN_TYPE`.
        case unknownManagementType(UInt8)
    }

    public enum Failure: Error, Sendable, Equatable {
        case badVersion(UInt8)
        /// Only the responder role is served.
        case unsupportedRole(UInt16)
        /// A record for a request that was not begun, or a second request while one is open (no multiplexing).
        case unexpectedRecord(type: UInt8, id: UInt16)
        case paramsTooLarge
        case stdinTooLarge
        case malformedParams
    }

    /// Limits: nginx sends a few KB of params (its header buffers bound them), a direct client may send a long
    /// query string (answered 400 by the routes, not cut off here); a body is never needed (runfeed answers GET,
    /// HEAD, OPTIONS).
    public static let maxParamsBytes = 1 << 20
    public static let maxStdinBytes = 1 << 20

    private var buffer: [UInt8] = []
    private var offset = 0
    /// The open request: id, keep-connection flag, params so far.
    private var current: (id: UInt16, keep: Bool)?
    private var params: [UInt8] = []
    private var paramsDone = false
    private var stdinBytes = 0
    private var stdinDone = false

    public init() {}

    /// True while a request has begun and not been handed out (bytes of it may be pending).
    public var inRequest: Bool { current != nil }

    /// No bytes are buffered: the stream is between records.
    public var isIdle: Bool { current == nil && offset == buffer.count }

    /// Consumes bytes; returns the events they complete. A failure means the connection must be closed.
    public mutating func feed<C: Collection>(_ bytes: C) throws(Failure) -> [Event] where C.Element == UInt8 {
        buffer.append(contentsOf: bytes)
        var events: [Event] = []
        while buffer.count - offset >= 8 {
            let version = buffer[offset]
            guard version == 1 else { throw .badVersion(version) }
            let type = buffer[offset + 1]
            let id = UInt16(buffer[offset + 2]) << 8 | UInt16(buffer[offset + 3])
            let length = Int(buffer[offset + 4]) << 8 | Int(buffer[offset + 5])
            let padding = Int(buffer[offset + 6])
            let total = 8 + length + padding
            guard buffer.count - offset >= total else { break }
            let start = offset + 8
            let content = buffer[start..<(start + length)]
            offset += total
            if let e = try record(type: type, id: id, content: content) { events.append(e) }
        }
        if offset == buffer.count {
            // Everything read was consumed: drop the buffer (thousands of connections wait between requests).
            buffer = []
            offset = 0
        } else if offset > 64 * 1024 {
            buffer.removeFirst(offset)
            offset = 0
        }
        return events
    }

    private mutating func record(type: UInt8, id: UInt16, content: ArraySlice<UInt8>) throws(Failure) -> Event? {
        if id == 0 {
            // Management records.
            if type == FastCGIRecordType.getValues {
                guard let pairs = Self.nameValuePairs(content) else { throw .malformedParams }
                return .getValues(pairs.map(\.0))
            }
            return .unknownManagementType(type)
        }
        switch type {
        case FastCGIRecordType.beginRequest:
            guard current == nil else { throw .unexpectedRecord(type: type, id: id) }
            guard content.count >= 8 else { throw .unexpectedRecord(type: type, id: id) }
            let b = Array(content)
            let role = UInt16(b[0]) << 8 | UInt16(b[1])
            guard role == 1 else { throw .unsupportedRole(role) }
            current = (id, b[2] & 1 != 0)
            params.removeAll(keepingCapacity: true)
            paramsDone = false
            stdinBytes = 0
            stdinDone = false
            return nil
        case FastCGIRecordType.params:
            guard let c = current, c.id == id, !paramsDone else { throw .unexpectedRecord(type: type, id: id) }
            if content.isEmpty {
                paramsDone = true
                return try completeIfReady()
            }
            guard params.count + content.count <= Self.maxParamsBytes else { throw .paramsTooLarge }
            params.append(contentsOf: content)
            return nil
        case FastCGIRecordType.stdin, FastCGIRecordType.data:
            guard let c = current, c.id == id else { throw .unexpectedRecord(type: type, id: id) }
            if type == FastCGIRecordType.data { return nil }
            guard !stdinDone else { throw .unexpectedRecord(type: type, id: id) }
            if content.isEmpty {
                stdinDone = true
                return try completeIfReady()
            }
            stdinBytes += content.count
            guard stdinBytes <= Self.maxStdinBytes else { throw .stdinTooLarge }
            return nil
        case FastCGIRecordType.abortRequest:
            guard let c = current, c.id == id else { return nil }  // already answered: nothing to abort
            current = nil
            return .abort(id: id)
        default:
            throw .unexpectedRecord(type: type, id: id)
        }
    }

    private mutating func completeIfReady() throws(Failure) -> Event? {
        guard let c = current, paramsDone, stdinDone else { return nil }
        guard let pairs = Self.nameValuePairs(params[...]) else { throw .malformedParams }
        var dict: [String: String] = [:]
        dict.reserveCapacity(pairs.count)
        for (k, v) in pairs { dict[k] = v }
        current = nil
        // Released, not kept: a connection then waits (held poll, idle keep-alive) without its request's bytes.
        params = []
        return .request(id: c.id, keepConnection: c.keep, params: dict)
    }

    /// FastCGI name-value pairs: each length is one byte (< 128) or four (high bit set, 31 bits).
    static func nameValuePairs(_ bytes: ArraySlice<UInt8>) -> [(String, String)]? {
        var out: [(String, String)] = []
        var i = bytes.startIndex
        func length() -> Int? {
            guard i < bytes.endIndex else { return nil }
            if bytes[i] & 0x80 == 0 {
                defer { i += 1 }
                return Int(bytes[i])
            }
            guard bytes.endIndex - i >= 4 else { return nil }
            let n = Int(bytes[i] & 0x7f) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            i += 4
            return n
        }
        while i < bytes.endIndex {
            guard let nl = length(), let vl = length(), nl <= bytes.endIndex - i, vl <= bytes.endIndex - i - nl else { return nil }
            let name = String(decoding: bytes[i..<(i + nl)], as: UTF8.self)
            let value = String(decoding: bytes[(i + nl)..<(i + nl + vl)], as: UTF8.self)
            i += nl + vl
            out.append((name, value))
        }
        return out
    }
}
