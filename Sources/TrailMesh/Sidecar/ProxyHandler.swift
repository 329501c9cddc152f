import Foundation
import NIOCore
import NIOHTTP1
import TrailCore

/// Per-connection facts of a downstream connection (the caller's side).
package final class DownstreamConnection: @unchecked Sendable {
    package var remoteAddress: String?
    package var localAddress: String?
    /// The caller's accepted certificate (mTLS); nil for plaintext.
    package var peer: PeerCertificateFacts?
    package var tlsVersion: String?
    /// Request ids, trace ids and backend choices of this connection's requests (used on its event loop only).
    package var random = BufferedRandom()
}

/// Random numbers from the system's generator, fetched 256 bytes per system call instead of 8: request and
/// trace ids need several draws per request. Not shared between threads: one per connection.
package struct BufferedRandom: RandomNumberGenerator {
    private var words = [UInt64](repeating: 0, count: 32)
    private var index = 32

    package init() {}

    package mutating func next() -> UInt64 {
        if index == words.count {
            words.withUnsafeMutableBytes { arc4random_buf($0.baseAddress!, $0.count) }
            index = 0
        }
        defer { index += 1 }
        return words[index]
    }
}

/// How a proxy decides what to do with a request; one for the inbound side, one for the outbound side.
package protocol ProxyPolicy: Sendable {
    /// Where to send the request and how to rewrite it, or a refusal (answered and logged by the handler).
    func route(_ head: inout HTTPRequestHead, _ record: inout MeshAccessRecord, _ connection: DownstreamConnection) -> ProxyRoute
    /// Records one finished request.
    func finished(_ record: MeshAccessRecord)
}

package enum ProxyRoute {
    case forward(UpstreamTarget)
    case refuse(status: HTTPResponseStatus, body: String)
    /// A refusal with extra response headers (the gateway's 401 `WWW-Authenticate`, 429 `Retry-After`).
    case refuseWithHeaders(status: HTTPResponseStatus, body: String, headers: [(String, String)])
}

/// An HTTP/1.1 reverse proxy for one downstream connection: routes each request (policy, upstream choice),
/// relays it to a pooled upstream connection on the same event loop and streams the response back as it
/// arrives. NIO's server pipeline handler keeps pipelined requests in order, so one request is in flight at a time.
final class ProxyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// Waiting for the upstream connection; request parts are held.
        case connecting([HTTPClientRequestPart])
        case forwarding
        /// The request was refused; its body is read and dropped.
        case refused
    }

    let policy: any ProxyPolicy
    let pool: UpstreamPool
    let connection: DownstreamConnection
    let localSPIFFEID: String
    let direction: MeshAccessRecord.Direction
    private var state = State.idle
    private var context: ChannelHandlerContext?
    private var upstream: UpstreamConnection?
    private var target: UpstreamTarget?
    private var record: MeshAccessRecord?
    private var requestKeepAlive = true
    private var requestComplete = false
    private var responseStarted = false
    private var responseComplete = false
    private var upstreamReusable = true
    private var pendingFlush = false
    private var requestNeedsFlush = false
    /// Between a read and the end of its burst (channelReadComplete), where flushing can wait.
    private var inReadBurst = false
    /// Backpressure: the caller is not read while the upstream's buffer is full, and the other way round.
    private var readingPausedForUpstream = false
    private var upstreamReadingPaused = false

    init(policy: any ProxyPolicy, pool: UpstreamPool, connection: DownstreamConnection, localSPIFFEID: String, direction: MeshAccessRecord.Direction) {
        self.policy = policy
        self.pool = pool
        self.connection = connection
        self.localSPIFFEID = localSPIFFEID
        self.direction = direction
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inReadBurst = true
        switch unwrapInboundIn(data) {
        case .head(var head):
            begin(context: context, &head)
        case .body(let buffer):
            record?.bytesReceived += buffer.readableBytes
            send(.body(.byteBuffer(buffer)))
        case .end(let trailers):
            requestComplete = true
            send(.end(trailers))
            if case .refused = state { finishRefusal() }
        }
    }

    private func begin(context: ChannelHandlerContext, _ head: inout HTTPRequestHead) {
        requestComplete = false
        responseStarted = false
        responseComplete = false
        upstreamReusable = true
        requestKeepAlive = head.isKeepAlive
        var r = MeshAccessRecord(
            direction: direction, startNanos: MeshAccessRecord.nowNanos(), method: head.method.rawValue, path: head.uri,
            localSPIFFEID: localSPIFFEID)
        r.authority = head.headers.first(name: "host")
        r.userAgent = head.headers.first(name: "user-agent")
        r.traceparent = head.headers.first(name: "traceparent")
        r.b3TraceID = head.headers.first(name: "x-b3-traceid")
        r.b3SpanID = head.headers.first(name: "x-b3-spanid")
        r.b3ParentSpanID = head.headers.first(name: "x-b3-parentspanid")
        r.b3Sampled = head.headers.first(name: "x-b3-sampled")
        if head.headers.first(name: "x-request-id") == nil {
            head.headers.add(name: "x-request-id", value: Self.requestID(using: &connection.random))
        }
        r.requestID = head.headers.first(name: "x-request-id")
        r.downstreamRemote = connection.remoteAddress
        r.downstreamLocal = connection.localAddress
        if direction == .inbound {
            r.peer = connection.peer
            r.tlsVersion = connection.tlsVersion
        }
        // Hop-by-hop headers are this connection's, not the upstream's.
        for name in head.headers[canonicalForm: "connection"] { head.headers.remove(name: String(name)) }
        for name in ["connection", "keep-alive", "proxy-connection", "te", "upgrade", "proxy-authorization"] {
            head.headers.remove(name: name)
        }
        // `Expect: 100-continue` is answered here, as Envoy does, and not passed on.
        let expectsContinue = head.headers.first(name: "expect")?.lowercased() == "100-continue"
        head.headers.remove(name: "expect")
        let route = policy.route(&head, &r, connection)
        record = r
        if expectsContinue, case .forward = route {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
        switch route {
        case .refuse(let status, let body):
            state = .refused
            respond(status: status, body: body)
            if requestComplete { finishRefusal() }
        case .refuseWithHeaders(let status, let body, let extra):
            state = .refused
            respond(status: status, body: body, extra: extra)
            if requestComplete { finishRefusal() }
        case .forward(let target):
            self.target = target
            state = .connecting([.head(head)])
            let loop = context.eventLoop
            pool.acquire(target, on: loop).hop(to: loop).assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(let upstream): attach(upstream)
                case .failure(let error): upstreamFailed(error)
                }
            }
        }
    }

    /// A random version-4 UUID in lower case, as Envoy generates x-request-id.
    static func requestID(using random: inout some RandomNumberGenerator) -> String {
        var bytes = withUnsafeBytes(of: (random.next() as UInt64, random.next() as UInt64)) { Array($0) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = Hex.encode(bytes)
        let h = Array(hex.utf8)
        return String(decoding: h[0..<8], as: UTF8.self) + "-" + String(decoding: h[8..<12], as: UTF8.self) + "-"
            + String(decoding: h[12..<16], as: UTF8.self) + "-" + String(decoding: h[16..<20], as: UTF8.self) + "-"
            + String(decoding: h[20..<32], as: UTF8.self)
    }

    private func send(_ part: HTTPClientRequestPart) {
        switch state {
        case .connecting(var parts):
            parts.append(part)
            state = .connecting(parts)
        case .forwarding:
            guard let upstream else { return }
            if case .end = part {
                upstream.channel.writeAndFlush(part, promise: nil)
            } else {
                upstream.channel.write(part, promise: nil)
                requestNeedsFlush = true
                if !upstream.channel.isWritable, let context {
                    // The upstream cannot keep up: stop reading the caller until it can (no unbounded buffering).
                    // Pause first: the flush may make the upstream writable again at once, which resumes.
                    readingPausedForUpstream = true
                    context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
                    requestNeedsFlush = false
                    upstream.channel.flush()
                }
            }
        case .idle, .refused:
            break
        }
    }

    private func attach(_ upstream: UpstreamConnection) {
        guard case .connecting(let parts) = state, context != nil else {
            pool.release(upstream, target!)
            return
        }
        self.upstream = upstream
        upstream.owner = self
        record?.upstreamHost = upstream.remoteAddress
        record?.upstreamLocal = upstream.localAddress
        if direction == .outbound {
            record?.peer = upstream.peer
            record?.tlsVersion = upstream.tlsVersion
        }
        state = .forwarding
        for part in parts { upstream.channel.write(part, promise: nil) }
        // The request's end (or the end of this read burst) flushes: usually one write for the whole request.
        if case .end = parts.last {
            upstream.channel.flush()
        } else {
            requestNeedsFlush = true
            if !inReadBurst { upstream.channel.flush() }
        }
    }

    private func upstreamFailed(_ error: any Error) {
        guard case .connecting = state else { return }
        state = .refused
        let failure = error as? UpstreamFailure
        record?.responseFlags = failure?.flags ?? "UF"
        record?.refusal = failure?.details ?? "\(error)"
        if direction == .outbound, let peer = failure?.peer { record?.peer = peer }
        record?.responseCodeDetails = "upstream_reset_before_response_started{connection_failure}"
        respond(status: .serviceUnavailable, body: "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
        if requestComplete { finishRefusal() }
    }

    /// Answers a refused request itself (the body is short text, as Envoy's local replies are).
    private func respond(status: HTTPResponseStatus, body: String, extra: [(String, String)] = []) {
        guard let context else { return }
        record?.status = Int(status.code)
        var headers = HTTPHeaders(extra)
        headers.add(name: "content-type", value: "text/plain")
        headers.add(name: "content-length", value: String(body.utf8.count))
        if !requestKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        record?.bytesSent += body.utf8.count
        responseStarted = true
    }

    private func finishRefusal() {
        guard let context, case .refused = state else { return }
        state = .idle
        complete(context: context)
    }

    /// Ends the response (refusals) and logs.
    private func complete(context: ChannelHandlerContext) {
        let keepAlive = requestKeepAlive
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
        log()
    }

    private func log() {
        guard var r = record else { return }
        r.durationNanos = MeshAccessRecord.nowNanos() - r.startNanos
        record = nil
        policy.finished(r)
    }

    // MARK: From the upstream (same event loop)

    func upstreamRead(_ part: HTTPClientResponsePart) {
        guard let context else { return }
        switch part {
        case .head(var head):
            // Informational answers (100, 103) are the upstream's business; the caller gets the final one.
            if head.status.code < 200 && head.status.code != 101 { return }
            responseStarted = true
            record?.status = Int(head.status.code)
            if !head.isKeepAlive { upstreamReusable = false }
            for name in head.headers[canonicalForm: "connection"] { head.headers.remove(name: String(name)) }
            for name in ["connection", "keep-alive", "proxy-connection"] { head.headers.remove(name: name) }
            if !requestKeepAlive { head.headers.add(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: head.status, headers: head.headers))), promise: nil)
        case .body(let buffer):
            // Flushed when the upstream's read burst ends (or with the end): one write per burst, and a streamed
            // response still reaches the client as its parts arrive.
            record?.bytesSent += buffer.readableBytes
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            pendingFlush = true
            if !context.channel.isWritable, let upstream {
                // The caller reads slowly: stop reading the upstream until the caller has taken what is queued.
                upstreamReadingPaused = true
                upstream.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
                pendingFlush = false
                context.flush()
            }
        case .end(let trailers):
            responseComplete = true
            let keepAlive = requestKeepAlive
            if upstreamReadingPaused, let upstream {
                upstreamReadingPaused = false
                upstream.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            }
            if readingPausedForUpstream {
                readingPausedForUpstream = false
                context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            }
            if let upstream, let target {
                upstream.owner = nil
                if upstreamReusable && requestComplete { pool.release(upstream, target) } else { upstream.channel.close(promise: nil) }
            }
            upstream = nil
            state = .idle
            pendingFlush = false
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(trailers))).whenComplete { _ in
                if !keepAlive { channel.close(promise: nil) }
            }
            log()
        }
    }

    /// The upstream can take more of the request: read the caller again.
    func upstreamWritable() {
        guard readingPausedForUpstream, let context else { return }
        readingPausedForUpstream = false
        context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, upstreamReadingPaused, let upstream {
            upstreamReadingPaused = false
            upstream.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            upstream.channel.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func upstreamReadComplete() {
        guard pendingFlush, let context else { return }
        pendingFlush = false
        context.flush()
    }

    func upstreamClosed() {
        guard let context, case .forwarding = state, !responseComplete else { return }
        upstream = nil
        if responseStarted {
            // Cannot tell the client cleanly any more: close, as a proxy does.
            record?.responseFlags = "UPE"
            log()
            state = .idle
            context.close(promise: nil)
        } else {
            state = .refused
            record?.responseFlags = "UC"
            record?.responseCodeDetails = "upstream_reset_before_response_started{connection_termination}"
            respond(status: .serviceUnavailable, body: "upstream connect error or disconnect/reset before headers. reset reason: connection termination")
            if requestComplete { finishRefusal() }
        }
    }

    /// A streamed request body goes on as each read burst ends.
    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        if requestNeedsFlush, case .forwarding = state, let upstream {
            requestNeedsFlush = false
            upstream.channel.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let upstream {
            upstream.owner = nil
            upstream.channel.close(promise: nil)
        }
        upstream = nil
        if var r = record {
            if r.status == 0 { r.responseFlags = "DC" }
            record = r
            log()
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
