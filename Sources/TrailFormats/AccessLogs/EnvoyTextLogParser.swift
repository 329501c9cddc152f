import TrailCore

/// Envoy access-log format strings.
public enum EnvoyFormat {
    /// Envoy's default text format (no format configured), envoyproxy/envoy `usage.rst`.
    public static let envoyDefault =
        "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
        + "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
        + "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
        + "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n"

    /// Istio's default TEXT proxy access-log format (`EnvoyTextLogFormat`, istio/istio
    /// `pilot/pkg/model/telemetry_logging.go`, Istio ≥ 1.9).
    public static let istioDefaultText =
        "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
        + "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
        + "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
        + "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
        + "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
        + "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
        + "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"

    /// The field key an Envoy command operator is given, the same as the key of Istio's JSON format:
    /// `REQ(:METHOD)` → `method`, `REQ(X-ENVOY-ORIGINAL-PATH?:PATH)` → `path`, `REQ(X-REQUEST-ID)` →
    /// `request_id`, `REQ(:AUTHORITY)` → `authority`, `RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)` →
    /// `upstream_service_time`, `UPSTREAM_CLUSTER_RAW` → `upstream_cluster`; any other `REQ(H)` → `h`
    /// lowercased with `-` → `_` (a pseudo-header loses its `:`; for `REQ(A?B)` the key of A); any other
    /// `RESP(H)` / `TRAILER(H)` → `resp_h` / `trailer_h`; any other operator → its name lowercased (arguments
    /// dropped: `START_TIME(%s)` → `start_time`).
    public static func key(operator name: String, argument: String?) -> String {
        switch (name, argument) {
        case ("REQ", "X-ENVOY-ORIGINAL-PATH?:PATH"), ("REQ", ":PATH"), ("REQ_WITHOUT_QUERY", _): return "path"
        case ("REQ", ":METHOD"): return "method"
        case ("REQ", "X-REQUEST-ID"): return "request_id"
        case ("REQ", ":AUTHORITY"): return "authority"
        case ("RESP", "X-ENVOY-UPSTREAM-SERVICE-TIME"): return "upstream_service_time"
        case ("UPSTREAM_CLUSTER_RAW", _): return "upstream_cluster"
        case ("REQ", let arg?):
            return headerKey(arg)
        case ("RESP", let arg?):
            return "resp_" + headerKey(arg)
        case ("TRAILER", let arg?), ("RESPONSE_TRAILER", let arg?):
            return "trailer_" + headerKey(arg)
        default:
            return name.lowercased()
        }
    }

    static func headerKey(_ arg: String) -> String {
        var h = Substring(arg)
        if let q = h.firstIndex(of: "?") { h = h[..<q] }
        while h.hasPrefix(":") { h = h.dropFirst() }
        return String(h.lowercased().map { $0 == "-" ? "_" : $0 })
    }
}

/// A compiled Envoy format string: literals and command operators.
struct CompiledEnvoyFormat: Sendable {
    enum Token: Sendable {
        case literal([UInt8])
        /// `source` is the operator as written (`%REQ(:METHOD)%`), for error messages.
        case field(key: String, source: String)
    }

    let tokens: [Token]

    init(_ format: String) {
        var text = Array(format.utf8)
        // The trailing newline ends the line; lines are split before matching.
        while let last = text.last, last == 0x0A || last == 0x0D { text.removeLast() }
        if text.count >= 2, text[text.count - 2] == 0x5C, text[text.count - 1] == 0x6E { text.removeLast(2) }
        var tokens: [Token] = []
        var literal: [UInt8] = []
        var i = 0
        func flush() {
            if !literal.isEmpty { tokens.append(.literal(literal)) }
            literal = []
        }
        while i < text.count {
            guard text[i] == 0x25 else {
                literal.append(text[i])
                i += 1
                continue
            }
            if i + 1 < text.count, text[i + 1] == 0x25 {  // "%%" is a literal percent sign
                literal.append(0x25)
                i += 2
                continue
            }
            if let (name, argument, end) = Self.operatorAt(text, i) {
                flush()
                let source = String(decoding: text[i...end], as: UTF8.self)
                tokens.append(.field(key: EnvoyFormat.key(operator: name, argument: argument), source: source))
                i = end + 1
            } else {
                literal.append(0x25)
                i += 1
            }
        }
        flush()
        self.tokens = tokens
    }

    /// `%NAME%`, `%NAME(arg)%`, `%NAME(arg):N%` starting at `start`; returns the index of the closing `%`.
    static func operatorAt(_ t: [UInt8], _ start: Int) -> (String, String?, Int)? {
        var i = start + 1
        let nameStart = i
        while i < t.count, (0x41...0x5A).contains(t[i]) || (0x30...0x39).contains(t[i]) || t[i] == 0x5F { i += 1 }
        guard i > nameStart, i < t.count else { return nil }
        let name = String(decoding: t[nameStart..<i], as: UTF8.self)
        var argument: String?
        if t[i] == 0x28 {  // (
            var depth = 0
            let argStart = i + 1
            while i < t.count {
                if t[i] == 0x28 { depth += 1 }
                if t[i] == 0x29 {
                    depth -= 1
                    if depth == 0 { break }
                }
                i += 1
            }
            guard i < t.count else { return nil }
            argument = String(decoding: t[argStart..<i], as: UTF8.self)
            i += 1
        }
        if i < t.count, t[i] == 0x3A {  // :N truncation
            i += 1
            let digitsStart = i
            while i < t.count, (0x30...0x39).contains(t[i]) { i += 1 }
            guard i > digitsStart else { return nil }
        }
        guard i < t.count, t[i] == 0x25 else { return nil }
        return (name, argument, i)
    }

    /// Splits a line into field values, or says which literal or operator failed to match.
    func match(_ line: ArraySlice<UInt8>) -> Result<[(String, JSONValue)], MatchError> {
        var fields: [(String, JSONValue)] = []
        fields.reserveCapacity(tokens.count)
        var p = line.startIndex
        var k = 0
        while k < tokens.count {
            switch tokens[k] {
            case .literal(let lit):
                guard line.endIndex - p >= lit.count, line[p..<(p + lit.count)].elementsEqual(lit) else {
                    return .failure(MatchError(reason: "expected '\(show(lit))' at column \(p - line.startIndex + 1)"
                        + (k + 1 < tokens.count ? " (before \(describe(tokens[k + 1])))" : "")))
                }
                p += lit.count
                k += 1
            case .field(let key, let source):
                let valueEnd: Int
                if k + 1 == tokens.count {
                    valueEnd = line.endIndex
                } else if case .literal(let next) = tokens[k + 1] {
                    let found = k + 2 == tokens.count ? suffixStart(line, p, next) : find(line, p, next)
                    guard let found else {
                        return .failure(MatchError(
                            reason: "no '\(show(next))' after \(source) (from column \(p - line.startIndex + 1))"))
                    }
                    valueEnd = found
                } else {
                    // Two operators with nothing between them: the first takes one space-free token.
                    var e = p
                    while e < line.endIndex, line[e] != 0x20 { e += 1 }
                    valueEnd = e
                }
                fields.append((key, .string(String(decoding: line[p..<valueEnd], as: UTF8.self))))
                p = valueEnd
                k += 1
            }
        }
        guard p == line.endIndex else {
            return .failure(MatchError(reason: "unexpected text after the last field at column \(p - line.startIndex + 1)"))
        }
        return .success(fields)
    }

    struct MatchError: Error {
        var reason: String
    }

    func describe(_ t: Token) -> String {
        switch t {
        case .literal(let l): return "'\(show(l))'"
        case .field(_, let source): return source
        }
    }

    func show(_ l: [UInt8]) -> String { String(decoding: l, as: UTF8.self) }

    func find(_ line: ArraySlice<UInt8>, _ from: Int, _ needle: [UInt8]) -> Int? {
        guard let first = needle.first, line.endIndex - from >= needle.count else { return nil }
        var i = from
        let last = line.endIndex - needle.count
        while i <= last {
            if line[i] == first {
                var j = 1
                while j < needle.count, line[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }

    /// The final literal must end the line.
    func suffixStart(_ line: ArraySlice<UInt8>, _ from: Int, _ needle: [UInt8]) -> Int? {
        guard line.endIndex - from >= needle.count else { return nil }
        let s = line.endIndex - needle.count
        return line[s...].elementsEqual(needle) ? s : nil
    }
}

/// Reads Envoy / Istio text access-log lines with an Envoy format string (Istio's default unless told
/// otherwise). Each operator's value is keyed like Istio's JSON format and mapped exactly as
/// ``EnvoyJSONLogParser`` maps a JSON line, so both give identical observations.
public struct EnvoyTextLogParser: Sendable {
    public let format: String
    let compiled: CompiledEnvoyFormat

    public init(format: String = EnvoyFormat.istioDefaultText) {
        self.format = format
        self.compiled = CompiledEnvoyFormat(format)
    }

    /// The field keys the format yields, in order.
    public var keys: [String] {
        compiled.tokens.compactMap { if case .field(let key, _) = $0 { return key } else { return nil } }
    }

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        var out: [ParseResult] = []
        for (lineNumber, bytes) in LineSplitter.lines(in: input) {
            let location = RecordLocation(line: lineNumber)
            let raw = Array(bytes)
            switch compiled.match(bytes) {
            case .failure(let e):
                out.append(.rejected(Rejection(
                    format: .envoyText, location: location, raw: raw,
                    reason: "line does not match the Envoy format: " + e.reason)))
            case .success(let fields):
                out.append(EnvoyAccessLogMapper.result(
                    AccessLogFields(fields), format: .envoyText, location: location, raw: raw))
            }
        }
        return out
    }
}
