import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import TrailCore
import X509

/// The HTTPS server behind `trail serve`: TLS 1.2+ with HTTP/1.1 and HTTP/2 (ALPN), mTLS with SPIFFE IDs or
/// bearer tokens, size limits on headers, bodies and decompressed bodies, and a per-sender connection limit.
/// It prints nothing but what it hands to `log` (a `--crl` file reloaded, or unreadable); the caller reports the
/// URL that ``start()`` returns.
public final class IngestHTTPServer: Sendable {
    public let configuration: ServerConfiguration
    private let handler: any ServerRequestHandler
    private let state = Locked(RunState())
    private let registry: ConnectionRegistry
    private let tasks = TaskCounter()
    private let log: @Sendable (String) -> Void

    private struct RunState {
        var group: MultiThreadedEventLoopGroup?
        var serverChannel: (any Channel)?
        var stopped = false
    }

    public init(
        configuration: ServerConfiguration, handler: any ServerRequestHandler, log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.handler = handler
        self.log = log
        self.registry = ConnectionRegistry(maxPerSender: configuration.maxConnectionsPerSender)
    }

    /// Validates the configuration, binds the listener and returns its URL (`https://host:port`, or `http://`
    /// in insecure mode) with the port actually bound.
    public func start() async throws -> URL {
        let tls = try configuration.makeTLSConfiguration()
        let allowList = try configuration.makeAllowList()
        let sslContext = try tls.map { try NIOSSLContext(configuration: $0) }
        let settings = ConnectionSettings(
            authenticator: Authenticator(insecure: configuration.insecure, allowList: allowList, tokens: configuration.tokens),
            maxBodyBytes: configuration.maxBodyBytes, maxHeaderBytes: configuration.maxHeaderBytes,
            handler: handler, mutualTLS: configuration.clientCAPath != nil, tasks: tasks, openPaths: configuration.openPaths,
            revocations: try configuration.makeRevocationWatcher(log: log))
        let idle = TimeAmount.nanoseconds(
            Int64(configuration.idleTimeout.components.seconds) * 1_000_000_000
                + configuration.idleTimeout.components.attoseconds / 1_000_000_000)
        let threads = configuration.eventLoopThreads ?? max(2, System.coreCount)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        try state.withLock { state in
            guard state.group == nil, !state.stopped else {
                throw ServerConfigurationError("the server was already started")
            }
            state.group = group
        }
        let registry = self.registry
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                let connection = ConnectionContext(
                    address: Self.describe(channel.remoteAddress), settings: settings)
                connection.overLimit = !registry.admit(channel, key: Self.senderKey(channel.remoteAddress))
                if connection.overLimit {
                    // Long enough to answer 429 with a reason, never long enough to hold a slot open.
                    channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: idle))
                    try sync.addHandler(IdleCloser(connection: connection))
                    if let sslContext {
                        try sync.addHandler(NIOSSLServerHandler(context: sslContext))
                    } else {
                        try configureHTTP1(channel, connection: connection)
                    }
                }.flatMap {
                    guard sslContext != nil else { return channel.eventLoop.makeSucceededVoidFuture() }
                    return channel.configureHTTP2SecureUpgrade(
                        h2ChannelConfigurator: { channel in
                            connection.readPeerCertificate(channel)
                            return channel.configureHTTP2Pipeline(
                                mode: .server,
                                initialLocalSettings: [
                                    HTTP2Setting(parameter: .maxConcurrentStreams, value: 100),
                                    HTTP2Setting(parameter: .maxHeaderListSize, value: settings.maxHeaderBytes),
                                    HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
                                ],
                                targetWindowSize: 1 << 20,
                                inboundStreamInitializer: { stream in
                                    stream.eventLoop.makeCompletedFuture {
                                        try stream.pipeline.syncOperations.addHandlers([
                                            HTTP2FramePayloadToHTTP1ServerCodec(),
                                            RequestChannelHandler(connection: connection, isHTTP2: true),
                                        ])
                                    }
                                }
                            ).map { _ in }
                        },
                        http1ChannelConfigurator: { channel in
                            connection.readPeerCertificate(channel)
                            return channel.eventLoop.makeCompletedFuture {
                                try configureHTTP1(channel, connection: connection)
                            }
                        })
                }
            }

        do {
            let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
            state.withLock { $0.serverChannel = channel }
            let port = channel.localAddress?.port ?? configuration.port
            let host = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
            let scheme = configuration.insecure ? "http" : "https"
            guard let url = URL(string: "\(scheme)://\(host):\(port)") else {
                throw ServerConfigurationError("--host \(configuration.host): not usable in a URL")
            }
            return url
        } catch {
            try? await shutdown()
            if let error = error as? ServerConfigurationError { throw error }
            throw ServerConfigurationError(
                "cannot listen on \(configuration.host):\(configuration.port): \(error); choose another --host/--port")
        }
    }

    /// Stops accepting, lets requests in progress finish, closes connections and stops the event loops. Safe to
    /// call more than once.
    public func shutdown() async throws {
        let (group, channel) = state.withLock { state -> (MultiThreadedEventLoopGroup?, (any Channel)?) in
            defer {
                state.group = nil
                state.serverChannel = nil
                state.stopped = true
            }
            return (state.group, state.serverChannel)
        }
        if let channel { try? await channel.close() }
        // Let requests already handed to the application finish and answer (at most 10 s), then close.
        for _ in 0..<1000 where tasks.count > 0 { try? await Task.sleep(for: .milliseconds(10)) }
        for connection in registry.openChannels() { try? await connection.close() }
        if let group { try await group.shutdownGracefully() }
    }

    /// Number of open connections (for tests and metrics).
    public var openConnections: Int { registry.openChannels().count }

    static func describe(_ address: SocketAddress?) -> String {
        guard let address else { return "unknown" }
        switch address {
        case .v4, .v6:
            let ip = address.ipAddress ?? "unknown"
            let port = address.port.map(String.init) ?? "0"
            return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
        case .unixDomainSocket:
            return "unix"
        }
    }

    static func senderKey(_ address: SocketAddress?) -> String {
        address?.ipAddress ?? "unknown"
    }
}

/// Sets up HTTP/1.1 with pipelining assistance and header limits on a connection channel.
private func configureHTTP1(_ channel: any Channel, connection: ConnectionContext) throws {
    var limits = NIOHTTPDecoderLimitConfiguration()
    limits.maxHeaderListSize = connection.settings.maxHeaderBytes
    limits.maxHeaderFieldSize = connection.settings.maxHeaderBytes
    let sync = channel.pipeline.syncOperations
    try sync.configureHTTPServerPipeline(
        withPipeliningAssistance: true, withErrorHandling: false, withOutboundHeaderValidation: true,
        withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
    try sync.addHandler(HTTP1ProtocolErrorHandler())
    try sync.addHandler(RequestChannelHandler(connection: connection, isHTTP2: false))
}

/// Settings shared by every connection of a server.
struct ConnectionSettings: Sendable {
    var authenticator: Authenticator
    var maxBodyBytes: Int
    var maxHeaderBytes: Int
    var handler: any ServerRequestHandler
    var mutualTLS: Bool
    var tasks: TaskCounter
    var openPaths: Set<String> = []
    /// The `--crl` files, when given.
    var revocations: RevocationWatcher?
}

/// Counts application calls in progress, so shutdown can wait for them.
final class TaskCounter: Sendable {
    private let value = Locked(0)
    var count: Int { value.withLock { $0 } }
    func begin() { value.withLock { $0 += 1 } }
    func end() { value.withLock { $0 -= 1 } }
}

/// Per-connection state. Only touched on the connection's event loop (HTTP/2 stream channels share it).
final class ConnectionContext: @unchecked Sendable {
    let address: String
    let settings: ConnectionSettings
    var overLimit = false
    var peer: PeerCertificateIdentity = .none
    var peerSerial: String?
    var peerIssuer: DistinguishedName?
    /// Whether a request of this connection has looked at the `--crl` files yet.
    private var lookedAtCRLs = false
    /// Requests handed to the application and not yet answered.
    var inFlight = 0

    init(address: String, settings: ConnectionSettings) {
        self.address = address
        self.settings = settings
    }

    /// Reads the verified client certificate once the TLS handshake is done.
    func readPeerCertificate(_ channel: any Channel) {
        guard settings.mutualTLS else { return }
        if let certificate = try? channel.pipeline.syncOperations.nioSSL_peerCertificate() {
            peer = PeerCertificateIdentity(verified: certificate)
            if let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) {
                peerSerial = CertificateSerial.normalize(bytes: parsed.serialNumber.bytes)
                peerIssuer = parsed.issuer
            }
        }
    }

    /// The peer as it stands for a request now: a certificate that a `--crl` revokes, also since the handshake,
    /// counts for nothing. The first request of a connection looks at the files at once.
    func currentPeer() -> PeerCertificateIdentity {
        guard let serial = peerSerial, let issuer = peerIssuer, let revocations = settings.revocations else { return peer }
        defer { lookedAtCRLs = true }
        guard revocations.revokes(issuer: issuer, serial: serial, lookNow: !lookedAtCRLs) else { return peer }
        return .unusable("the client certificate \(serial) is revoked")
    }
}

/// Counts open connections per sender address and keeps them for shutdown.
final class ConnectionRegistry: Sendable {
    private struct State {
        var perSender: [String: Int] = [:]
        var channels: [ObjectIdentifier: any Channel] = [:]
    }

    private let maxPerSender: Int
    private let state = Locked(State())

    init(maxPerSender: Int) {
        self.maxPerSender = maxPerSender
    }

    /// Registers a new connection; false if the sender already has the most connections allowed (the
    /// connection is still tracked until it closes, but does not count against the sender).
    func admit(_ channel: any Channel, key: String) -> Bool {
        let id = ObjectIdentifier(channel)
        let admitted = state.withLock { state -> Bool in
            state.channels[id] = channel
            let count = state.perSender[key, default: 0]
            guard count < maxPerSender else { return false }
            state.perSender[key] = count + 1
            return true
        }
        channel.closeFuture.whenComplete { [self] _ in
            state.withLock { state in
                state.channels[id] = nil
                if admitted {
                    let count = state.perSender[key, default: 1] - 1
                    state.perSender[key] = count > 0 ? count : nil
                }
            }
        }
        return admitted
    }

    func openChannels() -> [any Channel] {
        state.withLock { Array($0.channels.values) }
    }
}

/// Closes a connection that has been idle (no reads or writes, no request being handled) for the timeout.
final class IdleCloser: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    private let connection: ConnectionContext

    init(connection: ConnectionContext) {
        self.connection = connection
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if connection.inFlight == 0 { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Answers HTTP/1 parse errors: 431 when the header section is too large, 400 otherwise; then closes.
final class HTTP1ProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var hasUnterminatedResponse = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if !hasUnterminatedResponse {
            let (status, text): (HTTPResponseStatus, String) =
                switch parserError {
                case .headerOverflow: (.requestHeaderFieldsTooLarge, "request header section is too large\n")
                default: (.badRequest, "malformed HTTP request\n")
                }
            var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
            buffer.writeString(text)
            let headers = HTTPHeaders([
                ("connection", "close"), ("content-type", "text/plain; charset=utf-8"),
                ("content-length", String(buffer.readableBytes)),
            ])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        } else {
            context.close(promise: nil)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code < 200: break
        case .head: hasUnterminatedResponse = true
        case .body: break
        case .end: hasUnterminatedResponse = false
        }
        context.write(data, promise: promise)
    }
}
