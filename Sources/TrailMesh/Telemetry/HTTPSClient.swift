import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A small HTTP/1.1 client for control-plane calls (the CA's API, shipping telemetry to `trail serve`): one
/// request per connection, TLS with the caller's trust roots and optional client certificate, the server's
/// SPIFFE ID checked when one is expected.
public struct HTTPSClient: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// Where to connect and how to trust it.
    public struct Endpoint: Sendable {
        public var host: String
        public var port: Int
        public var tls: Bool
        /// Base path (no trailing slash), from the URL.
        public var basePath: String

        public init(url text: String) throws {
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
                let host = url.host
            else {
                throw MeshError("'\(text)' is not an http(s) URL such as https://127.0.0.1:4318")
            }
            self.host = host
            self.tls = scheme == "https"
            self.port = url.port ?? (tls ? 443 : 80)
            var path = url.path
            while path.hasSuffix("/") { path.removeLast() }
            self.basePath = path
        }

        public var description: String { "\(tls ? "https" : "http")://\(host):\(port)\(basePath)" }
    }

    /// A server that must present an X509-SVID with this SPIFFE ID, verified against this trust.
    public struct ExpectedServer: Sendable {
        public var spiffeID: String
        public var trust: TrustSnapshot
    }

    let group: any EventLoopGroup
    /// The TLS context for each new connection (it may change as certificates rotate).
    let tlsContext: @Sendable () throws -> NIOSSLContext?
    /// When set, the handshake fails unless the server presents this identity: nothing, not even the request
    /// line, is sent to anyone else.
    let expectedServer: ExpectedServer?
    let timeout: TimeAmount

    public init(
        group: any EventLoopGroup, expectedServer: ExpectedServer? = nil, timeout: TimeAmount = .seconds(10),
        tlsContext: @escaping @Sendable () throws -> NIOSSLContext?
    ) {
        self.group = group
        self.tlsContext = tlsContext
        self.expectedServer = expectedServer
        self.timeout = timeout
    }

    /// One request on a new connection. `host` and `user-agent` default to the endpoint and `trail` unless
    /// `headers` has them; `localAddress` binds the client's side of the connection (an address on this host).
    public func request(
        _ method: HTTPMethod, _ endpoint: Endpoint, path: String, headers: [(String, String)] = [], body: [UInt8] = [],
        localAddress: String? = nil
    ) async throws -> Response {
        let context = endpoint.tls ? try tlsContext() : nil
        if endpoint.tls && context == nil { throw MeshError("\(endpoint.description): no TLS settings to connect with") }
        let promise = group.next().makePromise(of: Response.self)
        let expected = expectedServer
        var bootstrap = ClientBootstrap(group: group)
        if let localAddress { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: localAddress, port: 0)) }
        bootstrap = bootstrap
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let context {
                        if let expected {
                            try sync.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil) { certificates, verdict in
                                Task {
                                    if case .accepted(let facts) = await SVIDVerifier.verify(chain: certificates, trust: expected.trust),
                                        facts.spiffeID == expected.spiffeID
                                    {
                                        verdict.succeed(.certificateVerified)
                                    } else {
                                        verdict.succeed(.failed)
                                    }
                                }
                            })
                        } else {
                            try sync.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                        }
                    }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(ResponseCollector(promise: promise))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            promise.fail(error)
            throw MeshError("cannot connect to \(endpoint.description): \(error)")
        }
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: endpoint.basePath + path)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        if !head.headers.contains(name: "host") { head.headers.add(name: "host", value: "\(endpoint.host):\(endpoint.port)") }
        if !head.headers.contains(name: "user-agent") { head.headers.add(name: "user-agent", value: "trail") }
        head.headers.replaceOrAdd(name: "content-length", value: String(body.count))
        head.headers.replaceOrAdd(name: "connection", value: "close")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if !body.isEmpty { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(MeshError("\(endpoint.description)\(path): no answer within \(timeout.nanoseconds / 1_000_000_000) s"))
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            return try await promise.futureResult.get()
        } catch let e as MeshError {
            throw e
        } catch {
            throw MeshError("\(method) \(endpoint.description)\(path): \(error)")
        }
    }
}

/// Collects one response and closes the connection.
final class ResponseCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<HTTPSClient.Response>
    private var status = 0
    private var body: [UInt8] = []
    private let limit = 16 << 20

    init(promise: EventLoopPromise<HTTPSClient.Response>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(let buffer):
            guard body.count + buffer.readableBytes <= limit else {
                promise.fail(MeshError("response body exceeds \(limit) bytes"))
                context.close(promise: nil)
                return
            }
            body.append(contentsOf: buffer.readableBytesView)
        case .end:
            promise.succeed(.init(status: status, body: body))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(MeshError("the server closed the connection before answering"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
