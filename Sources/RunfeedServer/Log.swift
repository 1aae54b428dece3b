#if canImport(Glibc)
import Glibc
#endif
import Logging
import RunfeedCore
import RunfeedIO

public enum LogLevel: String, Sendable, Comparable {
    case trace, debug, info, warning, error

    var swiftLog: Logging.Logger.Level {
        switch self {
        case .trace: return .trace
        case .debug: return .debug
        case .info: return .info
        case .warning: return .warning
        case .error: return .error
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.swiftLog < b.swiftLog }
}

public enum LogFormat: String, Sendable {
    case text, json
}

/// One line per event on stderr, through swift-log: `<time> <level> pid=<pid> <message> key=value…`,
/// or one JSON object per line with `RUNFEED_LOG_FORMAT=json`.
public final class RunfeedLogger: Sendable {
    public let level: LogLevel
    private let logger: Logging.Logger

    public init(level: LogLevel, format: LogFormat = .text) {
        self.level = level
        var l = Logging.Logger(label: "runfeed") { label in LineLogHandler(label: label, format: format) }
        l.logLevel = level.swiftLog
        logger = l
    }

    public func log(_ l: LogLevel, _ message: @autoclosure () -> String, _ metadata: Logging.Logger.Metadata? = nil) {
        guard l >= level else { return }
        logger.log(level: l.swiftLog, "\(message())", metadata: metadata)
    }

    public func debug(_ m: @autoclosure () -> String) { log(.debug, m()) }
    public func info(_ m: @autoclosure () -> String) { log(.info, m()) }
    public func warning(_ m: @autoclosure () -> String) { log(.warning, m()) }
    public func error(_ m: @autoclosure () -> String) { log(.error, m()) }
}

/// Writes each record as one line with a single `write(2)`, so lines of concurrent threads never mix.
struct LineLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logging.Logger.Level = .info
    var metadata: Logging.Logger.Metadata = [:]

    init(label: String, format: LogFormat) {
        self.label = label
        self.format = format
    }

    subscript(metadataKey key: String) -> Logging.Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logging.Logger.Level, message: Logging.Logger.Message, metadata extra: Logging.Logger.Metadata?,
             source: String, file: String, function: String, line: UInt) {
        let all = metadata.merging(extra ?? [:]) { _, new in new }
        let ts = Self.timestamp()
        var text: String
        switch format {
        case .text:
            text = "\(ts) \(level) pid=\(getpid()) \(message)"
            for (k, v) in all.sorted(by: { $0.key < $1.key }) { text += " \(k)=\(v)" }
        case .json:
            text = "{\"ts\":\(JSONText.quote(ts)),\"level\":\(JSONText.quote(level.rawValue)),\"pid\":\(getpid()),\"msg\":\(JSONText.quote(message.description))"
            for (k, v) in all.sorted(by: { $0.key < $1.key }) { text += ",\(JSONText.quote(k)):\(JSONText.quote(v.description))" }
            text += "}"
        }
        var bytes = Array((text + "\n").utf8)
        _ = write(2, &bytes, bytes.count)
    }

    static func timestamp() -> String { PGText.epochMsToISO8601(wallMs()) }
}
