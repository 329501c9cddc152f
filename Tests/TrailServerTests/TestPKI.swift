import Crypto
import Foundation
import SwiftASN1
import X509

/// A throwaway PKI written to a temporary directory: a CA, a server certificate for localhost/127.0.0.1 and
/// client certificates with SPIFFE URI SANs.
struct TestPKI {
    let directory: URL
    let caKey: P256.Signing.PrivateKey
    let caCertificate: Certificate

    var caPath: String { directory.appendingPathComponent("ca.pem").path }
    var serverCertPath: String { directory.appendingPathComponent("server.pem").path }
    var serverKeyPath: String { directory.appendingPathComponent("server-key.pem").path }

    init(name: String = "Trail Test CA") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("trail-server-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let caKey = P256.Signing.PrivateKey()
        self.caKey = caKey
        let caName = try DistinguishedName { CommonName(name) }
        let now = Date()
        caCertificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(86400),
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: Certificate.PublicKey(caKey.publicKey))
            },
            issuerPrivateKey: .init(caKey))
        try write(caPath, try caCertificate.serializeAsPEM().pemString)
        let (serverCert, serverKey) = try issue(
            commonName: "localhost",
            sans: [.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))],
            usage: .serverAuth)
        try write(serverCertPath, serverCert)
        try write(serverKeyPath, serverKey)
    }

    /// Issues a client certificate with the given URI SAN; returns (certificate path, key path).
    func client(_ name: String, spiffeID: String) throws -> (cert: String, key: String) {
        let (cert, key) = try issue(commonName: name, sans: [.uniformResourceIdentifier(spiffeID)], usage: .clientAuth)
        let certPath = directory.appendingPathComponent("\(name).pem").path
        let keyPath = directory.appendingPathComponent("\(name)-key.pem").path
        try write(certPath, cert)
        try write(keyPath, key)
        return (certPath, keyPath)
    }

    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }

    private func issue(commonName: String, sans: [GeneralName], usage: ExtendedKeyUsage.Usage) throws -> (String, String) {
        let key = P256.Signing.PrivateKey()
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(86400),
            issuer: caCertificate.subject, subject: try DistinguishedName { CommonName(commonName) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([usage])
                SubjectAlternativeNames(sans)
                AuthorityKeyIdentifier(keyIdentifier: try caCertificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: .init(caKey))
        return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
    }

    func write(_ path: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }
}
