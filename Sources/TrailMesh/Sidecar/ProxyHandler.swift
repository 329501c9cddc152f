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
    /// Records a request the HTTP parser refused before it could be routed (malformed head: 400, 414, 431);
    /// `record.refusal` says why. Default: ``finished(_:)``.
    func rejected(_ record: MeshAccessRecord, _ connection: DownstreamConnection)
}

extension ProxyPolicy {
    package func rejected(_ record: MeshAccessRecord, _ connection: DownstreamConnection) { finished(record) }
}

package enum ProxyRoute {
    case forward(UpstreamTarget)
    /// Forward with timeouts, retries and extra response headers (the gateway's Gateway API rules).
    case forwardPlan(ForwardPlan)
    case refuse(status: HTTPResponseStatus, body: String)
    /// A refusal with extra response headers (the gateway's 401 `WWW-Authenticate`, 429 `Retry-After`).
    case refuseWithHeaders(status: HTTPResponseStatus, body: String, headers: [(String, String)])
    /// A request whose framing cannot be trusted (smuggling attempts, a bad Host): answered, never forwarded, and
    /// the connection is closed at once, without reading a body whose length is in doubt.
    case reject(status: HTTPResponseStatus, body: String)
}

/// How a forwarded request is tried: Gateway API `timeouts` (`request` for the whole exchange including retries,
/// `backendRequest` for each try) and `retry.attempts`. A request is tried again, at the next target, after a
/// connection failure, a reset before the response, a try timeout or a retryable status (502, 503, 504), but only
/// when its method is idempotent and no request body has been sent upstream.
package struct ForwardPlan: Sendable {
    /// The first try's target, then each retry's; the last is reused when there are more retries than targets.
    package var targets: [UpstreamTarget]
    package var retries: Int
    /// The method may be sent twice (GET, HEAD, OPTIONS, PUT, DELETE).
    package var idempotent: Bool
    package var requestTimeout: TimeAmount?
    package var tryTimeout: TimeAmount?
    /// Added to (or replacing the same names in) the upstream's response, e.g. `RateLimit-*`.
    package var responseHeaders: [(String, String)]
    /// The body and headers of replies the proxy makes itself (timeouts, failed upstreams) from a status and a
    /// message; nil: Envoy's plain-text replies.
    package var localReply: (@Sendable (Int, String) -> (body: String, headers: [(String, String)]))?

    package static let retryableStatuses: Set<UInt> = [502, 503, 504]
    package static let idempotentMethods: Set<String> = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]

    package init(
        targets: [UpstreamTarget], retries: Int = 0, idempotent: Bool = false, requestTimeout: TimeAmount? = nil,
        tryTimeout: TimeAmount? = nil, responseHeaders: [(String, String)] = [],
        localReply: (@Sendable (Int, String) -> (body: String, headers: [(String, String)]))? = nil
    ) {
        precondition(!targets.isEmpty)
        self.targets = targets
        self.retries = retries
        self.idempotent = idempotent
        self.requestTimeout = requestTimeout
        self.tryTimeout = tryTimeout
        self.responseHeaders = responseHeaders
        self.localReply = localReply
    }

    /// The target of try `index` (0 is the first try).
    package func target(forTry index: Int) -> UpstreamTarget { targets[min(index, targets.count - 1)] }

    /// Whether a failed try may be followed by another: tries left, an idempotent method, no body sent.
    /// - Parameter triesMade: tries so far, the failed one included.
    package func mayRetry(triesMade: Int, bodySent: Bool) -> Bool {
        idempotent && !bodySent && triesMade <= retries
    }
}

/// An HTTP/1.1 reverse proxy for one downstream connection: routes each request (policy, upstream choice),
/// relays it to a pooled upstream connection on the same event loop and streams the response back as it
/// arrives. NIO's server pipeline handler keeps pipelined requests in order, so one request is in flight at a time.
///
/// A WebSocket upgrade (`Connection: upgrade`, `Upgrade: websocket`, GET, HTTP/1.1) is passed on with its
/// upgrade headers; when the upstream answers 101, the request is logged and both connections become a byte
/// tunnel (``ProxyTunnel``). Other upgrade protocols (h2c: a known smuggling route through proxies) are stripped.
///
/// At the edge, one handler also serves each HTTP/2 stream (`http2`), behind ``HTTP2FramePayloadToHTTP1ServerCodec``:
/// the stream is one request, forwarded as HTTP/1.1 to an HTTP/1.1 upstream or as a stream of an HTTP/2 upstream
/// connection (gRPC backends, ``UpstreamTarget/http2``), trailers included. WebSocket over HTTP/2 (RFC 8441) is not
/// offered: SETTINGS_ENABLE_CONNECT_PROTOCOL is never sent, so the HTTP/2 layer resets an extended CONNECT, and any
/// CONNECT that gets this far is answered 501.
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
        /// The upstream answered 101; the tunnel starts with the response's end.
        case upgrading
        /// The connection is a byte tunnel now (this handler is leaving the pipeline).
        case tunnel
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
    /// The current request's plan (timeouts, retries), its try count and timers.
    private var plan: ForwardPlan?
    private var triesMade = 0
    /// Bumped for each try: a connection or timer of an abandoned try is recognised and dropped.
    private var tryGeneration = 0
    /// The request's head (and end, once read) for another try; nil once a body part went upstream.
    private var replay: [HTTPClientRequestPart]?
    private var bodySent = false
    /// A retryable status is being read and dropped before the next try.
    private var discardingResponse = false
    private var requestTimer: Scheduled<Void>?
    private var tryTimer: Scheduled<Void>?
    /// The request asked for a protocol upgrade: NIO's decoder reads nothing after it, so the connection ends
    /// with this request unless it becomes a tunnel.
    private var upgradeRequested = false
    /// The upgrade passed on (a WebSocket handshake).
    private var websocket = false
    /// This handler serves one HTTP/2 stream (``HTTP2FramePayloadToHTTP1ServerCodec`` before it): one request,
    /// no connection-level keep-alive or upgrades.
    let http2: Bool
    /// A Trailers-Only gRPC answer's status headers, sent as the downstream stream's trailers.
    private var heldTrailers: HTTPHeaders?

    init(
        policy: any ProxyPolicy, pool: UpstreamPool, connection: DownstreamConnection, localSPIFFEID: String,
        direction: MeshAccessRecord.Direction, http2: Bool = false
    ) {
        self.http2 = http2
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
            if buffer.readableBytes > 0, case .forwarding = state { bodySent = true; replay = nil }
            if var r = record, r.captureRequestBodyBytes > r.capturedRequestBody.count {
                // The policy wants a bounded prefix of the body (GraphQL operation names); never more.
                let room = r.captureRequestBodyBytes - r.capturedRequestBody.count
                r.capturedRequestBody += buffer.readableBytesView.prefix(room)
                record = r
            }
            send(.body(.byteBuffer(buffer)))
        case .end(let trailers):
            requestComplete = true
            replay?.append(.end(trailers))
            send(.end(trailers))
            if case .refused = state {
                if record == nil { finishRefusalWithoutLog() } else { finishRefusal() }
            }
        }
    }

    private func begin(context: ChannelHandlerContext, _ head: inout HTTPRequestHead) {
        requestComplete = false
        responseStarted = false
        responseComplete = false
        upstreamReusable = true
        requestKeepAlive = head.isKeepAlive
        plan = nil
        triesMade = 0
        replay = nil
        bodySent = false
        discardingResponse = false
        let connectionTokens = head.headers[canonicalForm: "connection"].map { $0.lowercased() }
        let upgrades = head.headers["upgrade"]
        upgradeRequested = connectionTokens.contains("upgrade") && !upgrades.isEmpty
        websocket = upgradeRequested && upgrades.count == 1 && upgrades[0].lowercased() == "websocket"
            && head.method == .GET && head.version == .http1_1
        if upgradeRequested { requestKeepAlive = false }
        heldTrailers = nil
        var r = MeshAccessRecord(
            direction: direction, startNanos: MeshAccessRecord.nowNanos(), method: head.method.rawValue, path: head.uri,
            localSPIFFEID: localSPIFFEID)
        r.httpVersion = head.version.major == 2 ? "2" : "\(head.version.major).\(head.version.minor)"
        if http2 {
            // A stream is one request: the connection stays; there is no HTTP/1.1 upgrade on HTTP/2 (the
            // codec turned `:authority` into Host); upstreams get an HTTP/1.1 request (or an HTTP/2 stream, gRPC).
            requestKeepAlive = true
            upgradeRequested = false
            websocket = false
            head.version = .http1_1
        }
        // gRPC needs `te: trailers` (RFC 9113 allows only that value); kept for HTTP/2 upstreams.
        let acceptsTrailers = head.headers["te"].contains { $0.lowercased().contains("trailers") }
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
        if websocket {
            // The one upgrade passed on: the policy sees it (the gateway allows it per route).
            head.headers.add(name: "connection", value: "upgrade")
            head.headers.add(name: "upgrade", value: "websocket")
        }
        // `Expect: 100-continue` is answered here, as Envoy does, and not passed on.
        let expectsContinue = head.headers.first(name: "expect")?.lowercased() == "100-continue"
        head.headers.remove(name: "expect")
        if http2 && head.method == .CONNECT {
            // Extended CONNECT (RFC 8441, WebSocket over HTTP/2) is not offered (no SETTINGS_ENABLE_CONNECT_PROTOCOL),
            // and plain CONNECT is no proxy's business here: refused and logged, the connection stays.
            r.requestID = r.requestID ?? Self.requestID(using: &connection.random)
            r.status = 501
            r.refusal = "CONNECT over HTTP/2 (RFC 8441 WebSocket) is not supported"
            r.responseFlags = "-"
            r.responseCodeDetails = "gateway_refused"
            record = r
            state = .refused
            let body = "{\"message\":\"CONNECT over HTTP/2 is not supported\"}"
            respond(status: .notImplemented, body: body, extra: [("content-type", "application/json")])
            if var logged = record {
                logged.durationNanos = MeshAccessRecord.nowNanos() - logged.startNanos
                policy.rejected(logged, connection)
            }
            record = nil
            return
        }
        // The HTTP/2 codec frames a body without Content-Length as chunked for HTTP/1.1 upstreams; the caller sent
        // no such header, so the policy (and the log) does not see it.
        let codecFraming = http2 ? head.headers["transfer-encoding"] : []
        if http2 { head.headers.remove(name: "transfer-encoding") }
        let route = policy.route(&head, &r, connection)
        for value in codecFraming { head.headers.add(name: "transfer-encoding", value: value) }
        record = r
        if acceptsTrailers || http2 {
            if case .forwardPlan(let p) = route, p.targets.contains(where: { $0.http2 }) {
                head.headers.replaceOrAdd(name: "te", value: "trailers")
            }
        }
        if expectsContinue {
            switch route {
            case .forward, .forwardPlan:
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
            default: break
            }
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
        case .reject(let status, let body):
            state = .idle
            requestKeepAlive = false
            respond(status: status, body: body, extra: [("content-type", "application/json")])
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            log()
        case .forward(let target):
            startForwarding(ForwardPlan(targets: [target]), head: head, context: context)
        case .forwardPlan(let plan):
            startForwarding(plan, head: head, context: context)
        }
    }

    private func startForwarding(_ plan: ForwardPlan, head: HTTPRequestHead, context: ChannelHandlerContext) {
        self.plan = plan
        if plan.retries > 0 && plan.idempotent { replay = [.head(head)] }
        if let timeout = plan.requestTimeout {
            requestTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in timedOut(whole: true) }
        }
        state = .connecting([.head(head)])
        startTry(context: context)
    }

    /// Starts the next try: a connection to its target; the held request parts go out once it is there.
    private func startTry(context: ChannelHandlerContext) {
        guard let plan else { return }
        let target = plan.target(forTry: triesMade)
        triesMade += 1
        tryGeneration += 1
        let generation = tryGeneration
        self.target = target
        let started = MeshAccessRecord.nowNanos()
        record?.tries.append(UpstreamTry(host: target.host, port: target.port, startNanos: started))
        tryTimer?.cancel()
        if let timeout = plan.tryTimeout {
            tryTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
                if generation == tryGeneration { timedOut(whole: false) }
            }
        }
        let loop = context.eventLoop
        pool.acquire(target, on: loop).hop(to: loop).assumeIsolated().whenComplete { [self] result in
            guard generation == tryGeneration else {
                // An abandoned try (timed out while connecting): its connection is not used.
                if case .success(let upstream) = result { upstream.channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let upstream):
                updateTry { $0.connectNanos = MeshAccessRecord.nowNanos() - started }
                attach(upstream)
            case .failure(let error): upstreamFailed(error)
            }
        }
    }

    private func updateTry(_ change: (inout UpstreamTry) -> Void) {
        guard var r = record, !r.tries.isEmpty else { return }
        change(&r.tries[r.tries.count - 1])
        record = r
    }

    /// Whether the failed current try may be followed by another.
    private var mayRetry: Bool {
        guard let plan else { return false }
        return plan.mayRetry(triesMade: triesMade, bodySent: bodySent)
    }

    /// Drops the current upstream connection (closed, not pooled) and starts the next try with the held request.
    private func retry(context: ChannelHandlerContext) {
        if let upstream {
            upstream.owner = nil
            upstream.channel.close(promise: nil)
        }
        upstream = nil
        discardingResponse = false
        if case .connecting = state {} else { state = .connecting(replay ?? []) }
        startTry(context: context)
    }

    private func cancelTimers() {
        requestTimer?.cancel()
        requestTimer = nil
        tryTimer?.cancel()
        tryTimer = nil
    }

    /// A `request` (whole) or `backendRequest` (try) timeout fired.
    private func timedOut(whole: Bool) {
        guard let context else { return }
        switch state {
        case .connecting, .forwarding: break
        case .idle, .refused, .upgrading, .tunnel: return
        }
        updateTry { t in
            if t.status == nil { t.status = 504; t.failure = "timeout" }
        }
        if responseStarted {
            // Part of the response is out: the caller can only learn of the timeout by the connection closing.
            if let upstream {
                upstream.owner = nil
                upstream.channel.close(promise: nil)
            }
            upstream = nil
            cancelTimers()
            record?.responseFlags = "UT"
            record?.refusal = whole ? "request timeout" : "backendRequest timeout"
            state = .idle
            log()
            context.close(promise: nil)
            return
        }
        if !whole && mayRetry {
            retry(context: context)
            return
        }
        if let upstream {
            upstream.owner = nil
            upstream.channel.close(promise: nil)
        }
        upstream = nil
        discardingResponse = false
        tryGeneration += 1
        cancelTimers()
        state = .refused
        record?.responseFlags = "UT"
        record?.responseCodeDetails = whole ? "request_timeout" : "upstream_per_try_timeout"
        record?.refusal = whole ? "request timeout" : "backendRequest timeout"
        localReply(status: .gatewayTimeout, message: "The upstream server is timing out", envoyBody: "upstream request timeout")
        if requestComplete { finishRefusal() }
    }

    /// A reply made here about the upstream: the plan's (the gateway's JSON) or Envoy's plain text.
    private func localReply(status: HTTPResponseStatus, message: String, envoyBody: String) {
        if let reply = plan?.localReply {
            let (body, headers) = reply(Int(status.code), message)
            respond(status: status, body: body, extra: headers)
        } else {
            respond(status: status, body: envoyBody)
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
        case .idle, .refused, .upgrading, .tunnel:
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
        if let address = upstream.remoteAddress.flatMap(HostPort.parse) {
            updateTry { $0.host = address.host; $0.port = address.port }
        }
        record?.upstreamLocal = upstream.localAddress
        if direction == .outbound {
            record?.peer = upstream.peer
            record?.tlsVersion = upstream.tlsVersion
        }
        state = .forwarding
        for part in parts {
            if case .body(.byteBuffer(let b)) = part, b.readableBytes > 0 { bodySent = true; replay = nil }
            upstream.channel.write(part, promise: nil)
        }
        // The request's end (or the end of this read burst) flushes: usually one write for the whole request.
        if case .end = parts.last {
            upstream.channel.flush()
        } else {
            requestNeedsFlush = true
            if !inReadBurst { upstream.channel.flush() }
        }
    }

    private func upstreamFailed(_ error: any Error) {
        guard case .connecting = state, let context else { return }
        updateTry { $0.status = 502; $0.failure = "connect" }
        if mayRetry {
            retry(context: context)
            return
        }
        cancelTimers()
        state = .refused
        let failure = error as? UpstreamFailure
        record?.responseFlags = failure?.flags ?? "UF"
        record?.refusal = failure?.details ?? "\(error)"
        if direction == .outbound, let peer = failure?.peer { record?.peer = peer }
        record?.responseCodeDetails = "upstream_reset_before_response_started{connection_failure}"
        localReply(
            status: .serviceUnavailable, message: "The upstream server is unavailable",
            envoyBody: "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
        if requestComplete { finishRefusal() }
    }

    /// Answers a refused request itself (the body is short text, as Envoy's local replies are).
    private func respond(status: HTTPResponseStatus, body: String, extra: [(String, String)] = []) {
        guard let context else { return }
        record?.status = Int(status.code)
        var headers = HTTPHeaders(extra)
        if !headers.contains(name: "content-type") { headers.add(name: "content-type", value: "text/plain") }
        headers.add(name: "content-length", value: String(body.utf8.count))
        if !requestKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        record?.bytesSent += body.utf8.count
        responseStarted = true
    }

    /// Ends a refusal already logged (HTTP/2 CONNECT).
    private func finishRefusalWithoutLog() {
        guard let context, case .refused = state else { return }
        state = .idle
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
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
        cancelTimers()
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
            updateTry { $0.status = Int(head.status.code) }
            if head.status == .switchingProtocols {
                guard websocket, requestComplete, case .forwarding = state else {
                    // A 101 nobody asked for: the upstream's connection cannot be trusted as HTTP any more.
                    record?.responseFlags = "UPE"
                    record?.refusal = "upstream switched protocols without a WebSocket upgrade request"
                    upstream?.channel.close(promise: nil)
                    return
                }
                state = .upgrading
                responseStarted = true
                record?.status = 101
                for name in ["keep-alive", "proxy-connection"] { head.headers.remove(name: name) }
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: head.status, headers: head.headers))), promise: nil)
                return
            }
            if ForwardPlan.retryableStatuses.contains(head.status.code), mayRetry {
                // Tried again elsewhere: this answer is read to its end and dropped.
                updateTry { $0.failure = "status" }
                discardingResponse = true
                if !head.isKeepAlive { upstreamReusable = false }
                return
            }
            responseStarted = true
            if let status = head.headers.first(name: "grpc-status") {
                // Trailers-Only (RFC gRPC over HTTP/2): the status is in the only HEADERS frame. An HTTP/2 caller
                // gets it as trailers after the head, which every gRPC client reads.
                record?.grpcStatus = status
                record?.grpcMessage = head.headers.first(name: "grpc-message")
                if http2 {
                    var held = HTTPHeaders()
                    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
                        for value in head.headers[name] { held.add(name: name, value: value) }
                        head.headers.remove(name: name)
                    }
                    heldTrailers = held
                }
            }
            for (name, value) in plan?.responseHeaders ?? [] { head.headers.replaceOrAdd(name: name, value: value) }
            record?.status = Int(head.status.code)
            if !head.isKeepAlive { upstreamReusable = false }
            for name in head.headers[canonicalForm: "connection"] { head.headers.remove(name: String(name)) }
            for name in ["connection", "keep-alive", "proxy-connection"] { head.headers.remove(name: name) }
            if !requestKeepAlive { head.headers.add(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: head.status, headers: head.headers))), promise: nil)
        case .body(let buffer):
            if discardingResponse { return }
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
        case .end(var trailers):
            if let status = trailers?.first(name: "grpc-status") {
                record?.grpcStatus = status
                record?.grpcMessage = trailers?.first(name: "grpc-message")
            }
            if let held = heldTrailers {
                heldTrailers = nil
                if trailers == nil { trailers = held } else { trailers!.add(contentsOf: held) }
            }
            if case .upgrading = state {
                startTunnel(context: context)
                return
            }
            if discardingResponse {
                discardingResponse = false
                if let upstream, let target {
                    upstream.owner = nil
                    if upstreamReusable && requestComplete { pool.release(upstream, target) } else { upstream.channel.close(promise: nil) }
                }
                upstream = nil
                upstreamReusable = true
                retry(context: context)
                return
            }
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
                if upstreamReusable && requestComplete && !upgradeRequested { pool.release(upstream, target) } else { upstream.channel.close(promise: nil) }
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

    /// The upgrade is complete: log it (status 101, as Kong does) and make both connections one byte tunnel.
    private func startTunnel(context: ChannelHandlerContext) {
        guard let upstream else { return }
        responseComplete = true
        upstream.owner = nil
        self.upstream = nil
        state = .tunnel
        readingPausedForUpstream = false
        upstreamReadingPaused = false
        pendingFlush = false
        context.flush()
        log()
        let downstream = context.channel
        do {
            try ProxyTunnel.splice(downstream: downstream, upstream: upstream.channel)
        } catch {
            upstream.channel.close(promise: nil)
            downstream.close(promise: nil)
        }
    }

    /// A head NIO's parser refused (see ``EdgeProtocolErrorHandler``): logged through the policy.
    func malformed(method: String, target: String, status: Int, reason: String, bytesSent: Int) {
        if record != nil {
            // A request was in flight: it ends with the connection.
            record?.responseFlags = "DPE"
            log()
        }
        var r = MeshAccessRecord(
            direction: direction, startNanos: MeshAccessRecord.nowNanos(), method: method, path: target, localSPIFFEID: localSPIFFEID)
        r.requestID = Self.requestID(using: &connection.random)
        r.downstreamRemote = connection.remoteAddress
        r.downstreamLocal = connection.localAddress
        if direction == .inbound {
            r.peer = connection.peer
            r.tlsVersion = connection.tlsVersion
        }
        r.status = status
        r.refusal = reason
        r.responseFlags = "DPE"
        r.responseCodeDetails = "http1.codec_error"
        r.bytesSent = bytesSent
        policy.rejected(r, connection)
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
        guard pendingFlush, !discardingResponse, let context else { return }
        pendingFlush = false
        context.flush()
    }

    func upstreamClosed() {
        guard let context, case .forwarding = state, !responseComplete else { return }
        upstream = nil
        if !responseStarted {
            updateTry { t in
                if t.status == nil { t.status = 502; t.failure = "reset" }
            }
            if mayRetry {
                retry(context: context)
                return
            }
        }
        discardingResponse = false
        cancelTimers()
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
            localReply(
                status: .serviceUnavailable, message: "The upstream server closed the connection",
                envoyBody: "upstream connect error or disconnect/reset before headers. reset reason: connection termination")
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
        cancelTimers()
        tryGeneration += 1
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
