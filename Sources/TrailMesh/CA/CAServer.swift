import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import TrailCore
import TrailServer

/// `trail ca serve`: the CA's HTTPS API (``CAService``) with a serving SVID of its own
/// (`spiffe://TRUST_DOMAIN/trail/ca`, also valid for `localhost` and the listen address), an expiry sweep, and
/// delivery of `events.ndjson` to each `--ingest` URL (`/v1/identity-events`), resumed from a per-URL offset so
/// nothing is lost or sent twice while an ingest is down.
public final class CAServer: Sendable {
    let ca: CertificateAuthority
    let host: String
    let port: Int
    let ingest: [String]
    let ingestTokenFile: String?
    let log: @Sendable (String) -> Void
    private let server = Locked<IngestHTTPServer?>(nil)
    private let tasks = BackgroundTasks()
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    public init(ca: CertificateAuthority, host: String, port: Int, ingest: [String], ingestTokenFile: String?, log: @escaping @Sendable (String) -> Void) {
        self.ca = ca
        self.host = host
        self.port = port
        self.ingest = ingest
        self.ingestTokenFile = ingestTokenFile
        self.log = log
    }

    public var servingID: String { "spiffe://\(ca.trustDomain)/trail/ca" }

    public func start() async throws -> URL {
        let ips = ["127.0.0.1", "::1"] + (CertificateAuthority.ipBytes(host) != nil && !["0.0.0.0", "::"].contains(host) ? [host] : [])
        let (svid, key) = try ca.issueWithNewKey(spiffeID: servingID, ttlSeconds: 30 * 86_400, dnsNames: ["localhost"], ipAddresses: Array(Set(ips)).sorted())
        try SecureFile.write(svid.chainPEM, to: ca.path("serve.pem"))
        try SecureFile.write(key, to: ca.path("serve.key"), mode: 0o600)
        var config = ServerConfiguration(
            host: host, port: port, tlsCertificatePath: ca.path("serve.pem"), tlsKeyPath: ca.path("serve.key"),
            clientCAPath: ca.path("bundle.pem"), allow: [ca.trustDomain], maxBodyBytes: 1 << 20)
        config.openPaths = CAService.openPaths
        let http = IngestHTTPServer(configuration: config, handler: CAService(ca: ca, log: log))
        let url = try await http.start()
        server.withLock { $0 = http }
        tasks.spawn { [self] in
            while !Task.isCancelled {
                do { try ca.recordExpiries() } catch { log("trail ca: expiry sweep failed: \(error)") }
                try? await Task.sleep(for: .seconds(5))
            }
        }
        for target in ingest {
            let endpoint = try HTTPSClient.Endpoint(url: target)
            let shipper = try EventShipper(ca: ca, endpoint: endpoint, tokenFile: ingestTokenFile, servingKeyPEM: key, servingChainPEM: svid.chainPEM, group: group, log: log)
            tasks.spawn { await shipper.run() }
        }
        return url
    }

    public func stop() async {
        await tasks.stop()
        if let http = server.withLock({ $0 }) { try? await http.shutdown() }
        try? await group.shutdownGracefully()
    }
}

/// Sends new lines of `events.ndjson` to one `trail serve`, remembering how far it got in
/// `events.offset.<hash of URL>`; retries with backoff while the ingest is unreachable.
struct EventShipper: Sendable {
    let ca: CertificateAuthority
    let endpoint: HTTPSClient.Endpoint
    let headers: [(String, String)]
    let client: HTTPSClient
    let offsetPath: String
    let log: @Sendable (String) -> Void

    init(
        ca: CertificateAuthority, endpoint: HTTPSClient.Endpoint, tokenFile: String?, servingKeyPEM: String, servingChainPEM: String,
        group: any EventLoopGroup, log: @escaping @Sendable (String) -> Void
    ) throws {
        self.ca = ca
        self.endpoint = endpoint
        self.log = log
        var headers = [("content-type", "application/x-ndjson")]
        if let tokenFile {
            headers.append(("authorization", "Bearer \(try SecureFile.readText(tokenFile).trimmingCharacters(in: .whitespacesAndNewlines))"))
        }
        self.headers = headers
        let roots = try NIOSSLCertificate.fromPEMFile(ca.path("bundle.pem"))
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(servingChainPEM.utf8))
        let key = try NIOSSLPrivateKey(bytes: Array(servingKeyPEM.utf8), format: .pem)
        let presentCertificate = tokenFile == nil
        client = HTTPSClient(group: group) {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(roots)
            tls.certificateVerification = .noHostnameVerification
            if presentCertificate {
                tls.certificateChain = chain.map { .certificate($0) }
                tls.privateKey = .privateKey(key)
            }
            return try NIOSSLContext(configuration: tls)
        }
        offsetPath = ca.path("events.offset.\(CertificateAuthority.sha256Hex(endpoint.description).prefix(12))")
    }

    func run() async {
        var backoff = 1
        while !Task.isCancelled {
            do {
                let sent = try await shipOnce()
                backoff = 1
                if sent == 0 { try? await Task.sleep(for: .milliseconds(500)) }
            } catch {
                log("trail ca: cannot deliver identity events to \(endpoint.description) (\(error)); retrying in \(backoff) s")
                try? await Task.sleep(for: .seconds(backoff))
                backoff = min(backoff * 2, 30)
            }
        }
    }

    /// Sends the complete lines after the saved offset (at most 4 MiB); returns how many bytes were acknowledged.
    func shipOnce() async throws -> Int {
        let offset = Int((try? SecureFile.readText(offsetPath).trimmingCharacters(in: .whitespacesAndNewlines)) ?? "0") ?? 0
        let all = (try? SecureFile.read(ca.path("events.ndjson"))) ?? []
        guard all.count > offset else { return 0 }
        var chunk = Array(all[offset..<min(all.count, offset + (4 << 20))])
        guard let lastNewline = chunk.lastIndex(of: 0x0A) else { return 0 }
        chunk = Array(chunk[...lastNewline])
        let response = try await client.request(.POST, endpoint, path: "/v1/identity-events?format=identity-ndjson", headers: headers, body: chunk)
        guard (200..<300).contains(response.status) else {
            throw MeshError("\(endpoint.description) answered \(response.status): \(response.text.prefix(200))")
        }
        try SecureFile.write("\(offset + chunk.count)\n", to: offsetPath)
        return chunk.count
    }
}
