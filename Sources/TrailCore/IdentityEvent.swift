/// A certificate lifecycle event of a workload identity.
public enum IdentityEventKind: String, Sendable, Hashable, Codable, CaseIterable {
    case issued
    case renewed
    case revoked
    case expired
}

/// One lifecycle event of one certificate: from Trail's NDJSON, a SPIRE log line, a PEM certificate or a
/// CRL entry. Plain value, produced by the parsers in `TrailFormats`.
public struct IdentityEvent: Sendable, Hashable, Codable {
    public var kind: IdentityEventKind
    /// The SPIFFE ID the certificate was issued to (nil for CRL entries, which only name a serial).
    public var spiffeID: String?
    /// Normalised serial (``CertificateSerial``).
    public var serial: String?
    /// Normalised SHA-256 fingerprint (``Fingerprint``).
    public var fingerprintSHA256: String?
    public var notBefore: Timestamp?
    public var notAfter: Timestamp?
    public var issuer: String?
    /// When the event happened (issuance time, revocation time, expiry time).
    public var time: Timestamp
    /// Revocation reason or a short note.
    public var reason: String?
    /// The input format it was read from (``InputFormat`` raw value).
    public var format: String

    public init(
        kind: IdentityEventKind, spiffeID: String? = nil, serial: String? = nil, fingerprintSHA256: String? = nil,
        notBefore: Timestamp? = nil, notAfter: Timestamp? = nil, issuer: String? = nil, time: Timestamp,
        reason: String? = nil, format: String
    ) {
        self.kind = kind
        self.spiffeID = spiffeID
        self.serial = serial.flatMap(CertificateSerial.normalize)
        self.fingerprintSHA256 = fingerprintSHA256.flatMap(Fingerprint.normalize)
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.issuer = issuer
        self.time = time
        self.reason = reason
        self.format = format
    }
}

/// Serial numbers compare case-insensitively, with or without colons and leading zeros.
public enum CertificateSerial {
    /// Lowercase hex, no separators, no leading zeros ("0" for zero). Nil if it is not hex.
    public static func normalize(_ text: String) -> String? {
        var out = ""
        var seenNonZero = false
        var any = false
        for ch in text.unicodeScalars {
            switch ch {
            case ":", " ", "-": continue
            case "0"..."9", "a"..."f":
                any = true
                if ch == "0" && !seenNonZero { continue }
                seenNonZero = true
                out.unicodeScalars.append(ch)
            case "A"..."F":
                any = true
                seenNonZero = true
                out.unicodeScalars.append(Unicode.Scalar(ch.value + 32)!)
            default:
                return nil
            }
        }
        guard any else { return nil }
        return out.isEmpty ? "0" : out
    }

    /// The serial of a DER-encoded INTEGER's content bytes, normalised.
    public static func normalize(bytes: some Collection<UInt8>) -> String {
        normalize(Hex.encode(bytes)) ?? "0"
    }
}

/// SHA-256 fingerprints compare case-insensitively, with or without colons.
public enum Fingerprint {
    /// 64 lowercase hex characters, or nil if the text is not a SHA-256 hex digest.
    public static func normalize(_ text: String) -> String? {
        var out = ""
        out.reserveCapacity(64)
        for ch in text.unicodeScalars {
            switch ch {
            case ":", " ": continue
            case "0"..."9", "a"..."f": out.unicodeScalars.append(ch)
            case "A"..."F": out.unicodeScalars.append(Unicode.Scalar(ch.value + 32)!)
            default: return nil
            }
        }
        return out.utf8.count == 64 ? out : nil
    }
}
