import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Testing
import TrailCore
import X509

@testable import TrailMesh
@testable import TrailServer

/// `trail serve --crl` with the CRL that `trail ca revoke` writes: a revoked client certificate is refused from the
/// next request on, without a restart, also on a connection opened before the revocation; a CRL that cannot be
/// trusted stops the start; a later broken file keeps the last good CRL.
@Suite("trail serve with the CA's CRL", .serialized, .timeLimit(.minutes(2)))
struct ServeRevocationTests {
    static let collector = "spiffe://shop.example/ns/observability/sa/collector"

    /// A CA (trail ca's code) in a temporary folder, and a certificate for serve.
    final class Estate: Sendable {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-serve-crl-\(UUID().uuidString)").path
        let ca: CertificateAuthority

        init() throws {
            ca = try CertificateAuthority.initialize(directory: dir + "/ca", trustDomain: "shop.example")
            let (serve, key) = try ca.issueWithNewKey(spiffeID: "spiffe://shop.example/trail/serve")
            try serve.chainPEM.write(toFile: serveChain, atomically: true, encoding: .utf8)
            try key.write(toFile: serveKey, atomically: true, encoding: .utf8)
        }

        var serveChain: String { dir + "/serve.pem" }
        var serveKey: String { dir + "/serve.key" }
        var crl: String { dir + "/ca/crl.pem" }

        /// Serve's configuration with the CA's bundle, `--allow shop.example` and `crls`.
        func configuration(crls: [String], checkEvery interval: Duration = .seconds(2)) -> ServerConfiguration {
            var configuration = ServerConfiguration(
                host: "127.0.0.1", port: 0, tlsCertificatePath: serveChain, tlsKeyPath: serveKey,
                clientCAPath: dir + "/ca/bundle.pem", allow: ["shop.example"], eventLoopThreads: 1)
            configuration.crlPaths = crls
            configuration.crlCheckInterval = interval
            return configuration
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    @Test func aCertificateRevokedDuringAConnectionIsRefusedAtItsNextRequest() async throws {
        let estate = try Estate()
        defer { estate.remove() }
        let (svid, key) = try estate.ca.issueWithNewKey(spiffeID: Self.collector)
        let handler = SenderEcho()
        // Every request looks at the file: what is checked is that a kept-alive connection is not trusted for good.
        let server = IngestHTTPServer(configuration: estate.configuration(crls: [estate.crl], checkEvery: .zero), handler: handler)
        let port = try #require(try await server.start().port)
        let connection = try await KeptAliveClient.connect(port: port, chainPEM: svid.chainPEM, keyPEM: key)
        let before = try await connection.post("/v1/logs")
        #expect(before.status == 200, "\(before)")
        _ = try estate.ca.revoke(serial: svid.serial, reason: "keyCompromise")
        let after = try await connection.post("/v1/logs")
        await connection.close()
        try await server.shutdown()
        #expect(after.status == 403, "\(after)")
        #expect(after.body.contains("the client certificate \(svid.serial) is revoked"), "\(after)")
        #expect(handler.senders == [Self.collector])
    }

    @Test func aNewConnectionLooksAtTheCRLAtOnce() async throws {
        let estate = try Estate()
        defer { estate.remove() }
        let (revoked, revokedKey) = try estate.ca.issueWithNewKey(spiffeID: Self.collector)
        let handler = SenderEcho()
        // Requests on kept-alive connections would wait an hour; a new connection does not.
        let server = IngestHTTPServer(configuration: estate.configuration(crls: [estate.crl], checkEvery: .seconds(3600)), handler: handler)
        let port = try #require(try await server.start().port)
        let request = "POST /v1/logs HTTP/1.1\r\nHost: trail\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        let before = await TLSClient.exchange(port: port, chainPEM: revoked.chainPEM, keyPEM: revokedKey, impostorKey: false, request: request)
        _ = try estate.ca.revoke(serial: revoked.serial, reason: "keyCompromise")
        let after = await TLSClient.exchange(port: port, chainPEM: revoked.chainPEM, keyPEM: revokedKey, impostorKey: false, request: request)
        try await server.shutdown()
        #expect(before.status == 200, "\(before)")
        #expect(after.status == 403, "\(after)")
        #expect(after.body.contains("\(revoked.serial) is revoked"), "\(after)")
    }

    @Test func crlsThatCannotBeTrustedStopTheStart() throws {
        let estate = try Estate()
        defer { estate.remove() }
        _ = try CertificateAuthority.initialize(directory: estate.dir + "/other-ca", trustDomain: "other.example")
        // Same issuer name and shape as the CA's CRL, signed by another key.
        let forged = try CRLBuilder(
            issuer: try Certificate(pemEncoded: try String(contentsOfFile: estate.dir + "/ca/ca.pem", encoding: .utf8)).subject,
            issuerKeyIdentifier: nil, thisUpdate: Date(), nextUpdate: Date().addingTimeInterval(3600), number: 9, entries: []
        ).pem(signedWith: P256.Signing.PrivateKey())
        try forged.write(toFile: estate.dir + "/forged.pem", atomically: true, encoding: .utf8)
        try "not a CRL\n".write(toFile: estate.dir + "/garbage.pem", atomically: true, encoding: .utf8)
        let cases: [(file: String, reason: String)] = [
            (estate.dir + "/missing.pem", "cannot read the file"),
            (estate.dir + "/garbage.pem", "not a CRL"),
            (estate.dir + "/other-ca/crl.pem", "is not signed by a CA certificate of --client-ca"),
            (estate.dir + "/forged.pem", "is not signed by a CA certificate of --client-ca"),
        ]
        for c in cases {
            let error = #expect(throws: ServerConfigurationError.self) { try estate.configuration(crls: [c.file]).validate() }
            let text = error?.description ?? ""
            #expect(text.hasPrefix("--crl \(c.file): ") && text.contains(c.reason), "\(text)")
        }
        // The CA's own CRL, in either encoding, is accepted; without --client-ca there is nothing to check it with.
        try estate.configuration(crls: [estate.crl, estate.dir + "/ca/crl.der"]).validate()
        var tokensOnly = estate.configuration(crls: [estate.crl])
        tokensOnly.clientCAPath = nil
        tokensOnly.allow = []
        tokensOnly.tokens = [TokenEntry(name: "collector", token: "0123456789abcdef0123")]
        let error = #expect(throws: ServerConfigurationError.self) { try tokensOnly.validate() }
        #expect(error?.description.contains("--crl needs --client-ca") == true)
    }

    @Test func aChangedCRLIsReadAgainAndABrokenOneKeepsTheLastGood() throws {
        let estate = try Estate()
        defer { estate.remove() }
        let (first, _) = try estate.ca.issueWithNewKey(spiffeID: Self.collector)
        let (second, _) = try estate.ca.issueWithNewKey(spiffeID: Self.collector)
        let issuer = try Certificate(pemEncoded: first.chainPEM).issuer
        _ = try estate.ca.revoke(serial: first.serial, reason: "keyCompromise")
        // serve reads a copy, so that the test decides when it changes.
        let file = estate.dir + "/serve-crl.pem"
        try FileManager.default.copyItem(atPath: estate.crl, toPath: file)
        let lines = Locked<[String]>([])
        let signers = try WorkloadIdentity.parseBundle(estate.ca.bundlePEM)
        let watcher = try RevocationWatcher(paths: [file], signers: signers, interval: .zero) { line in lines.withLock { $0.append(line) } }
        #expect(watcher.revokes(issuer: issuer, serial: first.serial))
        #expect(!watcher.revokes(issuer: issuer, serial: second.serial))
        // The same serial from another issuer is not what the CRL revokes.
        let stranger = try DistinguishedName { CommonName("another CA") }
        #expect(!watcher.revokes(issuer: stranger, serial: first.serial))

        try "-----BEGIN X509 CRL-----\ntruncated\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(watcher.revokes(issuer: issuer, serial: first.serial))
        #expect(watcher.revokes(issuer: issuer, serial: first.serial))
        let broken = lines.withLock { $0 }
        #expect(broken.count == 1, "\(broken)")
        #expect(broken.first?.contains("--crl \(file): not a CRL") == true, "\(broken)")
        #expect(broken.first?.contains("keeping its last good CRL") == true, "\(broken)")

        _ = try estate.ca.revoke(serial: second.serial, reason: "superseded")
        try FileManager.default.removeItem(atPath: file)
        try FileManager.default.copyItem(atPath: estate.crl, toPath: file)
        #expect(watcher.revokes(issuer: issuer, serial: second.serial))
        #expect(watcher.revokes(issuer: issuer, serial: first.serial))
        let reloaded = lines.withLock { $0 }
        #expect(reloaded.count == 2 && reloaded.last?.contains("reloaded: 2 revoked certificate(s)") == true, "\(reloaded)")
    }
}

/// One TLS connection presenting a client certificate, kept alive across HTTP/1.1 requests.
final class KeptAliveClient: Sendable {
    struct Answer: Sendable, CustomStringConvertible {
        var status: Int
        var body: String
        var description: String { "HTTP \(status): \(body.prefix(200))" }
    }

    /// Hands each response to the request waiting for it.
    final class Answers: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPClientResponsePart
        private let state = Locked<(waiting: EventLoopPromise<Answer>?, status: Int, body: [UInt8])>((nil, 0, []))

        func expect(_ promise: EventLoopPromise<Answer>) { state.withLock { $0 = (promise, 0, []) } }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): state.withLock { $0.status = Int(head.status.code) }
            case .body(let buffer): state.withLock { $0.body += buffer.readableBytesView }
            case .end:
                let (promise, answer) = state.withLock { ($0.waiting, Answer(status: $0.status, body: String(decoding: $0.body, as: UTF8.self))) }
                promise?.succeed(answer)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            state.withLock { $0.waiting }?.fail(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            state.withLock { $0.waiting }?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    private let channel: any Channel
    private let answers: Answers

    private init(channel: any Channel, answers: Answers) {
        self.channel = channel
        self.answers = answers
    }

    static func connect(port: Int, chainPEM: String, keyPEM: String) async throws -> KeptAliveClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(chainPEM.utf8)).map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        let context = try NIOSSLContext(configuration: tls)
        let answers = Answers()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(answers)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return KeptAliveClient(channel: channel, answers: answers)
    }

    /// Sends an empty POST and waits for its answer.
    func post(_ path: String) async throws -> Answer {
        let promise = channel.eventLoop.makePromise(of: Answer.self)
        answers.expect(promise)
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: ["host": "trail", "content-length": "0"])
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        return try await promise.futureResult.get()
    }

    func close() async { try? await channel.close() }
}
