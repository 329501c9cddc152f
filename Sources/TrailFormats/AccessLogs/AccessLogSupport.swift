import TrailCore

/// Helpers shared by the Kong and Envoy access-log parsers.
enum AccessLog {
    // MARK: Trace ids

    /// The trace-related values one access-log record carries, before validation.
    struct TraceInputs {
        /// Explicit trace ids (Kong `trace_id.<format>`, Envoy `%TRACE_ID%`), highest priority first.
        var explicit: [(field: String, value: String, decimal: Bool)] = []
        var traceparent: String?
        var b3: String?
        var b3TraceID: String?
        var b3SpanID: String?
        var b3ParentSpanID: String?
        var b3Sampled: String?
        var uberTraceID: String?

        /// traceID: the first valid explicit id, else the first valid header's trace id. parentSpanID: the span
        /// id of the first valid header whose trace id is that trace id (the caller's span). Every value that
        /// is present but invalid is reported in `problems`.
        func resolve() -> (traceID: String?, parentSpanID: String?, problems: [String]) {
            var problems: [String] = []
            var traceID: String?
            for e in explicit {
                let normalized = e.decimal ? TraceIDs.datadogTraceID(decimal: e.value) : AccessLog.normalizeHexTraceID(e.value)
                if let normalized {
                    if traceID == nil { traceID = normalized }
                } else {
                    problems.append("\(e.field): '\(AccessLog.clip(e.value))' is not a valid trace id")
                }
            }
            var headers: [(trace: String, span: String)] = []
            if let tp = traceparent {
                switch W3CTraceParent.parse(tp) {
                case .success(let v): headers.append((v.traceID, v.parentID))
                case .failure(let e): problems.append(e.description)
                }
            }
            if let b3 {
                switch B3Context.parseSingle(b3) {
                case .success(let v):
                    if let t = v.normalizedTraceID, let s = v.spanID { headers.append((t, s)) }
                case .failure(let e): problems.append(e.description)
                }
            }
            if b3TraceID != nil || b3SpanID != nil {
                switch B3Context.parseMulti(
                    traceID: b3TraceID, spanID: b3SpanID, parentSpanID: b3ParentSpanID, sampled: b3Sampled)
                {
                case .success(let v):
                    if let t = v.normalizedTraceID, let s = v.spanID { headers.append((t, s)) }
                case .failure(let e): problems.append(e.description)
                }
            }
            if let uber = uberTraceID {
                switch UberTraceID.parse(uber) {
                case .success(let v): headers.append((v.traceID, v.spanID))
                case .failure(let e): problems.append(e.description)
                }
            }
            if traceID == nil { traceID = headers.first?.trace }
            let parent = headers.first { $0.trace == traceID }?.span
            return (traceID, parent, problems)
        }
    }

    /// A hex trace id of 16 or 32 characters (either case); also the AWS X-Ray form `1-<8 hex>-<24 hex>`.
    static func normalizeHexTraceID(_ text: String) -> String? {
        if let t = TraceIDs.normalizeTraceID(text) { return t }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        if parts.count == 3, parts[0] == "1", parts[1].utf8.count == 8, parts[2].utf8.count == 24 {
            return TraceIDs.normalizeTraceID(parts[1] + parts[2])
        }
        if text.utf8.count < 16, Hex.isHex(text) {
            // Jaeger-style ids with leading zeros dropped.
            return TraceIDs.normalizeTraceID(String(repeating: "0", count: 16 - text.utf8.count) + text)
        }
        return nil
    }

    // MARK: Addresses

    /// Splits `ip:port`, `[v6]:port`, a bare ip, or a URL such as `tcp://10.0.2.1:80` into address and port.
    static func hostPort(_ text: String) -> (host: String, port: Int?)? {
        var s = Substring(text)
        if let r = s.firstRange(of: "://") { s = s[r.upperBound...] }
        while s.hasSuffix("/") { s = s.dropLast() }
        if let slash = s.firstIndex(of: "/") { s = s[..<slash] }
        if let at = s.lastIndex(of: "@") { s = s[s.index(after: at)...] }
        guard !s.isEmpty else { return nil }
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            let host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            if rest.hasPrefix(":"), let p = Int(rest.dropFirst()), (0...65535).contains(p) {
                return (String(host), p)
            }
            return (String(host), nil)
        }
        let colons = s.utf8.reduce(0) { $0 + ($1 == 0x3A ? 1 : 0) }
        if colons == 1, let c = s.firstIndex(of: ":") {
            let port = Int(s[s.index(after: c)...]).flatMap { (0...65535).contains($0) ? $0 : nil }
            return (String(s[..<c]), port)
        }
        return (String(s), nil)
    }

    /// True for an IPv4 dotted quad or anything IPv6-looking.
    static func isIPAddress(_ host: some StringProtocol) -> Bool {
        if host.contains(":") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in !p.isEmpty && p.count <= 3 && p.allSatisfy(\.isASCIIDigitChar) }
    }

    /// The host part of an authority (`httpbin:8000` → `httpbin`).
    static func authorityHost(_ authority: String) -> String? {
        hostPort(authority).map(\.host).flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The first DNS label of a host name, nil for an IP address.
    static func firstLabel(_ host: some StringProtocol) -> String? {
        guard !host.isEmpty, !isIPAddress(host) else { return nil }
        let label = host.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return label.isEmpty ? nil : String(label)
    }

    // MARK: Values

    /// The path without the query string (and fragment).
    static func pathWithoutQuery(_ uri: String) -> String {
        if let i = uri.utf8.firstIndex(where: { $0 == 0x3F || $0 == 0x23 }) {
            return String(uri[..<i])
        }
        return uri
    }

    /// Milliseconds (number or numeric string, fractions allowed) as nanoseconds.
    static func nanos(milliseconds v: JSONValue?) -> Int64? {
        guard let v else { return nil }
        if let i = v.int {
            let (r, o) = i.multipliedReportingOverflow(by: 1_000_000)
            return o ? nil : r
        }
        if let d = v.double, d.isFinite, abs(d) < 9.2e12 { return Int64((d * 1_000_000).rounded()) }
        return nil
    }

    static func policy(_ text: String) -> PolicyDecision? {
        let t = text.lowercased().replacing("_", with: "-")
        switch t {
        case "allow", "allowed": return .allow
        case "deny", "denied": return .deny
        case "dry-run-deny", "dryrun-deny", "shadow-deny": return .dryRunDeny
        default: return nil
        }
    }

    /// A certificate validity time: RFC 3339 (Envoy's default), OpenSSL's `May  4 10:00:00 2026 GMT`, or epoch
    /// seconds.
    static func certificateTime(_ text: String) -> Timestamp? {
        if let t = Timestamp.parseRFC3339(text) { return t }
        if let t = opensslTime(text) { return t }
        if let i = Int64(text), i > 0, i < 100_000_000_000 { return Timestamp(seconds: i) }
        return nil
    }

    static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    /// `Mon DD HH:MM:SS YYYY GMT` (the `notAfter=` form of `openssl x509`).
    static func opensslTime(_ text: String) -> Timestamp? {
        let parts = text.split(separator: " ")
        guard parts.count == 5 || parts.count == 4,
            let month = months.firstIndex(of: parts[0].lowercased()), let day = Int(parts[1]),
            let year = Int(parts[3]), (1...31).contains(day)
        else { return nil }
        if parts.count == 5, parts[4] != "GMT", parts[4] != "UTC" { return nil }
        let hms = parts[2].split(separator: ":")
        guard hms.count == 3, let h = Int(hms[0]), let m = Int(hms[1]), let s = Int(hms[2]), h < 24, m < 60, s <= 60
        else { return nil }
        return Timestamp.utc(year: year, month: month + 1, day: day, hour: h, minute: m, second: min(s, 59))
    }

    /// A timestamp written as a number: epoch seconds, milliseconds, microseconds or nanoseconds, told apart by
    /// magnitude.
    static func epochTime(_ v: JSONValue) -> Timestamp? {
        if let i = v.int, i > 0 {
            switch i {
            case ..<100_000_000_000: return Timestamp(seconds: i)
            case ..<100_000_000_000_000: return Timestamp(milliseconds: i)
            case ..<100_000_000_000_000_000: return Timestamp(nanoseconds: i &* 1000)
            default: return Timestamp(nanoseconds: i)
            }
        }
        if let d = v.double, d.isFinite, d > 0, d < 100_000_000_000 { return Timestamp(epochSeconds: d) }
        return nil
    }

    /// Shortens attacker-controlled text quoted in a reason.
    static func clip(_ s: String, _ n: Int = 60) -> String {
        var out = ""
        for ch in s.unicodeScalars.prefix(n) {
            out.unicodeScalars.append(ch.value >= 0x20 && ch.value != 0x7F ? ch : "?")
        }
        return s.unicodeScalars.count > n ? out + "…" : out
    }

    static func location(_ r: JSONRecord) -> RecordLocation {
        RecordLocation(line: r.line, detail: r.arrayIndex.map { "[\($0)]" })
    }
}

extension Character {
    var isASCIIDigitChar: Bool { isASCII && isNumber }
}

/// Read access to a flat JSON object, treating `null`, `""` and `"-"` as unset (Envoy's conventions).
struct FieldReader {
    let members: [(String, JSONValue)]

    init(_ members: [(String, JSONValue)]) { self.members = members }

    @inline(__always)
    func value(_ key: String) -> JSONValue? {
        for (k, v) in members where k == key { return v }
        return nil
    }

    /// True if the key is present at all, even unset.
    func has(_ key: String) -> Bool { value(key) != nil }

    /// Text of a set value.
    func text(_ key: String) -> String? { value(key)?.text }

    func int(_ key: String) -> Int64? { value(key)?.int }
}

/// Header lookup in a Kong `request.headers` object: lowercase names, a repeated header is an array (the
/// first value wins).
struct HeaderReader {
    let headers: JSONValue?

    func first(_ name: String) -> String? {
        guard let v = headers?[name] else { return nil }
        switch v {
        case .array(let a):
            for e in a { if let t = e.text { return t } }
            return nil
        default:
            guard let s = v.text else { return nil }
            return s
        }
    }

    func has(_ name: String) -> Bool { headers?[name] != nil }
}
