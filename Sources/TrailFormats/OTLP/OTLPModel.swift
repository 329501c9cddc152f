import TrailCore

// Plain decoded OTLP trace values, shared by the protobuf and the JSON decoder. Only what Trail uses is kept:
// events and links are skipped by both decoders.

/// An OTLP `AnyValue`. `.empty` is a value whose oneof is unset.
public indirect enum OTLPAnyValue: Sendable, Hashable {
    case empty
    case string(String)
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case bytes([UInt8])
    case array([OTLPAnyValue])
    case kvlist([OTLPKeyValue])
}

/// An OTLP `KeyValue` attribute.
public struct OTLPKeyValue: Sendable, Hashable {
    public var key: String
    public var value: OTLPAnyValue

    public init(key: String, value: OTLPAnyValue) {
        self.key = key
        self.value = value
    }
}

/// An OTLP `Status`.
public struct OTLPStatus: Sendable, Hashable {
    /// UNSET=0, OK=1, ERROR=2.
    public var code: Int32
    public var message: String

    public init(code: Int32 = 0, message: String = "") {
        self.code = code
        self.message = message
    }
}

/// An OTLP `Span` as decoded, before any validation.
public struct OTLPSpan: Sendable, Hashable {
    /// Raw id bytes. In OTLP/JSON they were hex; nil means the text was not hex (or not a string).
    public var traceID: [UInt8]?
    public var spanID: [UInt8]?
    public var parentSpanID: [UInt8]?
    public var traceState: String
    public var name: String
    /// `SpanKind`: UNSPECIFIED=0, INTERNAL=1, SERVER=2, CLIENT=3, PRODUCER=4, CONSUMER=5.
    public var kind: Int32
    public var startTimeUnixNano: UInt64
    public var endTimeUnixNano: UInt64
    public var attributes: [OTLPKeyValue]
    public var status: OTLPStatus?
    public var flags: UInt32
    /// Set by a decoder when one of the span's fields was malformed (OTLP/JSON only); the mapper rejects
    /// the span with this reason.
    public var problem: String?
    /// Where the span's bytes are in the protobuf body (used as the raw bytes of a rejected span).
    public var rawRange: Range<Int> = 0..<0

    public init(
        traceID: [UInt8]? = [], spanID: [UInt8]? = [], parentSpanID: [UInt8]? = [], traceState: String = "",
        name: String = "", kind: Int32 = 0, startTimeUnixNano: UInt64 = 0, endTimeUnixNano: UInt64 = 0,
        attributes: [OTLPKeyValue] = [], status: OTLPStatus? = nil, flags: UInt32 = 0, problem: String? = nil
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.traceState = traceState
        self.name = name
        self.kind = kind
        self.startTimeUnixNano = startTimeUnixNano
        self.endTimeUnixNano = endTimeUnixNano
        self.attributes = attributes
        self.status = status
        self.flags = flags
        self.problem = problem
    }
}

/// An OTLP `InstrumentationScope`.
public struct OTLPScope: Sendable, Hashable {
    public var name: String
    public var version: String
    public var attributes: [OTLPKeyValue]

    public init(name: String = "", version: String = "", attributes: [OTLPKeyValue] = []) {
        self.name = name
        self.version = version
        self.attributes = attributes
    }
}

/// An OTLP `ScopeSpans`.
public struct OTLPScopeSpans: Sendable, Hashable {
    public var scope: OTLPScope?
    public var spans: [OTLPSpan]
    public var schemaURL: String

    public init(scope: OTLPScope? = nil, spans: [OTLPSpan] = [], schemaURL: String = "") {
        self.scope = scope
        self.spans = spans
        self.schemaURL = schemaURL
    }
}

/// An OTLP `ResourceSpans` (the resource is reduced to its attributes).
public struct OTLPResourceSpans: Sendable, Hashable {
    public var resourceAttributes: [OTLPKeyValue]
    public var scopeSpans: [OTLPScopeSpans]
    public var schemaURL: String

    public init(resourceAttributes: [OTLPKeyValue] = [], scopeSpans: [OTLPScopeSpans] = [], schemaURL: String = "") {
        self.resourceAttributes = resourceAttributes
        self.scopeSpans = scopeSpans
        self.schemaURL = schemaURL
    }
}

/// An `ExportTraceServiceRequest` (or `TracesData`: the same field 1).
public struct OTLPTraceRequest: Sendable, Hashable {
    public var resourceSpans: [OTLPResourceSpans]

    public init(resourceSpans: [OTLPResourceSpans] = []) { self.resourceSpans = resourceSpans }
}

/// Attribute lookups for the mapper. The first occurrence of a key wins.
struct OTLPAttributes {
    private var values: [String: OTLPAnyValue]

    init(_ list: [OTLPKeyValue]) {
        values = Dictionary(minimumCapacity: list.count)
        for kv in list where values[kv.key] == nil { values[kv.key] = kv.value }
    }

    subscript(key: String) -> OTLPAnyValue? { values[key] }

    func contains(_ key: String) -> Bool { values[key] != nil }

    func containsKey(withPrefix prefix: String) -> Bool { values.keys.contains { $0.hasPrefix(prefix) } }

    /// The first key whose value is a non-empty string (numbers and bools are rendered as text).
    func string(_ keys: String...) -> String? {
        for key in keys {
            if let s = values[key].flatMap(Self.text) { return s }
        }
        return nil
    }

    /// A non-empty string; the first non-empty element of a string array; numbers and bools as text.
    static func text(_ value: OTLPAnyValue) -> String? {
        switch value {
        case .string(let s): return s.isEmpty ? nil : s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .bool(let b): return String(b)
        case .array(let items):
            for item in items {
                if case .string(let s) = item, !s.isEmpty { return s }
            }
            return nil
        default: return nil
        }
    }

    /// The first key whose value is an integer or a decimal string.
    func int(_ keys: String...) -> Int64? {
        for key in keys {
            switch values[key] {
            case .int(let i)?: return i
            case .string(let s)?:
                if let i = Int64(s.trimmingASCIISpaces()) { return i }
            case .double(let d)? where d.isFinite && d.rounded() == d && abs(d) < 9.2e18:
                return Int64(d)
            default: continue
            }
        }
        return nil
    }

    /// A bool, or the strings "true"/"false".
    func bool(_ key: String) -> Bool? {
        switch values[key] {
        case .bool(let b)?: return b
        case .string(let s)?:
            switch s.lowercased() {
            case "true": return true
            case "false": return false
            default: return nil
            }
        default: return nil
        }
    }
}

extension String {
    fileprivate func trimmingASCIISpaces() -> Substring {
        var s = self[...]
        while let f = s.first, f == " " { s = s.dropFirst() }
        while let l = s.last, l == " " { s = s.dropLast() }
        return s
    }
}
