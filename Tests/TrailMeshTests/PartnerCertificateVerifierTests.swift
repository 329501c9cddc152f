import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

@testable import TrailMesh

/// The edge's partner-certificate check: the chain must verify to the partner bundle as before, but an expired
/// or not yet valid LEAF is accepted and marked, so the request can be refused and logged.
@Suite struct PartnerCertificateVerifierTests {
    struct CA {
        let key = P256.Signing.PrivateKey()
        let certificate: Certificate

        init(_ name: String, notBefore: Date = Date().addingTimeInterval(-3600), notAfter: Date = Date().addingTimeInterval(86_400)) throws {
            let subject = try DistinguishedName { CommonName(name) }
            certificate = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
                notValidBefore: notBefore, notValidAfter: notAfter, issuer: subject, subject: subject,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                },
                issuerPrivateKey: .init(key))
        }

        func issue(
            notBefore: Date, notAfter: Date, usage: ExtendedKeyUsage.Usage = .clientAuth, ca: Bool = false
        ) throws -> (certificate: Certificate, key: P256.Signing.PrivateKey) {
            let key = P256.Signing.PrivateKey()
            let certificate = try Certificate(
                version: .v3, serialNumber: .init(bytes: [0x10, 0x01]), publicKey: .init(key.publicKey),
                notValidBefore: notBefore, notValidAfter: notAfter, issuer: self.certificate.subject,
                subject: try DistinguishedName { CommonName(ca ? "Partner Issuing CA" : "acme") },
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    if ca {
                        Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                        Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    } else {
                        Critical(BasicConstraints.notCertificateAuthority)
                        Critical(KeyUsage(digitalSignature: true))
                        try ExtendedKeyUsage([usage])
                        SubjectAlternativeNames([.uniformResourceIdentifier("spiffe://partners.example/acme")])
                    }
                },
                issuerPrivateKey: .init(self.key))
            return (certificate, key)
        }
    }

    static let now = Date()
    static let day: TimeInterval = 86_400

    static func der(_ certificates: Certificate...) throws -> [[UInt8]] {
        try certificates.map { c in
            var serializer = DER.Serializer()
            try serializer.serialize(c)
            return serializer.serializedBytes
        }
    }

    @Test func validLeafIsVerified() async throws {
        let partner = try CA("Partner CA")
        let leaf = try partner.issue(notBefore: Self.now.addingTimeInterval(-60), notAfter: Self.now.addingTimeInterval(Self.day))
        let verdict = await PartnerCertificateVerifier.verify(derChain: try Self.der(leaf.certificate), roots: [partner.certificate])
        #expect(verdict == .verified(.valid))
    }

    /// Expired before the CA itself was made (as `openssl ca -startdate/-enddate` produces): still accepted and marked.
    @Test func expiredLeafIsAcceptedAndMarked() async throws {
        let partner = try CA("Partner CA")
        let leaf = try partner.issue(
            notBefore: Self.now.addingTimeInterval(-400 * Self.day), notAfter: Self.now.addingTimeInterval(-370 * Self.day))
        let verdict = await PartnerCertificateVerifier.verify(derChain: try Self.der(leaf.certificate), roots: [partner.certificate])
        #expect(verdict == .verified(.expired))
        #expect(ClientCertificateValidity.expired.clientVerify == "FAILED:certificate has expired")
    }

    @Test func notYetValidLeafIsAcceptedAndMarked() async throws {
        let partner = try CA("Partner CA")
        let leaf = try partner.issue(notBefore: Self.now.addingTimeInterval(Self.day), notAfter: Self.now.addingTimeInterval(2 * Self.day))
        let verdict = await PartnerCertificateVerifier.verify(derChain: try Self.der(leaf.certificate), roots: [partner.certificate])
        #expect(verdict == .verified(.notYetValid))
    }

    @Test func expiredLeafThroughAnIntermediateIsAcceptedAndMarked() async throws {
        let root = try CA("Partner Root")
        let issuing = try root.issue(notBefore: Self.now.addingTimeInterval(-Self.day), notAfter: Self.now.addingTimeInterval(Self.day), ca: true)
        let issuingCA = CAWithKey(certificate: issuing.certificate, key: issuing.key)
        let leaf = try issuingCA.issue(notBefore: Self.now.addingTimeInterval(-2 * Self.day), notAfter: Self.now.addingTimeInterval(-60))
        let verdict = await PartnerCertificateVerifier.verify(
            derChain: try Self.der(leaf, issuing.certificate), roots: [root.certificate])
        #expect(verdict == .verified(.expired))
    }

    @Test func expiredLeafFromAForeignCAIsRejected() async throws {
        let partner = try CA("Partner CA")
        let foreign = try CA("Partner CA")  // same name, other key
        let leaf = try foreign.issue(notBefore: Self.now.addingTimeInterval(-2 * Self.day), notAfter: Self.now.addingTimeInterval(-Self.day))
        let verdict = await PartnerCertificateVerifier.verify(derChain: try Self.der(leaf.certificate), roots: [partner.certificate])
        guard case .rejected = verdict else {
            Issue.record("a foreign CA's certificate was accepted: \(verdict)")
            return
        }
        let valid = try foreign.issue(notBefore: Self.now.addingTimeInterval(-60), notAfter: Self.now.addingTimeInterval(Self.day))
        guard case .rejected = await PartnerCertificateVerifier.verify(derChain: try Self.der(valid.certificate), roots: [partner.certificate]) else {
            Issue.record("a foreign CA's valid certificate was accepted")
            return
        }
    }

    @Test func wrongUsageIsRejectedEvenWhenExpired() async throws {
        let partner = try CA("Partner CA")
        for notAfter in [Self.now.addingTimeInterval(Self.day), Self.now.addingTimeInterval(-60)] {
            let leaf = try partner.issue(notBefore: Self.now.addingTimeInterval(-Self.day), notAfter: notAfter, usage: .serverAuth)
            guard case .rejected = await PartnerCertificateVerifier.verify(derChain: try Self.der(leaf.certificate), roots: [partner.certificate]) else {
                Issue.record("a serverAuth-only certificate was accepted as a client certificate")
                return
            }
        }
    }

    @Test func expiredIssuerIsRejected() async throws {
        let root = try CA("Partner Root")
        let issuing = try root.issue(notBefore: Self.now.addingTimeInterval(-3 * Self.day), notAfter: Self.now.addingTimeInterval(-Self.day), ca: true)
        let leaf = try CAWithKey(certificate: issuing.certificate, key: issuing.key)
            .issue(notBefore: Self.now.addingTimeInterval(-2 * Self.day), notAfter: Self.now.addingTimeInterval(Self.day))
        guard case .rejected = await PartnerCertificateVerifier.verify(derChain: try Self.der(leaf, issuing.certificate), roots: [root.certificate]) else {
            Issue.record("a chain through an expired issuing CA was accepted")
            return
        }
    }

    @Test func noCertificateIsRejected() async {
        guard case .rejected = await PartnerCertificateVerifier.verify(derChain: [], roots: []) else {
            Issue.record("an empty chain was accepted")
            return
        }
    }

    /// An intermediate CA issuing leaves.
    struct CAWithKey {
        let certificate: Certificate
        let key: P256.Signing.PrivateKey

        func issue(notBefore: Date, notAfter: Date) throws -> Certificate {
            let leafKey = P256.Signing.PrivateKey()
            return try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(leafKey.publicKey),
                notValidBefore: notBefore, notValidAfter: notAfter, issuer: certificate.subject,
                subject: try DistinguishedName { CommonName("acme") }, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([.clientAuth])
                },
                issuerPrivateKey: .init(key))
        }
    }
}
