import Crypto
import Foundation
import SwiftASN1
import TrailCore
import X509

/// What Trail needs to know about one X.509 certificate. Built by ``summarize(der:)`` for the PEM parser
/// and for any module that meets a certificate (an XFCC `Cert=`, a TLS log).
public struct CertificateSummary: Sendable, Hashable {
    /// Normalised serial (``CertificateSerial``): lower-case hex of the serial's bytes, no leading zeros.
    public var serial: String
    /// SHA-256 of the DER encoding, 64 lower-case hex digits.
    public var fingerprintSHA256: String
    public var notBefore: Timestamp
    public var notAfter: Timestamp
    /// Subject distinguished name (`CN=web,O=Trail Fixture`), "" when the subject is empty.
    public var subject: String
    /// Issuer distinguished name.
    public var issuer: String
    /// Every URI SAN, in order.
    public var uriSANs: [String]
    /// The SPIFFE ID in canonical form, when there is exactly one URI SAN and it is a valid SPIFFE ID.
    public var spiffeID: String?
    /// Basic constraints say `cA=true`.
    public var isCA: Bool
    /// Key usage has keyCertSign.
    public var keyCertSign: Bool
    /// Key usage has cRLSign.
    public var cRLSign: Bool

    /// Summarises a DER-encoded certificate. Throws ``IdentityParseError`` with the reason when the DER or
    /// one of the extensions Trail reads (basic constraints, key usage, subject alternative name) is malformed.
    public static func summarize(der: [UInt8]) throws(IdentityParseError) -> CertificateSummary {
        let cert: Certificate
        do {
            cert = try Certificate(derEncoded: der)
        } catch {
            throw IdentityParseError("certificate: \(ASN1Text.reason(error))")
        }
        var isCA = false
        var keyCertSign = false
        var cRLSign = false
        var uris: [String] = []
        do {
            if case .isCertificateAuthority = try cert.extensions.basicConstraints { isCA = true }
        } catch {
            throw IdentityParseError("basicConstraints: \(ASN1Text.reason(error))")
        }
        do {
            if let ku = try cert.extensions.keyUsage {
                keyCertSign = ku.keyCertSign
                cRLSign = ku.cRLSign
            }
        } catch {
            throw IdentityParseError("keyUsage: \(ASN1Text.reason(error))")
        }
        do {
            for name in try cert.extensions.subjectAlternativeNames ?? SubjectAlternativeNames() {
                if case .uniformResourceIdentifier(let u) = name { uris.append(u) }
            }
        } catch {
            throw IdentityParseError("subjectAltName: \(ASN1Text.reason(error))")
        }
        let spiffe = uris.count == 1 ? SPIFFEID.parse(uris[0])?.description : nil
        return CertificateSummary(
            serial: CertificateSerial.normalize(bytes: cert.serialNumber.bytes),
            fingerprintSHA256: Hex.encode(Array(SHA256.hash(data: der))),
            notBefore: IdentityTime.from(date: cert.notValidBefore),
            notAfter: IdentityTime.from(date: cert.notValidAfter),
            subject: cert.subject.description,
            issuer: cert.issuer.description,
            uriSANs: uris, spiffeID: spiffe, isCA: isCA, keyCertSign: keyCertSign, cRLSign: cRLSign)
    }

    /// Summarises the first `CERTIFICATE` block of a PEM text.
    public static func summarize(pem: String) throws(IdentityParseError) -> CertificateSummary {
        guard let block = PEMScanner.blocks(in: Array(pem.utf8)).first(where: { $0.label == "CERTIFICATE" }) else {
            throw IdentityParseError("no PEM CERTIFICATE block")
        }
        guard block.terminated else { throw IdentityParseError("PEM block has no END CERTIFICATE line") }
        guard let der = block.der else { throw IdentityParseError("PEM body is not valid base64") }
        return try summarize(der: der)
    }

    /// The certificate as an ``Observation`` carries it.
    public var presented: PresentedCertificate {
        PresentedCertificate(
            serial: serial, fingerprintSHA256: fingerprintSHA256, notBefore: notBefore, notAfter: notAfter,
            uriSANs: uriSANs, subject: subject.isEmpty ? nil : subject)
    }

    /// What the certificate is under the X509-SVID standard (formats.md §6.2).
    public enum SVIDRole: Sendable, Hashable {
        /// A leaf X509-SVID with this (leaf) SPIFFE ID.
        case leaf(SPIFFEID)
        /// A signing (CA) certificate, with its trust-domain SPIFFE ID if it has one.
        case signing(SPIFFEID?)
    }

    /// Classifies the certificate, or throws the reason it is neither a valid leaf X509-SVID nor a
    /// signing certificate: zero or several URI SANs on a leaf, a URI SAN that is not a SPIFFE ID, a leaf
    /// without a path, a SPIFFE leaf path on a `cA=true` certificate or one with keyCertSign / cRLSign.
    public func svidRole() throws(IdentityParseError) -> SVIDRole {
        if uriSANs.count > 1 {
            throw IdentityParseError("certificate has \(uriSANs.count) URI SANs; an X509-SVID has exactly one")
        }
        guard let uri = uriSANs.first else {
            if isCA { return .signing(nil) }
            throw IdentityParseError("leaf certificate has no URI SAN; an X509-SVID has exactly one (its SPIFFE ID)")
        }
        let id: SPIFFEID
        do {
            id = try SPIFFEID(parsing: uri)
        } catch {
            throw IdentityParseError("URI SAN \"\(uri)\" is not a SPIFFE ID: \(error.description)")
        }
        if id.isLeaf {
            if isCA {
                throw IdentityParseError("certificate with leaf SPIFFE ID \(id) has cA=true; a leaf X509-SVID must have cA=false")
            }
            if keyCertSign || cRLSign {
                let which = [keyCertSign ? "keyCertSign" : nil, cRLSign ? "cRLSign" : nil].compactMap { $0 }
                throw IdentityParseError(
                    "leaf X509-SVID \(id) has key usage \(which.joined(separator: " and ")), which a leaf must not have")
            }
            return .leaf(id)
        }
        if isCA { return .signing(id) }
        throw IdentityParseError("SPIFFE ID \(id) has no path; a leaf X509-SVID needs a workload path")
    }
}

/// Reads PEM certificates (`InputFormat.pem`): every `-----BEGIN CERTIFICATE-----` block is one record
/// (raw = the block's text); text between blocks and other PEM blocks are ignored. A DER certificate
/// (input starting with a SEQUENCE and holding no PEM block) is read as one record too.
///
/// A leaf X509-SVID yields one `.issued` event: spiffeID = its single URI SAN (canonical), serial =
/// normalised hex of the serial number, fingerprintSHA256 = SHA-256 of the DER, notBefore / notAfter,
/// issuer = issuer DN, time = notBefore. A signing certificate (cA=true with no URI SAN or a trust-domain
/// SPIFFE ID) is a record without events, so a trust bundle is valid input. Anything else is rejected
/// with the reason (see ``CertificateSummary/svidRole()``).
public struct PEMCertificateParser: Sendable {
    public init() {}

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        let format = InputFormat.pem
        let blocks = PEMScanner.blocks(in: input)
        let certBlocks = blocks.filter { $0.label == "CERTIFICATE" }
        if certBlocks.isEmpty {
            if blocks.isEmpty, input.first == 0x30 {
                return [Self.result(der: input, raw: input, location: RecordLocation(line: 1, detail: "DER"))]
            }
            guard input.contains(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) else { return [] }
            let labels = blocks.map(\.label)
            let reason = labels.isEmpty
                ? "no PEM CERTIFICATE block in the input"
                : "no PEM CERTIFICATE block in the input (found \(labels.joined(separator: ", ")))"
            return [.rejected(Rejection(format: format, location: RecordLocation(line: 1), raw: input, reason: reason))]
        }
        return certBlocks.map { block in
            let location = RecordLocation(line: block.line)
            guard block.terminated else {
                return .rejected(Rejection(
                    format: format, location: location, raw: block.raw, reason: "PEM block has no END CERTIFICATE line"))
            }
            guard let der = block.der, !der.isEmpty else {
                return .rejected(Rejection(
                    format: format, location: location, raw: block.raw, reason: "PEM body is not valid base64"))
            }
            return Self.result(der: der, raw: block.raw, location: location)
        }
    }

    static func result(der: [UInt8], raw: [UInt8], location: RecordLocation) -> ParseResult {
        let format = InputFormat.pem
        do {
            let summary = try CertificateSummary.summarize(der: der)
            switch try summary.svidRole() {
            case .signing:
                return .record(ParsedRecord(format: format, location: location, raw: raw))
            case .leaf(let id):
                let event = IdentityEvent(
                    kind: .issued, spiffeID: id.description, serial: summary.serial,
                    fingerprintSHA256: summary.fingerprintSHA256, notBefore: summary.notBefore,
                    notAfter: summary.notAfter, issuer: summary.issuer, time: summary.notBefore,
                    format: format.rawValue)
                return .record(ParsedRecord(format: format, location: location, raw: raw, identityEvents: [event]))
            }
        } catch {
            return .rejected(Rejection(format: format, location: location, raw: raw, reason: error.reason))
        }
    }
}
