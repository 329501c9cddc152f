/// Envoy's `x-forwarded-client-cert` (XFCC) header.
///
/// Grammar (envoy `docs/root/configuration/http/http_conn_man/headers.rst`):
/// - elements separated by `,`, one per proxy hop, appended in order (the last one is about the client of
///   the proxy that wrote it last);
/// - inside an element, `key=value` pairs separated by `;`;
/// - keys are case-insensitive, values case-sensitive;
/// - a value holding `,`, `;`, `=`, `"` or `\` is double-quoted, with `"` and `\` inside escaped as `\"` and `\\`;
/// - keys `By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI` (may repeat) and `DNS` (may repeat).
public struct XFCCElement: Sendable, Hashable {
    /// URI SAN of the certificate of the proxy that added the element.
    public var by: String?
    /// Hex SHA-256 of the client certificate.
    public var hash: String?
    /// Subject DN of the client certificate (often `""` for SPIFFE certificates; kept as an empty string).
    public var subject: String?
    /// URI SANs of the client certificate, in order.
    public var uris: [String]
    /// DNS SANs of the client certificate, in order.
    public var dns: [String]
    /// URL-encoded PEM of the client certificate.
    public var cert: String?
    /// URL-encoded PEM chain.
    public var chain: String?

    public init(
        by: String? = nil, hash: String? = nil, subject: String? = nil, uris: [String] = [], dns: [String] = [],
        cert: String? = nil, chain: String? = nil
    ) {
        self.by = by
        self.hash = hash
        self.subject = subject
        self.uris = uris
        self.dns = dns
        self.cert = cert
        self.chain = chain
    }

    /// The first URI SAN (the SPIFFE ID of an Istio client).
    public var uri: String? { uris.first }

    /// The SHA-256 hash normalised with ``Fingerprint/normalize(_:)``.
    public var normalizedHash: String? { hash.flatMap(Fingerprint.normalize) }

    /// The certificate PEM, URL-decoded.
    public var certPEM: String? { cert.flatMap(XFCC.percentDecode) }

    /// The chain PEM, URL-decoded.
    public var chainPEM: String? { chain.flatMap(XFCC.percentDecode) }

    /// The element in Envoy's form, values quoted where needed (Subject always).
    public func format() -> String {
        var pairs: [String] = []
        func add(_ key: String, _ value: String, alwaysQuote: Bool = false) {
            pairs.append(key + "=" + XFCC.quoteIfNeeded(value, always: alwaysQuote))
        }
        if let by { add("By", by) }
        if let hash { add("Hash", hash) }
        if let cert { add("Cert", cert) }
        if let chain { add("Chain", chain) }
        if let subject { add("Subject", subject, alwaysQuote: true) }
        for u in uris { add("URI", u) }
        for d in dns { add("DNS", d) }
        return pairs.joined(separator: ";")
    }
}

/// Why an XFCC header could not be parsed.
public struct XFCCError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) { self.reason = reason }

    public var description: String { "x-forwarded-client-cert: \(reason)" }
}

public enum XFCC {
    /// Header values longer than this are refused (Envoy's default header limit is 60 KiB).
    public static let maximumLength = 256 * 1024

    /// Parses a header value into its elements, in order. Empty elements (`a,,b`, a trailing `,`) are
    /// skipped; unknown keys are ignored. Fails on an unterminated quote, a pair without `=`, an empty key,
    /// or text after a closing quote.
    public static func parse(_ text: some StringProtocol) -> Result<[XFCCElement], XFCCError> {
        let b = Array(text.utf8)
        guard b.count <= maximumLength else {
            return .failure(XFCCError(reason: "longer than \(maximumLength) bytes"))
        }
        var elements: [XFCCElement] = []
        var current = XFCCElement()
        var currentHasPairs = false
        var i = 0
        var elementNumber = 1

        func skipOWS() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x09 { i += 1 }
        }

        while true {
            skipOWS()
            if i >= b.count { break }
            if b[i] == 0x2C {  // ',' ends the element
                if currentHasPairs { elements.append(current) }
                current = XFCCElement()
                currentHasPairs = false
                elementNumber += 1
                i += 1
                continue
            }
            if b[i] == 0x3B {  // stray ';'
                i += 1
                continue
            }
            // key
            let keyStart = i
            while i < b.count, b[i] != 0x3D, b[i] != 0x3B, b[i] != 0x2C { i += 1 }
            var keyEnd = i
            while keyEnd > keyStart, b[keyEnd - 1] == 0x20 || b[keyEnd - 1] == 0x09 { keyEnd -= 1 }
            let key = String(decoding: b[keyStart..<keyEnd], as: UTF8.self)
            guard i < b.count, b[i] == 0x3D else {
                return .failure(XFCCError(
                    reason: "element \(elementNumber): '\(key.prefix(40))' has no '='"))
            }
            guard keyEnd > keyStart else {
                return .failure(XFCCError(reason: "element \(elementNumber): empty key"))
            }
            i += 1
            skipOWS()
            // value
            var value: String
            if i < b.count, b[i] == 0x22 {
                i += 1
                var out: [UInt8] = []
                var closed = false
                while i < b.count {
                    let c = b[i]
                    // Quoted pairs: `\"` is a quote and `\\` a backslash (what `format` writes); any other
                    // backslash is kept as it is (Envoy does not escape Subject's RFC 4514 backslashes).
                    if c == 0x5C, i + 1 < b.count, b[i + 1] == 0x22 || b[i + 1] == 0x5C {
                        out.append(b[i + 1])
                        i += 2
                        continue
                    }
                    if c == 0x22 {
                        closed = true
                        i += 1
                        break
                    }
                    out.append(c)
                    i += 1
                }
                guard closed else {
                    return .failure(XFCCError(reason: "element \(elementNumber): unterminated quoted value for \(key)"))
                }
                skipOWS()
                guard i >= b.count || b[i] == 0x3B || b[i] == 0x2C else {
                    return .failure(XFCCError(
                        reason: "element \(elementNumber): text after the quoted value of \(key)"))
                }
                value = String(decoding: out, as: UTF8.self)
            } else {
                let valueStart = i
                while i < b.count, b[i] != 0x3B, b[i] != 0x2C {
                    if b[i] == 0x22 {
                        return .failure(XFCCError(
                            reason: "element \(elementNumber): unexpected '\"' inside the value of \(key)"))
                    }
                    i += 1
                }
                var valueEnd = i
                while valueEnd > valueStart, b[valueEnd - 1] == 0x20 || b[valueEnd - 1] == 0x09 { valueEnd -= 1 }
                value = String(decoding: b[valueStart..<valueEnd], as: UTF8.self)
            }
            currentHasPairs = true
            switch key.lowercased() {
            case "by": current.by = value
            case "hash": current.hash = value
            case "cert": current.cert = value
            case "chain": current.chain = value
            case "subject": current.subject = value
            case "uri": current.uris.append(value)
            case "dns": current.dns.append(value)
            default: break
            }
            if i < b.count, b[i] == 0x3B { i += 1 }
        }
        if currentHasPairs { elements.append(current) }
        return .success(elements)
    }

    /// The header value for a list of elements.
    public static func format(_ elements: [XFCCElement]) -> String {
        elements.map { $0.format() }.joined(separator: ",")
    }

    static func quoteIfNeeded(_ value: String, always: Bool) -> String {
        let needs = always || value.utf8.contains { $0 == 0x2C || $0 == 0x3B || $0 == 0x3D || $0 == 0x22 || $0 == 0x5C }
        guard needs else { return value }
        var out = "\""
        for ch in value.unicodeScalars {
            // Backslashes too: a value ending in `\` must not escape the closing quote (found by fuzzing).
            if ch == "\"" || ch == "\\" { out += "\\" }
            out.unicodeScalars.append(ch)
        }
        return out + "\""
    }

    /// `%XX` decoding (and `+` left as is); nil if an escape is malformed or the result is not UTF-8.
    public static func percentDecode(_ text: String) -> String? {
        let u = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(u.count)
        var i = 0
        while i < u.count {
            if u[i] == 0x25 {
                guard i + 2 < u.count, let hi = Hex.value(u[i + 1]), let lo = Hex.value(u[i + 2]) else { return nil }
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(u[i])
                i += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}
