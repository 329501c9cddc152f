/// The input formats Trail reads. The raw value is the name used by `--format` and stored with each record.
public enum InputFormat: String, Sendable, Hashable, Codable, CaseIterable {
    /// OTLP ExportTraceServiceRequest, protobuf binary.
    case otlpProto = "otlp-proto"
    /// OTLP ExportTraceServiceRequest, OTLP/JSON (one request per document or per line).
    case otlpJSON = "otlp-json"
    /// OTLP ExportLogsServiceRequest, protobuf binary (access-log records become observations).
    case otlpLogsProto = "otlp-logs-proto"
    /// OTLP ExportLogsServiceRequest, OTLP/JSON.
    case otlpLogsJSON = "otlp-logs-json"
    /// Kong http-log / file-log / tcp-log records (object, array or NDJSON).
    case kong
    /// Envoy / Istio JSON access log lines.
    case envoyJSON = "envoy-json"
    /// Envoy / Istio text access log lines, parsed by an Envoy format string.
    case envoyText = "envoy-text"
    /// Trail's identity-event NDJSON.
    case identityNDJSON = "identity-ndjson"
    /// SPIRE server / agent log lines (logrus text or JSON).
    case spire
    /// PEM certificates (X509-SVIDs).
    case pem
    /// X.509 CRL, PEM or DER.
    case crl
}

/// Where in its input a record was found. Lines are 1-based; `detail` narrows it further
/// (`resourceSpans[0].scopeSpans[0].spans[3]`, `[2]` for an array element).
public struct RecordLocation: Sendable, Hashable, Codable, CustomStringConvertible {
    public var line: Int
    public var detail: String?

    public init(line: Int, detail: String? = nil) {
        self.line = line
        self.detail = detail
    }

    public var description: String { detail.map { "line \(line) \($0)" } ?? "line \(line)" }
}

/// One raw record of an input and what was understood from it.
///
/// A record is the unit of evidence: a log line, a Kong JSON object, an OTLP request, a certificate, a CRL.
/// The store keeps `raw` byte for byte (compressed) and links every derived row to it.
public struct ParsedRecord: Sendable {
    public var format: InputFormat
    public var location: RecordLocation
    public var raw: [UInt8]
    public var observations: [Observation]
    public var identityEvents: [IdentityEvent]
    /// Parts of the record that were rejected while the rest was kept (for example one bad span of an
    /// OTLP request).
    public var partialRejections: [Rejection]

    public init(
        format: InputFormat, location: RecordLocation, raw: [UInt8], observations: [Observation] = [],
        identityEvents: [IdentityEvent] = [], partialRejections: [Rejection] = []
    ) {
        self.format = format
        self.location = location
        self.raw = raw
        self.observations = observations
        self.identityEvents = identityEvents
        self.partialRejections = partialRejections
    }
}

/// A record, or part of one, that could not be understood, with the reason in plain words.
public struct Rejection: Sendable, Hashable {
    public var format: InputFormat?
    public var location: RecordLocation
    public var raw: [UInt8]
    public var reason: String

    public init(format: InputFormat?, location: RecordLocation, raw: [UInt8], reason: String) {
        self.format = format
        self.location = location
        self.raw = raw
        self.reason = reason
    }
}

/// What a parser returns for one input: the records it understood and those it rejected, in input order.
public enum ParseResult: Sendable {
    case record(ParsedRecord)
    case rejected(Rejection)
}

extension ParseResult {
    /// The record, if this result is one.
    public var record: ParsedRecord? {
        if case .record(let r) = self { return r }
        return nil
    }

    /// The rejection, if this result is one.
    public var rejection: Rejection? {
        if case .rejected(let r) = self { return r }
        return nil
    }
}
