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
        var copy = text
        return copy.withUTF8 { u -> (host: String, port: Int?)? in
            var start = 0
            var end = u.count
            // Drop a scheme.
            if u.count >= 3 {
                var i = 0
                while i + 2 < u.count {
                    if u[i] == 0x3A, u[i + 1] == 0x2F, u[i + 2] == 0x2F {
                        start = i + 3
                        break
                    }
                    if u[i] == 0x2F || u[i] == 0x40 { break }
                    i += 1
                }
            }
            // Drop a path.
            var i = start
            while i < end {
                if u[i] == 0x2F {
                    end = i
                    break
                }
                i += 1
            }
            // Drop user info.
            i = end
            while i > start {
                if u[i - 1] == 0x40 {
                    start = i
                    break
                }
                i -= 1
            }
            guard end > start else { return nil }
            func text(_ a: Int, _ b: Int) -> String { String(decoding: UnsafeBufferPointer(rebasing: u[a..<b]), as: UTF8.self) }
            func port(_ a: Int, _ b: Int) -> Int? {
                guard b > a, b - a <= 5 else { return nil }
                var v = 0
                for k in a..<b {
                    guard u[k] >= 0x30, u[k] <= 0x39 else { return nil }
                    v = v * 10 + Int(u[k] - 0x30)
                }
                return v <= 65535 ? v : nil
            }
            if u[start] == 0x5B {  // [v6]:port
                var close = start + 1
                while close < end, u[close] != 0x5D { close += 1 }
                guard close < end else { return nil }
                let host = text(start + 1, close)
                if close + 1 < end, u[close + 1] == 0x3A { return (host, port(close + 2, end)) }
                return (host, nil)
            }
            var colon = -1
            var colons = 0
            for k in start..<end where u[k] == 0x3A {
                colons += 1
                colon = k
            }
            if colons == 1 { return (text(start, colon), port(colon + 1, end)) }
            return (text(start, end), nil)
        }
    }

    /// True for an IPv4 dotted quad or anything IPv6-looking.
    static func isIPAddress(_ host: some StringProtocol) -> Bool {
        var dots = 0
        var digits = 0
        for c in host.utf8 {
            switch c {
            case 0x3A: return true
            case 0x2E:
                guard digits > 0 else { return false }
                dots += 1
                digits = 0
            case 0x30...0x39:
                digits += 1
                guard digits <= 3 else { return false }
            default: return false
            }
        }
        return dots == 3 && digits > 0
    }

    /// The host part of an authority (`httpbin:8000` → `httpbin`).
    static func authorityHost(_ authority: String) -> String? {
        hostPort(authority).map(\.host).flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The first DNS label of a host name, nil for an IP address.
    static func firstLabel(_ host: some StringProtocol) -> String? {
        guard !host.isEmpty, !isIPAddress(host) else { return nil }
        let u = host.utf8
        let end = u.firstIndex(of: 0x2E) ?? u.endIndex
        guard end != u.startIndex else { return nil }
        return String(decoding: u[u.startIndex..<end], as: UTF8.self)
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
            let year = Int(parts[3]), (1...31).contains(day), (1...9999).contains(year)
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
}

/// Read access to a flat JSON object, treating `null`, `""` and `"-"` as unset (Envoy's conventions).
///
/// Lookups go through a small open-addressing table keyed by a cheap hash of the key's length and three of
/// its bytes: log objects have a few dozen keys and are read once, so SipHash-based dictionaries cost more
/// than they save.
struct AccessLogFields {
    let members: [(String, JSONValue)]
    private var slots: [Int32]
    private let mask: Int

    /// The first occurrence of a key wins.
    init(_ members: [(String, JSONValue)]) {
        self.members = members
        var size = 16
        while size < members.count * 2 { size <<= 1 }
        mask = size - 1
        slots = [Int32](repeating: -1, count: size)
        for (i, (k, _)) in members.enumerated() {
            var h = Self.hash(k) & mask
            while true {
                let s = Int(slots[h])
                if s < 0 {
                    slots[h] = Int32(truncatingIfNeeded: i)
                    break
                }
                if members[s].0 == k { break }
                h = (h + 1) & mask
            }
        }
    }

    @inline(__always)
    static func hash(_ key: String) -> Int {
        let u = key.utf8
        let n = u.count
        guard n > 0 else { return 0 }
        let first = Int(u[u.startIndex])
        let last = Int(u[u.index(u.startIndex, offsetBy: n - 1)])
        let mid = Int(u[u.index(u.startIndex, offsetBy: n / 2)])
        return (n &* 0x9E37) ^ (first &* 31) ^ (last &* 0x2F1) ^ (mid &* 0x1F3)
    }

    @inline(__always)
    func value(_ key: String) -> JSONValue? {
        var h = Self.hash(key) & mask
        while true {
            let s = Int(slots[h])
            if s < 0 { return nil }
            if members[s].0 == key { return members[s].1 }
            h = (h + 1) & mask
        }
    }

    /// True if the key is present at all, even unset.
    func has(_ key: String) -> Bool { value(key) != nil }

    /// Text of a set value.
    func text(_ key: String) -> String? { value(key)?.text }

    func int(_ key: String) -> Int64? { value(key)?.int }
}

/// Header lookup in a Kong `request.headers` object: lowercase names, a repeated header is an array (the
/// first value wins).
struct AccessLogHeaders {
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
