import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization
import TrailCore
import TrailFormats

/// The gateway's own SVID and trust bundle (files from `trail ca issue`).
package struct EdgeMeshIdentity: Sendable {
    package var spiffeID: String
    package var bundlePath: String
    package var certificatePath: String
    package var keyPath: String

    package init(spiffeID: String, bundlePath: String, certificatePath: String, keyPath: String) {
        self.spiffeID = spiffeID
        self.bundlePath = bundlePath
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}

/// Edge TLS files: the server certificate and key, and optionally the CA bundle partner client certificates are
/// verified against (client certificates are then optional).
package struct EdgeTLSFiles: Sendable {
    package var certificatePath: String
    package var keyPath: String
    package var clientCAPath: String?

    package init(certificatePath: String, keyPath: String, clientCAPath: String?) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.clientCAPath = clientCAPath
    }
}

/// A reverse-proxy listener at the edge of the mesh (`trail gateway`): plain HTTP or TLS from outside callers,
/// each request routed by a ``ProxyPolicy``; upstreams are plain HTTP or mTLS with the edge's own SVID and the
/// SPIFFE ID the target must present. The sidecar's ``ProxyHandler`` and ``UpstreamPool`` do the proxying.
package final class EdgeProxyServer: Sendable {
    let group: MultiThreadedEventLoopGroup
    let identity: WorkloadIdentity?
    private let channels = Mutex<[any Channel]>([])
    let file: String

    /// - Parameter file: the configuration file, named in errors.
    package init(file: String, threads: Int, mesh: EdgeMeshIdentity?, log: @escaping @Sendable (String) -> Void) throws {
        self.file = file
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        if let mesh {
            guard let id = SPIFFEID.parse(mesh.spiffeID) else { throw MeshError("\(file): mesh.spiffe_id: not a SPIFFE ID") }
            let configuration = SidecarConfiguration(
                file: file, spiffeID: mesh.spiffeID, trustDomain: id.trustDomain, service: "gateway", bundlePath: mesh.bundlePath,
                identity: .files(certificate: mesh.certificatePath, key: mesh.keyPath, crl: nil, refreshSeconds: 30),
                inboundHost: "", inboundPort: 0, appHost: "", appPort: 0, mode: .strict, policies: [],
                outboundHost: nil, outboundPort: nil, upstreams: [], ingestURL: nil, ingestTokenFile: nil, ingestCA: nil,
                accessLogPath: nil, bufferDirectory: "", bufferMaxBytes: 0, flushMilliseconds: 1000, concurrency: threads,
                adminHost: nil, adminPort: nil)
            identity = WorkloadIdentity(configuration: configuration, group: group, log: log)
        } else {
            identity = nil
        }
    }

    /// Loads the SVID (when there is one), binds and returns the listener's URL.
    package func start(host: String, port: Int, tls: EdgeTLSFiles?, policy: any ProxyPolicy, localID: String) async throws -> String {
        if let identity { try await identity.start() }
        let pool = UpstreamPool(identity: identity)
        var context: NIOSSLContext?
        if let tls {
            do {
                var configuration = TLSConfiguration.makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMFile(tls.certificatePath).map { .certificate($0) },
                    privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.keyPath, format: .pem)))
                if let ca = tls.clientCAPath {
                    configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
                    configuration.certificateVerification = .optionalVerification
                }
                context = try NIOSSLContext(configuration: configuration)
            } catch {
                throw MeshError("\(file): tls: cannot load the edge certificate or key: \(error)")
            }
        }
        let tlsContext = context
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let connection = DownstreamConnection()
                connection.remoteAddress = channel.remoteAddress.flatMap(UpstreamPool.describe)
                connection.localAddress = channel.localAddress.flatMap(UpstreamPool.describe)
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tlsContext {
                        try sync.addHandler(NIOSSLServerHandler(context: tlsContext))
                        try sync.addHandler(EdgeHandshakeObserver(connection: connection))
                    }
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(
                        ProxyHandler(policy: policy, pool: pool, connection: connection, localSPIFFEID: localID, direction: .inbound))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            throw MeshError("\(file): listen: cannot listen on \(host):\(port) (\(error)); choose another address")
        }
        channels.withLock { $0.append(channel) }
        return "\(tlsContext == nil ? "http" : "https")://\(Sidecar.urlHost(host)):\(channel.localAddress?.port ?? port)"
    }

    /// A disk-buffered outbox to `trail serve` at `url` + `path`, authenticated by a bearer token or, without
    /// one, the edge's SVID.
    package func outbox(
        url: String, path: String, contentType: String, tokenFile: String?, caPath: String?, directory: String,
        log: @escaping @Sendable (String) -> Void
    ) throws -> Outbox {
        let endpoint = try HTTPSClient.Endpoint(url: url)
        var headers: [(String, String)] = [("content-type", contentType)]
        var token: String?
        if let tokenFile {
            token = try SecureFile.readText(tokenFile).trimmingCharacters(in: .whitespacesAndNewlines)
            headers.append(("authorization", "Bearer \(token!)"))
        }
        let roots = try (caPath ?? (identity?.configuration.bundlePath)).map { try NIOSSLCertificate.fromPEMFile($0) }
        let identity = self.identity
        let useSVID = token == nil
        let client = HTTPSClient(group: group) {
            var tls = TLSConfiguration.makeClientConfiguration()
            if let roots { tls.trustRoots = .certificates(roots) }
            tls.certificateVerification = .noHostnameVerification
            if useSVID, let identity { try identity.presentSVID(&tls) }
            return try NIOSSLContext(configuration: tls)
        }
        return try Outbox(
            directory: directory, endpoint: endpoint, path: path, headers: headers, client: client,
            maxBytes: 256 << 20, flushInterval: .milliseconds(500), log: log
        ) { lines in Array((lines.joined(separator: "\n") + "\n").utf8) }
    }

    package func stop() async {
        for c in channels.withLock({ $0 }) { try? await c.close() }
        identity?.stop()
        try? await group.shutdownGracefully()
    }
}

/// Records the partner's client certificate (if any) once the edge TLS handshake completes.
final class EdgeHandshakeObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let connection: DownstreamConnection

    init(connection: DownstreamConnection) { self.connection = connection }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            let sync = context.pipeline.syncOperations
            if let certificate = (try? sync.nioSSL_peerCertificate()) ?? nil, let der = try? certificate.toDERBytes(),
                let summary = try? CertificateSummary.summarize(der: der)
            {
                connection.peer = PeerCertificateFacts(summary)
            }
            connection.tlsVersion = (try? sync.nioSSL_tlsVersion()).flatMap { $0 }.map(UpstreamPool.tlsName)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
