import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import TrailCore
import TrailServer

/// `trail sidecar`: one workload's mesh proxy. Inbound, it terminates mTLS (or, in PERMISSIVE mode, also accepts
/// plaintext), verifies the caller's X509-SVID, applies the authorization policies and forwards to the local app
/// with `x-forwarded-client-cert`. Outbound, the app sends plain HTTP to it and it originates mTLS to the
/// destination's sidecar, checking the SPIFFE ID expected there. Every request, refused ones included, becomes an
/// Envoy-JSON access-log line and an OTLP span, delivered to `trail serve` in batches buffered on disk.
public final class Sidecar: Sendable {
    public let configuration: SidecarConfiguration
    let group: MultiThreadedEventLoopGroup
    let identity: WorkloadIdentity
    let telemetry: TelemetrySink
    let log: @Sendable (String) -> Void
    private let channels = Locked<[any Channel]>([])
    private let adminServer = Locked<IngestHTTPServer?>(nil)

    public init(configuration: SidecarConfiguration, threads: Int = System.coreCount, log: @escaping @Sendable (String) -> Void) throws {
        self.configuration = configuration
        self.log = log
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        identity = WorkloadIdentity(settings: .init(configuration), group: group, log: log)
        telemetry = try TelemetrySink(configuration: configuration, identity: identity, group: group, log: log)
    }

    /// Gets the SVID, binds the listeners and starts delivery. Returns the inbound, outbound and admin URLs.
    public func start() async throws -> (inbound: String, outbound: String?, admin: String?) {
        try await identity.start()
        telemetry.start()
        let pool = UpstreamPool(identity: identity)
        let inbound = try await bindInbound(pool: pool)
        var outbound: String?
        if let host = configuration.outboundHost, let port = configuration.outboundPort {
            outbound = try await bindOutbound(host: host, port: port, pool: pool)
        }
        var admin: String?
        if let host = configuration.adminHost, let port = configuration.adminPort {
            let server = IngestHTTPServer(
                configuration: ServerConfiguration(host: host, port: port, insecure: true, eventLoopThreads: 1),
                handler: SidecarAdmin(identity: identity, metrics: telemetry.metrics, telemetry: telemetry))
            do {
                admin = try await server.start().absoluteString
            } catch {
                throw MeshError("\(configuration.file): admin.listen: \(error)")
            }
            adminServer.withLock { $0 = server }
        }
        return (inbound, outbound, admin)
    }

    public func stop() async {
        for c in channels.withLock({ $0 }) { try? await c.close() }
        if let admin = adminServer.withLock({ $0 }) { try? await admin.shutdown() }
        await identity.stop()
        await telemetry.stop()
        try? await group.shutdownGracefully()
    }

    // MARK: Inbound

    private func bindInbound(pool: UpstreamPool) async throws -> String {
        let policy = InboundPolicy(
            configuration: configuration, engine: PolicyEngine(policies: configuration.policies), identity: identity, telemetry: telemetry)
        let identity = self.identity
        let telemetry = self.telemetry
        let mode = configuration.mode
        let localID = configuration.spiffeID
        let channel = try await listen(configuration.inboundHost, configuration.inboundPort, "inbound.listen") { channel, connection in
            let setup = InboundSetup(identity: identity, telemetry: telemetry, policy: policy, pool: pool, localID: localID)
            if mode == .permissive {
                try channel.pipeline.syncOperations.addHandler(ProtocolSniffer(setup: setup, connection: connection))
            } else {
                try setup.configureTLS(channel, connection)
            }
        }
        return "https://\(Self.urlHost(configuration.inboundHost)):\(channel.localAddress?.port ?? configuration.inboundPort)"
    }

    // MARK: Outbound

    private func bindOutbound(host: String, port: Int, pool: UpstreamPool) async throws -> String {
        let policy = OutboundPolicy(configuration: configuration, telemetry: telemetry)
        let localID = configuration.spiffeID
        let channel = try await listen(host, port, "outbound.listen") { channel, connection in
            try ProxyServerPipeline.configure(
                channel, handler: ProxyHandler(policy: policy, pool: pool, connection: connection, localSPIFFEID: localID, direction: .outbound))
        }
        return "http://\(Self.urlHost(host)):\(channel.localAddress?.port ?? port)"
    }

    private func listen(
        _ host: String, _ port: Int, _ key: String,
        configure: @escaping @Sendable (any Channel, DownstreamConnection) throws -> Void
    ) async throws -> any Channel {
        let channel = try await ProxyListener.bind(
            group: group, host: host, port: port, place: "\(configuration.file): \(key)", configure: configure)
        channels.withLock { $0.append(channel) }
        return channel
    }

    static func urlHost(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }
}

/// Builds the inbound pipeline of one connection.
struct InboundSetup: Sendable {
    let identity: WorkloadIdentity
    let telemetry: TelemetrySink
    let policy: InboundPolicy
    let pool: UpstreamPool
    let localID: String

    /// mTLS: the caller's SVID is checked by ``SVIDVerifier`` (chain to the bundle, validity, one URI SAN, trust
    /// domain, CRL); a refused handshake is logged with the certificate's facts and the reason.
    func configureTLS(_ channel: any Channel, _ connection: DownstreamConnection) throws {
        let current = identity.current
        let trust = current.trust
        let verdict = HandshakeVerdict()
        let cache = identity.verifiedChains
        let handler = NIOSSLServerHandler(context: current.serverContext, customVerificationCallback: { certificates, promise in
            cache.verify(certificates, trust: trust) { outcome in
                switch outcome {
                case .accepted(let facts):
                    verdict.set(facts, nil)
                    promise.succeed(.certificateVerified)
                case .refused(let facts, let reason):
                    verdict.set(facts, reason)
                    promise.succeed(.failed)
                }
            }
        })
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(handler)
        try sync.addHandler(HandshakeObserver(connection: connection, verdict: verdict, telemetry: telemetry, localID: localID))
        try configureHTTP(channel, connection)
    }

    func configureHTTP(_ channel: any Channel, _ connection: DownstreamConnection) throws {
        try ProxyServerPipeline.configure(
            channel, handler: ProxyHandler(policy: policy, pool: pool, connection: connection, localSPIFFEID: localID, direction: .inbound))
    }
}

/// The verification outcome of one handshake, shared between the verify callback (any thread) and the pipeline.
final class HandshakeVerdict: Sendable {
    private let value = Locked<(PeerCertificateFacts?, String?)>((nil, nil))
    func set(_ facts: PeerCertificateFacts?, _ reason: String?) { value.withLock { $0 = (facts, reason) } }
    var facts: PeerCertificateFacts? { value.withLock { $0.0 } }
    var reason: String? { value.withLock { $0.1 } }
}

/// Records the TLS outcome: the accepted peer and TLS version, or a refused handshake as an access-log record.
final class HandshakeObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let connection: DownstreamConnection
    let verdict: HandshakeVerdict
    let telemetry: TelemetrySink
    let localID: String
    private var done = false

    init(connection: DownstreamConnection, verdict: HandshakeVerdict, telemetry: TelemetrySink, localID: String) {
        self.connection = connection
        self.verdict = verdict
        self.telemetry = telemetry
        self.localID = localID
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            done = true
            connection.peer = verdict.facts
            connection.tlsVersion = (try? context.pipeline.syncOperations.nioSSL_tlsVersion()).flatMap { $0 }.map(UpstreamPool.tlsName)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            done = true
            var r = MeshAccessRecord(direction: .inbound, startNanos: MeshAccessRecord.nowNanos(), method: "-", path: "-", localSPIFFEID: localID)
            r.downstreamRemote = connection.remoteAddress
            r.downstreamLocal = connection.localAddress
            r.peer = verdict.facts
            r.responseFlags = "-"
            r.responseCodeDetails = "filter_chain_not_found"
            r.refusal = verdict.reason ?? Self.describe(error)
            telemetry.record(r)
        }
        context.close(promise: nil)
    }

    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") || text.contains("CERTIFICATE_REQUIRED") { return "no client certificate presented" }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("HTTP_REQUEST") { return "plaintext on an mTLS (STRICT) port" }
        return "TLS handshake failed: \(text.prefix(300))"
    }
}

/// PERMISSIVE mode: looks at the first byte; a TLS ClientHello (0x16) gets the mTLS pipeline, anything else is
/// served as plaintext HTTP and recorded as such.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    let setup: InboundSetup
    let connection: DownstreamConnection

    init(setup: InboundSetup, connection: DownstreamConnection) {
        self.setup = setup
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        do {
            if first == 0x16 {
                try setup.configureTLS(context.channel, connection)
            } else {
                try setup.configureHTTP(context.channel, connection)
            }
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
    }
}

/// The inbound routing: policies, XFCC for the app, the app as the only upstream.
struct InboundPolicy: ProxyPolicy {
    let configuration: SidecarConfiguration
    let engine: PolicyEngine
    let identity: WorkloadIdentity
    let telemetry: TelemetrySink

    func route(_ head: inout HTTPRequestHead, _ record: inout MeshAccessRecord, _ connection: DownstreamConnection) -> ProxyRoute {
        record.upstreamCluster = "inbound|\(configuration.appPort)||\(configuration.service)"
        // The certificate is judged at call time, not only at the handshake: a keep-alive connection must not
        // outlive the revocation or expiry of the certificate that opened it.
        if let peer = connection.peer {
            let now = Timestamp(nanoseconds: record.startNanos)
            var problem: String?
            if identity.current.trust.revokedSerials.contains(peer.serial) {
                problem = "certificate \(peer.serial) is revoked"
            } else if now > peer.notAfter {
                problem = "the certificate expired at \(peer.notAfter.rfc3339(fractionDigits: 0))"
            }
            if let problem {
                record.refusal = problem
                record.responseCodeDetails = "peer_certificate_rejected"
                return .refuse(status: .forbidden, body: "peer certificate rejected: \(problem)")
            }
        }
        // Policies see, and the app gets, the normalised path.
        guard let normalized = PathNormalizer.normalize(head.uri) else {
            record.refusal = "the request target '\(head.uri.prefix(200))' is not a valid origin-form path"
            record.responseCodeDetails = "invalid_path"
            return .refuse(status: .badRequest, body: "Bad Request")
        }
        head.uri = normalized
        record.path = normalized
        let decision = engine.decide(AuthorizationRequest(principal: connection.peer?.spiffeID, method: head.method.rawValue, path: head.uri))
        record.policyName = decision.policy ?? decision.dryRunPolicy
        if !decision.allowed {
            record.policy = "deny"
            record.responseCodeDetails = "rbac_access_denied_matched_policy[\(decision.policy ?? "none")]"
            record.refusal = "denied by policy \(decision.policy ?? "(no ALLOW policy matched)")"
            return .refuse(status: .forbidden, body: "RBAC: access denied")
        }
        record.policy = decision.dryRunDenied ? "dry-run-deny" : "allow"
        if decision.dryRunDenied { record.policyName = decision.dryRunPolicy }
        // The app learns who called, as Envoy tells it (SANITIZE_SET: the caller's header is replaced).
        head.headers.remove(name: "x-forwarded-client-cert")
        if let peer = connection.peer {
            var xfcc = "By=\(configuration.spiffeID);Hash=\(peer.fingerprintSHA256)"
            if !peer.subject.isEmpty {
                let subject = peer.subject.contains("\"") ? peer.subject.replacingOccurrences(of: "\"", with: "\\\"") : peer.subject
                xfcc += ";Subject=\"\(subject)\""
            }
            if let uri = peer.spiffeID { xfcc += ";URI=\(uri)" }
            head.headers.add(name: "x-forwarded-client-cert", value: xfcc)
            record.xForwardedClientCert = xfcc
        }
        return .forward(UpstreamTarget(host: configuration.appHost, port: configuration.appPort, expectedSPIFFEID: nil))
    }

    func finished(_ record: MeshAccessRecord) { telemetry.record(record) }
}

/// The outbound routing: the app's Host (or absolute URI) names an upstream; mTLS to its sidecar.
struct OutboundPolicy: ProxyPolicy {
    let configuration: SidecarConfiguration
    let telemetry: TelemetrySink

    func route(_ head: inout HTTPRequestHead, _ record: inout MeshAccessRecord, _ connection: DownstreamConnection) -> ProxyRoute {
        var hostText = head.headers.first(name: "host") ?? ""
        if head.uri.hasPrefix("http://"), let url = URL(string: head.uri), let host = url.host {
            hostText = host
            var origin = url.path.isEmpty ? "/" : url.path
            if let q = url.query { origin += "?\(q)" }
            head.uri = origin
            record.path = origin
        }
        let name = Self.hostName(hostText)
        guard let upstream = configuration.upstreams.first(where: { $0.name == name }) else {
            record.responseFlags = "NR"
            record.responseCodeDetails = "route_not_found"
            record.refusal = "no upstream named '\(name)' in \(configuration.file)"
            return .refuse(status: .notFound, body: "no route to '\(name)'")
        }
        record.upstreamCluster = "outbound|\(upstream.port)||\(upstream.name)"
        return .forward(UpstreamTarget(host: upstream.host, port: upstream.port, expectedSPIFFEID: upstream.spiffeID))
    }

    static func hostName(_ authority: String) -> String {
        var host = authority.lowercased()
        if host.hasPrefix("[") { return String(host.dropFirst().prefix { $0 != "]" }) }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        return host
    }

    func finished(_ record: MeshAccessRecord) { telemetry.record(record) }
}
