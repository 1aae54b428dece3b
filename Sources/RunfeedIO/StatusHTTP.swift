import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A tiny HTTP/1.0 responder on the event loop for operators: metrics and health on their own
/// address (never exposed through the public nginx location). One request per connection.
public final class StatusHTTPServer {
    public typealias Handler = (_ method: String, _ path: String, _ respond: @escaping (Int, String, String) -> Void) -> Void

    private let loop: EventLoop
    private let fd: Int32
    private let handler: Handler
    /// Answers are written by the same writer as the feeds' (a reader that stalls is dropped after its timeout).
    private let writer: ResponseWriter
    private var clients: [Int32: Client] = [:]

    private final class Client {
        var input: [UInt8] = []
        var answered = false
    }

    /// A scraper that takes nothing of its answer for this long is disconnected.
    static let writeTimeoutMs: Int64 = 10_000

    /// Listens on `host:port` (IPv4).
    public init(loop: EventLoop, address: String, handler: @escaping Handler) throws {
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
            throw IOError("metrics address must be host:port, got \(address)")
        }
        let host = String(address[..<colon])
        self.loop = loop
        self.handler = handler
        writer = ResponseWriter(loop: loop, timeoutMs: Self.writeTimeoutMs)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError("socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        // A worker replacing another (rolling restart) binds the same address while the old one drains.
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host.isEmpty ? "127.0.0.1" : host, &sa.sin_addr) == 1 else {
            close(fd)
            throw IOError("metrics address: bad IPv4 host \(host)")
        }
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 128) == 0 else {
            let e = errno
            close(fd)
            throw IOError("cannot listen on \(address): errno \(e)")
        }
    }

    /// Starts accepting; call on the loop thread.
    public func start() {
        loop.watch(fd: fd, events: EV_IN) { [weak self] _ in self?.acceptAll() }
    }

    private func acceptAll() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { return }
            _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            if clients.count >= 64 {
                close(c)
                continue
            }
            clients[c] = Client()
            loop.watch(fd: c, events: EV_IN | EV_RDHUP) { [weak self] ev in self?.readable(c, ev) }
        }
    }

    private func readable(_ c: Int32, _ events: UInt32) {
        guard let client = clients[c] else { return }
        if client.answered {
            // More input or EOF while the answer is being built: nothing more is read.
            loop.mute(fd: c)
            return
        }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(c, &buf, buf.count)
        if n <= 0 {
            if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) { drop(c) }
            return
        }
        client.input.append(contentsOf: buf[0..<n])
        if client.input.count > 16_384 {
            drop(c)
            return
        }
        guard let end = findHeaderEnd(client.input) else { return }
        let head = String(decoding: client.input[0..<end], as: UTF8.self)
        let parts = head.split(separator: " ", maxSplits: 2)
        let method = parts.first.map(String.init) ?? "GET"
        let target = parts.count > 1 ? String(parts[1]) : "/"
        let path = String(target.split(separator: "?", maxSplits: 1).first ?? "/")
        client.answered = true
        handler(method, path) { [weak self] status, contentType, body in
            guard let self, self.clients.removeValue(forKey: c) != nil else { return }
            let reason = status == 200 ? "OK" : (status == 404 ? "Not Found" : (status == 503 ? "Service Unavailable" : "Error"))
            let bytes = Array(body.utf8)
            let header = "HTTP/1.0 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(bytes.count)\r\nConnection: close\r\n\r\n"
            // Written, then closed (one request per connection); the writer closes it itself when the peer is gone.
            self.writer.send(fd: c, Array(header.utf8) + bytes) { [writer = self.writer] ok in
                if ok { writer.closeConnection(c) }
            }
        }
    }

    private func drop(_ c: Int32) {
        loop.unwatch(fd: c)
        clients.removeValue(forKey: c)
        close(c)
    }

    private func findHeaderEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 {
            return i
        }
        return nil
    }
}
