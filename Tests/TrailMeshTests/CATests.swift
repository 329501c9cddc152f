import Crypto
import SwiftASN1
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import TrailCore
import TrailFormats
import X509
@testable import TrailMesh

@Suite("trail ca: X509-SVIDs, join tokens, revocation, CRL and events")
struct CATests {
    static func freshCA(ttl: Int = 3600) throws -> CertificateAuthority {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-ca-\(UUID().uuidString)").path
        return try CertificateAuthority.initialize(directory: dir, trustDomain: "shop.example", svidTTLSeconds: ttl)
    }

    static func der(_ pem: String) throws -> [[UInt8]] {
        try PEMDocument.parseMultiple(pemString: pem).map(\.derBytes)
    }

    @Test func svidsFollowTheX509SVIDStandard() async throws {
        let ca = try Self.freshCA()
        let (svid, keyPEM) = try ca.issueWithNewKey(spiffeID: "spiffe://shop.example/ns/shop/sa/orders")
        let leaf = try Certificate(derEncoded: try Self.der(svid.chainPEM)[0])
        let summary = try CertificateSummary.summarize(der: try Self.der(svid.chainPEM)[0])
        #expect(summary.uriSANs == ["spiffe://shop.example/ns/shop/sa/orders"])
        #expect(!summary.isCA)
        let usage = try #require(try leaf.extensions.keyUsage)
        #expect(usage.digitalSignature && !usage.keyCertSign)
        let eku = try #require(try leaf.extensions.extendedKeyUsage)
        #expect(eku.contains(.serverAuth) && eku.contains(.clientAuth))
        #expect(abs(leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore) - 3610) < 2)
        #expect(P256.Signing.PublicKey(leaf.publicKey) != nil)
        #expect(try P256.Signing.PrivateKey(pemRepresentation: keyPEM).publicKey.rawRepresentation
                == P256.Signing.PublicKey(leaf.publicKey)!.rawRepresentation)
        // The CA key is private to its owner.
        let mode = try FileManager.default.attributesOfItem(atPath: ca.path("ca.key"))[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        // Verified by the same verifier the sidecar uses.
        let trust = TrustSnapshot(trustDomain: "shop.example", roots: try WorkloadIdentity.parseBundle(ca.bundlePEM))
        guard case .accepted(let facts) = await SVIDVerifier.verify(derChain: try Self.der(svid.chainPEM), trust: trust) else {
            Issue.record("a fresh SVID was refused")
            return
        }
        #expect(facts.serial == svid.serial)
    }

    @Test func anIntermediateCAChainsToTheGivenRoot() async throws {
        let root = try Self.freshCA()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-ca-\(UUID().uuidString)").path
        let ca = try CertificateAuthority.initialize(
            directory: dir, trustDomain: "shop.example", rootCertificatePath: root.path("ca.pem"), rootKeyPath: root.path("ca.key"))
        #expect(ca.bundlePEM == (try SecureFile.readText(root.path("ca.pem"))))
        let (svid, _) = try ca.issueWithNewKey(spiffeID: "spiffe://shop.example/ns/shop/sa/orders")
        let chain = try Self.der(svid.chainPEM)
        #expect(chain.count == 2)
        #expect(try CertificateSummary.summarize(der: chain[1]).isCA)
        let trust = TrustSnapshot(trustDomain: "shop.example", roots: try WorkloadIdentity.parseBundle(ca.bundlePEM))
        guard case .accepted = await SVIDVerifier.verify(derChain: chain, trust: trust) else {
            Issue.record("an SVID under the intermediate was refused")
            return
        }
        guard case .refused(_, let why) = await SVIDVerifier.verify(derChain: [chain[0]], trust: trust) else {
            Issue.record("a leaf without its intermediate was accepted")
            return
        }
        #expect(why.contains("does not chain"))
        #expect(throws: MeshError.self) {
            try CertificateAuthority.initialize(directory: dir + "-2", trustDomain: "shop.example", rootCertificatePath: root.path("ca.pem"))
        }
    }

    @Test func workloadIDsOutsideTheTrustDomainAreRefused() throws {
        let ca = try Self.freshCA()
        #expect(throws: MeshError.self) { try ca.issueWithNewKey(spiffeID: "spiffe://other.example/ns/x/sa/y") }
        #expect(throws: MeshError.self) { try ca.issueWithNewKey(spiffeID: "spiffe://shop.example") }
    }

    @Test func verifierRefusesRevokedExpiredAndForeignCertificates() async throws {
        let ca = try Self.freshCA()
        let other = try Self.freshCA()
        let roots = try WorkloadIdentity.parseBundle(ca.bundlePEM)
        let (valid, _) = try ca.issueWithNewKey(spiffeID: "spiffe://shop.example/ns/shop/sa/a")
        let (expired, _) = try ca.issueWithNewKey(spiffeID: "spiffe://shop.example/ns/shop/sa/b", ttlSeconds: 60, now: Date().addingTimeInterval(-3600))
        let (foreign, _) = try other.issueWithNewKey(spiffeID: "spiffe://shop.example/ns/shop/sa/c")
        let trust = TrustSnapshot(trustDomain: "shop.example", roots: roots, revokedSerials: [valid.serial])
        for (svid, reason) in [(valid, "revoked"), (expired, "expired"), (foreign, "does not chain")] {
            guard case .refused(let facts, let why) = await SVIDVerifier.verify(derChain: try Self.der(svid.chainPEM), trust: trust) else {
                Issue.record("\(reason): accepted")
                continue
            }
            #expect(why.contains(reason), "\(why)")
            #expect(facts?.serial == svid.serial)
        }
        let otherDomain = TrustSnapshot(trustDomain: "bank.example", roots: roots)
        guard case .refused(_, let why) = await SVIDVerifier.verify(derChain: try Self.der(valid.chainPEM), trust: otherDomain) else {
            Issue.record("foreign trust domain accepted")
            return
        }
        #expect(why.contains("not in trust domain bank.example"))
    }

    @Test func revocationWritesASignedCRLAndEventsTrailReads() throws {
        let ca = try Self.freshCA()
        let (svid, _) = try ca.issueWithNewKey(spiffeID: "spiffe://shop.example/ns/shop/sa/orders")
        let revoked = try ca.revoke(spiffeID: "spiffe://shop.example/ns/shop/sa/orders", reason: "keyCompromise")
        #expect(revoked.map(\.serial) == [svid.serial])
        #expect(try ca.revoke(serial: svid.serial, reason: "keyCompromise").isEmpty)
        #expect(throws: MeshError.self) { try ca.revoke(serial: "abcdef", reason: "keyCompromise") }
        #expect(throws: MeshError.self) { try ca.revoke(serial: svid.serial, reason: "because") }

        let crl = try CertificateRevocationList.decode(der: ArraySlice(try ca.crlDER()))
        #expect(crl.version == 2)
        #expect(crl.entries.map(\.serial) == [svid.serial])
        #expect(crl.entries.first?.reason == "keyCompromise")
        #expect(crl.issuer.contains("Trail CA shop.example"))

        let events = IdentityEventParser().parse(try SecureFile.read(ca.path("events.ndjson")))
        let kinds = events.compactMap { result -> String? in
            if case .record(let r) = result { return r.identityEvents.first.map { "\($0.kind.rawValue) \($0.serial ?? "")" } }
            return nil
        }
        #expect(kinds == ["issued \(svid.serial)", "revoked \(svid.serial)"])
    }

    @Test func expiriesBecomeEventsOnce() throws {
        let ca = try Self.freshCA()
        let (svid, _) = try ca.issueWithNewKey(spiffeID: "spiffe://shop.example/ns/shop/sa/x", ttlSeconds: 60, now: Date().addingTimeInterval(-120))
        #expect(try ca.recordExpiries() == 1)
        #expect(try ca.recordExpiries() == 0)
        #expect(try SecureFile.readText(ca.path("events.ndjson")).contains("\"event\":\"expired\",\"time\":\"\(CertificateAuthority.rfc3339(svid.notAfter))\""))
    }

    @Test func joinTokensWorkOnceAndOnlyForTheirIdentity() throws {
        let ca = try Self.freshCA()
        let token = try ca.createJoinToken(spiffeID: "spiffe://shop.example/ns/shop/sa/orders")
        #expect(try !SecureFile.readText(ca.path("tokens.json")).contains(token))
        #expect(try ca.redeemJoinToken(token) == "spiffe://shop.example/ns/shop/sa/orders")
        #expect(throws: MeshError.self) { try ca.redeemJoinToken(token) }
        #expect(throws: MeshError.self) { try ca.redeemJoinToken("not-a-token") }
        let stale = try ca.createJoinToken(spiffeID: "spiffe://shop.example/ns/shop/sa/orders", ttlSeconds: 10, now: Date().addingTimeInterval(-60))
        #expect(throws: MeshError.self) { try ca.redeemJoinToken(stale) }
    }

    @Test func csrsAreIssuedForTheProvenIdentityOnly() throws {
        let ca = try Self.freshCA()
        let key = P256.Signing.PrivateKey()
        let csr = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName("admin") }, privateKey: Certificate.PrivateKey(key),
            attributes: CertificateSigningRequest.Attributes(), signatureAlgorithm: .ecdsaWithSHA256)
        let svid = try ca.issue(csrPEM: try csr.serializeAsPEM().pemString, spiffeID: "spiffe://shop.example/ns/shop/sa/web", renewal: true)
        #expect(svid.spiffeID == "spiffe://shop.example/ns/shop/sa/web")
        #expect(throws: MeshError.self) { try ca.issue(csrPEM: "garbage", spiffeID: "spiffe://shop.example/ns/shop/sa/web", renewal: false) }
        #expect(try SecureFile.readText(ca.path("events.ndjson")).contains("\"event\":\"renewed\""))
    }

    @Test func theWorkloadAPIAnswersOnlyAsTheCAAndTokensWorkOnce() async throws {
        let ca = try Self.freshCA()
        let server = CAServer(ca: ca, host: "127.0.0.1", port: 0, ingest: [], ingestTokenFile: nil) { _ in }
        let url = try await server.start()
        let roots = try WorkloadIdentity.parseBundle(ca.bundlePEM)
        let nioRoots = try NIOSSLCertificate.fromPEMBytes(Array(ca.bundlePEM.utf8))
        func client(_ id: String) -> HTTPSClient {
            HTTPSClient(
                group: MultiThreadedEventLoopGroup.singleton,
                expectedServer: .init(spiffeID: id, trust: TrustSnapshot(trustDomain: "shop.example", roots: roots))
            ) {
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.trustRoots = .certificates(nioRoots)
                tls.certificateVerification = .noHostnameVerification
                return try NIOSSLContext(configuration: tls)
            }
        }
        let endpoint = try HTTPSClient.Endpoint(url: url.absoluteString)
        let caClient = client("spiffe://shop.example/trail/ca")
        let bundle = try await caClient.request(.GET, endpoint, path: "/v1/bundle")
        #expect(bundle.status == 200 && bundle.text == ca.bundlePEM)
        // A client that expects another identity sends nothing: the handshake fails.
        await #expect(throws: MeshError.self) {
            _ = try await client("spiffe://shop.example/ns/shop/sa/payments").request(.GET, endpoint, path: "/v1/bundle")
        }

        let token = try ca.createJoinToken(spiffeID: "spiffe://shop.example/ns/shop/sa/orders")
        let key = P256.Signing.PrivateKey()
        let csr = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName("orders") }, privateKey: Certificate.PrivateKey(key),
            attributes: CertificateSigningRequest.Attributes(), signatureAlgorithm: .ecdsaWithSHA256)
        let body = Array(try csr.serializeAsPEM().pemString.utf8)
        let first = try await caClient.request(.POST, endpoint, path: "/v1/svid", headers: [("authorization", "Bearer \(token)")], body: body)
        #expect(first.status == 200, "\(first.text)")
        #expect(first.text.contains("spiffe://shop.example/ns/shop/sa/orders"))
        let again = try await caClient.request(.POST, endpoint, path: "/v1/svid", headers: [("authorization", "Bearer \(token)")], body: body)
        #expect(again.status == 403)
        let anonymous = try await caClient.request(.POST, endpoint, path: "/v1/svid/renew", body: body)
        #expect(anonymous.status == 401)
        await server.stop()
    }

    @Test func sidecarConfigErrorsNameTheKeyAndLine() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-sidecar-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("sidecar.yaml").path
        try "spiffe_id: spiffe://shop.example/ns/shop/sa/orders\ntrust_bundle: b.pem\nsvid: {cert: a, key: b}\ninbound:\n  listen: 127.0.0.1:1\n  app: 127.0.0.1:2\n  mode: STRIC\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect {
            _ = try SidecarConfiguration.load(file: file)
        } throws: { error in
            "\(error)".contains("inbound.mode (line 7): 'STRIC' is not STRICT or PERMISSIVE")
        }
        try "spiffe_id: spiffe://shop.example/ns/shop/sa/orders\ntrust_bundle: b.pem\nsvid: {cert: a, key: b}\ninbound:\n  listen: 127.0.0.1:1\n  app: 127.0.0.1:2\n  mtls: STRICT\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect {
            _ = try SidecarConfiguration.load(file: file)
        } throws: { error in
            "\(error)".contains("inbound.mtls (line 7): unknown key")
        }
    }
}
