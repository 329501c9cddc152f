import SwiftASN1
import TrailCore
import X509

/// An X.509 certificate revocation list (RFC 5280 §5.1), as far as Trail reads it. The signature is
/// not verified (Trail records what the CA published; it does not hold the CA's key).
public struct CertificateRevocationList: Sendable, Hashable {
    public struct Entry: Sendable, Hashable {
        /// Normalised serial (``CertificateSerial``).
        public var serial: String
        public var revocationDate: Timestamp
        /// RFC 5280 reason name (`keyCompromise`), nil when the entry has no reasonCode extension.
        public var reason: String?
    }

    /// 1 for v1 (no version field), 2 for v2.
    public var version: Int
    /// Issuer distinguished name, written as ``CertificateSummary/issuer`` writes it.
    public var issuer: String
    public var thisUpdate: Timestamp
    public var nextUpdate: Timestamp?
    public var entries: [Entry]

    /// RFC 5280 §5.3.1 CRLReason names by value (7 is unused).
    public static let reasonNames: [Int: String] = [
        0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
        5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn",
        10: "aACompromise",
    ]

    static let reasonCodeOID: ASN1ObjectIdentifier = [2, 5, 29, 21]

    /// Decodes one DER CertificateList. Throws the reason when it is truncated or not shaped as RFC 5280 says.
    public static func decode(der: ArraySlice<UInt8>) throws(IdentityParseError) -> CertificateRevocationList {
        let root: ASN1Node
        do {
            root = try DER.parse(der)
        } catch {
            throw IdentityParseError("CRL: \(ASN1Text.reason(error))")
        }
        do {
            return try decode(root: root)
        } catch let e as IdentityParseError {
            throw e
        } catch {
            throw IdentityParseError("CRL: \(ASN1Text.reason(error))")
        }
    }

    private static func children(_ node: ASN1Node, _ what: String) throws -> [ASN1Node] {
        guard node.identifier == .sequence, case .constructed(let nodes) = node.content else {
            throw IdentityParseError("CRL: \(what) is not a SEQUENCE")
        }
        return Array(nodes)
    }

    private static func decode(root: ASN1Node) throws -> CertificateRevocationList {
        let top = try children(root, "CertificateList")
        guard top.count == 3 else {
            throw IdentityParseError("CRL: CertificateList has \(top.count) fields, expected 3 (tbsCertList, signatureAlgorithm, signature)")
        }
        guard top[1].identifier == .sequence else { throw IdentityParseError("CRL: signatureAlgorithm is not a SEQUENCE") }
        guard top[2].identifier == .bitString else { throw IdentityParseError("CRL: signature is not a BIT STRING") }
        let tbs = try children(top[0], "tbsCertList")
        var i = 0
        func next(_ what: String) throws -> ASN1Node {
            guard i < tbs.count else { throw IdentityParseError("CRL: tbsCertList ends before \(what)") }
            defer { i += 1 }
            return tbs[i]
        }
        var version = 1
        if i < tbs.count, tbs[i].identifier == .integer {
            let v = try Int(derEncoded: tbs[i])
            guard v == 1 else { throw IdentityParseError("CRL: unsupported version \(v + 1)") }
            version = 2
            i += 1
        }
        guard try next("signature").identifier == .sequence else {
            throw IdentityParseError("CRL: tbsCertList signature algorithm is not a SEQUENCE")
        }
        let issuerNode = try next("issuer")
        let issuer: DistinguishedName
        do {
            issuer = try DistinguishedName(derEncoded: issuerNode)
        } catch {
            throw IdentityParseError("CRL: issuer: \(ASN1Text.reason(error))")
        }
        guard let thisUpdate = try time(try next("thisUpdate")) else {
            throw IdentityParseError("CRL: thisUpdate is not a UTCTime or GeneralizedTime")
        }
        var nextUpdate: Timestamp?
        if i < tbs.count, let t = try time(tbs[i]) {
            nextUpdate = t
            i += 1
        }
        var entries: [Entry] = []
        if i < tbs.count, tbs[i].identifier == .sequence {
            let list = try children(tbs[i], "revokedCertificates")
            for (n, node) in list.enumerated() {
                do {
                    entries.append(try entry(node))
                } catch let e as IdentityParseError {
                    throw IdentityParseError(e.reason.replacingPrefix("CRL: ", with: "CRL: revokedCertificates[\(n)]: "))
                } catch {
                    throw IdentityParseError("CRL: revokedCertificates[\(n)]: \(ASN1Text.reason(error))")
                }
            }
            i += 1
        }
        if i < tbs.count, tbs[i].identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
            i += 1
        }
        guard i == tbs.count else { throw IdentityParseError("CRL: unexpected field in tbsCertList (\(tbs[i].identifier))") }
        return CertificateRevocationList(
            version: version, issuer: issuer.description, thisUpdate: thisUpdate, nextUpdate: nextUpdate, entries: entries)
    }

    private static func entry(_ node: ASN1Node) throws -> Entry {
        let f = try children(node, "entry")
        guard f.count >= 2, f.count <= 3 else { throw IdentityParseError("CRL: entry has \(f.count) fields, expected 2 or 3") }
        guard f[0].identifier == .integer, case .primitive(let serialBytes) = f[0].content, !serialBytes.isEmpty else {
            throw IdentityParseError("CRL: userCertificate is not an INTEGER")
        }
        guard let date = try time(f[1]) else { throw IdentityParseError("CRL: revocationDate is not a time") }
        var reason: String?
        if f.count == 3 {
            for ext in try children(f[2], "crlEntryExtensions") {
                let parts = try children(ext, "extension")
                guard parts.count >= 2 else { throw IdentityParseError("CRL: extension has \(parts.count) fields") }
                let oid = try ASN1ObjectIdentifier(derEncoded: parts[0])
                guard oid == reasonCodeOID else { continue }
                guard let value = parts.last, value.identifier == .octetString, case .primitive(let bytes) = value.content
                else { throw IdentityParseError("CRL: reasonCode value is not an OCTET STRING") }
                let inner = try DER.parse(bytes)
                guard inner.identifier == .enumerated, case .primitive(let enumBytes) = inner.content,
                    enumBytes.count == 1
                else { throw IdentityParseError("CRL: reasonCode is not an ENUMERATED") }
                let code = Int(enumBytes[enumBytes.startIndex])
                reason = reasonNames[code] ?? "unknown(\(code))"
            }
        }
        return Entry(serial: CertificateSerial.normalize(bytes: serialBytes), revocationDate: date, reason: reason)
    }

    /// A UTCTime or GeneralizedTime node as a timestamp; nil for other node types.
    private static func time(_ node: ASN1Node) throws -> Timestamp? {
        if node.identifier == .utcTime {
            let t = try UTCTime(derEncoded: node)
            return Timestamp.utc(
                year: t.year, month: t.month, day: t.day, hour: t.hours, minute: t.minutes, second: t.seconds)
        }
        if node.identifier == .generalizedTime {
            let t = try GeneralizedTime(derEncoded: node)
            return Timestamp.utc(
                year: t.year, month: t.month, day: t.day, hour: t.hours, minute: t.minutes, second: t.seconds)
        }
        return nil
    }
}

extension String {
    fileprivate func replacingPrefix(_ prefix: String, with replacement: String) -> String {
        hasPrefix(prefix) ? replacement + dropFirst(prefix.count) : self
    }
}

/// Reads X.509 CRLs (`InputFormat.crl`) in PEM (`-----BEGIN X509 CRL-----`, one record per block, raw = the
/// block's text) or DER (one record per CertificateList, raw = its bytes).
///
/// Each CRL is one record with one `.revoked` event per revoked certificate: serial = userCertificate
/// (normalised hex), time = revocationDate, issuer = the CRL's issuer DN, reason = the entry's reasonCode
/// name (`keyCompromise`, …; nil without a reasonCode). A CRL without entries is a record without events.
/// A truncated or malformed CRL is rejected with the reason.
public struct CRLParser: Sendable {
    public init() {}

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        let format = InputFormat.crl
        let blocks = PEMScanner.blocks(in: input)
        if !blocks.isEmpty {
            let crls = blocks.filter { $0.label == "X509 CRL" }
            guard !crls.isEmpty else {
                let labels = blocks.map(\.label).joined(separator: ", ")
                return [.rejected(Rejection(
                    format: format, location: RecordLocation(line: 1), raw: input,
                    reason: "no PEM X509 CRL block in the input (found \(labels))"))]
            }
            return crls.map { block in
                let location = RecordLocation(line: block.line)
                guard block.terminated else {
                    return .rejected(Rejection(
                        format: format, location: location, raw: block.raw, reason: "PEM block has no END X509 CRL line"))
                }
                guard let der = block.der, !der.isEmpty else {
                    return .rejected(Rejection(
                        format: format, location: location, raw: block.raw, reason: "PEM body is not valid base64"))
                }
                return Self.result(der: der[...], raw: block.raw, location: location)
            }
        }
        guard input.contains(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) else { return [] }
        guard input.first == 0x30 else {
            return [.rejected(Rejection(
                format: format, location: RecordLocation(line: 1), raw: input,
                reason: "not a CRL: neither a PEM X509 CRL block nor DER"))]
        }
        var out: [ParseResult] = []
        var offset = 0
        for (bytes, truncated) in DERSplitter.elements(in: input) {
            let location = RecordLocation(line: 1, detail: "byte \(offset)")
            offset += bytes.count
            if truncated {
                out.append(.rejected(Rejection(
                    format: format, location: location, raw: Array(bytes), reason: "CRL: DER is truncated")))
            } else {
                out.append(Self.result(der: bytes, raw: Array(bytes), location: location))
            }
        }
        return out
    }

    static func result(der: ArraySlice<UInt8>, raw: [UInt8], location: RecordLocation) -> ParseResult {
        let format = InputFormat.crl
        do {
            let crl = try CertificateRevocationList.decode(der: der)
            let events = crl.entries.map {
                IdentityEvent(
                    kind: .revoked, serial: $0.serial, issuer: crl.issuer, time: $0.revocationDate, reason: $0.reason,
                    format: format.rawValue)
            }
            return .record(ParsedRecord(format: format, location: location, raw: raw, identityEvents: events))
        } catch {
            return .rejected(Rejection(format: format, location: location, raw: raw, reason: error.reason))
        }
    }
}
