import NIOCore
import NIOHTTP1
import NIOHTTP2

/// Limits on a request head at the edge (`trail gateway`): nginx's defaults, as Kong has them.
package struct EdgeRequestLimits: Sendable {
    /// The request line, and any single header line (bytes). Longer: 414 (request line) or 431 (header).
    package var maxLineBytes = 8 * 1024
    /// All header lines of one request together (bytes). More: 431.
    package var maxHeaderBytes = 32 * 1024

    package init() {}
}

/// The HTTP/1.1 server pipeline of a proxy's downstream connection (sidecar inbound and outbound, gateway edge).
enum ProxyServerPipeline {
    /// - Parameter edge: the gateway's head limits: malformed requests are answered with their status (400, 414,
    ///   431) and logged through the policy instead of NIO's bare 400.
    static func configure(
        _ channel: any Channel, handler: ProxyHandler, edge: EdgeRequestLimits? = nil
    ) throws {
        let sync = channel.pipeline.syncOperations
        var limits = NIOHTTPDecoderLimitConfiguration()
        var observer: EdgeHeadObserver?
        if let edge {
            limits.maxHeaderFieldSize = edge.maxLineBytes
            limits.maxHeaderListSize = edge.maxHeaderBytes
            let o = EdgeHeadObserver(maxLineBytes: edge.maxLineBytes)
            try sync.addHandler(o)
            observer = o
        }
        // An upgrade configuration without upgraders: NIO then keeps the bytes a client sends after an upgrade
        // request (`forwardBytes`), which a WebSocket tunnel needs; the upgrade itself is the upstream's to accept.
        try sync.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [], completionHandler: { _ in }), withErrorHandling: edge == nil,
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
        if let observer {
            try sync.addHandler(EdgeProtocolErrorHandler(observer: observer, handler: handler))
        }
        try sync.addHandler(handler)
    }
}

extension ProxyServerPipeline {
    /// The HTTP/2 server pipeline of an edge connection: each stream becomes HTTP/1.1-shaped request parts
    /// (``HTTP2FramePayloadToHTTP1ServerCodec``) handled by its own ``ProxyHandler``, so every stream is one
    /// request with its own routing, authentication, access-log line and trace context. Flow control is
    /// per stream: a stream whose upstream is slow stops being read, and its window is not reopened.
    static func configureHTTP2(
        _ channel: any Channel, limits: EdgeRequestLimits, makeHandler: @escaping @Sendable () -> ProxyHandler
    ) throws {
        var connectionConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
        connectionConfiguration.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 100),
            HTTP2Setting(parameter: .maxHeaderListSize, value: limits.maxHeaderBytes),
            HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
        ]
        var streamConfiguration = NIOHTTP2Handler.StreamConfiguration()
        streamConfiguration.targetWindowSize = 1 << 20
        _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
            mode: .server, connectionConfiguration: connectionConfiguration, streamConfiguration: streamConfiguration,
            inboundStreamInitializer: { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandlers([
                        HTTP2AuthorityCheckHandler(), HTTP2FramePayloadToHTTP1ServerCodec(), makeHandler(),
                    ])
                }
            })
    }
}

/// Resets an HTTP/2 request stream whose `host` field differs from its `:authority` (RFC 9113 §8.3.1: malformed)
/// with PROTOCOL_ERROR. NIO's HTTP/1 codec keeps `host` and drops `:authority` when both are present, so without
/// this a front end routing on `:authority` and the gateway routing on Host would disagree about the request.
final class HTTP2AuthorityCheckHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .headers(let h) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        // The first header block is the request's: checked, then this handler leaves the stream.
        let hosts = h.headers[canonicalForm: "host"]
        let authority = h.headers.first(name: ":authority")
        if !hosts.isEmpty, hosts.count > 1 || authority.map({ $0.lowercased() != hosts[0].lowercased() }) ?? false {
            context.writeAndFlush(wrapOutboundOut(.rstStream(.protocolError)), promise: nil)
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// On a plain (TLS-less) edge listener: reads the first bytes of a connection and sets up HTTP/2 when they are the
/// HTTP/2 connection preface (prior knowledge, RFC 9113 §3.3), HTTP/1.1 otherwise; then leaves the pipeline,
/// passing on what it read.
final class HTTP2PriorKnowledgeSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    let http1: @Sendable (any Channel) throws -> Void
    let http2: @Sendable (any Channel) throws -> Void
    private var buffered: ByteBuffer?

    init(http1: @escaping @Sendable (any Channel) throws -> Void, http2: @escaping @Sendable (any Channel) throws -> Void) {
        self.http1 = http1
        self.http2 = http2
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffered == nil { buffered = incoming } else { buffered!.writeBuffer(&incoming) }
        guard let bytes = buffered else { return }
        let view = bytes.readableBytesView
        let n = min(view.count, Self.preface.count)
        let isPreface = view.prefix(n).elementsEqual(Self.preface.prefix(n))
        if isPreface && n < Self.preface.count { return }  // not enough yet to tell
        do {
            try (isPreface ? http2 : http1)(context.channel)
        } catch {
            context.close(promise: nil)
            return
        }
        buffered = nil
        context.fireChannelRead(wrapInboundOut(bytes))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
    }
}

/// Watches the raw bytes before the HTTP decoder, only to tell, when the decoder gives up on a head, whether
/// the line it was reading was the request line (414) or a header line (431), and which request it was.
final class EdgeHeadObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let maxLineBytes: Int
    /// The first bytes of the line being received (up to 512), and its length so far.
    private(set) var currentLine: [UInt8] = []
    private var currentLineLength = 0
    /// The last complete line that looked like a request line.
    private(set) var lastRequestLine: [UInt8] = []
    /// The start of the last request line longer than `maxLineBytes`, until a request line of a proper length.
    private(set) var overlongRequestLine: [UInt8]?

    init(maxLineBytes: Int) { self.maxLineBytes = maxLineBytes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        buffer.withUnsafeReadableBytes { bytes in
            var start = 0
            while start < bytes.count {
                if let lf = bytes[start...].firstIndex(of: 0x0A) {
                    append(bytes[start..<lf])
                    if Self.looksLikeRequestLine(currentLine) {
                        lastRequestLine = currentLine
                        overlongRequestLine = currentLineLength > maxLineBytes ? currentLine : nil
                    }
                    currentLine.removeAll(keepingCapacity: true)
                    currentLineLength = 0
                    start = lf + 1
                } else {
                    append(bytes[start...])
                    if currentLineLength > maxLineBytes, Self.looksLikeRequestLine(currentLine) { overlongRequestLine = currentLine }
                    start = bytes.count
                }
            }
        }
        context.fireChannelRead(data)
    }

    private func append(_ slice: Slice<UnsafeRawBufferPointer>) {
        currentLineLength += slice.count
        let room = 512 - currentLine.count
        if room > 0 { currentLine += slice.prefix(room) }
    }

    /// `METHOD SP …`: a token of capital letters, then a space (a header name cannot contain a space).
    static func looksLikeRequestLine(_ line: [UInt8]) -> Bool {
        guard let space = line.firstIndex(of: 0x20), space > 0 else { return false }
        return line[..<space].allSatisfy { (0x41...0x5A).contains($0) || $0 == 0x2D || $0 == 0x5F }
    }

    /// Method and target of a (possibly cut) request line.
    static func requestLineParts(_ line: [UInt8]) -> (method: String, target: String)? {
        guard looksLikeRequestLine(line) else { return nil }
        var text = String(decoding: line, as: UTF8.self)
        if text.hasSuffix("\r") { text.removeLast() }
        let parts = text.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        let target = parts.count > 1 ? String(parts[1].prefix(256)) : "-"
        return (String(parts[0]), target)
    }
}

/// Replaces NIO's `HTTPServerProtocolErrorHandler` at the edge: a head the decoder refuses is answered with the
/// status that fits (431 header too large, 414 request line too long, 400 otherwise: smuggling attempts such as
/// Content-Length with Transfer-Encoding, two Content-Lengths, a final coding other than chunked, obs-fold) and
/// logged by the policy with a refusal reason; then the connection closes.
final class EdgeProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    let observer: EdgeHeadObserver
    unowned let handler: ProxyHandler
    private var hasUnterminatedResponse = false

    init(observer: EdgeHeadObserver, handler: ProxyHandler) {
        self.observer = observer
        self.handler = handler
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        let (status, reason) = Self.classify(parserError, overlongRequestLine: observer.overlongRequestLine != nil)
        // The request line of the refused request: the over-long one (414), else the last one received.
        let line = observer.overlongRequestLine ?? observer.lastRequestLine
        let parts = EdgeHeadObserver.requestLineParts(line)
        let body = "{\"message\":\"\(reason)\"}"
        if !hasUnterminatedResponse {
            let headers = HTTPHeaders([
                ("content-type", "application/json"), ("content-length", String(body.utf8.count)), ("connection", "close"),
            ])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        handler.malformed(
            method: parts?.method ?? "-", target: parts?.target ?? "-", status: Int(status.code), reason: reason,
            bytesSent: hasUnterminatedResponse ? 0 : body.utf8.count)
        context.close(promise: nil)
    }

    static func classify(_ error: HTTPParserError, overlongRequestLine: Bool) -> (HTTPResponseStatus, String) {
        switch error {
        case .headerOverflow:
            if overlongRequestLine { return (.uriTooLong, "request line too long") }
            return (.requestHeaderFieldsTooLarge, "request header fields too large")
        case .unexpectedContentLength:
            return (.badRequest, "ambiguous request framing: Content-Length with Transfer-Encoding, or conflicting Content-Length values")
        case .invalidContentLength:
            return (.badRequest, "invalid Content-Length")
        case .unknown:
            return (.badRequest, "invalid Transfer-Encoding (the final coding must be chunked)")
        case .invalidHeaderToken:
            return (.badRequest, "invalid header line (obs-fold, whitespace or a forbidden character)")
        case .invalidChunkSize:
            return (.badRequest, "invalid chunk size")
        case .invalidURL:
            return (.badRequest, "invalid request target")
        case .invalidMethod:
            return (.badRequest, "invalid method")
        case .invalidVersion:
            return (.badRequest, "unsupported HTTP version")
        default:
            return (.badRequest, "malformed request (\(error))")
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 100 && head.status.code < 200 && head.status.code != 101:
            break
        case .head: hasUnterminatedResponse = true
        case .body: break
        case .end: hasUnterminatedResponse = false
        }
        context.write(data, promise: promise)
    }
}
