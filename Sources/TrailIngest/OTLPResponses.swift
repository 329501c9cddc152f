import TrailCore

/// Which OTLP signal a response answers: `/v1/traces` or `/v1/logs`.
public enum OTLPSignal: Sendable, Hashable {
    case traces
    case logs
}

/// Encoders for OTLP/HTTP response bodies (formats.md §3.1), in protobuf or in OTLP/JSON. The response uses
/// the request's encoding: `json: true` for `application/json`, false for `application/x-protobuf`.
///
/// - 200: `ExportTraceServiceResponse` / `ExportLogsServiceResponse`. Field 1 is `partial_success`, an
///   `ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2 }` (logs:
///   `rejected_log_records`). Full success is the empty message: zero protobuf bytes, JSON `{}`.
///   A partial success (or a warning: `rejected == 0` with a message) is
///   `{"partialSuccess":{"rejectedSpans":"3","errorMessage":"..."}}` — int64 as a decimal string, proto3
///   default values (0, "") omitted.
/// - 4xx/5xx: `google.rpc.Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3 }`,
///   JSON `{"code":3,"message":"..."}`. `details` is never written.
public enum OTLPResponse {
    /// The body of a 200 response. `rejected` is the number of spans / log records dropped; with
    /// `rejected == 0` and no message the body is the empty message (full success).
    public static func success(signal: OTLPSignal, rejected: Int64, message: String?, json: Bool) -> [UInt8] {
        let message = message ?? ""
        let isFull = rejected == 0 && message.isEmpty
        if json {
            guard !isFull else { return Array("{}".utf8) }
            var members: [(String, JSONValue)] = []
            if rejected != 0 {
                let key = signal == .traces ? "rejectedSpans" : "rejectedLogRecords"
                members.append((key, .string(String(rejected))))
            }
            if !message.isEmpty { members.append(("errorMessage", .string(message))) }
            return Array(JSONValue.object([("partialSuccess", .object(members))]).serialized().utf8)
        }
        guard !isFull else { return [] }
        var partial = ProtobufWriter()
        if rejected != 0 { partial.varintField(1, UInt64(bitPattern: rejected)) }
        if !message.isEmpty { partial.stringField(2, message) }
        var response = ProtobufWriter()
        response.bytesField(1, partial.bytes)
        return response.bytes
    }

    /// The `google.rpc.Status` body of a 4xx/5xx response, with the gRPC code of ``grpcCode(httpStatus:)``.
    public static func status(httpStatus: Int, message: String, json: Bool) -> [UInt8] {
        let code = grpcCode(httpStatus: httpStatus)
        if json {
            var members: [(String, JSONValue)] = []
            if code != 0 { members.append(("code", .int(Int64(code)))) }
            if !message.isEmpty { members.append(("message", .string(message))) }
            return Array(JSONValue.object(members).serialized().utf8)
        }
        var status = ProtobufWriter()
        // int32 is encoded as a sign-extended varint; codes are never negative here.
        if code != 0 { status.varintField(1, UInt64(bitPattern: Int64(code))) }
        if !message.isEmpty { status.stringField(2, message) }
        return status.bytes
    }

    /// The `google.rpc.Code` for an HTTP status, after the mapping documented in `google/rpc/code.proto`:
    ///
    /// | HTTP | gRPC code |
    /// |---|---|
    /// | 400, 411, 415, other 4xx | 3 INVALID_ARGUMENT |
    /// | 401 | 16 UNAUTHENTICATED |
    /// | 403 | 7 PERMISSION_DENIED |
    /// | 404 | 5 NOT_FOUND |
    /// | 405, 501 | 12 UNIMPLEMENTED |
    /// | 408, 504 | 4 DEADLINE_EXCEEDED |
    /// | 409 | 10 ABORTED |
    /// | 412 | 9 FAILED_PRECONDITION |
    /// | 413, 429 | 8 RESOURCE_EXHAUSTED |
    /// | 499 | 1 CANCELLED |
    /// | 500, other 5xx | 13 INTERNAL |
    /// | 502, 503 | 14 UNAVAILABLE |
    /// | anything else (not an error status) | 2 UNKNOWN |
    public static func grpcCode(httpStatus: Int) -> Int32 {
        switch httpStatus {
        case 400, 411, 415: return 3
        case 401: return 16
        case 403: return 7
        case 404: return 5
        case 405, 501: return 12
        case 408, 504: return 4
        case 409: return 10
        case 412: return 9
        case 413, 429: return 8
        case 499: return 1
        case 502, 503: return 14
        case 400..<500: return 3
        case 500..<600: return 13
        default: return 2
        }
    }
}

/// A minimal protobuf wire-format writer (varint, length-delimited) for the response messages.
struct ProtobufWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func tag(_ field: UInt64, wireType: UInt64) { varint(field << 3 | wireType) }

    mutating func varintField(_ field: UInt64, _ value: UInt64) {
        tag(field, wireType: 0)
        varint(value)
    }

    mutating func bytesField(_ field: UInt64, _ data: [UInt8]) {
        tag(field, wireType: 2)
        varint(UInt64(data.count))
        bytes.append(contentsOf: data)
    }

    mutating func stringField(_ field: UInt64, _ s: String) { bytesField(field, Array(s.utf8)) }
}
