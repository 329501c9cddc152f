import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import TrailCore
import TrailFormats
import X509

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
    private let channels = Locked<[any Channel]>([])
    let file: String

    /// - Parameter file: the configuration file, named in errors.
    package init(file: String, threads: Int, mesh: EdgeMeshIdentity?, log: @escaping @Sendable (String) -> Void) throws {
        self.file = file
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        if let mesh {
            guard let id = SPIFFEID.parse(mesh.spiffeID) else { throw MeshError("\(file): mesh.spiffe_id: not a SPIFFE ID") }
            identity = WorkloadIdentity(
                settings: .init(
                    spiffeID: mesh.spiffeID, trustDomain: id.trustDomain, service: "gateway", bundlePath: mesh.bundlePath,
                    source: .files(certificate: mesh.certificatePath, key: mesh.keyPath, crl: nil, refreshSeconds: 30)),
                group: group, log: log)
        } else {
            identity = nil
        }
    }

    /// Loads the SVID (when there is one), binds and returns the listener's URL.
    package func start(
        host: String, port: Int, tls: EdgeTLSFiles?, policy: any ProxyPolicy, localID: String, limits: EdgeRequestLimits = EdgeRequestLimits()
    ) async throws -> String {
        if let identity { try await identity.start() }
        let pool = UpstreamPool(identity: identity)
        var context: NIOSSLContext?
        var partnerRoots: [Certificate]?
        if let tls {
            do {
                var configuration = TLSConfiguration.makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMFile(tls.certificatePath).map { .certificate($0) },
                    privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.keyPath, format: .pem)))
                // HTTP/2 first, as browsers and gRPC clients ask; HTTP/1.1 for the rest (and without ALPN).
                configuration.applicationProtocols = ["h2", "http/1.1"]
                if let ca = tls.clientCAPath {
                    configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
                    configuration.certificateVerification = .optionalVerification
                    partnerRoots = try WorkloadIdentity.loadBundle(ca)
                }
                context = try NIOSSLContext(configuration: configuration)
            } catch {
                throw MeshError("\(file): tls: cannot load the edge certificate or key: \(error)")
            }
        }
        let tlsContext = context
        let roots = partnerRoots
        let channel = try await ProxyListener.bind(group: group, host: host, port: port, place: "\(file): listen") { channel, connection in
            let sync = channel.pipeline.syncOperations
            if let tlsContext {
                if let roots {
                    try sync.addHandler(NIOSSLServerHandler(context: tlsContext, customVerificationCallback: { chain, promise in
                        Self.verifyPartner(chain, roots: roots, promise: promise)
                    }))
                } else {
                    try sync.addHandler(NIOSSLServerHandler(context: tlsContext))
                }
                try sync.addHandler(EdgeHandshakeObserver(connection: connection))
            }
            let http1: @Sendable (any Channel) throws -> Void = { channel in
                try ProxyServerPipeline.configure(
                    channel, handler: ProxyHandler(policy: policy, pool: pool, connection: connection, localSPIFFEID: localID, direction: .inbound),
                    edge: limits)
            }
            let http2: @Sendable (any Channel) throws -> Void = { channel in
                try ProxyServerPipeline.configureHTTP2(channel, limits: limits) {
                    ProxyHandler(policy: policy, pool: pool, connection: connection, localSPIFFEID: localID, direction: .inbound, http2: true)
                }
            }
            if tlsContext != nil {
                // ALPN decides: `h2` gets the HTTP/2 pipeline, `http/1.1` or no ALPN the HTTP/1.1 one.
                _ = channel.configureHTTP2SecureUpgrade(
                    h2ChannelConfigurator: { channel in channel.eventLoop.makeCompletedFuture { try http2(channel) } },
                    http1ChannelConfigurator: { channel in channel.eventLoop.makeCompletedFuture { try http1(channel) } })
            } else {
                // Plain listeners: HTTP/2 with prior knowledge (h2c, as gRPC clients speak it) when the connection
                // opens with the HTTP/2 preface, else HTTP/1.1. The h2c upgrade from HTTP/1.1 is not offered.
                try sync.addHandler(HTTP2PriorKnowledgeSniffer(http1: http1, http2: http2))
            }
        }
        channels.withLock { $0.append(channel) }
        return "\(tlsContext == nil ? "http" : "https")://\(Sidecar.urlHost(host)):\(channel.localAddress?.port ?? port)"
    }

    /// Partner client certificates: the chain must verify to the partner bundle as before, but an expired (or
    /// not yet valid) leaf completes the handshake, so each request on the connection is refused with 401 and
    /// logged with `client_verify` = `FAILED:certificate has expired` instead of vanishing in a handshake error.
    static func verifyPartner(
        _ chain: [NIOSSLCertificate], roots: [Certificate], promise: EventLoopPromise<NIOSSLVerificationResult>
    ) {
        guard let ders = try? chain.map({ try $0.toDERBytes() }), !ders.isEmpty else {
            promise.succeed(.failed)
            return
        }
        Task {
            switch await PartnerCertificateVerifier.verify(derChain: ders, roots: roots) {
            case .verified: promise.succeed(.certificateVerified)
            case .rejected: promise.succeed(.failed)
            }
        }
    }

    /// A disk-buffered outbox to `trail serve` at `url` + `path`, authenticated by a bearer token or, without
    /// one, the edge's SVID; its spool holds at most `maxBytes` (or one larger batch alone).
    package func outbox(
        url: String, path: String, contentType: String, tokenFile: String?, caPath: String?, directory: String,
        maxBytes: Int, log: @escaping @Sendable (String) -> Void,
        encode: @escaping @Sendable ([String]) -> [UInt8] = TrailServeDelivery.ndjson
    ) throws -> Outbox {
        try TrailServeDelivery(
            url: url, tokenFile: tokenFile, rootsPath: caPath ?? identity?.configuration.bundlePath, identity: identity, group: group
        ).outbox(
            directory: directory, path: path, contentType: contentType, maxBytes: maxBytes, flushInterval: .milliseconds(500),
            log: log, encode: encode)
    }

    /// Closes the listeners, runs `flush` (the last telemetry still needs the event loops), then stops them.
    package func stop(flush: () async -> Void = {}) async {
        for c in channels.withLock({ $0 }) { try? await c.close() }
        await identity?.stop()
        await flush()
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
