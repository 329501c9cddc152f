import TrailCore

// OTLP logs (`ExportLogsServiceRequest`, `/v1/logs`). Access-log records become observations; every other log
// record is kept inside its request's record without an observation. There is no separate logs InputFormat:
// records and observations use `otlp-proto` / `otlp-json`, like traces.

/// Parses an OTLP/HTTP protobuf logs body (`application/x-protobuf` on `/v1/logs`): one
/// `ExportLogsServiceRequest` (or `LogsData`, the same field 1). One body is one ``ParsedRecord`` (raw = the
/// whole body, line 1), or one ``Rejection`` when it cannot be decoded. See ``OTLPLogMapper`` for the mapping.
public struct OTLPLogsProtobufParser: Sendable {
    public init() {}

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        let location = RecordLocation(line: 1)
        let request: OTLPLogsRequest
        do throws(OTLPProtobufError) {
            request = try OTLPProtobufDecoder.decodeLogsRequest(input)
        } catch {
            var reason = error.description
            if let first = input.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }),
                first == UInt8(ascii: "{") || first == UInt8(ascii: "[")
            {
                reason += " (the body looks like JSON: use the otlp-logs-json format, or Content-Type: application/json)"
            }
            return [.rejected(Rejection(format: .otlpLogsProto, location: location, raw: input, reason: reason))]
        }
        let record = OTLPLogMapper.record(
            for: request, format: .otlpLogsProto, location: location, raw: input,
            logRaw: { i, j, k in
                let range = request.resourceLogs[i].scopeLogs[j].logRecords[k].rawRange
                return Array(input[range])
            })
        return [.record(record)]
    }
}

/// Parses OTLP/JSON logs requests: one `ExportLogsServiceRequest` document, NDJSON with one request per line
/// (the Collector's file exporter) or concatenated documents. Each document is one ``ParsedRecord``; a document
/// that is not JSON or not a request is one ``Rejection``. A malformed log record is a partial rejection.
/// The same OTLP/JSON rules as ``OTLPJSONParser`` apply (hex ids, int64 as strings or numbers, snake_case
/// keys accepted, severity as an integer or its `SEVERITY_NUMBER_*` name).
public struct OTLPLogsJSONParser: Sendable {
    public init() {}

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        JSONRecordReader.parse(input, format: .otlpLogsJSON, splitArrays: false) { value, location, raw in
            do throws(OTLPJSONError) {
                var decoder = OTLPLogsJSONDecoder()
                let request = try decoder.decodeRequest(value)
                let logValues = decoder.logValues
                return .record(OTLPLogMapper.record(
                    for: request, format: .otlpLogsJSON, location: location, raw: raw,
                    logRaw: { i, j, k in OTLPJSONEncoder.encode(logValues[i][j][k]) }))
            } catch {
                return .rejected(Rejection(format: .otlpLogsJSON, location: location, raw: raw, reason: error.description))
            }
        }
    }
}

// MARK: - Model

/// An OTLP `LogRecord` as decoded, before any validation.
public struct OTLPLogRecord: Sendable, Hashable {
    public var timeUnixNano: UInt64
    public var observedTimeUnixNano: UInt64
    public var severityNumber: Int32
    public var severityText: String
    public var body: OTLPAnyValue
    public var attributes: [OTLPKeyValue]
    public var flags: UInt32
    /// Raw id bytes; empty when unset; nil when the OTLP/JSON text was not hex.
    public var traceID: [UInt8]?
    public var spanID: [UInt8]?
    public var eventName: String
    /// A malformed field (OTLP/JSON only): the mapper rejects the log record with this reason.
    public var problem: String?
    /// Where the record's bytes are in a protobuf body.
    public var rawRange: Range<Int> = 0..<0

    public init(
        timeUnixNano: UInt64 = 0, observedTimeUnixNano: UInt64 = 0, severityNumber: Int32 = 0,
        severityText: String = "", body: OTLPAnyValue = .empty, attributes: [OTLPKeyValue] = [], flags: UInt32 = 0,
        traceID: [UInt8]? = [], spanID: [UInt8]? = [], eventName: String = "", problem: String? = nil
    ) {
        self.timeUnixNano = timeUnixNano
        self.observedTimeUnixNano = observedTimeUnixNano
        self.severityNumber = severityNumber
        self.severityText = severityText
        self.body = body
        self.attributes = attributes
        self.flags = flags
        self.traceID = traceID
        self.spanID = spanID
        self.eventName = eventName
        self.problem = problem
    }
}

/// An OTLP `ScopeLogs`.
public struct OTLPScopeLogs: Sendable, Hashable {
    public var scope: OTLPScope?
    public var logRecords: [OTLPLogRecord]
    public var schemaURL: String

    public init(scope: OTLPScope? = nil, logRecords: [OTLPLogRecord] = [], schemaURL: String = "") {
        self.scope = scope
        self.logRecords = logRecords
        self.schemaURL = schemaURL
    }
}

/// An OTLP `ResourceLogs` (the resource reduced to its attributes).
public struct OTLPResourceLogs: Sendable, Hashable {
    public var resourceAttributes: [OTLPKeyValue]
    public var scopeLogs: [OTLPScopeLogs]
    public var schemaURL: String

    public init(resourceAttributes: [OTLPKeyValue] = [], scopeLogs: [OTLPScopeLogs] = [], schemaURL: String = "") {
        self.resourceAttributes = resourceAttributes
        self.scopeLogs = scopeLogs
        self.schemaURL = schemaURL
    }
}

/// An `ExportLogsServiceRequest` (or `LogsData`).
public struct OTLPLogsRequest: Sendable, Hashable {
    public var resourceLogs: [OTLPResourceLogs]

    public init(resourceLogs: [OTLPResourceLogs] = []) { self.resourceLogs = resourceLogs }
}

// MARK: - Protobuf

extension OTLPProtobufDecoder {
    static func decodeLogsRequest(_ input: [UInt8]) throws(OTLPProtobufError) -> OTLPLogsRequest {
        try input.withUnsafeBufferPointer { (buf) throws(OTLPProtobufError) -> OTLPLogsRequest in
            var r = OTLPWireReader(bytes: buf, position: 0, end: buf.count)
            var request = OTLPLogsRequest()
            while !r.isAtEnd {
                let (field, wire) = try r.readTag()
                if field == 1 && wire == .lengthDelimited {
                    let index = request.resourceLogs.count
                    let range = try r.readLengthDelimited()
                    try r.within(range, "resourceLogs[\(index)]") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                        request.resourceLogs.append(try decodeResourceLogs(&sub))
                    }
                } else {
                    try r.skip(wire)
                }
            }
            return request
        }
    }

    static func decodeResourceLogs(_ r: inout OTLPWireReader) throws(OTLPProtobufError) -> OTLPResourceLogs {
        var out = OTLPResourceLogs()
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited):
                let range = try r.readLengthDelimited()
                try r.within(range, "resource") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                    try decodeResource(&sub, into: &out.resourceAttributes)
                }
            case (2, .lengthDelimited):
                let index = out.scopeLogs.count
                let range = try r.readLengthDelimited()
                try r.within(range, "scopeLogs[\(index)]") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                    out.scopeLogs.append(try decodeScopeLogs(&sub))
                }
            case (3, .lengthDelimited):
                out.schemaURL = try r.readString()
            default:
                try r.skip(wire)
            }
        }
        return out
    }

    static func decodeScopeLogs(_ r: inout OTLPWireReader) throws(OTLPProtobufError) -> OTLPScopeLogs {
        var out = OTLPScopeLogs()
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited):
                let range = try r.readLengthDelimited()
                try r.within(range, "scope") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                var scope = out.scope ?? OTLPScope()
                try decodeScope(&sub, into: &scope)
                out.scope = scope
                }
            case (2, .lengthDelimited):
                let index = out.logRecords.count
                let range = try r.readLengthDelimited()
                try r.within(range, "logRecords[\(index)]") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                var record = try decodeLogRecord(&sub)
                record.rawRange = range
                out.logRecords.append(record)
                }
            case (3, .lengthDelimited):
                out.schemaURL = try r.readString()
            default:
                try r.skip(wire)
            }
        }
        return out
    }

    static func decodeLogRecord(_ r: inout OTLPWireReader) throws(OTLPProtobufError) -> OTLPLogRecord {
        var record = OTLPLogRecord()
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .fixed64): record.timeUnixNano = try r.readFixed64()
            case (2, .varint): record.severityNumber = Int32(truncatingIfNeeded: try r.readVarint())
            case (3, .lengthDelimited): record.severityText = try r.readString()
            case (5, .lengthDelimited):
                let range = try r.readLengthDelimited()
                try r.within(range, "body") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                    record.body = try decodeAnyValue(&sub, depth: 1)
                }
            case (6, .lengthDelimited):
                record.attributes.append(try decodeAttribute(&r, index: record.attributes.count))
            case (8, .fixed32): record.flags = try r.readFixed32()
            case (9, .lengthDelimited): record.traceID = try r.readBytes()
            case (10, .lengthDelimited): record.spanID = try r.readBytes()
            case (11, .fixed64): record.observedTimeUnixNano = try r.readFixed64()
            case (12, .lengthDelimited): record.eventName = try r.readString()
            default:
                // dropped_attributes_count (7) and unknown fields; lengths are still checked by skip.
                try r.skip(wire)
            }
        }
        return record
    }
}

// MARK: - JSON

/// Decodes an OTLP/JSON logs request into the plain OTLP values (reusing the trace decoder's value helpers).
struct OTLPLogsJSONDecoder {
    /// The JSON of every log record, by resourceLogs, scopeLogs and record index.
    var logValues: [[[JSONValue]]] = []

    typealias D = OTLPJSONDecoder

    mutating func decodeRequest(_ value: JSONValue) throws(OTLPJSONError) -> OTLPLogsRequest {
        guard let members = value.object else {
            throw OTLPJSONError("expected a JSON object (an OTLP ExportLogsServiceRequest)")
        }
        var request = OTLPLogsRequest()
        for (key, v) in members where !v.isNull {
            switch key {
            case "resourceLogs", "resource_logs":
                for (i, item) in try D.array(v, "resourceLogs").enumerated() {
                    do throws(OTLPJSONError) {
                        request.resourceLogs.append(try decodeResourceLogs(item))
                    } catch {
                        throw error.inside("resourceLogs[\(i)]")
                    }
                }
            default: continue
            }
        }
        return request
    }

    mutating func decodeResourceLogs(_ value: JSONValue) throws(OTLPJSONError) -> OTLPResourceLogs {
        let members = try D.object(value)
        var out = OTLPResourceLogs()
        var recordJSON: [[JSONValue]] = []
        for (key, v) in members where !v.isNull {
            switch key {
            case "resource":
                for (rk, rv) in try D.object(v, "resource") where !rv.isNull && rk == "attributes" {
                    do throws(OTLPJSONError) {
                        out.resourceAttributes = try D.decodeAttributes(rv)
                    } catch {
                        throw error.inside("resource.attributes")
                    }
                }
            case "scopeLogs", "scope_logs":
                for (j, item) in try D.array(v, "scopeLogs").enumerated() {
                    do throws(OTLPJSONError) {
                        let (scopeLogs, records) = try Self.decodeScopeLogs(item)
                        out.scopeLogs.append(scopeLogs)
                        recordJSON.append(records)
                    } catch {
                        throw error.inside("scopeLogs[\(j)]")
                    }
                }
            case "schemaUrl", "schema_url":
                out.schemaURL = try D.string(v, "schemaUrl")
            default: continue
            }
        }
        logValues.append(recordJSON)
        return out
    }

    static func decodeScopeLogs(_ value: JSONValue) throws(OTLPJSONError) -> (OTLPScopeLogs, [JSONValue]) {
        let members = try D.object(value)
        var out = OTLPScopeLogs()
        var recordJSON: [JSONValue] = []
        for (key, v) in members where !v.isNull {
            switch key {
            case "scope":
                var scope = OTLPScope()
                for (sk, sv) in try D.object(v, "scope") where !sv.isNull {
                    switch sk {
                    case "name": scope.name = try D.string(sv, "scope.name")
                    case "version": scope.version = try D.string(sv, "scope.version")
                    case "attributes":
                        do throws(OTLPJSONError) {
                            scope.attributes = try D.decodeAttributes(sv)
                        } catch {
                            throw error.inside("scope.attributes")
                        }
                    default: continue
                    }
                }
                out.scope = scope
            case "logRecords", "log_records":
                for item in try D.array(v, "logRecords") {
                    out.logRecords.append(decodeLogRecord(item))
                    recordJSON.append(item)
                }
            case "schemaUrl", "schema_url":
                out.schemaURL = try D.string(v, "schemaUrl")
            default: continue
            }
        }
        return (out, recordJSON)
    }

    /// A log record never throws: a malformed field becomes its `problem`, so only that record is rejected.
    static func decodeLogRecord(_ value: JSONValue) -> OTLPLogRecord {
        var record = OTLPLogRecord()
        do throws(OTLPJSONError) {
            try decodeLogRecordFields(value, into: &record)
        } catch {
            record.problem = error.description
        }
        return record
    }

    static func decodeLogRecordFields(_ value: JSONValue, into record: inout OTLPLogRecord) throws(OTLPJSONError) {
        guard let members = value.object else { throw OTLPJSONError("expected a log record object") }
        for (key, v) in members where !v.isNull {
            switch key {
            case "timeUnixNano", "time_unix_nano": record.timeUnixNano = try D.uint64(v, "timeUnixNano")
            case "observedTimeUnixNano", "observed_time_unix_nano":
                record.observedTimeUnixNano = try D.uint64(v, "observedTimeUnixNano")
            case "severityNumber", "severity_number":
                record.severityNumber = try D.enumValue(v, "severityNumber", names: severityNames)
            case "severityText", "severity_text": record.severityText = try D.string(v, "severityText")
            case "body":
                do throws(OTLPJSONError) {
                    record.body = try D.decodeAnyValue(v, depth: 1)
                } catch {
                    throw error.inside("body")
                }
            case "attributes":
                do throws(OTLPJSONError) {
                    record.attributes = try D.decodeAttributes(v)
                } catch {
                    throw error.inside("attributes")
                }
            case "flags":
                let f = try D.uint64(v, "flags")
                guard f <= UInt64(UInt32.max) else { throw OTLPJSONError("\(f) does not fit in 32 bits", path: "flags") }
                record.flags = UInt32(f)
            case "traceId", "trace_id": record.traceID = try D.id(v, "traceId")
            case "spanId", "span_id": record.spanID = try D.id(v, "spanId")
            case "eventName", "event_name": record.eventName = try D.string(v, "eventName")
            default: continue
            }
        }
    }

    static let severityNames: [String: Int32] = {
        var names: [String: Int32] = ["SEVERITY_NUMBER_UNSPECIFIED": 0]
        let levels = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
        for (n, level) in levels.enumerated() {
            names["SEVERITY_NUMBER_\(level)"] = Int32(n * 4 + 1)
            for k in 2...4 { names["SEVERITY_NUMBER_\(level)\(k)"] = Int32(n * 4 + k) }
        }
        return names
    }()
}
