import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import TrailCore
import TrailMesh

/// A sample service of the demo, behaving like an instrumented application behind its sidecar: it answers on
/// loopback, continues the caller's W3C trace context, makes the calls ``DemoTopology`` gives it through its
/// sidecar's outbound listener (a client span each, whose id is the parent its callee sees), varies its latency,
/// sometimes fails, and exports OTLP server and client spans to `trail serve`.
///
/// `POST /_demo/call` with the run's control token makes it start a new trace with one call of its own: how the
/// demo plays a compromised or scheduled workload. It prints `ready PORT`, then reads `outbound URL` from stdin.
public final class SampleService: Sendable {
    public struct Settings: Sendable {
        public var name: String
        public var ingestURL: String?
        public var tokenFile: String?
        public var trustBundle: String?
        public var bufferDirectory: String
        public var controlToken: String
        public var failureRate = 0.01
        public var latencyMilliseconds = 2...25

        public init(name: String, ingestURL: String?, tokenFile: String?, trustBundle: String?, bufferDirectory: String, controlToken: String) {
            self.name = name
            self.ingestURL = ingestURL
            self.tokenFile = tokenFile
            self.trustBundle = trustBundle
            self.bufferDirectory = bufferDirectory
            self.controlToken = controlToken
        }
    }

    let settings: Settings
    let group: any EventLoopGroup
    let client: HTTPSClient
    let spans: Outbox?
    private let outbound = NIOLockedValueBox<HTTPSClient.Endpoint?>(nil)

    public init(settings: Settings, group: any EventLoopGroup) throws {
        self.settings = settings
        self.group = group
        client = HTTPSClient(group: group, timeout: .seconds(10)) { nil }
        if let url = settings.ingestURL {
            let delivery = try TrailServeDelivery(url: url, tokenFile: settings.tokenFile, rootsPath: settings.trustBundle, identity: nil, group: group)
            let service = settings.name
            spans = try delivery.outbox(
                directory: settings.bufferDirectory, path: "/v1/traces", contentType: "application/json",
                maxBytes: 16 << 20, flushInterval: .milliseconds(200), log: { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            ) { lines in SpanJSON.request(spans: lines, service: service) }
        } else {
            spans = nil
        }
    }

    /// Where calls to other services go: the sidecar's outbound listener.
    public func setOutbound(_ url: String) throws {
        let endpoint = try HTTPSClient.Endpoint(url: url)
        outbound.withLockedValue { $0 = endpoint }
    }

    /// Listens on 127.0.0.1 (port 0: a free one) and returns the port.
    public func start(port: Int = 0) async throws -> Int {
        spans?.start()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(SampleHTTPHandler(service: self))
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
        return channel.localAddress?.port ?? 0
    }

    public func stop() async { await spans?.stop() }

    struct Answer: Sendable {
        var status: Int
        var body: String
    }

    /// Serves one request.
    func handle(_ head: HTTPRequestHead) async -> Answer {
        let path = String(head.uri.prefix { $0 != "?" })
        if path == "/_demo/call" { return await control(head) }
        let start = Self.nowNanos()
        let incoming = head.headers.first(name: "traceparent").flatMap(W3CTraceParent.init)
        let traceID = incoming?.traceID ?? Self.randomHex(16)
        let serverSpan = Self.randomHex(8)
        let requestID = head.headers.first(name: "x-request-id")
        try? await Task.sleep(for: .milliseconds(Int.random(in: settings.latencyMilliseconds)))
        var status = 200
        for call in DemoTopology.calls(service: settings.name, method: head.method.rawValue, path: path) {
            let answer = await self.call(call, traceID: traceID, parent: serverSpan, requestID: requestID)
            if answer >= 500 || answer == 0 { status = 502 }
            if answer == 403 || answer == 401 { status = answer }
            if status != 200 { break }
        }
        if status == 200 && Double.random(in: 0..<1) < settings.failureRate { status = 500 }
        exportSpan(
            traceID: traceID, spanID: serverSpan, parent: incoming?.parentID, kind: 2, name: "\(head.method.rawValue) \(path)",
            start: start, attributes: [
                ("http.request.method", head.method.rawValue), ("url.path", path),
                ("http.request.header.x-request-id", requestID), ("user_agent.original", head.headers.first(name: "user-agent")),
            ], status: status)
        let body = JSONValue.object([("service", .string(settings.name)), ("path", .string(path)), ("status", .int(Int64(status)))])
        return Answer(status: status, body: body.serialized())
    }

    /// `POST /_demo/call`: a call of this workload's own, in a new trace (the demo passes the trace id).
    func control(_ head: HTTPRequestHead) async -> Answer {
        guard head.method == .POST, let token = head.headers.first(name: "x-demo-control"),
            Self.constantTimeEqual(token, settings.controlToken),
            let service = head.headers.first(name: "x-demo-service"), let method = head.headers.first(name: "x-demo-method"),
            let path = head.headers.first(name: "x-demo-path")
        else { return Answer(status: 403, body: "{\"message\":\"not allowed\"}") }
        let traceID = head.headers.first(name: "x-demo-trace-id").flatMap { W3CTraceParent(traceID: $0, parentID: "0000000000000001") }?.traceID
            ?? Self.randomHex(16)
        let status = await call(DemoTopology.Call(service: service, method: method, path: path), traceID: traceID, parent: nil, requestID: nil)
        return Answer(status: status, body: "{\"status\":\(status)}")
    }

    /// One call through the sidecar as a client span; returns the status (0 when it failed).
    func call(_ call: DemoTopology.Call, traceID: String, parent: String?, requestID: String?) async -> Int {
        let spanID = Self.randomHex(8)
        let start = Self.nowNanos()
        var status = 0
        if let endpoint = outbound.withLockedValue({ $0 }) {
            var headers = [("host", call.service), ("traceparent", "00-\(traceID)-\(spanID)-01"), ("user-agent", "\(settings.name)/1.0")]
            if let requestID { headers.append(("x-request-id", requestID)) }
            let method = HTTPMethod(rawValue: call.method)
            let body: [UInt8] = method == .POST ? Array("{\"from\":\"\(settings.name)\"}".utf8) : []
            status = (try? await client.request(method, endpoint, path: call.path, headers: headers, body: body))?.status ?? 0
        }
        exportSpan(
            traceID: traceID, spanID: spanID, parent: parent, kind: 3, name: "\(call.method) \(call.service)", start: start,
            attributes: [
                ("http.request.method", call.method), ("url.path", call.path), ("server.address", call.service),
                ("peer.service", call.service), ("url.full", "http://\(call.service)\(call.path)"),
            ], status: status)
        return status
    }

    private func exportSpan(
        traceID: String, spanID: String, parent: String?, kind: Int, name: String, start: Int64,
        attributes: [(String, String?)], status: Int
    ) {
        guard let spans else { return }
        spans.append(SpanJSON.span(
            traceID: traceID, spanID: spanID, parentSpanID: parent, name: name, kind: kind, start: start, end: Self.nowNanos(),
            attributes: attributes, status: status))
    }

    static func nowNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    static func randomHex(_ bytes: Int) -> String {
        var rng = SystemRandomNumberGenerator()
        var out: [UInt8] = (0..<bytes).map { _ in UInt8.random(in: 0...255, using: &rng) }
        if out.allSatisfy({ $0 == 0 }) { out[out.count - 1] = 1 }
        return Hex.encode(out)
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}

/// OTLP/JSON spans as an OpenTelemetry SDK's HTTP exporter writes them.
enum SpanJSON {
    static func span(
        traceID: String, spanID: String, parentSpanID: String?, name: String, kind: Int, start: Int64, end: Int64,
        attributes: [(String, String?)], status: Int
    ) -> String {
        var attrs: [JSONValue] = attributes.compactMap { key, value in
            value.map { .object([("key", .string(key)), ("value", .object([("stringValue", .string($0))]))]) }
        }
        if status > 0 {
            attrs.append(.object([("key", .string("http.response.status_code")), ("value", .object([("intValue", .string(String(status)))]))]))
        }
        var fields: [(String, JSONValue)] = [("traceId", .string(traceID)), ("spanId", .string(spanID))]
        if let parentSpanID { fields.append(("parentSpanId", .string(parentSpanID))) }
        fields += [
            ("name", .string(name)), ("kind", .int(Int64(kind))),
            ("startTimeUnixNano", .string(String(start))), ("endTimeUnixNano", .string(String(end))),
            ("attributes", .array(attrs)),
            ("status", .object([("code", .int(status >= 500 || status == 0 ? 2 : 0))])),
        ]
        return JSONValue.object(fields).serialized()
    }

    static func request(spans: [String], service: String) -> [UInt8] {
        let resource = "{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":\(JSONValue.string(service).serialized())}},"
            + "{\"key\":\"telemetry.sdk.name\",\"value\":{\"stringValue\":\"trail-demo\"}}]}"
        return Array("{\"resourceSpans\":[{\"resource\":\(resource),\"scopeSpans\":[{\"scope\":{\"name\":\"trail-demo\"},\"spans\":[\(spans.joined(separator: ","))]}]}]}".utf8)
    }
}

/// Reads requests and answers them through ``SampleService/handle(_:)``, keep-alive included.
final class SampleHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let service: SampleService
    private var head: HTTPRequestHead?

    init(service: SampleService) { self.service = service }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let loop = context.eventLoop
            let bound = NIOLoopBound(context, eventLoop: loop)
            let service = self.service
            Task {
                let answer = await service.handle(head)
                loop.execute {
                    let context = bound.value
                    var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", String(answer.body.utf8.count))])
                    headers.add(name: "connection", value: head.isKeepAlive ? "keep-alive" : "close")
                    let status = HTTPResponseStatus(statusCode: answer.status)
                    context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
                    context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer.body)))), promise: nil)
                    let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
                    if !head.isKeepAlive { done.whenComplete { _ in context.close(promise: nil) } }
                }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
