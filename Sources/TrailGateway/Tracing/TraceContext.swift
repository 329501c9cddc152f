import Foundation

/// The trace a request belongs to, as the gateway hands it on (W3C `traceparent`).
package struct TraceContext: Sendable, Equatable {
    /// 32 lowercase hex digits, not all zero.
    package var traceID: String
    /// The caller's span (16 lowercase hex digits), nil when the trace starts at the gateway.
    package var parentSpanID: String?
    package var sampled: Bool

    package init(traceID: String, parentSpanID: String?, sampled: Bool) {
        self.traceID = traceID
        self.parentSpanID = parentSpanID
        self.sampled = sampled
    }

    /// What to do with trace headers from outside: continue the caller's trace, or always start a new one.
    package enum IncomingPolicy: String, Sendable {
        case trust
        case restart
    }

    /// The context to use for a request: the caller's (W3C `traceparent` first, then B3 single, then B3 multi) when
    /// the policy trusts it and it is valid, else a new trace from `random`. Invalid headers are ignored, as Kong's
    /// extractors do.
    package static func resolve(
        headers: [(name: String, value: String)], policy: IncomingPolicy, random: inout some RandomNumberGenerator
    ) -> TraceContext {
        if policy == .trust, let incoming = extract(headers: headers) { return incoming }
        return TraceContext(traceID: randomHex(bytes: 16, using: &random), parentSpanID: nil, sampled: true)
    }

    /// The caller's context from its headers (names lowercase), nil when there is no valid one.
    package static func extract(headers: [(name: String, value: String)]) -> TraceContext? {
        func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
        if let value = header("traceparent"), let context = w3c(value) { return context }
        if let value = header("b3"), let context = b3Single(value) { return context }
        if let traceID = header("x-b3-traceid"), let spanID = header("x-b3-spanid") {
            let sampled = header("x-b3-sampled").map { $0 == "1" || $0 == "true" } ?? true
            if let t = b3TraceID(traceID), isHex(spanID, count: 16), !isZero(spanID) {
                return TraceContext(traceID: t, parentSpanID: spanID, sampled: sampled || header("x-b3-flags") == "1")
            }
        }
        return nil
    }

    /// `00-<32 hex>-<16 hex>-<2 hex>`: version 00 only, lowercase, ids not all zero (W3C Trace Context, and
    /// Kong's extractor, formats.md §1.3).
    package static func w3c(_ value: String) -> TraceContext? {
        let parts = value.trimmingCharacters(in: .whitespaces).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "00", isHex(parts[1], count: 32), !isZero(parts[1]),
            isHex(parts[2], count: 16), !isZero(parts[2]), isHex(parts[3], count: 2), let flags = UInt8(parts[3], radix: 16)
        else { return nil }
        return TraceContext(traceID: String(parts[1]), parentSpanID: String(parts[2]), sampled: flags & 1 == 1)
    }

    /// B3 single header `traceid-spanid[-sampled[-parentspanid]]`; a bare sampling decision carries no ids.
    package static func b3Single(_ value: String) -> TraceContext? {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.count <= 4, let traceID = b3TraceID(parts[0]), isHex(parts[1], count: 16),
            !isZero(parts[1])
        else { return nil }
        let sampled = parts.count >= 3 ? (parts[2] == "1" || parts[2] == "d") : true
        return TraceContext(traceID: traceID, parentSpanID: String(parts[1]), sampled: sampled)
    }

    /// A 64-bit B3 trace id is left-padded with zeros to 128 bits (formats.md §4, our convention).
    private static func b3TraceID(_ text: some StringProtocol) -> String? {
        if isHex(text, count: 32), !isZero(text) { return String(text) }
        if isHex(text, count: 16), !isZero(text) { return String(repeating: "0", count: 16) + text }
        return nil
    }

    /// The `traceparent` to send upstream, with the gateway's own span id.
    package func traceparent(spanID: String) -> String { "00-\(traceID)-\(spanID)-\(sampled ? "01" : "00")" }

    package static func randomHex(bytes: Int, using random: inout some RandomNumberGenerator) -> String {
        // Eight bytes per draw: the system generator costs a system call per draw, not per byte.
        var words = [UInt64](repeating: 0, count: (bytes + 7) / 8)
        while true {
            for i in words.indices { words[i] = random.next() }
            let hex = words.withUnsafeBytes { Hex.encode($0.prefix(bytes)) }
            if !isZero(hex) { return hex }
        }
    }

    private static func isHex(_ s: some StringProtocol, count: Int) -> Bool {
        s.utf8.count == count && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    private static func isZero(_ s: some StringProtocol) -> Bool { s.utf8.allSatisfy { $0 == UInt8(ascii: "0") } }
}
