/// Trace-context propagation headers: W3C `traceparent` / `tracestate`, B3 (single and multi header) and
/// Jaeger's `uber-trace-id`. Pure parsing of attacker-controlled header text: nothing here traps, every
/// failure carries a reason.

/// Why a propagation header could not be used.
public struct TraceContextError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Which header (`traceparent`, `tracestate`, `b3`, `x-b3-traceid`, `uber-trace-id`).
    public var header: String
    public var reason: String

    public init(header: String, reason: String) {
        self.header = header
        self.reason = reason
    }

    public var description: String { "\(header): \(reason)" }
}

// MARK: - W3C traceparent

/// A W3C `traceparent` header (W3C Trace Context, Level 1 and the Level 2 draft).
public struct W3CTraceParent: Sendable, Hashable, CustomStringConvertible {
    /// Version byte (`00` today). Higher versions are parsed leniently.
    public var version: UInt8
    /// 32 lowercase hex characters, not all zero.
    public var traceID: String
    /// 16 lowercase hex characters, not all zero: the caller's span.
    public var parentID: String
    /// The trace-flags bit field.
    public var flags: UInt8

    /// Bit 0: the caller may have recorded this trace.
    public var sampled: Bool { flags & 0x01 != 0 }
    /// Bit 1 (Level 2): the right-most 7 bytes of the trace id are random.
    public var randomTraceID: Bool { flags & 0x02 != 0 }

    /// Builds a traceparent from ids already known to be valid (for example from ``TraceIDs``).
    /// Returns nil if an id is not lowercase hex of the right length, or is all zero, or if `version` is 0xff.
    public init?(traceID: String, parentID: String, flags: UInt8 = 0x01, version: UInt8 = 0) {
        guard version != 0xFF,
            W3CTraceParent.isLowerHex(traceID.utf8, count: 32), W3CTraceParent.isLowerHex(parentID.utf8, count: 16),
            traceID.utf8.contains(where: { $0 != 0x30 }), parentID.utf8.contains(where: { $0 != 0x30 })
        else { return nil }
        self.version = version
        self.traceID = traceID
        self.parentID = parentID
        self.flags = flags
    }

    private init(unchecked version: UInt8, _ traceID: String, _ parentID: String, _ flags: UInt8) {
        self.version = version
        self.traceID = traceID
        self.parentID = parentID
        self.flags = flags
    }

    /// Parses a header value, or nil if it is invalid (see ``parse(_:)`` for the reason).
    public init?(_ text: some StringProtocol) {
        guard case .success(let v) = W3CTraceParent.parse(text) else { return nil }
        self = v
    }

    /// The header value: `00-<trace-id>-<parent-id>-<flags>`. Always written as version 00, the only
    /// version this implementation knows how to produce.
    public func format() -> String {
        "00-" + traceID + "-" + parentID + "-" + Hex.encode([flags])
    }

    public var description: String { format() }

    /// Parses a `traceparent` header value per W3C Trace Context §3.2.
    ///
    /// - Version `00`: exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase only, nothing after.
    /// - A higher version (not `ff`): the same fields at the same offsets, each followed by `-` or the end;
    ///   anything after the flags (starting with `-`) is ignored.
    /// - All-zero trace-id or parent-id, uppercase or non-hex characters: invalid.
    /// Leading and trailing spaces and tabs (HTTP optional whitespace) are ignored.
    public static func parse(_ text: some StringProtocol) -> Result<W3CTraceParent, TraceContextError> {
        let b = Array(trimOWS(Array(text.utf8)))
        func fail(_ reason: String) -> Result<W3CTraceParent, TraceContextError> {
            .failure(TraceContextError(header: "traceparent", reason: reason))
        }
        if b.isEmpty { return fail("empty header") }
        guard b.count >= 2, let vh = lowerHexValue(b[0]), let vl = lowerHexValue(b[1]) else {
            return fail("version is not 2 lowercase hex digits")
        }
        let version = vh << 4 | vl
        if version == 0xFF { return fail("version ff is invalid") }
        guard b.count >= 3, b[2] == 0x2D else { return fail("no '-' after the version") }
        if version == 0 {
            guard b.count >= 55 else { return fail("too short for version 00 (\(b.count) characters, need 55)") }
            guard b.count == 55 else { return fail("too long for version 00 (\(b.count) characters, need 55)") }
        } else {
            guard b.count >= 55 else { return fail("too short (\(b.count) characters, need at least 55)") }
            if b.count > 55, b[55] != 0x2D { return fail("flags are not followed by '-' or the end") }
        }
        let traceSlice = b[3..<35]
        if let problem = hexProblem(traceSlice) { return fail("trace-id \(problem)") }
        guard b[35] == 0x2D else { return fail("no '-' after the trace-id") }
        let parentSlice = b[36..<52]
        if let problem = hexProblem(parentSlice) { return fail("parent-id \(problem)") }
        guard b[52] == 0x2D else { return fail("no '-' after the parent-id") }
        guard let fh = lowerHexValue(b[53]), let fl = lowerHexValue(b[54]) else {
            return fail("trace-flags are not 2 lowercase hex digits")
        }
        guard traceSlice.contains(where: { $0 != 0x30 }) else { return fail("trace-id is all zero") }
        guard parentSlice.contains(where: { $0 != 0x30 }) else { return fail("parent-id is all zero") }
        return .success(W3CTraceParent(
            unchecked: version, String(decoding: traceSlice, as: UTF8.self),
            String(decoding: parentSlice, as: UTF8.self), fh << 4 | fl))
    }

    // MARK: helpers

    @inline(__always)
    static func lowerHexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    static func isLowerHex(_ s: String.UTF8View, count: Int) -> Bool {
        s.count == count && s.allSatisfy { lowerHexValue($0) != nil }
    }

    /// nil when every byte is a lowercase hex digit, else a reason.
    static func hexProblem(_ s: ArraySlice<UInt8>) -> String? {
        for c in s where lowerHexValue(c) == nil {
            if (0x41...0x46).contains(c) { return "has uppercase hex (only lowercase is allowed)" }
            if c == 0x2D { return "is too short" }
            return "has a non-hex character"
        }
        return nil
    }

    static func trimOWS(_ b: [UInt8]) -> ArraySlice<UInt8> {
        var s = b[...]
        while let f = s.first, f == 0x20 || f == 0x09 { s = s.dropFirst() }
        while let l = s.last, l == 0x20 || l == 0x09 { s = s.dropLast() }
        return s
    }
}

// MARK: - W3C tracestate

/// A W3C `tracestate` header: an ordered list of vendor `key=value` members.
public struct TraceState: Sendable, Hashable, CustomStringConvertible {
    public struct Member: Sendable, Hashable {
        public var key: String
        public var value: String

        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    /// At most 32 list members.
    public static let maximumMembers = 32
    /// Keys and values are at most 256 characters.
    public static let maximumKeyLength = 256
    public static let maximumValueLength = 256

    /// Members in header order (left-most = most recently updated).
    public var members: [Member]

    public init(members: [Member] = []) { self.members = members }

    /// The value for a vendor key.
    public func value(forKey key: String) -> String? {
        members.first { $0.key == key }?.value
    }

    /// The header value, `key=value` members joined by `,`.
    public func format() -> String {
        members.map { $0.key + "=" + $0.value }.joined(separator: ",")
    }

    public var description: String { format() }

    /// Parses one or more `tracestate` header field values (several fields are combined with `,`, as
    /// RFC 9110 says). Empty members and optional whitespace around members are allowed. The whole header is
    /// invalid if any member is malformed, a key repeats, or there are more than 32 members.
    public static func parse(_ fields: [String]) -> Result<TraceState, TraceContextError> {
        parse(fields.joined(separator: ","))
    }

    public static func parse(_ text: some StringProtocol) -> Result<TraceState, TraceContextError> {
        func fail(_ reason: String) -> Result<TraceState, TraceContextError> {
            .failure(TraceContextError(header: "tracestate", reason: reason))
        }
        var members: [Member] = []
        var seen = Set<String>()
        for rawMember in Array(text.utf8).split(separator: 0x2C, omittingEmptySubsequences: false) {
            var m = rawMember[...]
            while let f = m.first, f == 0x20 || f == 0x09 { m = m.dropFirst() }
            while let l = m.last, l == 0x20 || l == 0x09 { m = m.dropLast() }
            if m.isEmpty { continue }
            guard let eq = m.firstIndex(of: 0x3D) else {
                return fail("member \(members.count + 1) has no '='")
            }
            let key = m[m.startIndex..<eq]
            let value = m[(eq + 1)...]
            if let problem = keyProblem(key) { return fail("member \(members.count + 1) key \(problem)") }
            if let problem = valueProblem(value) { return fail("member \(members.count + 1) value \(problem)") }
            let k = String(decoding: key, as: UTF8.self)
            guard seen.insert(k).inserted else { return fail("duplicate key '\(k)'") }
            members.append(Member(key: k, value: String(decoding: value, as: UTF8.self)))
            if members.count > maximumMembers { return fail("more than \(maximumMembers) list members") }
        }
        return .success(TraceState(members: members))
    }

    static func keyProblem(_ key: ArraySlice<UInt8>) -> String? {
        guard let first = key.first else { return "is empty" }
        guard key.count <= maximumKeyLength else { return "is longer than \(maximumKeyLength) characters" }
        guard (0x61...0x7A).contains(first) || (0x30...0x39).contains(first) else {
            return "must start with a lowercase letter or a digit"
        }
        for c in key {
            switch c {
            case 0x61...0x7A, 0x30...0x39, 0x5F, 0x2D, 0x2A, 0x2F, 0x40: continue
            default: return "has a character outside a-z 0-9 _ - * / @"
            }
        }
        return nil
    }

    static func valueProblem(_ value: ArraySlice<UInt8>) -> String? {
        guard let last = value.last else { return "is empty" }
        guard value.count <= maximumValueLength else { return "is longer than \(maximumValueLength) characters" }
        guard last != 0x20 else { return "ends with a space" }
        for c in value {
            guard c >= 0x20, c <= 0x7E, c != 0x2C, c != 0x3D else {
                return "has a character outside printable ASCII or a ',' or '='"
            }
        }
        return nil
    }
}

// MARK: - B3

/// The sampling decision of a B3 context.
public enum B3SamplingState: String, Sendable, Hashable {
    case accept = "1"
    case deny = "0"
    case debug = "d"
}

/// A Zipkin B3 propagation context, from the single `b3` header or the `X-B3-*` headers.
public struct B3Context: Sendable, Hashable {
    /// 16 or 32 lowercase hex characters as sent; nil for a sampling-only header (`b3: 0`).
    public var traceID: String?
    /// 16 lowercase hex characters: the caller's span; nil for a sampling-only header.
    public var spanID: String?
    /// 16 lowercase hex characters, absent on root spans.
    public var parentSpanID: String?
    /// nil when the sender deferred the decision.
    public var sampling: B3SamplingState?

    public init(
        traceID: String? = nil, spanID: String? = nil, parentSpanID: String? = nil, sampling: B3SamplingState? = nil
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.sampling = sampling
    }

    /// The trace id as 32 hex characters (64-bit ids left-padded), for joining with W3C ids.
    public var normalizedTraceID: String? { traceID.flatMap { TraceIDs.normalizeTraceID($0) } }

    /// True if this header carries only a sampling decision.
    public var isSamplingOnly: Bool { traceID == nil }

    /// The single-header form: `{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`, or just the state.
    public func formatSingle() -> String {
        guard let traceID, let spanID else { return sampling?.rawValue ?? "" }
        var s = traceID + "-" + spanID
        if let sampling {
            s += "-" + sampling.rawValue
            if let parentSpanID { s += "-" + parentSpanID }
        }
        return s
    }

    /// Parses the single `b3` header (openzipkin/b3-propagation).
    public static func parseSingle(_ text: some StringProtocol) -> Result<B3Context, TraceContextError> {
        func fail(_ reason: String) -> Result<B3Context, TraceContextError> {
            .failure(TraceContextError(header: "b3", reason: reason))
        }
        let b = W3CTraceParent.trimOWS(Array(text.utf8))
        if b.isEmpty { return fail("empty header") }
        let parts = b.split(separator: 0x2D, omittingEmptySubsequences: false)
        if parts.count == 1 {
            guard let state = sampling(parts[0]) else { return fail("'\(show(parts[0]))' is not a sampling state") }
            return .success(B3Context(sampling: state))
        }
        guard parts.count <= 4 else { return fail("more than 4 fields") }
        let traceID: String
        switch traceIDField(parts[0]) {
        case .success(let t): traceID = t
        case .failure(let reason): return fail("trace id \(reason)")
        }
        let spanID: String
        switch spanIDField(parts[1]) {
        case .success(let s): spanID = s
        case .failure(let reason): return fail("span id \(reason)")
        }
        var ctx = B3Context(traceID: traceID, spanID: spanID)
        if parts.count >= 3 {
            guard let state = sampling(parts[2]) else {
                return fail("sampling state '\(show(parts[2]))' is not 1, 0 or d")
            }
            ctx.sampling = state
        }
        if parts.count == 4 {
            switch spanIDField(parts[3]) {
            case .success(let p): ctx.parentSpanID = p
            case .failure(let reason): return fail("parent span id \(reason)")
            }
        }
        return .success(ctx)
    }

    /// Parses the `X-B3-*` headers. Pass the first value of each header, or nil if absent.
    /// `X-B3-Sampled` takes `1`/`0` (and leniently `true`/`false`); `X-B3-Flags: 1` means debug.
    public static func parseMulti(
        traceID: String?, spanID: String?, parentSpanID: String? = nil, sampled: String? = nil, flags: String? = nil
    ) -> Result<B3Context, TraceContextError> {
        var ctx = B3Context()
        if let flags {
            let f = flags.trimmingOWS()
            if f == "1" {
                ctx.sampling = .debug
            } else if f != "0" {
                return .failure(TraceContextError(header: "x-b3-flags", reason: "'\(f.prefix(40))' is not 1 or 0"))
            }
        }
        if ctx.sampling == nil, let sampled {
            switch sampled.trimmingOWS() {
            case "1", "true": ctx.sampling = .accept
            case "0", "false": ctx.sampling = .deny
            case "d": ctx.sampling = .debug
            default:
                return .failure(TraceContextError(
                    header: "x-b3-sampled", reason: "'\(sampled.prefix(40))' is not 1, 0, true or false"))
            }
        }
        switch (traceID, spanID) {
        case (nil, nil):
            guard parentSpanID == nil else {
                return .failure(TraceContextError(header: "x-b3-parentspanid", reason: "present without a trace id"))
            }
            guard ctx.sampling != nil else {
                return .failure(TraceContextError(header: "x-b3-traceid", reason: "no B3 headers"))
            }
            return .success(ctx)
        case (nil, .some):
            return .failure(TraceContextError(header: "x-b3-traceid", reason: "missing while x-b3-spanid is present"))
        case (.some, nil):
            return .failure(TraceContextError(header: "x-b3-spanid", reason: "missing while x-b3-traceid is present"))
        case let (.some(t), .some(s)):
            switch traceIDField(W3CTraceParent.trimOWS(Array(t.utf8))) {
            case .success(let v): ctx.traceID = v
            case .failure(let reason): return .failure(TraceContextError(header: "x-b3-traceid", reason: "\(reason)"))
            }
            switch spanIDField(W3CTraceParent.trimOWS(Array(s.utf8))) {
            case .success(let v): ctx.spanID = v
            case .failure(let reason): return .failure(TraceContextError(header: "x-b3-spanid", reason: "\(reason)"))
            }
            if let p = parentSpanID {
                switch spanIDField(W3CTraceParent.trimOWS(Array(p.utf8))) {
                case .success(let v): ctx.parentSpanID = v
                case .failure(let reason):
                    return .failure(TraceContextError(header: "x-b3-parentspanid", reason: "\(reason)"))
                }
            }
            return .success(ctx)
        }
    }

    // MARK: helpers

    static func sampling(_ s: ArraySlice<UInt8>) -> B3SamplingState? {
        guard s.count == 1 else { return nil }
        switch s[s.startIndex] {
        case 0x31: return .accept
        case 0x30: return .deny
        case 0x64: return .debug
        default: return nil
        }
    }

    fileprivate static func traceIDField(_ s: ArraySlice<UInt8>) -> Result<String, TraceFieldProblem> {
        guard s.count == 16 || s.count == 32 else {
            return .failure(TraceFieldProblem("is \(s.count) characters, not 16 or 32"))
        }
        if let p = W3CTraceParent.hexProblem(s) { return .failure(TraceFieldProblem(p)) }
        guard s.contains(where: { $0 != 0x30 }) else { return .failure(TraceFieldProblem("is all zero")) }
        return .success(String(decoding: s, as: UTF8.self))
    }

    fileprivate static func spanIDField(_ s: ArraySlice<UInt8>) -> Result<String, TraceFieldProblem> {
        guard s.count == 16 else { return .failure(TraceFieldProblem("is \(s.count) characters, not 16")) }
        if let p = W3CTraceParent.hexProblem(s) { return .failure(TraceFieldProblem(p)) }
        guard s.contains(where: { $0 != 0x30 }) else { return .failure(TraceFieldProblem("is all zero")) }
        return .success(String(decoding: s, as: UTF8.self))
    }

    static func show(_ s: ArraySlice<UInt8>) -> String {
        String(decoding: s.prefix(40), as: UTF8.self)
    }
}

/// A reason string usable as a `Result` failure.
fileprivate struct TraceFieldProblem: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

// MARK: - Jaeger

/// Jaeger's `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}` header. Jaeger drops leading
/// zeros, so ids of 1–32 (trace) and 1–16 (span) hex characters are accepted and left-padded.
public struct UberTraceID: Sendable, Hashable {
    /// 32 lowercase hex characters.
    public var traceID: String
    /// 16 lowercase hex characters.
    public var spanID: String
    /// 16 lowercase hex characters, nil when `0` (root span).
    public var parentSpanID: String?
    public var flags: UInt8

    public var sampled: Bool { flags & 0x01 != 0 }

    public static func parse(_ text: some StringProtocol) -> Result<UberTraceID, TraceContextError> {
        func fail(_ reason: String) -> Result<UberTraceID, TraceContextError> {
            .failure(TraceContextError(header: "uber-trace-id", reason: reason))
        }
        var t = String(text).trimmingOWS()
        // Values are sometimes logged URL-encoded (`%3A` for `:`).
        if t.contains("%3A") || t.contains("%3a") {
            t = t.replacingOccurrences(of: "%3A", with: ":", caseInsensitive: true)
        }
        let parts = t.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return fail("expected 4 ':'-separated fields, found \(parts.count)") }
        guard let trace = pad(parts[0], to: 32) else { return fail("trace id is not 1 to 32 hex characters") }
        guard let trace128 = TraceIDs.normalizeTraceID(trace) else { return fail("trace id is all zero") }
        guard let span = pad(parts[1], to: 16), span.utf8.contains(where: { $0 != 0x30 }) else {
            return fail("span id is not 1 to 16 hex characters, or is zero")
        }
        guard let parent = pad(parts[2], to: 16) else { return fail("parent span id is not 1 to 16 hex characters") }
        guard let flagsValue = UInt8(parts[3], radix: 16) else { return fail("flags are not hex") }
        return .success(UberTraceID(
            traceID: trace128, spanID: span,
            parentSpanID: parent.utf8.contains(where: { $0 != 0x30 }) ? parent : nil, flags: flagsValue))
    }

    static func pad(_ s: Substring, to width: Int) -> String? {
        guard !s.isEmpty, s.utf8.count <= width, Hex.isHex(s) else { return nil }
        return String(repeating: "0", count: width - s.utf8.count) + s.lowercased()
    }
}

// MARK: - Id helpers

extension TraceIDs {
    /// A Datadog trace id (unsigned decimal, 64 or 128 bits) as 32 lowercase hex characters; nil for
    /// non-decimal, zero or out-of-range values.
    public static func datadogTraceID(decimal text: some StringProtocol) -> String? {
        let u = Array(text.utf8)
        guard !u.isEmpty, u.count <= 39 else { return nil }
        var hi: UInt64 = 0
        var lo: UInt64 = 0
        for c in u {
            guard c >= 0x30, c <= 0x39 else { return nil }
            // (hi, lo) = (hi, lo) * 10 + digit, in 128 bits.
            let loProduct = lo.multipliedFullWidth(by: 10)
            let (hiTimes10, o1) = hi.multipliedReportingOverflow(by: 10)
            let (hiSum, o2) = hiTimes10.addingReportingOverflow(loProduct.high)
            let (newLo, carry) = loProduct.low.addingReportingOverflow(UInt64(c - 0x30))
            let (newHi, o3) = hiSum.addingReportingOverflow(carry ? 1 : 0)
            guard !o1, !o2, !o3 else { return nil }
            hi = newHi
            lo = newLo
        }
        guard hi != 0 || lo != 0 else { return nil }
        return hex64(hi) + hex64(lo)
    }

    static func hex64(_ v: UInt64) -> String {
        var bytes = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64(i))) }
        return Hex.encode(bytes)
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    fileprivate func trimmingOWS() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String, caseInsensitive: Bool) -> String
    {
        var out = ""
        var rest = Substring(self)
        let t = caseInsensitive ? target.lowercased() : target
        while !rest.isEmpty {
            let candidate = rest.prefix(target.count)
            if (caseInsensitive ? candidate.lowercased() : String(candidate)) == t {
                out += replacement
                rest = rest.dropFirst(target.count)
            } else {
                out.append(rest.removeFirst())
            }
        }
        return out
    }
}
