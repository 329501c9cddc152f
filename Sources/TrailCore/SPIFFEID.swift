/// A SPIFFE ID, validated as the SPIFFE ID standard (spiffe/spiffe `standards/SPIFFE-ID.md`) says:
///
/// - form `spiffe://<trust-domain>[/<path>]`; the scheme is case-insensitive;
/// - trust domain: non-empty, at most 255 bytes, characters `a-z 0-9 . - _` (the trust domain is
///   case-insensitive, so upper-case letters are accepted and lower-cased);
/// - no port, userinfo, query, fragment or percent-encoding anywhere;
/// - path: `/`-separated segments of `a-z A-Z 0-9 . - _`, no empty, `.` or `..` segment, no trailing `/`;
///   the path is case-sensitive and kept as written;
/// - at most 2048 bytes in all.
///
/// The canonical text (``description``) has the scheme and trust domain in lower case.
public struct SPIFFEID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// Longest SPIFFE ID accepted, in bytes (the standard's "MUST support" length).
    public static let maximumLength = 2048
    /// Longest trust domain accepted, in bytes.
    public static let maximumTrustDomainLength = 255

    /// The trust domain, lower case (`shop.example`).
    public let trustDomain: String
    /// The path with its leading `/` (`/ns/shop/sa/web`), or "" for a trust-domain ID.
    public let path: String

    /// Parses and validates a SPIFFE ID.
    public init(parsing text: some StringProtocol) throws(SPIFFEIDError) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= Self.maximumLength else { throw .tooLong(bytes.count) }
        // Scheme, case-insensitive.
        let scheme: [UInt8] = Array("spiffe://".utf8)
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { throw .missingScheme }
        guard bytes.count >= scheme.count,
            zip(bytes[0..<scheme.count], scheme).allSatisfy({ Self.lower($0) == $1 })
        else {
            let found = String(decoding: bytes[0..<colon], as: UTF8.self)
            throw .wrongScheme(found)
        }
        var i = scheme.count
        // Trust domain.
        var domain: [UInt8] = []
        while i < bytes.count, bytes[i] != UInt8(ascii: "/") {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"):
                domain.append(c)
            case UInt8(ascii: "A")...UInt8(ascii: "Z"):
                domain.append(c + 32)
            case UInt8(ascii: ":"): throw .port
            case UInt8(ascii: "@"): throw .userinfo
            default: try Self.throwCommon(c, inTrustDomain: true)
            }
            i += 1
        }
        guard !domain.isEmpty else { throw .missingTrustDomain }
        guard domain.count <= Self.maximumTrustDomainLength else { throw .trustDomainTooLong(domain.count) }
        // Path.
        let pathStart = i
        if i < bytes.count {
            guard bytes.last != UInt8(ascii: "/") else { throw .trailingSlash }
            // bytes[i] == "/": walk the segments.
            while i < bytes.count {
                i += 1  // skip "/"
                let segStart = i
                while i < bytes.count, bytes[i] != UInt8(ascii: "/") {
                    let c = bytes[i]
                    switch c {
                    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                        UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "-"),
                        UInt8(ascii: "_"):
                        break
                    default: try Self.throwCommon(c, inTrustDomain: false)
                    }
                    i += 1
                }
                let seg = bytes[segStart..<i]
                if seg.isEmpty { throw .emptySegment }
                if seg.elementsEqual([UInt8(ascii: ".")]) || seg.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                    throw .dotSegment(String(decoding: seg, as: UTF8.self))
                }
            }
        }
        self.trustDomain = String(decoding: domain, as: UTF8.self)
        self.path = String(decoding: bytes[pathStart...], as: UTF8.self)
    }

    /// A trust-domain ID or a workload ID built from validated parts.
    public init(trustDomain: String, path: String = "") throws(SPIFFEIDError) {
        try self.init(parsing: "spiffe://" + trustDomain + path)
    }

    /// The parsed ID, or nil if the text is not a valid SPIFFE ID.
    public static func parse(_ text: some StringProtocol) -> SPIFFEID? {
        try? SPIFFEID(parsing: text)
    }

    /// Why the text is not a valid SPIFFE ID, or nil if it is one.
    public static func validate(_ text: some StringProtocol) -> SPIFFEIDError? {
        do {
            _ = try SPIFFEID(parsing: text)
            return nil
        } catch {
            return error
        }
    }

    /// True if the ID names a workload (has a path); false for a trust-domain ID.
    public var isLeaf: Bool { !path.isEmpty }

    /// The path segments (`["ns", "shop", "sa", "web"]`).
    public var segments: [Substring] { path.split(separator: "/") }

    /// Canonical text: `spiffe://` + lower-case trust domain + path.
    public var description: String { "spiffe://" + trustDomain + path }

    /// The trust-domain ID (`spiffe://shop.example`).
    public var trustDomainID: SPIFFEID { SPIFFEID(validTrustDomain: trustDomain, path: "") }

    private init(validTrustDomain: String, path: String) {
        self.trustDomain = validTrustDomain
        self.path = path
    }

    public static func < (lhs: SPIFFEID, rhs: SPIFFEID) -> Bool { lhs.description < rhs.description }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    @inline(__always)
    private static func lower(_ c: UInt8) -> UInt8 {
        c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") ? c + 32 : c
    }

    private static func throwCommon(_ c: UInt8, inTrustDomain: Bool) throws(SPIFFEIDError) {
        switch c {
        case UInt8(ascii: "?"): throw .query
        case UInt8(ascii: "#"): throw .fragment
        case UInt8(ascii: "%"): throw .percentEncoding
        default:
            let shown = c >= 0x20 && c < 0x7F ? String(UnicodeScalar(c)) : "\\x" + Hex.encode([c])
            throw inTrustDomain ? .invalidTrustDomainCharacter(shown) : .invalidPathCharacter(shown)
        }
    }
}

/// Why a text is not a valid SPIFFE ID.
public enum SPIFFEIDError: Error, Sendable, Hashable, CustomStringConvertible {
    case empty
    case tooLong(Int)
    case missingScheme
    case wrongScheme(String)
    case missingTrustDomain
    case trustDomainTooLong(Int)
    case invalidTrustDomainCharacter(String)
    case port
    case userinfo
    case query
    case fragment
    case percentEncoding
    case invalidPathCharacter(String)
    case emptySegment
    case dotSegment(String)
    case trailingSlash

    public var description: String {
        switch self {
        case .empty: return "SPIFFE ID is empty"
        case .tooLong(let n): return "SPIFFE ID is \(n) bytes, longer than \(SPIFFEID.maximumLength)"
        case .missingScheme: return "SPIFFE ID has no scheme (expected spiffe://)"
        case .wrongScheme(let s): return "scheme is \"\(s)\", not spiffe://"
        case .missingTrustDomain: return "SPIFFE ID has no trust domain"
        case .trustDomainTooLong(let n):
            return "trust domain is \(n) bytes, longer than \(SPIFFEID.maximumTrustDomainLength)"
        case .invalidTrustDomainCharacter(let c):
            return "trust domain has the character '\(c)' (only a-z 0-9 . - _ are allowed)"
        case .port: return "SPIFFE ID has a port"
        case .userinfo: return "SPIFFE ID has userinfo"
        case .query: return "SPIFFE ID has a query"
        case .fragment: return "SPIFFE ID has a fragment"
        case .percentEncoding: return "SPIFFE ID has percent-encoding"
        case .invalidPathCharacter(let c):
            return "path has the character '\(c)' (only a-z A-Z 0-9 . - _ are allowed in segments)"
        case .emptySegment: return "path has an empty segment"
        case .dotSegment(let s): return "path has a '\(s)' segment"
        case .trailingSlash: return "path ends with '/'"
        }
    }
}
