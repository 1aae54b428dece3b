/// A plain Redis reply tree (built from hiredis replies by RunfeedIO).
public indirect enum RedisReply: Sendable, Equatable {
    case string(String)
    case status(String)
    case error(String)
    case integer(Int64)
    case array([RedisReply])
    case null

    public var stringValue: String? {
        switch self {
        case .string(let s), .status(let s): return s
        default: return nil
        }
    }

    public var intValue: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }
}
