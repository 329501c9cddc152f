import Crypto
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import Testing
import TrailCore
import X509

@testable import TrailMesh
@testable import TrailServer

/// Certificates an attacker could present, made in the test with swift-certificates, each tried three ways: against
/// ``SVIDVerifier`` alone, over a real TLS handshake into a STRICT `trail sidecar` (in process, as `trail sidecar`
/// runs it), and over a real TLS handshake into `trail serve`'s listener (``IngestHTTPServer``) with its client CA,
/// the CA's CRL and `--allow shop.example`. A valid SVID is the control: it must pass all three.
@Suite("hostile client certificates: verifier, sidecar and serve", .serialized, .timeLimit(.minutes(3)))
struct HostileCertificateTests {
    /// How `trail serve` answers a certificate.
    enum ServeOutcome: Sendable, CustomStringConvertible {
        /// The handshake completes and the request is answered with this status (and body text).
        case status(Int, String)
        /// Refused in the TLS handshake: no HTTP answer at all.
        case handshake

        var description: String {
            switch self {
            case .status(let s, let text): return "\(s) \(text)"
            case .handshake: return "refused at the handshake"
            }
        }
    }

    struct Case: Sendable, CustomStringConvertible {
        var name: String
        /// The reason ``SVIDVerifier`` must give (a part of it); nil: accepted.
        var verifier: String?
        var serve: ServeOutcome
        var description: String { name }
    }

    /// The attacks, in the order of the README's table. `replayed` is a valid SVID presented without its key: the
    /// client signs the handshake with another key (a custom NIOSSL key), which the verifier alone cannot see.
    static let cases: [Case] = [
        Case(name: "valid", verifier: nil, serve: .status(200, "spiffe=spiffe://shop.example/ns/shop/sa/web")),
        Case(name: "another trust domain", verifier: "not in trust domain shop.example",
             serve: .status(403, "spiffe://bank.example/ns/shop/sa/web is not allowed")),
        Case(name: "another trust domain's CA", verifier: "does not chain to the trust bundle", serve: .handshake),
        Case(name: "expired", verifier: "expired at", serve: .handshake),
        Case(name: "not yet valid", verifier: "is not valid before", serve: .handshake),
        Case(name: "revoked", verifier: "is revoked", serve: .status(403, "is revoked")),
        Case(name: "two URI SANs", verifier: "2 URI SANs", serve: .status(403, "has 2 URI SANs")),
        Case(name: "a SPIFFE and an https URI", verifier: "2 URI SANs", serve: .status(403, "has 2 URI SANs")),
        Case(name: "non-SPIFFE URI", verifier: "not a workload SPIFFE ID", serve: .status(403, "not a valid SPIFFE ID")),
        Case(name: "no URI SAN", verifier: "no URI SAN", serve: .status(403, "no URI SAN")),
        Case(name: "trust-domain ID", verifier: "not a workload SPIFFE ID", serve: .status(403, "names a trust domain")),
        Case(name: "dot segment in the ID", verifier: "not a workload SPIFFE ID", serve: .status(403, "not a valid SPIFFE ID")),
        Case(name: "port in the ID", verifier: "not a workload SPIFFE ID", serve: .status(403, "not a valid SPIFFE ID")),
        Case(name: "CA certificate as leaf", verifier: "is a CA certificate", serve: .status(403, "is a CA certificate")),
        Case(name: "signed by a workload's SVID", verifier: "does not chain to the trust bundle", serve: .handshake),
        Case(name: "forged copy of a real SVID", verifier: "does not chain to the trust bundle", serve: .handshake),
        Case(name: "self-signed with the real subject", verifier: "does not chain to the trust bundle", serve: .handshake),
        Case(name: "replayed without its key", verifier: nil, serve: .handshake),
    ]

    /// The CA (trail ca's code), a foreign CA and one certificate file pair per case, in a temporary folder.
    final class PKI: Sendable {
        let dir: String
        let ca: CertificateAuthority
        let caKey: P256.Signing.PrivateKey
        let caCertificate: Certificate
        /// Case name → (chain PEM, key PEM).
        let files: [String: (chain: String, key: String)]
        let serveChain: String
        let serveKey: String
        let sidecarChain: String
        let sidecarKey: String
        let revokedSerial: String

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-hostile-certs-\(UUID().uuidString)").path
            ca = try CertificateAuthority.initialize(directory: dir + "/ca", trustDomain: "shop.example")
            _ = try CertificateAuthority.initialize(directory: dir + "/foreign-ca", trustDomain: "other.example")
            let rootKey = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: dir + "/ca/ca.key", encoding: .utf8))
            let root = try Certificate(pemEncoded: try String(contentsOfFile: dir + "/ca/ca.pem", encoding: .utf8))
            caKey = rootKey
            caCertificate = root
            let now = Date()
            let web = "spiffe://shop.example/ns/shop/sa/web"

            func make(
                _ uris: [String], dns: [String] = [], from: Date = now.addingTimeInterval(-600), until: Date = now.addingTimeInterval(3600),
                isCA: Bool = false, issuer: Certificate? = nil, issuerKey: P256.Signing.PrivateKey? = nil,
                subject: DistinguishedName? = nil, key: P256.Signing.PrivateKey = P256.Signing.PrivateKey()
            ) throws -> (Certificate, P256.Signing.PrivateKey) {
                let issuerCertificate = issuer ?? root
                let signer = issuerKey ?? rootKey
                let names: [GeneralName] = uris.map { .uniformResourceIdentifier($0) } + dns.map { .dnsName($0) }
                let certificate = try Certificate(
                    version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: from, notValidAfter: until,
                    issuer: issuerCertificate.subject, subject: try subject ?? DistinguishedName { CommonName("workload") },
                    signatureAlgorithm: .ecdsaWithSHA256,
                    extensions: try Certificate.Extensions {
                        Critical(isCA ? BasicConstraints.isCertificateAuthority(maxPathLength: nil) : BasicConstraints.notCertificateAuthority)
                        Critical(isCA ? KeyUsage(digitalSignature: true, keyCertSign: true) : KeyUsage(digitalSignature: true))
                        try ExtendedKeyUsage([.serverAuth, .clientAuth])
                        if !names.isEmpty { SubjectAlternativeNames(names) }
                    },
                    issuerPrivateKey: .init(signer))
                return (certificate, key)
            }
            func pem(_ pair: (Certificate, P256.Signing.PrivateKey), chain: [Certificate] = []) throws -> (String, String) {
                let text = try ([pair.0] + chain).map { try $0.serializeAsPEM().pemString + "\n" }.joined()
                return (text, pair.1.pemRepresentation + "\n")
            }

            var files: [String: (chain: String, key: String)] = [:]
            let (valid, validKey) = try ca.issueWithNewKey(spiffeID: web)
            files["valid"] = (valid.chainPEM, validKey)
            files["replayed without its key"] = (valid.chainPEM, validKey)
            files["another trust domain"] = try pem(make(["spiffe://bank.example/ns/shop/sa/web"]))
            // shop.example's SPIFFE ID, signed by the other trust domain's CA.
            let foreignCAKey = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: dir + "/foreign-ca/ca.key", encoding: .utf8))
            let foreignCA = try Certificate(pemEncoded: try String(contentsOfFile: dir + "/foreign-ca/ca.pem", encoding: .utf8))
            files["another trust domain's CA"] = try pem(make([web], issuer: foreignCA, issuerKey: foreignCAKey))
            files["expired"] = try pem(make([web], from: now.addingTimeInterval(-7200), until: now.addingTimeInterval(-3600)))
            files["not yet valid"] = try pem(make([web], from: now.addingTimeInterval(3600), until: now.addingTimeInterval(7200)))
            let (revoked, revokedKey) = try ca.issueWithNewKey(spiffeID: "spiffe://shop.example/ns/shop/sa/revoked")
            _ = try ca.revoke(serial: revoked.serial, reason: "keyCompromise")
            revokedSerial = revoked.serial
            files["revoked"] = (revoked.chainPEM, revokedKey)
            files["two URI SANs"] = try pem(make([web, "spiffe://shop.example/ns/shop/sa/admin"]))
            files["a SPIFFE and an https URI"] = try pem(make([web, "https://shop.example/admin"]))
            files["non-SPIFFE URI"] = try pem(make(["https://shop.example/ns/shop/sa/web"]))
            files["no URI SAN"] = try pem(make([], dns: ["web.shop.example"]))
            files["trust-domain ID"] = try pem(make(["spiffe://shop.example"]))
            files["dot segment in the ID"] = try pem(make(["spiffe://shop.example/ns/shop/sa/../admin"]))
            files["port in the ID"] = try pem(make(["spiffe://shop.example:8443/ns/shop/sa/web"]))
            files["CA certificate as leaf"] = try pem(make(["spiffe://shop.example/ns/shop/sa/web"], isCA: true))
            // A workload that holds its own SVID and key mints a certificate for another identity.
            let workload = try make(["spiffe://shop.example/ns/shop/sa/orders"])
            let minted = try make(["spiffe://shop.example/ns/shop/sa/payments"], issuer: workload.0, issuerKey: workload.1)
            files["signed by a workload's SVID"] = try pem(minted, chain: [workload.0])
            // Everything copied from the real SVID (serial, issuer name, subject, extensions with the SAN and the
            // CA's key identifier, validity), signed by a new key; and a self-signed one with its subject and SAN.
            let real = try Certificate(pemEncoded: valid.chainPEM)
            let forgerKey = P256.Signing.PrivateKey()
            let copy = try Certificate(
                version: .v3, serialNumber: real.serialNumber, publicKey: .init(forgerKey.publicKey),
                notValidBefore: real.notValidBefore, notValidAfter: real.notValidAfter, issuer: real.issuer, subject: real.subject,
                signatureAlgorithm: .ecdsaWithSHA256, extensions: real.extensions, issuerPrivateKey: .init(forgerKey))
            files["forged copy of a real SVID"] = (try copy.serializeAsPEM().pemString + "\n", forgerKey.pemRepresentation + "\n")
            let selfKey = P256.Signing.PrivateKey()
            let selfSigned = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(selfKey.publicKey),
                notValidBefore: real.notValidBefore, notValidAfter: real.notValidAfter, issuer: real.subject, subject: real.subject,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    SubjectAlternativeNames([.uniformResourceIdentifier(web)])
                },
                issuerPrivateKey: .init(selfKey))
            files["self-signed with the real subject"] = (try selfSigned.serializeAsPEM().pemString + "\n", selfKey.pemRepresentation + "\n")
            self.files = files

            let (serve, serveKey) = try ca.issueWithNewKey(spiffeID: "spiffe://shop.example/trail/serve")
            serveChain = dir + "/serve.pem"
            self.serveKey = dir + "/serve.key"
            try serve.chainPEM.write(toFile: serveChain, atomically: true, encoding: .utf8)
            try serveKey.write(toFile: self.serveKey, atomically: true, encoding: .utf8)
            let (sidecar, sidecarKey) = try ca.issueWithNewKey(spiffeID: "spiffe://shop.example/ns/shop/sa/payments")
            sidecarChain = dir + "/payments.pem"
            self.sidecarKey = dir + "/payments.key"
            try sidecar.chainPEM.write(toFile: sidecarChain, atomically: true, encoding: .utf8)
            try sidecarKey.write(toFile: self.sidecarKey, atomically: true, encoding: .utf8)
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }

        var trust: TrustSnapshot {
            get throws {
                TrustSnapshot(trustDomain: "shop.example", roots: try WorkloadIdentity.parseBundle(ca.bundlePEM), revokedSerials: [revokedSerial])
            }
        }
    }

    static let pki: PKI = {
        do { return try PKI() } catch { fatalError("cannot make the test PKI: \(error)") }
    }()

    // MARK: The verifier alone

    @Test(arguments: cases)
    func theVerifierRefusesEachAttack(_ c: Case) async throws {
        let files = try #require(Self.pki.files[c.name])
        let chain = try PEMDocument.parseMultiple(pemString: files.chain).map(\.derBytes)
        let verdict = await SVIDVerifier.verify(derChain: chain, trust: try Self.pki.trust)
        switch (verdict, c.verifier) {
        case (.accepted, nil): break
        case (.accepted(let facts), let reason?): Issue.record("\(c.name): accepted as \(facts.spiffeID ?? "-"), expected '\(reason)'")
        case (.refused(_, let why), nil): Issue.record("\(c.name): refused (\(why)), expected acceptance")
        case (.refused(_, let why), let reason?): #expect(why.contains(reason), "\(c.name): \(why)")
        }
    }

    // MARK: Real handshakes

    /// A STRICT sidecar for payments with the CA's CRL; its access log receives one refusal line per refused
    /// handshake.
    @Test func theSidecarRefusesEachAttackAtTheHandshake() async throws {
        let pki = Self.pki
        let dir = pki.dir + "/sidecar-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let log = dir + "/access.ndjson"
        let configuration = try SidecarConfiguration.load(text: """
            spiffe_id: spiffe://shop.example/ns/shop/sa/payments
            trust_bundle: \(pki.dir)/ca/bundle.pem
            svid: {cert: \(pki.sidecarChain), key: \(pki.sidecarKey), crl: \(pki.dir)/ca/crl.pem}
            inbound:
              listen: 127.0.0.1:0
              app: 127.0.0.1:9
              mode: STRICT
            telemetry:
              access_log: \(log)
              flush_ms: 10
            """, file: dir + "/payments.yaml")
        let sidecar = try Sidecar(configuration: configuration, threads: 1) { _ in }
        let inbound = try await sidecar.start().inbound
        let port = try #require(Int(inbound.split(separator: ":").last ?? ""))
        var outcomes: [String: TLSOutcome] = [:]
        for c in Self.cases {
            let files = try #require(pki.files[c.name])
            outcomes[c.name] = await TLSClient.exchange(
                port: port, chainPEM: files.chain, keyPEM: files.key, impostorKey: c.name == "replayed without its key",
                request: "GET /pay HTTP/1.1\r\nHost: payments\r\nConnection: close\r\n\r\n")
        }
        await sidecar.stop()
        for c in Self.cases {
            let outcome = try #require(outcomes[c.name])
            if c.name == "valid" {
                // Through the handshake and the (allow-all) policy to the app, which is not listening.
                #expect(outcome.status == 503, "\(c.name): \(outcome)")
            } else {
                #expect(outcome.status == nil, "\(c.name): \(outcome)")
            }
        }
        // Each refusal is logged with the verifier's reason, the certificate's facts when it could be read.
        var lines: [JSONValue] = []
        for _ in 0..<100 {
            lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { try? JSONParser.parse(Array($0.utf8)) }
            if lines.count >= Self.cases.count { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let reasons = lines.compactMap { $0["refusal_reason"]?.string }
        for c in Self.cases {
            guard let reason = c.verifier else { continue }
            #expect(reasons.contains { $0.contains(reason) }, "\(c.name): no refusal saying '\(reason)' in \(reasons)")
        }
        // The replayed certificate fails in TLS itself (its CertificateVerify does not match the key in it).
        #expect(reasons.contains { $0.hasPrefix("TLS handshake failed") }, "\(reasons)")
        #expect(lines.count == Self.cases.count, "one line per attempt: \(lines.count)")
    }

    /// `trail serve`'s listener with `--client-ca` (the CA's bundle), `--crl` (the CA's CRL) and `--allow shop.example`.
    @Test func serveRefusesEachAttackAtTheHandshakeOrWith403() async throws {
        let pki = Self.pki
        let handler = SenderEcho()
        var configuration = ServerConfiguration(
            host: "127.0.0.1", port: 0, tlsCertificatePath: pki.serveChain, tlsKeyPath: pki.serveKey,
            clientCAPath: pki.dir + "/ca/bundle.pem", allow: ["shop.example"], eventLoopThreads: 1)
        configuration.crlPaths = [pki.dir + "/ca/crl.pem"]
        let server = IngestHTTPServer(configuration: configuration, handler: handler)
        let url = try await server.start()
        let port = try #require(url.port)
        for c in Self.cases {
            let files = try #require(pki.files[c.name])
            let outcome = await TLSClient.exchange(
                port: port, chainPEM: files.chain, keyPEM: files.key, impostorKey: c.name == "replayed without its key",
                request: "POST /v1/logs HTTP/1.1\r\nHost: trail\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            switch c.serve {
            case .handshake:
                #expect(outcome.status == nil, "\(c.name): \(outcome)")
            case .status(let status, let text):
                #expect(outcome.status == status, "\(c.name): \(outcome)")
                #expect(outcome.body.contains(text), "\(c.name): \(outcome)")
            }
        }
        try await server.shutdown()
        // Only the valid SVID reached the handler.
        #expect(handler.senders == ["spiffe://shop.example/ns/shop/sa/web"])
    }
}

/// Answers with the sender's SPIFFE ID.
final class SenderEcho: ServerRequestHandler {
    private let seen = Locked<[String]>([])
    var senders: [String] { seen.withLock { $0 } }

    func handle(_ request: ServerRequest) async -> ServerResponse {
        seen.withLock { $0.append(request.sender.spiffeID ?? "-") }
        return .text(200, "spiffe=\(request.sender.spiffeID ?? "-")")
    }
}

/// What a TLS client got: the HTTP answer, or nothing (the handshake was refused) and the error.
struct TLSOutcome: Sendable, CustomStringConvertible {
    var response: String
    var error: String?

    var status: Int? {
        guard response.hasPrefix("HTTP/1.1 "), response.count >= 12 else { return nil }
        return Int(response.dropFirst(9).prefix(3))
    }
    var body: String { response.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n") }
    var description: String { status.map { "HTTP \($0): \(body.prefix(200))" } ?? "no HTTP answer (\(error ?? "closed"))" }
}

/// A TLS client that presents any certificate chain, optionally signing the handshake with a key that is not the
/// certificate's (a replayed certificate), sends one request and reads until the server closes.
enum TLSClient {
    /// Signs TLS handshakes with a fresh P-256 key unrelated to the certificate presented.
    struct ImpostorKey: NIOSSLCustomPrivateKey, Hashable {
        let raw: [UInt8]
        init() { raw = Array(P256.Signing.PrivateKey().rawRepresentation) }

        var signatureAlgorithms: [SignatureAlgorithm] { [.ecdsaSecp256R1Sha256] }

        func sign(channel: any Channel, algorithm: SignatureAlgorithm, data: ByteBuffer) -> EventLoopFuture<ByteBuffer> {
            channel.eventLoop.makeCompletedFuture {
                let key = try P256.Signing.PrivateKey(rawRepresentation: raw)
                let signature = try key.signature(for: SHA256.hash(data: Array(data.readableBytesView)))
                return ByteBuffer(bytes: signature.derRepresentation)
            }
        }

        func decrypt(channel: any Channel, data: ByteBuffer) -> EventLoopFuture<ByteBuffer> {
            channel.eventLoop.makeFailedFuture(NIOSSLError.failedToLoadPrivateKey)
        }
    }

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let done: EventLoopPromise<TLSOutcome>
        private let state = Locked<(bytes: [UInt8], error: String?)>(([], nil))

        init(done: EventLoopPromise<TLSOutcome>) { self.done = done }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            state.withLock { $0.bytes += buffer.readableBytesView }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            state.withLock { if $0.error == nil { $0.error = "\(error)" } }
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            let (bytes, error) = state.withLock { ($0.bytes, $0.error) }
            done.succeed(TLSOutcome(response: String(decoding: bytes, as: UTF8.self), error: error))
        }
    }

    static func exchange(port: Int, chainPEM: String, keyPEM: String, impostorKey: Bool, request: String) async -> TLSOutcome {
        do {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.certificateVerification = .none
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(chainPEM.utf8)).map { .certificate($0) }
            tls.privateKey = impostorKey
                ? .privateKey(NIOSSLPrivateKey(customPrivateKey: ImpostorKey()))
                : .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
            let context = try NIOSSLContext(configuration: tls)
            let group = MultiThreadedEventLoopGroup.singleton
            let done = group.any().makePromise(of: TLSOutcome.self)
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                        try channel.pipeline.syncOperations.addHandler(Collector(done: done))
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
            channel.writeAndFlush(ByteBuffer(string: request), promise: nil)
            // A server that neither answers nor closes fails the test by time, not by hanging it.
            channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
            return try await done.futureResult.get()
        } catch {
            return TLSOutcome(response: "", error: "\(error)")
        }
    }
}
