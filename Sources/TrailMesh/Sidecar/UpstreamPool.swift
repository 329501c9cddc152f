import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTP2
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
    /// HTTP/2 to the upstream (gRPC): h2c with prior knowledge to a plain upstream, h2 by ALPN over mTLS. Each
    /// request is a stream on one shared connection per target and event loop.
    package var http2: Bool

    package init(host: String, port: Int, expectedSPIFFEID: String?, http2: Bool = false) {
        self.host = host
        self.port = port
        self.expectedSPIFFEID = expectedSPIFFEID
        self.http2 = http2
    }
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
    /// Called instead when the handshake completed but the connection cannot be used (no `h2` by ALPN).
    var handshakeRefused: ((UpstreamFailure) -> Void)?
    /// The serial of the SVID this connection presented (mTLS upstreams): after a rotation, connections made
    /// with the previous SVID are not reused, so none outlives the certificate it was opened with.
    var localSerial: String?
    /// An HTTP/2 stream on a shared upstream connection: never pooled, it ends with its exchange.
    var isStream = false

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
    /// HTTP/2 upstream connections (gRPC), one per target and event loop, shared by all streams.
    private var multiplexed: [PoolKey: EventLoopFuture<HTTP2Upstream>] = [:]
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
        if target.http2 { return acquireStream(target, key: key, on: loop) }
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
        if connection.isStream { return }
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

    /// A new stream on the target's HTTP/2 connection (made, with its TLS handshake and SPIFFE ID check, when
    /// there is none or it has closed or gone away).
    private func acquireStream(_ target: UpstreamTarget, key: PoolKey, on loop: any EventLoop) -> EventLoopFuture<UpstreamConnection> {
        let parent: EventLoopFuture<HTTP2Upstream> = lock.withLock {
            if let existing = multiplexed[key] { return existing }
            let made = connect(target, on: loop).flatMapThrowing { connection -> HTTP2Upstream in
                var connectionConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
                connectionConfiguration.initialSettings = [
                    HTTP2Setting(parameter: .maxConcurrentStreams, value: 100),
                    HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
                    HTTP2Setting(parameter: .enablePush, value: 0),
                ]
                var streamConfiguration = NIOHTTP2Handler.StreamConfiguration()
                streamConfiguration.targetWindowSize = 1 << 20
                let multiplexer = try connection.channel.pipeline.syncOperations.configureHTTP2Pipeline(
                    mode: .client, connectionConfiguration: connectionConfiguration, streamConfiguration: streamConfiguration,
                    inboundStreamInitializer: { stream in stream.close() })
                return HTTP2Upstream(connection: connection, multiplexer: multiplexer)
            }
            multiplexed[key] = made
            made.whenComplete { [self] result in
                switch result {
                case .success(let upstream):
                    upstream.connection.channel.closeFuture.whenComplete { _ in self.forget(key, made) }
                case .failure:
                    self.forget(key, made)
                }
            }
            return made
        }
        let secure = target.expectedSPIFFEID != nil
        return parent.flatMap { upstream in
            guard upstream.connection.channel.isActive else {
                self.forget(key, parent)
                return loop.makeFailedFuture(UpstreamFailure(flags: "UC", details: "the upstream's HTTP/2 connection closed"))
            }
            let streamConnection = OncePromise(loop.makePromise(of: UpstreamConnection.self))
            let streamPromise = loop.makePromise(of: (any Channel).self)
            upstream.multiplexer.createStreamChannel(promise: streamPromise) { stream in
                stream.eventLoop.makeCompletedFuture {
                    let c = UpstreamConnection(channel: stream)
                    c.isStream = true
                    c.peer = upstream.connection.peer
                    c.tlsVersion = upstream.connection.tlsVersion
                    c.localAddress = upstream.connection.localAddress
                    c.remoteAddress = upstream.connection.remoteAddress
                    c.localSerial = upstream.connection.localSerial
                    try stream.pipeline.syncOperations.addHandlers([
                        HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: secure ? .https : .http),
                        UpstreamRelay(connection: c),
                    ])
                    streamConnection.succeed(c)
                }
            }
            streamPromise.futureResult.whenFailure { streamConnection.fail(UpstreamFailure(flags: "UC", details: "cannot open an HTTP/2 stream upstream: \($0)")) }
            return streamConnection.futureResult
        }
    }

    private func forget(_ key: PoolKey, _ future: EventLoopFuture<HTTP2Upstream>) {
        lock.withLock {
            if multiplexed[key] === future { multiplexed[key] = nil }
        }
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
                            context: target.http2 ? current.h2ClientContext : current.clientContext, serverHostname: nil,
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
                    // After a 101, the bytes read past the response head belong to the tunnel. HTTP/2 connections get
                    // their handlers once the handshake is done (``acquireStream``).
                    if !target.http2 { try sync.addHTTPClientHandlers(leftOverBytesStrategy: .forwardBytes) }
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
                if target.http2 {
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandshakeObserver(connection: connection))
                } else {
                    try channel.pipeline.syncOperations.addHandler(UpstreamRelay(connection: connection))
                }
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
            connection.handshakeRefused = { handshake.fail($0) }
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
final class UpstreamRelay: ChannelInboundHandler, RemovableChannelHandler {
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

/// An HTTP/2 upstream connection and the multiplexer its streams are opened with.
final class HTTP2Upstream: Sendable {
    let connection: UpstreamConnection
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer

    init(connection: UpstreamConnection, multiplexer: NIOHTTP2Handler.StreamMultiplexer) {
        self.connection = connection
        self.multiplexer = multiplexer
    }
}

/// The TLS handshake of an HTTP/2 upstream connection (its streams have their own ``UpstreamRelay``).
final class UpstreamHandshakeObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let connection: UpstreamConnection

    init(connection: UpstreamConnection) { self.connection = connection }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let negotiated) = event {
            connection.tlsVersion = (try? context.pipeline.syncOperations.nioSSL_tlsVersion()).flatMap { $0 }.map(UpstreamPool.tlsName)
            let done = connection.handshakeDone
            let refused = connection.handshakeRefused
            connection.handshakeDone = nil
            connection.handshakeRefused = nil
            if negotiated == "h2" {
                done?()
            } else {
                // gRPC needs HTTP/2; an upstream that did not choose h2 by ALPN cannot carry it.
                refused?(UpstreamFailure(
                    flags: "UF", details: "upstream did not select h2 by ALPN (\(negotiated ?? "no protocol")); a grpc backend needs HTTP/2",
                    peer: connection.peer))
                context.close(promise: nil)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.handshakeDone = nil
        connection.handshakeRefused = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // E.g. the upstream's `no_application_protocol` alert: it does not speak h2.
        let refused = connection.handshakeRefused
        connection.handshakeDone = nil
        connection.handshakeRefused = nil
        refused?(UpstreamFailure(flags: "UF", details: "TLS handshake with the upstream failed (a grpc backend needs h2 by ALPN): \(error)", peer: connection.peer))
        context.close(promise: nil)
    }
}
