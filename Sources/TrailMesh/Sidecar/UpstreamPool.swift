import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// Where a proxied request goes: the local app (plain HTTP) or another sidecar (mTLS, with the SPIFFE ID it
/// must present).
package struct UpstreamTarget: Sendable, Hashable {
    package var host: String
    package var port: Int
    /// Non-nil: originate mTLS and require this SPIFFE ID.
    package var expectedSPIFFEID: String?

    package init(host: String, port: Int, expectedSPIFFEID: String?) {
        self.host = host
        self.port = port
        self.expectedSPIFFEID = expectedSPIFFEID
    }

    var key: String { "\(host):\(port)|\(expectedSPIFFEID ?? "plain")" }
}

/// Facts about one upstream connection, filled in as it is set up.
final class UpstreamConnection: @unchecked Sendable {
    let channel: any Channel
    /// The callee's verified certificate (mTLS upstreams).
    var peer: PeerCertificateFacts?
    var tlsVersion: String?
    var localAddress: String?
    var remoteAddress: String?
    /// Who gets the response parts now.
    var owner: ProxyHandler?
    /// Called once when the TLS handshake with the upstream completes.
    var handshakeDone: (() -> Void)?
    /// The serial of the SVID this connection presented (mTLS upstreams): after a rotation, connections made
    /// with the previous SVID are not reused, so none outlives the certificate it was opened with.
    var localSerial: String?

    init(channel: any Channel) { self.channel = channel }
}

/// Why a connection to an upstream failed, in Envoy's terms.
struct UpstreamFailure: Error, CustomStringConvertible {
    var flags: String
    var details: String
    var peer: PeerCertificateFacts?
    var description: String { details }
}

/// Keep-alive connections to upstreams, kept per event loop so a request and its upstream connection share a
/// thread. Only used from the owning event loop.
final class UpstreamPool: @unchecked Sendable {
    private let lock = NIOLock()
    private var idle: [PoolKey: [UpstreamConnection]] = [:]
    let identity: WorkloadIdentity?
    let maxIdlePerTarget = 64

    init(identity: WorkloadIdentity?) { self.identity = identity }

    /// A target on one event loop (hashed as values: no string is built per request).
    private struct PoolKey: Hashable {
        var loop: ObjectIdentifier
        var target: UpstreamTarget
    }

    private func poolKey(_ target: UpstreamTarget, _ loop: any EventLoop) -> PoolKey {
        PoolKey(loop: ObjectIdentifier(loop), target: target)
    }

    func acquire(_ target: UpstreamTarget, on loop: any EventLoop) -> EventLoopFuture<UpstreamConnection> {
        let key = poolKey(target, loop)
        let reused: UpstreamConnection? = lock.withLock {
            while var list = idle[key], !list.isEmpty {
                let c = list.removeLast()
                idle[key] = list
                if c.channel.isActive, c.localSerial == nil || c.localSerial == identity?.current.serial { return c }
                c.channel.close(promise: nil)
            }
            return nil
        }
        if let reused { return loop.makeSucceededFuture(reused) }
        return connect(target, on: loop)
    }

    func release(_ connection: UpstreamConnection, _ target: UpstreamTarget) {
        connection.owner = nil
        guard connection.channel.isActive else { return }
        let key = poolKey(target, connection.channel.eventLoop)
        let kept = lock.withLock { () -> Bool in
            var list = idle[key, default: []]
            guard list.count < maxIdlePerTarget else { return false }
            list.append(connection)
            idle[key] = list
            return true
        }
        if !kept { connection.channel.close(promise: nil) }
    }

    private func connect(_ target: UpstreamTarget, on loop: any EventLoop) -> EventLoopFuture<UpstreamConnection> {
        let identity = self.identity
        // One snapshot of the identity for the handshake and for the connection's record of it.
        let snapshot = target.expectedSPIFFEID == nil ? nil : identity?.current
        let localSerial = snapshot?.serial
        let verification = OncePromise(loop.makePromise(of: PeerCertificateFacts?.self))
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let expected = target.expectedSPIFFEID {
                        guard let current = snapshot else { throw UpstreamFailure(flags: "UF", details: "no identity for mTLS") }
                        let trust = current.trust
                        let cache = identity?.verifiedChains ?? VerifiedChainCache()
                        let handler = try NIOSSLClientHandler(
                            context: current.clientContext, serverHostname: nil,
                            customVerificationCallback: { certificates, promise in
                                cache.verify(certificates, trust: trust) { verdict in
                                    switch verdict {
                                    case .accepted(let facts) where facts.spiffeID == expected:
                                        verification.succeed(facts)
                                        promise.succeed(.certificateVerified)
                                    case .accepted(let facts):
                                        verification.fail(UpstreamFailure(
                                            flags: "UF", details: "upstream presented \(facts.spiffeID ?? "no SPIFFE ID"), expected \(expected)", peer: facts))
                                        promise.succeed(.failed)
                                    case .refused(let facts, let reason):
                                        verification.fail(UpstreamFailure(flags: "UF", details: "upstream certificate refused: \(reason)", peer: facts))
                                        promise.succeed(.failed)
                                    }
                                }
                            })
                        try sync.addHandler(handler)
                    } else {
                        verification.succeed(nil)
                    }
                    try sync.addHTTPClientHandlers()
                }
            }
        return bootstrap.connect(host: target.host, port: target.port).flatMapError { error in
            verification.fail(UpstreamFailure(flags: "UF", details: "upstream connect error: \(error)"))
            return loop.makeFailedFuture(UpstreamFailure(flags: "UF", details: "upstream connect error or disconnect/reset before headers: \(error)"))
        }.flatMap { channel in
            let connection = UpstreamConnection(channel: channel)
            connection.localSerial = localSerial
            connection.localAddress = channel.localAddress.flatMap(Self.describe)
            connection.remoteAddress = channel.remoteAddress.flatMap(Self.describe)
            do {
                try channel.pipeline.syncOperations.addHandler(UpstreamRelay(connection: connection))
            } catch {
                channel.close(promise: nil)
                return loop.makeFailedFuture(error)
            }
            guard target.expectedSPIFFEID != nil else { return loop.makeSucceededFuture(connection) }
            // Wait for the handshake: the TLS handler fails it with our verdict, or the channel closes.
            let handshake = OncePromise(loop.makePromise(of: UpstreamConnection.self))
            channel.closeFuture.whenComplete { _ in
                verification.fail(UpstreamFailure(flags: "UF", details: "upstream closed the connection during the TLS handshake"))
                handshake.fail(UpstreamFailure(flags: "UF", details: "upstream closed the connection during the TLS handshake"))
            }
            verification.futureResult.whenComplete { result in
                switch result {
                case .success(let facts):
                    connection.peer = facts
                case .failure(let error):
                    handshake.fail(error)
                    channel.close(promise: nil)
                }
            }
            connection.handshakeDone = { handshake.succeed(connection) }
            return handshake.futureResult
        }
    }

    static func describe(_ address: SocketAddress) -> String? {
        guard let ip = address.ipAddress, let port = address.port else { return nil }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    static func tlsName(_ v: TLSVersion) -> String {
        switch v {
        case .tlsv1: return "TLSv1"
        case .tlsv11: return "TLSv1.1"
        case .tlsv12: return "TLSv1.2"
        case .tlsv13: return "TLSv1.3"
        }
    }
}

/// A promise completed at most once, from any thread (later completions are ignored).
final class OncePromise<Value: Sendable>: Sendable {
    private let promise: EventLoopPromise<Value>
    private let done = NIOLockedValueBox(false)

    init(_ promise: EventLoopPromise<Value>) { self.promise = promise }

    var futureResult: EventLoopFuture<Value> { promise.futureResult }

    private func claim() -> Bool {
        done.withLockedValue { d in
            defer { d = true }
            return !d
        }
    }

    func succeed(_ value: Value) { if claim() { promise.succeed(value) } }
    func fail(_ error: any Error) { if claim() { promise.fail(error) } }
}

/// Hands an upstream's response parts to the proxy handler that owns the connection now.
final class UpstreamRelay: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    let connection: UpstreamConnection

    init(connection: UpstreamConnection) { self.connection = connection }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.owner?.upstreamRead(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection.owner?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { connection.owner?.upstreamWritable() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            connection.tlsVersion = (try? context.pipeline.syncOperations.nioSSL_tlsVersion()).flatMap { $0 }.map(UpstreamPool.tlsName)
            let done = connection.handshakeDone
            connection.handshakeDone = nil
            done?()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.handshakeDone = nil
        connection.owner?.upstreamClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
