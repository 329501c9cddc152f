import Foundation
import NIOCore
import NIOHTTP1
import TrailCompression

/// What the transport needs to remember about a request while its body arrives and the application answers.
struct RequestInfo: Sendable {
    var method: String
    var uri: String
    var version: HTTPVersion
    var headers: [(name: String, value: String)]
    var keepAlive: Bool
    var acceptsGzip: Bool
    var contentEncoding: String
    var isHEAD: Bool
}

/// Turns one HTTP request (an HTTP/1.1 connection, one at a time thanks to `HTTPServerPipelineHandler`, or one
/// HTTP/2 stream) into a ``ServerRequest``: authenticates the sender, aggregates the body within the limit,
/// decompresses it off the event loop, calls the application and writes its answer back.
final class RequestChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// Reading the body of an accepted request.
        case collecting(RequestInfo, SenderIdentity, ByteBuffer)
        /// Reading and dropping the body of a refused request; the answer goes out at its end.
        case discarding(RequestInfo, ServerResponse, Int)
        /// The application is working on the request.
        case processing(RequestInfo)
        /// The connection (or stream) is being closed; input is ignored.
        case closing
    }

    private let connection: ConnectionContext
    private let isHTTP2: Bool
    private var state = State.idle

    init(connection: ConnectionContext, isHTTP2: Bool) {
        self.connection = connection
        self.isHTTP2 = isHTTP2
    }

    private var settings: ConnectionSettings { connection.settings }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): receivedHead(context: context, head)
        case .body(var chunk): receivedBody(context: context, &chunk)
        case .end: receivedEnd(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closing
        context.fireChannelInactive()
    }

    // MARK: - Request parts

    private func receivedHead(context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        guard case .idle = state else {
            // Cannot happen with HTTPServerPipelineHandler (HTTP/1) or one request per stream (HTTP/2).
            state = .closing
            context.close(promise: nil)
            return
        }
        var headerBytes = head.method.rawValue.utf8.count + head.uri.utf8.count + 12
        var headers: [(name: String, value: String)] = []
        headers.reserveCapacity(head.headers.count)
        for (name, value) in head.headers {
            headerBytes += name.utf8.count + value.utf8.count + 4
            headers.append((name.lowercased(), value))
        }
        let encodings = head.headers[canonicalForm: "content-encoding"].map { $0.lowercased() }
        let info = RequestInfo(
            method: head.method.rawValue, uri: head.uri, version: head.version, headers: headers,
            keepAlive: isHTTP2 || head.isKeepAlive,
            acceptsGzip: Self.acceptsGzip(head.headers[canonicalForm: "accept-encoding"].map(String.init)),
            contentEncoding: encodings.isEmpty ? "identity" : encodings.joined(separator: ", "),
            isHEAD: head.method == .HEAD)
        let expectsContinue = head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }

        // Refusals that do not depend on the body.
        if connection.overLimit {
            var response = ServerResponse.text(429, "too many connections from \(connection.address); reuse one connection")
            response.headers.append(("retry-after", "1"))
            return refuse(context: context, info, response, closeConnection: true)
        }
        if headerBytes > settings.maxHeaderBytes {
            return refuse(
                context: context, info,
                .text(431, "request header section exceeds \(settings.maxHeaderBytes) bytes"), closeConnection: true)
        }
        let sender: SenderIdentity
        // Authorization is a singleton field (RFC 9110 §11.6.2): with two, neither is taken (a malformed header).
        let authorizations = head.headers["authorization"]
        let peer = connection.currentPeer()
        switch settings.authenticator.decide(
            peer: peer, authorization: authorizations.count > 1 ? "" : authorizations.first,
            address: connection.address)
        {
        case .allowed(var identity):
            identity.certificateSerial = identity.spiffeID != nil ? connection.peerSerial : nil
            sender = identity
        case .denied(let response):
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            if settings.openPaths.contains(path) {
                var identity = SenderIdentity(address: connection.address)
                if case .spiffe(let id) = peer {
                    identity.spiffeID = id.description
                    identity.certificateSerial = connection.peerSerial
                }
                sender = identity
                break
            }
            // Liveness and readiness probes reveal nothing and must work for orchestrators without credentials.
            // They carry no body: anything else from an unauthenticated sender is refused before it is read.
            let declaresBody = (head.headers.first(name: "content-length").map { $0 != "0" } ?? false)
                || head.headers.contains(name: "transfer-encoding")
            guard head.method == .GET || head.method == .HEAD, path == "/healthz" || path == "/readyz", !declaresBody
            else {
                return refuse(context: context, info, response, closeConnection: expectsContinue)
            }
            sender = SenderIdentity(address: connection.address)
        }
        guard ["identity", "gzip", "x-gzip", "zstd"].contains(info.contentEncoding) else {
            return refuse(
                context: context, info,
                .text(415, "Content-Encoding \(info.contentEncoding) is not supported; send identity, gzip or zstd"),
                closeConnection: expectsContinue)
        }
        if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > settings.maxBodyBytes {
            return refuse(
                context: context, info, .text(413, "request body exceeds \(settings.maxBodyBytes) bytes"),
                closeConnection: true)
        }
        if expectsContinue {
            context.writeAndFlush(
                wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
        state = .collecting(info, sender, context.channel.allocator.buffer(capacity: 0))
    }

    private func receivedBody(context: ChannelHandlerContext, _ chunk: inout ByteBuffer) {
        switch state {
        case .collecting(let info, let sender, var body):
            if body.readableBytes + chunk.readableBytes > settings.maxBodyBytes {
                return refuse(
                    context: context, info, .text(413, "request body exceeds \(settings.maxBodyBytes) bytes"),
                    closeConnection: true)
            }
            state = .idle  // drop the reference so the buffer can grow in place
            body.writeBuffer(&chunk)
            state = .collecting(info, sender, body)
        case .discarding(let info, let response, let seen):
            let total = seen + chunk.readableBytes
            if total > settings.maxBodyBytes {
                // Not worth reading: answer now and hang up.
                state = .idle
                return refuse(context: context, info, response, closeConnection: true)
            }
            state = .discarding(info, response, total)
        case .idle, .processing, .closing:
            break
        }
    }

    private func receivedEnd(context: ChannelHandlerContext) {
        switch state {
        case .collecting(let info, let sender, let body):
            state = .processing(info)
            dispatch(context: context, info, sender, body)
        case .discarding(let info, let response, _):
            state = .idle
            write(context: context, info, response, closeAfterwards: !info.keepAlive)
        case .idle, .processing, .closing:
            break
        }
    }

    // MARK: - Answers

    /// Answers without reading the body: at once when the connection is to be closed (the client may still be
    /// sending), otherwise once the body has been read and dropped so the connection stays usable.
    private func refuse(
        context: ChannelHandlerContext, _ info: RequestInfo, _ response: ServerResponse, closeConnection: Bool
    ) {
        if closeConnection || isHTTP2 {
            // HTTP/2: answer at once; the rest of the stream is ignored, and reset only if it must be cut short.
            state = .closing
            write(context: context, info, response, closeAfterwards: closeConnection)
        } else {
            state = .discarding(info, response, 0)
        }
    }

    private func dispatch(context: ChannelHandlerContext, _ info: RequestInfo, _ sender: SenderIdentity, _ body: ByteBuffer) {
        let settings = self.settings
        let raw = Array(body.readableBytesView)
        connection.inFlight += 1
        let promise = context.eventLoop.makePromise(of: ServerResponse.self)
        settings.tasks.begin()
        Task {
            let response = await RequestChannelHandler.process(info: info, sender: sender, raw: raw, settings: settings)
            promise.succeed(response)
            settings.tasks.end()
        }
        promise.futureResult.assumeIsolated().whenComplete { [self] result in
            connection.inFlight -= 1
            guard case .processing = state else { return }  // the connection went away meanwhile
            state = .idle
            let response: ServerResponse
            switch result {
            case .success(let r): response = r
            case .failure: response = .text(500, "internal error")
            }
            write(context: context, info, response, closeAfterwards: !info.keepAlive)
        }
    }

    /// Decompresses (within the limit) and calls the application; runs off the event loop.
    private static func process(
        info: RequestInfo, sender: SenderIdentity, raw: [UInt8], settings: ConnectionSettings
    ) async -> ServerResponse {
        var body = raw
        var encoding = "identity"
        do {
            switch info.contentEncoding {
            case "gzip", "x-gzip":
                encoding = "gzip"
                body = try Gzip.decompress(raw, limit: settings.maxBodyBytes)
            case "zstd":
                encoding = "zstd"
                body = try Zstd.decompress(raw, limit: settings.maxBodyBytes)
            default:
                break
            }
        } catch {
            if error.description.contains("exceeds the limit") {
                return .text(413, "decompressed body exceeds \(settings.maxBodyBytes) bytes")
            }
            return .text(400, "cannot decompress the \(encoding) body: \(error.description)")
        }
        let (path, query) = Self.splitURI(info.uri)
        let request = ServerRequest(
            method: info.method, path: path, query: query, headers: info.headers, body: body,
            contentEncoding: encoding, sender: sender)
        var response = await settings.handler.handle(request)
        if info.acceptsGzip, response.compressible, response.body.count > 1024,
            !response.headers.contains(where: { $0.name.lowercased() == "content-encoding" })
        {
            let compressed = Gzip.compress(response.body)
            if compressed.count < response.body.count {
                response.body = compressed
                response.headers.append(("content-encoding", "gzip"))
                response.headers.append(("vary", "accept-encoding"))
            }
        }
        return response
    }

    private func write(context: ChannelHandlerContext, _ info: RequestInfo, _ response: ServerResponse, closeAfterwards: Bool) {
        var headers = HTTPHeaders()
        for (name, value) in response.headers {
            let lower = name.lowercased()
            if lower == "content-length" || lower == "connection" || lower == "transfer-encoding" { continue }
            headers.add(name: lower, value: value)
        }
        headers.add(name: "content-length", value: String(response.body.count))
        if !isHTTP2 {
            if closeAfterwards {
                headers.add(name: "connection", value: "close")
            } else if info.version.major == 1 && info.version.minor == 0 {
                headers.add(name: "connection", value: "keep-alive")
            }
        }
        let status = HTTPResponseStatus(statusCode: response.status)
        let version = isHTTP2 ? info.version : HTTPVersion(major: 1, minor: 1)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if !response.body.isEmpty && !info.isHEAD {
            var buffer = context.channel.allocator.buffer(capacity: response.body.count)
            buffer.writeBytes(response.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if closeAfterwards {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    // MARK: - Helpers

    /// True if `Accept-Encoding` lists gzip (or `*`) without `q=0`.
    static func acceptsGzip(_ values: [String]) -> Bool {
        for value in values {
            for item in value.split(separator: ",") {
                let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                guard let coding = parts.first, coding == "gzip" || coding == "x-gzip" || coding == "*" else { continue }
                let refused = parts.dropFirst().contains { p in
                    p.hasPrefix("q=") && (Double(p.dropFirst(2)) ?? 1) == 0
                }
                if !refused { return true }
            }
        }
        return false
    }

    /// The path and the decoded query parameters of a request target.
    static func splitURI(_ uri: String) -> (String, [String: String]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
        let path = String(uri[..<mark])
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                let spaced = s.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            let key = decode(kv[0])
            if key.isEmpty { continue }
            if query[key] == nil { query[key] = kv.count > 1 ? decode(kv[1]) : "" }
        }
        return (path, query)
    }
}
