import TrailCore

/// Parses OTLP/JSON trace requests: one `ExportTraceServiceRequest` document, NDJSON with one request per line
/// (the Collector's file exporter), or concatenated documents. Each document is one ``ParsedRecord`` with the
/// line it starts on; a document that is not JSON or not a request is one ``Rejection``.
///
/// Follows the OTLP/JSON rules: lowerCamelCase keys (snake_case is accepted too, as the Collector does), hex
/// ids in either case, integer enums (numeric strings and the enum names are accepted too), 64-bit integers as
/// strings or numbers, base64 `bytesValue`, unknown fields ignored.
public struct OTLPJSONParser: Sendable {
    public init() {}

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        JSONRecordReader.parse(input, format: .otlpJSON, splitArrays: false) { value, location, raw in
            do throws(OTLPJSONError) {
                var decoder = OTLPJSONDecoder()
                let request = try decoder.decodeRequest(value)
                let spanValues = decoder.spanValues
                return .record(OTLPSpanMapper.record(
                    for: request, format: .otlpJSON, location: location, raw: raw,
                    spanRaw: { i, j, k in OTLPJSONEncoder.encode(spanValues[i][j][k]) }))
            } catch {
                return .rejected(Rejection(format: .otlpJSON, location: location, raw: raw, reason: error.description))
            }
        }
    }
}

/// Why an OTLP/JSON document (or one of its spans) could not be decoded.
public struct OTLPJSONError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Dotted field path (`resourceSpans[0].resource.attributes[1].value`), empty at the top.
    public var path: String
    public var message: String

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }

    init(_ message: String, path: String = "") {
        self.path = path
        self.message = message
    }

    func inside(_ component: String) -> OTLPJSONError {
        var e = self
        e.path = e.path.isEmpty ? component : component + (e.path.hasPrefix("[") ? "" : ".") + e.path
        return e
    }
}

/// Decodes an OTLP/JSON `JSONValue` into the plain OTLP values.
struct OTLPJSONDecoder {
    static let maximumAnyValueDepth = 64

    /// The JSON of every span, by resourceSpans, scopeSpans and span index (raw bytes of rejected spans).
    var spanValues: [[[JSONValue]]] = []

    mutating func decodeRequest(_ value: JSONValue) throws(OTLPJSONError) -> OTLPTraceRequest {
        guard let members = value.object else {
            throw OTLPJSONError("expected a JSON object (an OTLP ExportTraceServiceRequest)")
        }
        var request = OTLPTraceRequest()
        for (key, v) in members where !v.isNull {
            switch key {
            case "resourceSpans", "resource_spans":
                let items = try Self.array(v, "resourceSpans")
                for (i, item) in items.enumerated() {
                    do throws(OTLPJSONError) {
                        request.resourceSpans.append(try decodeResourceSpans(item))
                    } catch {
                        throw error.inside("resourceSpans[\(i)]")
                    }
                }
            default: continue
            }
        }
        return request
    }

    mutating func decodeResourceSpans(_ value: JSONValue) throws(OTLPJSONError) -> OTLPResourceSpans {
        let members = try Self.object(value)
        var out = OTLPResourceSpans()
        var spanJSON: [[JSONValue]] = []
        for (key, v) in members where !v.isNull {
            switch key {
            case "resource":
                for (rk, rv) in try Self.object(v, "resource") where !rv.isNull {
                    if rk == "attributes" {
                        do throws(OTLPJSONError) {
                            out.resourceAttributes = try Self.decodeAttributes(rv)
                        } catch {
                            throw error.inside("resource.attributes")
                        }
                    }
                }
            case "scopeSpans", "scope_spans":
                for (j, item) in try Self.array(v, "scopeSpans").enumerated() {
                    do throws(OTLPJSONError) {
                        let (scopeSpans, spans) = try decodeScopeSpans(item)
                        out.scopeSpans.append(scopeSpans)
                        spanJSON.append(spans)
                    } catch {
                        throw error.inside("scopeSpans[\(j)]")
                    }
                }
            case "schemaUrl", "schema_url":
                out.schemaURL = try Self.string(v, "schemaUrl")
            default: continue
            }
        }
        spanValues.append(spanJSON)
        return out
    }

    func decodeScopeSpans(_ value: JSONValue) throws(OTLPJSONError) -> (OTLPScopeSpans, [JSONValue]) {
        let members = try Self.object(value)
        var out = OTLPScopeSpans()
        var spanJSON: [JSONValue] = []
        for (key, v) in members where !v.isNull {
            switch key {
            case "scope":
                var scope = OTLPScope()
                for (sk, sv) in try Self.object(v, "scope") where !sv.isNull {
                    switch sk {
                    case "name": scope.name = try Self.string(sv, "scope.name")
                    case "version": scope.version = try Self.string(sv, "scope.version")
                    case "attributes":
                        do throws(OTLPJSONError) {
                            scope.attributes = try Self.decodeAttributes(sv)
                        } catch {
                            throw error.inside("scope.attributes")
                        }
                    default: continue
                    }
                }
                out.scope = scope
            case "spans":
                for item in try Self.array(v, "spans") {
                    out.spans.append(Self.decodeSpan(item))
                    spanJSON.append(item)
                }
            case "schemaUrl", "schema_url":
                out.schemaURL = try Self.string(v, "schemaUrl")
            default: continue
            }
        }
        return (out, spanJSON)
    }

    /// A span never throws: a malformed field becomes the span's `problem`, so only that span is rejected.
    static func decodeSpan(_ value: JSONValue) -> OTLPSpan {
        var span = OTLPSpan()
        do throws(OTLPJSONError) {
            try decodeSpanFields(value, into: &span)
        } catch {
            span.problem = error.description
        }
        return span
    }

    static func decodeSpanFields(_ value: JSONValue, into span: inout OTLPSpan) throws(OTLPJSONError) {
        guard let members = value.object else { throw OTLPJSONError("expected a span object") }
        for (key, v) in members where !v.isNull {
            switch key {
            case "traceId", "trace_id": span.traceID = try id(v, "traceId")
            case "spanId", "span_id": span.spanID = try id(v, "spanId")
            case "parentSpanId", "parent_span_id": span.parentSpanID = try id(v, "parentSpanId")
            case "traceState", "trace_state": span.traceState = try string(v, "traceState")
            case "name": span.name = try string(v, "name")
            case "kind": span.kind = try enumValue(v, "kind", names: spanKindNames)
            case "startTimeUnixNano", "start_time_unix_nano": span.startTimeUnixNano = try uint64(v, "startTimeUnixNano")
            case "endTimeUnixNano", "end_time_unix_nano": span.endTimeUnixNano = try uint64(v, "endTimeUnixNano")
            case "attributes":
                do throws(OTLPJSONError) {
                    span.attributes = try decodeAttributes(v)
                } catch {
                    throw error.inside("attributes")
                }
            case "status":
                var status = OTLPStatus()
                for (sk, sv) in try object(v, "status") where !sv.isNull {
                    switch sk {
                    case "code": status.code = try enumValue(sv, "status.code", names: statusCodeNames)
                    case "message": status.message = try string(sv, "status.message")
                    default: continue
                    }
                }
                span.status = status
            case "flags":
                let f = try uint64(v, "flags")
                guard f <= UInt64(UInt32.max) else { throw OTLPJSONError("\(f) does not fit in 32 bits", path: "flags") }
                span.flags = UInt32(f)
            default: continue
            }
        }
    }

    static let spanKindNames: [String: Int32] = [
        "SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3,
        "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5,
    ]
    static let statusCodeNames: [String: Int32] = ["STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2]

    // MARK: Attributes and values

    static func decodeAttributes(_ value: JSONValue) throws(OTLPJSONError) -> [OTLPKeyValue] {
        try decodeKeyValues(value, depth: 0)
    }

    static func decodeKeyValues(_ value: JSONValue, depth: Int) throws(OTLPJSONError) -> [OTLPKeyValue] {
        guard let items = value.array else { throw OTLPJSONError("expected an array") }
        var out: [OTLPKeyValue] = []
        out.reserveCapacity(items.count)
        for (n, item) in items.enumerated() {
            do throws(OTLPJSONError) {
                out.append(try decodeKeyValue(item, depth: depth))
            } catch {
                throw error.inside("[\(n)]")
            }
        }
        return out
    }

    static func decodeKeyValue(_ value: JSONValue, depth: Int) throws(OTLPJSONError) -> OTLPKeyValue {
        guard let members = value.object else { throw OTLPJSONError("expected a {\"key\", \"value\"} object") }
        var kv = OTLPKeyValue(key: "", value: .empty)
        for (key, v) in members where !v.isNull {
            switch key {
            case "key": kv.key = try string(v, "key")
            case "value":
                do throws(OTLPJSONError) {
                    kv.value = try decodeAnyValue(v, depth: depth + 1)
                } catch {
                    throw error.inside("value")
                }
            default: continue
            }
        }
        return kv
    }

    static func decodeAnyValue(_ value: JSONValue, depth: Int) throws(OTLPJSONError) -> OTLPAnyValue {
        guard depth <= maximumAnyValueDepth else {
            throw OTLPJSONError("values nested deeper than \(maximumAnyValueDepth) levels")
        }
        guard let members = value.object else { throw OTLPJSONError("expected an AnyValue object") }
        var out = OTLPAnyValue.empty
        for (key, v) in members where !v.isNull {
            switch key {
            case "stringValue", "string_value":
                out = .string(try string(v, key))
            case "boolValue", "bool_value":
                guard let b = v.bool else { throw OTLPJSONError("expected a boolean", path: key) }
                out = .bool(b)
            case "intValue", "int_value":
                guard let i = v.int else { throw OTLPJSONError("expected a 64-bit integer", path: key) }
                out = .int(i)
            case "doubleValue", "double_value":
                switch v {
                case .int(let i): out = .double(Double(i))
                case .double(let d): out = .double(d)
                case .string(let s):
                    switch s {
                    case "NaN": out = .double(.nan)
                    case "Infinity": out = .double(.infinity)
                    case "-Infinity": out = .double(-.infinity)
                    default:
                        guard let d = Double(s) else { throw OTLPJSONError("expected a number", path: key) }
                        out = .double(d)
                    }
                default: throw OTLPJSONError("expected a number", path: key)
                }
            case "bytesValue", "bytes_value":
                guard let s = v.string, let bytes = OTLPBase64.decode(s) else {
                    throw OTLPJSONError("expected a base64 string", path: key)
                }
                out = .bytes(bytes)
            case "arrayValue", "array_value":
                var items: [OTLPAnyValue] = []
                for (ak, av) in try object(v, key) where ak == "values" && !av.isNull {
                    for (n, item) in try array(av, key + ".values").enumerated() {
                        do throws(OTLPJSONError) {
                            items.append(try decodeAnyValue(item, depth: depth + 1))
                        } catch {
                            throw error.inside("\(key).values[\(n)]")
                        }
                    }
                }
                out = .array(items)
            case "kvlistValue", "kvlist_value":
                var members: [OTLPKeyValue] = []
                for (lk, lv) in try object(v, key) where lk == "values" && !lv.isNull {
                    do throws(OTLPJSONError) {
                        members = try decodeKeyValues(lv, depth: depth)
                    } catch {
                        throw error.inside("\(key).values")
                    }
                }
                out = .kvlist(members)
            default: continue
            }
        }
        return out
    }

    // MARK: Scalars

    static func object(_ value: JSONValue, _ path: String = "") throws(OTLPJSONError) -> [(String, JSONValue)] {
        guard let o = value.object else { throw OTLPJSONError("expected an object", path: path) }
        return o
    }

    static func array(_ value: JSONValue, _ path: String) throws(OTLPJSONError) -> [JSONValue] {
        guard let a = value.array else { throw OTLPJSONError("expected an array", path: path) }
        return a
    }

    static func string(_ value: JSONValue, _ path: String) throws(OTLPJSONError) -> String {
        guard let s = value.string else { throw OTLPJSONError("expected a string", path: path) }
        return s
    }

    /// A hex id: bytes, or nil when the string is not hex (the mapper says so).
    static func id(_ value: JSONValue, _ path: String) throws(OTLPJSONError) -> [UInt8]? {
        guard let s = value.string else { throw OTLPJSONError("expected a hex string", path: path) }
        return Hex.decode(s)
    }

    /// An unsigned 64-bit integer from a number or a decimal string.
    static func uint64(_ value: JSONValue, _ path: String) throws(OTLPJSONError) -> UInt64 {
        switch value {
        case .int(let i) where i >= 0: return UInt64(i)
        case .string(let s):
            if let u = UInt64(s) { return u }
            if let i = value.int, i >= 0 { return UInt64(i) }
        case .double(let d) where d >= 0 && d < 1.8e19 && d.rounded() == d:
            return UInt64(d)
        default: break
        }
        throw OTLPJSONError("expected an unsigned 64-bit integer", path: path)
    }

    /// An enum: an integer, a numeric string, or one of the enum's names.
    static func enumValue(_ value: JSONValue, _ path: String, names: [String: Int32]) throws(OTLPJSONError) -> Int32 {
        if let i = value.int {
            guard let v = Int32(exactly: i) else { throw OTLPJSONError("\(i) is not a valid enum value", path: path) }
            return v
        }
        if let s = value.string, let v = names[s] { return v }
        throw OTLPJSONError("expected an integer enum value", path: path)
    }
}

/// Standard and URL-safe base64, padding optional (as protobuf JSON parsers accept it).
enum OTLPBase64 {
    static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 3 / 4)
        var buffer: UInt32 = 0
        var bits = 0
        var padding = 0
        for c in text.utf8 {
            let v: UInt32
            switch c {
            case 0x41...0x5A: v = UInt32(c - 0x41)
            case 0x61...0x7A: v = UInt32(c - 0x61 + 26)
            case 0x30...0x39: v = UInt32(c - 0x30 + 52)
            case 0x2B, 0x2D: v = 62
            case 0x2F, 0x5F: v = 63
            case 0x3D:
                padding += 1
                continue
            default: return nil
            }
            guard padding == 0 else { return nil }
            buffer = buffer << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
                buffer &= (1 << UInt32(bits)) - 1
            }
        }
        guard padding <= 2, bits != 6 else { return nil }
        return out
    }
}

/// Compact JSON writer (used to keep the JSON of a rejected span as its raw bytes).
enum OTLPJSONEncoder {
    static func encode(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        write(value, to: &out)
        return out
    }

    static func write(_ value: JSONValue, to out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: Array("null".utf8))
        case .bool(let b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case .int(let i): out.append(contentsOf: Array(String(i).utf8))
        case .double(let d): out.append(contentsOf: Array((d.isFinite ? String(d) : "null").utf8))
        case .string(let s): writeString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (n, item) in items.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                write(item, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (n, (key, item)) in members.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                write(item, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(0x22)
        for c in s.utf8 {
            switch c {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(contentsOf: Array(Hex.encode([c]).utf8))
            default: out.append(c)
            }
        }
        out.append(0x22)
    }
}
