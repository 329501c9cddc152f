import SwiftASN1
import TrailCore
import X509

/// An X.509 certificate revocation list (RFC 5280 §5.1), as far as Trail reads it. Decoding does not verify the
/// signature (Trail records what the CA published); ``isSigned(by:)`` does, for those that act on a CRL.
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
    /// The issuer's distinguished name as decoded, to compare with certificates' issuer.
    public var issuerName: DistinguishedName
    /// What the issuer signed: the DER of tbsCertList, the signature algorithm's OID and the signature's bytes.
    public var signedBytes: [UInt8]
    public var signatureAlgorithm: ASN1ObjectIdentifier
    public var signature: [UInt8]

    /// RFC 5280 §5.3.1 CRLReason names by value (7 is unused).
    public static let reasonNames: [Int: String] = [
        0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
        5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn",
        10: "aACompromise",
    ]

    static let reasonCodeOID: ASN1ObjectIdentifier = [2, 5, 29, 21]

    /// The signature algorithms a CRL may be signed with, by OID (RFC 5758, RFC 4055, RFC 8410).
    static let signatureAlgorithms: [ASN1ObjectIdentifier: Certificate.SignatureAlgorithm] = [
        [1, 2, 840, 10045, 4, 3, 2]: .ecdsaWithSHA256, [1, 2, 840, 10045, 4, 3, 3]: .ecdsaWithSHA384,
        [1, 2, 840, 10045, 4, 3, 4]: .ecdsaWithSHA512, [1, 2, 840, 113549, 1, 1, 11]: .sha256WithRSAEncryption,
        [1, 2, 840, 113549, 1, 1, 12]: .sha384WithRSAEncryption, [1, 2, 840, 113549, 1, 1, 13]: .sha512WithRSAEncryption,
        [1, 3, 101, 112]: .ed25519,
    ]

    /// True when `issuer` issued this CRL: its subject is the CRL's issuer, its key usage (if stated) allows CRL
    /// signing, and its key verifies the signature.
    public func isSigned(by issuer: Certificate) -> Bool {
        guard issuer.subject == issuerName, let algorithm = Self.signatureAlgorithms[signatureAlgorithm] else { return false }
        if let usage = try? issuer.extensions.keyUsage, !usage.cRLSign { return false }
        return issuer.publicKey.isValidSignature(signature, for: signedBytes, signatureAlgorithm: algorithm)
    }

    /// Every CRL in a file: PEM `X509 CRL` blocks or DER. Throws the first that cannot be read, with its place.
    public static func decodeAll(_ input: [UInt8]) throws(IdentityParseError) -> [CertificateRevocationList] {
        var out: [CertificateRevocationList] = []
        for piece in CRLParser.pieces(input) {
            let place = piece.location.detail ?? "line \(piece.location.line)"
            switch piece.content {
            case .der(let der):
                do {
                    out.append(try decode(der: der))
                } catch {
                    throw IdentityParseError("\(place): \(error.reason)")
                }
            case .problem(let reason):
                throw IdentityParseError("\(place): \(reason)")
            }
        }
        guard !out.isEmpty else { throw IdentityParseError("the file holds no CRL") }
        return out
    }

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
        guard case .constructed(let algorithmNodes) = top[1].content, let algorithmNode = Array(algorithmNodes).first,
            algorithmNode.identifier == .objectIdentifier
        else { throw IdentityParseError("CRL: signatureAlgorithm has no algorithm OID") }
        let signatureAlgorithm = try ASN1ObjectIdentifier(derEncoded: algorithmNode)
        let signature = try ASN1BitString(derEncoded: top[2])
        return CertificateRevocationList(
            version: version, issuer: issuer.description, thisUpdate: thisUpdate, nextUpdate: nextUpdate, entries: entries,
            issuerName: issuer, signedBytes: Array(top[0].encodedBytes), signatureAlgorithm: signatureAlgorithm,
            signature: Array(signature.bytes))
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
        Self.pieces(input).map { piece in
            switch piece.content {
            case .der(let der): return Self.result(der: der, raw: piece.raw, location: piece.location)
            case .problem(let reason):
                return .rejected(Rejection(format: .crl, location: piece.location, raw: piece.raw, reason: reason))
            }
        }
    }

    /// One CRL's place in the input: its DER, or why it cannot be one.
    struct Piece {
        enum Content {
            case der(ArraySlice<UInt8>)
            case problem(String)
        }
        var content: Content
        var raw: [UInt8]
        var location: RecordLocation
    }

    /// The input cut into CRLs: PEM X509 CRL blocks, or consecutive DER CertificateLists.
    static func pieces(_ input: [UInt8]) -> [Piece] {
        let blocks = PEMScanner.blocks(in: input)
        if !blocks.isEmpty {
            let crls = blocks.filter { $0.label == "X509 CRL" }
            guard !crls.isEmpty else {
                let labels = blocks.map(\.label).joined(separator: ", ")
                return [Piece(
                    content: .problem("no PEM X509 CRL block in the input (found \(labels))"), raw: input,
                    location: RecordLocation(line: 1))]
            }
            return crls.map { block in
                let location = RecordLocation(line: block.line)
                guard block.terminated else {
                    return Piece(content: .problem("PEM block has no END X509 CRL line"), raw: block.raw, location: location)
                }
                guard let der = block.der, !der.isEmpty else {
                    return Piece(content: .problem("PEM body is not valid base64"), raw: block.raw, location: location)
                }
                return Piece(content: .der(der[...]), raw: block.raw, location: location)
            }
        }
        guard input.contains(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) else { return [] }
        guard input.first == 0x30 else {
            return [Piece(
                content: .problem("not a CRL: neither a PEM X509 CRL block nor DER"), raw: input,
                location: RecordLocation(line: 1))]
        }
        var out: [Piece] = []
        var offset = 0
        for (bytes, truncated) in DERSplitter.elements(in: input) {
            let location = RecordLocation(line: 1, detail: "byte \(offset)")
            offset += bytes.count
            out.append(Piece(content: truncated ? .problem("CRL: DER is truncated") : .der(bytes), raw: Array(bytes), location: location))
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
