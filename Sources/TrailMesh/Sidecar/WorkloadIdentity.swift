import Crypto
import Foundation
import NIOCore
import NIOSSL
import SwiftASN1
import TrailCore
import TrailFormats
import X509

/// A workload's current X509-SVID and trust, kept fresh: the SVID renewed at half-life (with jitter, as SPIRE
/// does) from `trail ca serve` or reloaded from files, the trust bundle and CRL refreshed. New TLS handshakes
/// use whatever is current; connections already open keep theirs.
public final class WorkloadIdentity: Sendable {
    public struct Current: Sendable {
        public var spiffeID: String
        public var serial: String
        public var notBefore: Date
        public var notAfter: Date
        public var trust: TrustSnapshot
        let serverContext: NIOSSLContext
        let clientContext: NIOSSLContext
        /// The client context of HTTP/2 upstreams (gRPC): ALPN offers `h2` only.
        let h2ClientContext: NIOSSLContext
    }

    /// Whose identity this is and where it comes from.
    public struct Settings: Sendable {
        public var spiffeID: String
        public var trustDomain: String
        /// The name in CSRs (the certificate's common name).
        public var service: String
        public var bundlePath: String
        public var source: SidecarConfiguration.IdentitySource

        public init(spiffeID: String, trustDomain: String, service: String, bundlePath: String, source: SidecarConfiguration.IdentitySource) {
            self.spiffeID = spiffeID
            self.trustDomain = trustDomain
            self.service = service
            self.bundlePath = bundlePath
            self.source = source
        }

        public init(_ c: SidecarConfiguration) {
            self.init(spiffeID: c.spiffeID, trustDomain: c.trustDomain, service: c.service, bundlePath: c.bundlePath, source: c.identity)
        }
    }

    let configuration: Settings
    let group: any EventLoopGroup
    let log: @Sendable (String) -> Void
    private let state = Locked<Current?>(nil)
    private let material = Locked<(chainPEM: String, keyPEM: String, bundle: [Certificate], revoked: Set<String>)?>(nil)
    private let tasks = BackgroundTasks()
    /// Peers' chains verified against the current bundle.
    let verifiedChains = VerifiedChainCache()

    public init(settings: Settings, group: any EventLoopGroup, log: @escaping @Sendable (String) -> Void) {
        self.configuration = settings
        self.group = group
        self.log = log
    }

    public var current: Current {
        guard let c = state.withLock({ $0 }) else { preconditionFailure("WorkloadIdentity used before start()") }
        return c
    }

    /// Gets the first SVID (from the state directory, a join token, or files) and starts keeping it fresh.
    public func start() async throws {
        let bundle = try Self.loadBundle(configuration.bundlePath)
        switch configuration.source {
        case .files(let certificate, let key, let crl, let refresh):
            try install(chainPEM: try SecureFile.readText(certificate), keyPEM: try SecureFile.readText(key), bundle: bundle,
                        revoked: try crl.map(Self.loadCRL) ?? [])
            tasks.spawn { [self] in await self.watchFiles(certificate: certificate, key: key, crl: crl, every: refresh) }
        case .ca(let url, let tokenFile, let stateDirectory, let refresh):
            let endpoint = try HTTPSClient.Endpoint(url: url)
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let certPath = (stateDirectory as NSString).appendingPathComponent("svid.pem")
            let keyPath = (stateDirectory as NSString).appendingPathComponent("svid.key")
            var revoked: Set<String> = []
            var roots = bundle
            do {
                (roots, revoked) = try await fetchTrust(endpoint, roots: bundle)
            } catch {
                log("trail sidecar: cannot fetch the trust bundle and CRL yet (\(error)); using \(configuration.bundlePath)")
            }
            if let chain = try? SecureFile.readText(certPath), let key = try? SecureFile.readText(keyPath),
                let facts = try? Self.leafFacts(chain), facts.spiffeID == configuration.spiffeID, facts.notAfter > Date().addingTimeInterval(5)
            {
                try install(chainPEM: chain, keyPEM: key, bundle: roots, revoked: revoked)
                log("trail sidecar: using the SVID kept in \(stateDirectory) (serial \(current.serial))")
            } else {
                guard let tokenFile else {
                    throw MeshError("no valid SVID in \(stateDirectory) and no ca.join_token_file to get one; make a token with: trail ca token --spiffe-id \(configuration.spiffeID)")
                }
                let token = try SecureFile.readText(tokenFile).trimmingCharacters(in: .whitespacesAndNewlines)
                try await obtain(endpoint, token: token, certPath: certPath, keyPath: keyPath, roots: roots, revoked: revoked)
            }
            tasks.spawn { [self] in await self.keepRenewed(endpoint, certPath: certPath, keyPath: keyPath) }
            tasks.spawn { [self] in await self.keepTrustFresh(endpoint, every: refresh) }
        }
    }

    /// Cancels renewal and CRL refreshes and waits for them: a request in flight must finish before the event
    /// loops shut down.
    public func stop() async {
        await tasks.stop()
    }

    // MARK: Installing

    private func install(chainPEM: String, keyPEM: String, bundle: [Certificate], revoked: Set<String>) throws {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(chainPEM.utf8))
        guard !chain.isEmpty else { throw MeshError("the SVID file holds no certificate") }
        let key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        let facts = try Self.leafFacts(chainPEM)
        guard facts.spiffeID == configuration.spiffeID else {
            throw MeshError("the SVID is for \(facts.spiffeID ?? "no SPIFFE ID"), but spiffe_id is \(configuration.spiffeID)")
        }
        let roots = try bundle.map { try NIOSSLCertificate(bytes: try $0.derBytes(), format: .der) }
        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        server.minimumTLSVersion = .tlsv12
        server.certificateVerification = .noHostnameVerification
        server.trustRoots = .certificates(roots)
        server.sendCANameList = true
        server.applicationProtocols = ["http/1.1"]
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv12
        client.certificateChain = chain.map { .certificate($0) }
        client.privateKey = .privateKey(key)
        client.certificateVerification = .noHostnameVerification
        client.trustRoots = .certificates(roots)
        client.applicationProtocols = ["http/1.1"]
        var h2Client = client
        h2Client.applicationProtocols = ["h2"]
        let current = Current(
            spiffeID: configuration.spiffeID, serial: facts.serial, notBefore: facts.notBefore, notAfter: facts.notAfter,
            trust: TrustSnapshot(trustDomain: configuration.trustDomain, roots: bundle, revokedSerials: revoked),
            serverContext: try NIOSSLContext(configuration: server), clientContext: try NIOSSLContext(configuration: client),
            h2ClientContext: try NIOSSLContext(configuration: h2Client))
        let previousBundle = material.withLock { $0?.bundle }
        state.withLock { $0 = current }
        material.withLock { $0 = (chainPEM, keyPEM, bundle, revoked) }
        if previousBundle != bundle { verifiedChains.clear() }
    }

    private func updateTrust(roots: [Certificate], revoked: Set<String>) throws {
        guard let m = material.withLock({ $0 }) else { return }
        if m.bundle == roots {
            // Only the CRL changed: no new TLS contexts needed.
            state.withLock { $0?.trust.revokedSerials = revoked }
            material.withLock { $0?.revoked = revoked }
        } else {
            try install(chainPEM: m.chainPEM, keyPEM: m.keyPEM, bundle: roots, revoked: revoked)
        }
    }

    /// Sets the current SVID as the client certificate of `tls` (for mTLS to the CA or to `trail serve`).
    func presentSVID(_ tls: inout TLSConfiguration) throws {
        guard let m = material.withLock({ $0 }) else { throw MeshError("no SVID yet") }
        tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(m.chainPEM.utf8)).map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(m.keyPEM.utf8), format: .pem))
    }

    // MARK: From the CA

    /// A client for the CA: verifies the CA's serving certificate against the bundle and its SPIFFE ID; presents
    /// the current SVID when there is one (renewal).
    private func caClient(presentSVID: Bool, roots: [Certificate]) -> HTTPSClient {
        let trustDomain = configuration.trustDomain
        let expected = HTTPSClient.ExpectedServer(
            spiffeID: "spiffe://\(trustDomain)/trail/ca",
            trust: TrustSnapshot(trustDomain: trustDomain, roots: roots, revokedSerials: state.withLock { $0?.trust.revokedSerials } ?? []))
        return HTTPSClient(group: group, expectedServer: expected) { [self] in
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .certificates(try roots.map { try NIOSSLCertificate(bytes: try $0.derBytes(), format: .der) })
            if presentSVID { try self.presentSVID(&tls) }
            return try NIOSSLContext(configuration: tls)
        }
    }

    private func obtain(
        _ endpoint: HTTPSClient.Endpoint, token: String?, certPath: String, keyPath: String, roots: [Certificate], revoked: Set<String>
    ) async throws {
        let key = P256.Signing.PrivateKey()
        let csr = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName(configuration.service) },
            privateKey: Certificate.PrivateKey(key), attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .ecdsaWithSHA256)
        let body = Array(try csr.serializeAsPEM().pemString.utf8)
        let client = caClient(presentSVID: token == nil, roots: roots)
        let response = try await client.request(
            .POST, endpoint, path: token == nil ? "/v1/svid/renew" : "/v1/svid",
            headers: token.map { [("authorization", "Bearer \($0)"), ("content-type", "application/pkcs10")] } ?? [("content-type", "application/pkcs10")],
            body: body)
        guard response.status == 200 else {
            throw MeshError("the CA refused (\(response.status)): \(response.text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        guard let json = try? JSONParser.parse(response.body), let chain = json["svid_pem"]?.string else {
            throw MeshError("the CA's answer is not an SVID")
        }
        let keyPEM = key.pemRepresentation + "\n"
        try install(chainPEM: chain, keyPEM: keyPEM, bundle: roots, revoked: revoked)
        try SecureFile.write(keyPEM, to: keyPath, mode: 0o600)
        try SecureFile.write(chain, to: certPath)
        log("trail sidecar: \(token == nil ? "renewed" : "obtained") SVID \(configuration.spiffeID) serial \(current.serial), valid until \(CertificateAuthority.rfc3339(current.notAfter))")
    }

    private func keepRenewed(_ endpoint: HTTPSClient.Endpoint, certPath: String, keyPath: String) async {
        var failures = 0
        while !Task.isCancelled {
            let c = current
            let life = c.notAfter.timeIntervalSince(c.notBefore)
            let jitter = Double.random(in: -0.05...0.05)
            var wait = c.notBefore.addingTimeInterval(life * (0.5 + jitter)).timeIntervalSinceNow
            if failures > 0 { wait = min(Double(1 << min(failures, 5)), max(1, c.notAfter.timeIntervalSinceNow / 4)) }
            if wait > 0 { try? await Task.sleep(for: .milliseconds(Int(wait * 1000))) }
            if Task.isCancelled { return }
            do {
                try await obtain(endpoint, token: nil, certPath: certPath, keyPath: keyPath, roots: c.trust.roots, revoked: current.trust.revokedSerials)
                failures = 0
            } catch {
                failures += 1
                log("trail sidecar: renewal failed (\(error)); the current SVID expires at \(CertificateAuthority.rfc3339(c.notAfter))")
            }
        }
    }

    private func fetchTrust(_ endpoint: HTTPSClient.Endpoint, roots: [Certificate]) async throws -> ([Certificate], Set<String>) {
        let client = caClient(presentSVID: false, roots: roots)
        let bundle = try await client.request(.GET, endpoint, path: "/v1/bundle")
        guard bundle.status == 200 else { throw MeshError("GET /v1/bundle answered \(bundle.status)") }
        let newRoots = try Self.parseBundle(bundle.text)
        let crl = try await client.request(.GET, endpoint, path: "/v1/crl")
        guard crl.status == 200 else { throw MeshError("GET /v1/crl answered \(crl.status)") }
        let list = try CertificateRevocationList.decode(der: ArraySlice(crl.body))
        return (newRoots, Set(list.entries.map(\.serial)))
    }

    private func keepTrustFresh(_ endpoint: HTTPSClient.Endpoint, every seconds: Int) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(seconds))
            if Task.isCancelled { return }
            do {
                let (roots, revoked) = try await fetchTrust(endpoint, roots: current.trust.roots)
                let before = current.trust.revokedSerials
                try updateTrust(roots: roots, revoked: revoked)
                if revoked != before { log("trail sidecar: CRL now revokes \(revoked.count) certificate(s)") }
            } catch {
                log("trail sidecar: trust refresh failed (\(error)); keeping the current bundle and CRL")
            }
        }
    }

    // MARK: From files

    private func watchFiles(certificate: String, key: String, crl: String?, every seconds: Int) async {
        func stamp(_ p: String?) -> Date? {
            p.flatMap { (try? FileManager.default.attributesOfItem(atPath: $0))?[.modificationDate] as? Date }
        }
        var last = [stamp(certificate), stamp(key), stamp(crl), stamp(configuration.bundlePath)]
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(seconds))
            let now = [stamp(certificate), stamp(key), stamp(crl), stamp(configuration.bundlePath)]
            guard now != last else { continue }
            do {
                try install(chainPEM: try SecureFile.readText(certificate), keyPEM: try SecureFile.readText(key),
                            bundle: try Self.loadBundle(configuration.bundlePath), revoked: try crl.map(Self.loadCRL) ?? [])
                last = now
                log("trail sidecar: reloaded SVID serial \(current.serial) from \(certificate)")
            } catch {
                log("trail sidecar: cannot reload the SVID files (\(error)); keeping the current one")
            }
        }
    }

    // MARK: Helpers

    static func loadBundle(_ path: String) throws -> [Certificate] {
        do {
            return try parseBundle(try SecureFile.readText(path))
        } catch let e as MeshError {
            throw e
        } catch {
            throw MeshError("trust_bundle \(path): not PEM certificates (\(error))")
        }
    }

    static func parseBundle(_ text: String) throws -> [Certificate] {
        let roots = try PEMDocument.parseMultiple(pemString: text).filter { $0.discriminator == "CERTIFICATE" }.map { try Certificate(pemDocument: $0) }
        guard !roots.isEmpty else { throw MeshError("the trust bundle holds no certificate") }
        return roots
    }

    static func loadCRL(_ path: String) throws -> Set<String> {
        Set(try CertificateRevocationList.decodeAll(try SecureFile.read(path)).flatMap { $0.entries.map(\.serial) })
    }

    static func leafFacts(_ chainPEM: String) throws -> (spiffeID: String?, serial: String, notBefore: Date, notAfter: Date) {
        guard let first = try PEMDocument.parseMultiple(pemString: chainPEM).first else { throw MeshError("no certificate") }
        let summary = try CertificateSummary.summarize(der: first.derBytes)
        let leaf = try Certificate(derEncoded: first.derBytes)
        return (summary.spiffeID, summary.serial, leaf.notValidBefore, leaf.notValidAfter)
    }
}

extension Certificate {
    func derBytes() throws -> [UInt8] {
        var s = DER.Serializer()
        try s.serialize(self)
        return s.serializedBytes
    }
}
