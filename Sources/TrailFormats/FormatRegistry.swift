import TrailCore

/// Options that change how inputs are read.
public struct ParseOptions: Sendable {
    /// Envoy format string for `envoy-text` input (default: Istio's default TEXT format).
    public var envoyFormat: String?

    public init(envoyFormat: String? = nil) {
        self.envoyFormat = envoyFormat
    }
}

/// An input that cannot be read at all (as opposed to individual bad records).
public struct FormatError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Detects input formats from content and dispatches to the right parser.
public enum FormatRegistry {
    /// Detects the format from the first bytes of a (decompressed) input.
    public static func detect(_ input: [UInt8]) -> InputFormat? {
        if looksLikeOTLPProtobuf(input) { return .otlpProto }
        var i = 0
        if input.count >= 3, input[0] == 0xEF, input[1] == 0xBB, input[2] == 0xBF { i = 3 }
        while i < input.count, [0x20, 0x09, 0x0A, 0x0D].contains(input[i]) { i += 1 }
        guard i < input.count else { return nil }
        let head = String(decoding: input[i..<min(input.count, i + 64)], as: UTF8.self)
        if head.hasPrefix("-----BEGIN CERTIFICATE") || head.hasPrefix("-----BEGIN TRUSTED CERTIFICATE") { return .pem }
        if head.hasPrefix("-----BEGIN X509 CRL") { return .crl }
        if head.hasPrefix("-----BEGIN") {
            // Some other PEM block first (a key, a bundle's comment): look for what follows.
            let text = String(decoding: input.prefix(1 << 20), as: UTF8.self)
            if text.contains("-----BEGIN X509 CRL") { return .crl }
            if text.contains("-----BEGIN CERTIFICATE") { return .pem }
            return nil
        }
        let c = input[i]
        if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
            var j = i + 1
            while j < input.count, [0x20, 0x09, 0x0A, 0x0D].contains(input[j]) { j += 1 }
            if c == UInt8(ascii: "["), j < input.count, input[j] >= 0x30, input[j] <= 0x39 { return .envoyText }
            return detectJSON(input)
        }
        if head.hasPrefix("time=") || (head.contains("level=") && head.contains("msg=")) { return .spire }
        if c == 0x30 && input.count > i + 1 && (input[i + 1] & 0x80) != 0 { return .crl }
        // A text line: Envoy's default format starts with "[START_TIME]"; custom formats are named with --format.
        if c >= 0x20 && c < 0x7F { return .envoyText }
        return nil
    }

    /// An ExportTraceServiceRequest is a run of field-1 (resource_spans) length-delimited messages that ends
    /// exactly at the end of the input, each a ResourceSpans starting with field 1, 2 or 3. Text files never
    /// have that shape, even when they start with blank lines.
    static func looksLikeOTLPProtobuf(_ input: [UInt8]) -> Bool {
        var i = 0
        var messages = 0
        while i < input.count {
            guard input[i] == 0x0A else { return false }
            i += 1
            var length = 0
            var shift = 0
            while true {
                guard i < input.count, shift < 35 else { return false }
                let b = input[i]
                length |= Int(b & 0x7F) << shift
                shift += 7
                i += 1
                if b & 0x80 == 0 { break }
            }
            guard length >= 2, length <= input.count - i else { return false }
            guard [0x0A, 0x12, 0x1A].contains(input[i]) else { return false }
            i += length
            messages += 1
        }
        return messages > 0
    }

    static func detectJSON(_ input: [UInt8]) -> InputFormat? {
        // Formats are per file: the first record decides (parsed alone, not the whole input).
        guard let value = JSONRecordReader.firstValue(in: input) else {
            // Not even the first record parses: decide from key names in the text.
            let head = String(decoding: input.prefix(4096), as: UTF8.self)
            if head.contains("\"resourceSpans\"") { return .otlpJSON }
            if head.contains("\"resourceLogs\"") { return .otlpLogsJSON }
            if head.contains("\"started_at\"") || head.contains("\"client_ip\"") { return .kong }
            if head.contains("\"start_time\"") || head.contains("\"response_code\"") { return .envoyJSON }
            if head.contains("\"msg\"") { return .spire }
            if head.contains("\"event\"") { return .identityNDJSON }
            return nil
        }
        return classify(value)
    }

    /// Classifies one JSON record by its keys.
    public static func classify(_ value: JSONValue) -> InputFormat? {
        guard value.object != nil else { return nil }
        if value["resourceSpans"] != nil || value["resource_spans"] != nil { return .otlpJSON }
        if value["resourceLogs"] != nil || value["resource_logs"] != nil { return .otlpLogsJSON }
        if let e = value["event"]?.string, IdentityEventKind(rawValue: e) != nil { return .identityNDJSON }
        if value["msg"] != nil && (value["time"] != nil || value["level"] != nil) { return .spire }
        if value["request"]?.object != nil
            && (value["started_at"] != nil || value["client_ip"] != nil || value["latencies"] != nil)
        {
            return .kong
        }
        if value["start_time"] != nil || value["response_code"] != nil || value["upstream_cluster"] != nil
            || value["downstream_remote_address"] != nil
        {
            return .envoyJSON
        }
        if value["started_at"] != nil || value["client_ip"] != nil { return .kong }
        return nil
    }

    /// True when records of this format are independent lines, so a large input can be split at newlines.
    public static func isLineOriented(_ format: InputFormat, _ input: [UInt8]) -> Bool {
        switch format {
        case .otlpProto, .otlpLogsProto, .pem, .crl: return false
        case .envoyText, .spire: return true
        case .kong, .envoyJSON, .identityNDJSON, .otlpJSON, .otlpLogsJSON:
            // A top-level array or a pretty-printed object must be read whole.
            var i = 0
            while i < input.count, [0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF].contains(input[i]) { i += 1 }
            if i < input.count, input[i] == UInt8(ascii: "[") { return false }
            let end = input[i...].firstIndex(of: 0x0A) ?? input.count
            if case .success = JSONRecordReader.records(in: Array(input[i..<end]), splitArrays: false).first?.value {
                return true
            }
            return false
        }
    }

    /// Parses an input in the given format.
    public static func parse(_ input: [UInt8], format: InputFormat, options: ParseOptions = .init()) -> [ParseResult] {
        switch format {
        case .otlpProto: return OTLPProtobufParser().parse(input)
        case .otlpJSON: return OTLPJSONParser().parse(input)
        case .otlpLogsProto: return OTLPLogsProtobufParser().parse(input)
        case .otlpLogsJSON: return OTLPLogsJSONParser().parse(input)
        case .kong: return KongLogParser().parse(input)
        case .envoyJSON: return EnvoyJSONLogParser().parse(input)
        case .envoyText:
            if let f = options.envoyFormat { return EnvoyTextLogParser(format: f).parse(input) }
            return EnvoyTextLogParser().parse(input)
        case .identityNDJSON: return IdentityEventParser().parse(input)
        case .spire: return SPIRELogParser().parse(input)
        case .pem: return PEMCertificateParser().parse(input)
        case .crl: return CRLParser().parse(input)
        }
    }
}
