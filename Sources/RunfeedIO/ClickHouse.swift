import CCurl
import RunfeedCore
#if canImport(Glibc)
import Glibc
#endif

public struct ClickHouseError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// HTTP status from ClickHouse (0: no answer — connection refused, timeout…).
    public var status: Int
}

/// Call once, before any thread starts (libcurl's global init is not thread-safe).
public func initializeCurl() {
    curl_global_init(Int(CURL_GLOBAL_DEFAULT))
}

private final class ResponseBuffer {
    var bytes: [UInt8] = []
    let limit: Int
    init(limit: Int) { self.limit = limit }
}

/// One keep-alive HTTP connection to ClickHouse (a libcurl easy handle), used by one thread at a time.
/// Queries are POSTed as the request body; ClickHouse reports errors as HTTP 4xx/5xx with a text body.
public final class ClickHouseConnection {
    private let handle: UnsafeMutableRawPointer
    private let url: String
    private let timeoutMs: Int
    private let maxResponseBytes: Int

    /// `url` is a `CLICKHOUSE_URL` as upstream writes it (see ClickHouseURL); one that does not parse is
    /// used verbatim.
    public convenience init(url: String, timeoutMs: Int, keepAlive: Bool = true, maxResponseBytes: Int = 64 << 20) {
        let endpoint = (try? ClickHouseURL.parse(url)) ?? ClickHouseURL(url: url, user: nil, password: nil, warnings: [])
        self.init(endpoint: endpoint, timeoutMs: timeoutMs, keepAlive: keepAlive, maxResponseBytes: maxResponseBytes)
    }

    public init(endpoint: ClickHouseURL, timeoutMs: Int, keepAlive: Bool = true, maxResponseBytes: Int = 64 << 20) {
        handle = curl_easy_init()
        self.url = endpoint.url
        if let user = endpoint.user {
            // Decoded credentials as HTTP basic auth (curl's default scheme).
            runfeed_curl_setopt_str(handle, CURLOPT_USERNAME, user)
            runfeed_curl_setopt_str(handle, CURLOPT_PASSWORD, endpoint.password ?? "")
        }
        self.timeoutMs = timeoutMs
        self.maxResponseBytes = maxResponseBytes
        runfeed_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        runfeed_curl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, keepAlive ? 1 : 0)
        runfeed_curl_setopt_long(handle, CURLOPT_FORBID_REUSE, keepAlive ? 0 : 1)
        runfeed_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, min(2000, timeoutMs))
        runfeed_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, timeoutMs)
        runfeed_curl_setopt_str(handle, CURLOPT_ACCEPT_ENCODING, "")
        runfeed_curl_setopt_writefn(handle) { ptr, size, count, userdata in
            let buffer = Unmanaged<ResponseBuffer>.fromOpaque(userdata!).takeUnretainedValue()
            let n = size * count
            if buffer.bytes.count + n > buffer.limit { return 0 }  // aborts the transfer
            if let ptr {
                buffer.bytes.append(contentsOf: UnsafeRawBufferPointer(start: ptr, count: n))
            }
            return n
        }
    }

    deinit { curl_easy_cleanup(handle) }

    /// Runs `sql` and returns the response body. Throws on transport errors and non-200 answers.
    public func query(_ sql: String) throws -> String {
        let buffer = ResponseBuffer(limit: maxResponseBytes)
        let box = Unmanaged.passRetained(buffer)
        defer { box.release() }
        runfeed_curl_setopt_str(handle, CURLOPT_URL, url)
        runfeed_curl_setopt_ptr(handle, CURLOPT_WRITEDATA, box.toOpaque())
        var body = Array(sql.utf8)
        let code: CURLcode = body.withUnsafeMutableBufferPointer { buf in
            runfeed_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, buf.count)
            runfeed_curl_setopt_ptr(handle, CURLOPT_POSTFIELDS, buf.baseAddress)
            let rc = curl_easy_perform(handle)
            runfeed_curl_setopt_ptr(handle, CURLOPT_POSTFIELDS, nil)
            return rc
        }
        body.removeAll()
        let text = String(decoding: buffer.bytes, as: UTF8.self)
        guard code == CURLE_OK else {
            throw ClickHouseError(description: "clickhouse: " + String(cString: curl_easy_strerror(code)), status: 0)
        }
        var status = 0
        runfeed_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        guard status == 200 else {
            let firstLine = text.split(separator: "\n").first.map(String.init) ?? ""
            throw ClickHouseError(description: "clickhouse HTTP \(status): \(firstLine.prefix(300))", status: status)
        }
        return text
    }
}

/// A few ClickHouse connections (a `BlockingPool`: each owned by its own OS thread); completions run on the
/// submitting event loop. Its queue is unbounded.
public final class ClickHousePool: Sendable {
    private let pool: BlockingPool<ClickHouseConnection>

    public init(endpoint: ClickHouseURL, size: Int, timeoutMs: Int, keepAlive: Bool) {
        pool = BlockingPool(name: "ch", threads: size) {
            ClickHouseConnection(endpoint: endpoint, timeoutMs: timeoutMs, keepAlive: keepAlive)
        }
    }

    /// Runs `sql`; `done` gets the response body (or the error) on `loop`.
    public func query(_ sql: String, on loop: EventLoop, _ done: @escaping (Result<String, ClickHouseError>) -> Void) {
        pool.submit(work: { conn in
            do {
                return .success(try conn.query(sql))
            } catch let e as ClickHouseError {
                return .failure(e)
            } catch {
                return .failure(ClickHouseError(description: "\(error)", status: 0))
            }
        }, on: loop, done: done)
    }
}
