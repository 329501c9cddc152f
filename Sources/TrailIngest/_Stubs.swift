// Temporary until the OTLP response encoders land.
public enum OTLPSignal: Sendable { case traces, logs }
public enum OTLPResponse {
    public static func success(signal: OTLPSignal, rejected: Int64, message: String?, json: Bool) -> [UInt8] { json ? Array("{}".utf8) : [] }
    public static func status(httpStatus: Int, message: String, json: Bool) -> [UInt8] { Array(message.utf8) }
}
import TrailCore
struct OTLPLogsProtobufParser { func parse(_ i: [UInt8]) -> [ParseResult] { [] } }
struct OTLPLogsJSONParser { func parse(_ i: [UInt8]) -> [ParseResult] { [] } }
public final class IngestMetrics: @unchecked Sendable {
    public init(insecure: Bool = false) {}
    func countRequest(endpoint: String, status: Int) {}
    func countRecords(source: String, format: String, received: Int, stored: Int, rejected: Int) {}
    func setQueueDepth(_ n: Int) {}
    func setStoreSize(_ n: Int64) {}
    public func observeBatch(seconds: Double) {}
    func render() -> String { "" }
}
