import Foundation
import NIOCore
import NIOHTTP1
import TrailCore
import TrailMesh

/// What the gateway knew of one request when it routed it, carried to ``GatewayPolicy/finished(_:)`` in
/// ``MeshAccessRecord/policyContext`` for the Kong log record.
struct GatewayRequestFacts: Sendable {
    var method: String
    var target: String
    var host: String
    var requestHeaders: [(name: String, value: String)]
    var requestID: String
    var traceID: String
    var routeName: String?
    var caller: AuthenticatedCaller?
    var credentialKind: CredentialKind?
    var refusalReason: String?
    var backend: BackendRef?
    /// The backend of each try, in order (the first is `backend`); the last is reused for further tries.
    var backends: [BackendRef] = []
    var timeouts = RouteTimeouts()
    /// The caller's span (the gateway span's parent), nil when the trace starts here.
    var parentSpanID: String?
    var upstreamURI: String?
    var edgeMillis: Int
    /// The partner's client certificate (edge mTLS) and its judgement at the time of the request.
    var clientCertificate: KongLogRecord.ClientCertificate?
    /// A GraphQL route's operation as far as the request line shows it (GET), or how to read it from the
    /// captured body prefix (POST).
    var graphql: GraphQLOperation?
    var graphqlBody: GraphQLBody?
}

enum GraphQLBody: Sendable {
    case json
    case document
}

/// The gateway's ``ProxyPolicy``: builds the ``EdgeRequest``, asks the ``RequestEvaluator`` (route,
/// authentication, ACL, rate limit), answers refusals itself, and forwards the rest to the chosen backend
/// (plain HTTP, or mTLS with the gateway's SVID when the backendRef names a `spiffe_id`) with a request id and
/// trace context, without credentials or hop-by-hop headers. Every request becomes a Kong log record.
package final class GatewayPolicy: ProxyPolicy {
    let configuration: GatewayConfiguration
    private let evaluator: Locked<RequestEvaluator>
    let sink: KongLogSink
    let spans: GatewaySpanSink?
    let scheme: String
    let listenPort: Int
    /// Headers a caller must not set: the gateway's own statements about the caller.
    static let internalHeaders: Set<String> = [
        "x-consumer-id", "x-consumer-custom-id", "x-consumer-username", "x-credential-identifier", "x-anonymous-consumer",
        "x-consumer-groups", "x-authenticated-groups", "x-forwarded-client-cert",
    ]

    /// `key_auth.key_names` and `apikey`: headers and query parameters that carry API keys.
    let keyNames: Set<String>
    /// Request headers removed before forwarding: credentials and the caller's claims about itself.
    let strippedHeaders: [String]

    package init(configuration: GatewayConfiguration, sink: KongLogSink, spans: GatewaySpanSink? = nil, scheme: String, listenPort: Int) {
        self.configuration = configuration
        keyNames = Set(configuration.keyAuth.keyNames + ["apikey"])
        strippedHeaders = ["authorization", "proxy-authorization"] + Array(keyNames) + Array(Self.internalHeaders)
        self.evaluator = Locked(RequestEvaluator(configuration: configuration))
        self.sink = sink
        self.spans = spans
        self.scheme = scheme
        self.listenPort = listenPort
    }

    package func route(_ head: inout HTTPRequestHead, _ record: inout MeshAccessRecord, _ connection: DownstreamConnection) -> ProxyRoute {
        let started = MeshAccessRecord.nowNanos()
        let headers = head.headers.map { (name: $0.name.lowercased(), value: $0.value) }
        // Routes, authentication and the upstream see the normalised path (dot segments resolved, slashes merged,
        // unreserved escapes decoded), as the sidecar's policies do: `/public/../admin` is `/admin`, never a
        // request on the `/public` route. A target that is not origin-form is refused below (malformedHead).
        let (path, query) = RouteRequest.split(target: PathNormalizer.normalize(head.uri) ?? head.uri)
        let authority = head.headers.first(name: "host") ?? ""
        let host = Self.hostName(authority)
        var peer: PeerCertificateIdentity?
        var clientCertificate: KongLogRecord.ClientCertificate?
        if let p = connection.peer {
            // The chain was verified in the handshake; the leaf's window is judged per request.
            let validity = ClientCertificateValidity(notBefore: p.notBefore, notAfter: p.notAfter, at: Timestamp(nanoseconds: started))
            peer = PeerCertificateIdentity(spiffeIDs: p.spiffeID.map { [$0] } ?? [], subject: p.subject.isEmpty ? nil : p.subject, validity: validity)
            clientCertificate = KongLogRecord.ClientCertificate(p, validity: validity, tlsVersion: connection.tlsVersion)
        }
        let request = EdgeRequest(
            route: RouteRequest(host: host, path: path, method: head.method.rawValue, headers: headers, query: query),
            auth: AuthRequest(headers: headers, query: query, peerCertificate: peer))
        // A head whose framing or Host cannot be trusted is refused before any decision, and never forwarded.
        if let (status, reason) = Self.malformedHead(head) {
            let requestID = head.headers.first(name: "x-request-id") ?? record.requestID ?? ""
            var facts = GatewayRequestFacts(
                method: head.method.rawValue, target: head.uri, host: authority.isEmpty ? "-" : authority, requestHeaders: headers,
                requestID: requestID, traceID: "", edgeMillis: 0, clientCertificate: clientCertificate)
            facts.refusalReason = reason
            facts.edgeMillis = Int((MeshAccessRecord.nowNanos() - started) / 1_000_000)
            record.policyContext = facts
            record.refusal = reason
            record.responseFlags = "-"
            record.responseCodeDetails = "gateway_refused"
            let body = JSONValue.object([("message", .string(reason)), ("request_id", .string(requestID))]).serialized()
            return .reject(status: HTTPResponseStatus(statusCode: status), body: body)
        }
        let choice = Double.random(in: 0..<1, using: &connection.random)
        var decision = evaluator.withLock { $0.evaluate(request, now: Double(started) / 1e9, random: choice) }
        if case .forward(let forward) = decision, head.headers.contains(name: "upgrade"), !forward.selection.route.websocket {
            decision = .respond(EdgeResponse(
                status: 403, reason: "websocket upgrade is not enabled on this route", headers: [],
                routeName: forward.selection.route.name, caller: forward.caller, credentialKind: forward.caller.kind))
        }

        let trace = TraceContext.resolve(headers: headers, policy: configuration.server.incomingTrace, random: &connection.random)
        let requestID = head.headers.first(name: "x-request-id") ?? record.requestID ?? ""
        var facts = GatewayRequestFacts(
            method: head.method.rawValue, target: head.uri, host: authority.isEmpty ? host : authority, requestHeaders: headers,
            requestID: requestID, traceID: trace.traceID, parentSpanID: trace.parentSpanID, edgeMillis: 0,
            clientCertificate: clientCertificate)
        defer {
            facts.edgeMillis = Int((MeshAccessRecord.nowNanos() - started) / 1_000_000)
            record.policyContext = facts
        }

        switch decision {
        case .respond(let response):
            facts.routeName = response.routeName
            facts.caller = response.caller
            facts.credentialKind = response.credentialKind
            facts.refusalReason = response.reason
            record.refusal = response.reason
            record.responseFlags = "-"
            record.responseCodeDetails = "gateway_refused"
            let (body, replyHeaders) = Self.errorReply(message: response.reason, requestID: requestID)
            var extra = response.headers.map { ($0.name, $0.value) }
            extra += replyHeaders
            return .refuseWithHeaders(status: HTTPResponseStatus(statusCode: response.status), body: body, headers: extra)
        case .forward(let forward):
            let backend = forward.selection.backend
            facts.routeName = forward.selection.route.name
            facts.caller = forward.caller
            facts.credentialKind = forward.caller.kind
            facts.backend = backend
            let rule = forward.selection.rule
            facts.backends = Self.tryOrder(rule.backendRefs, first: backend, retries: rule.retryAttempts)
            facts.timeouts = rule.timeouts
            if forward.selection.route.graphql {
                // For the record only: the operation is read from what the request shows, never trusted.
                if head.method == .GET {
                    let values = Dictionary(query.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
                    facts.graphql = GraphQLOperation.fromParameters(query: values["query"], operationName: values["operationName"])
                } else if head.method == .POST {
                    let type = head.headers.first(name: "content-type")?.lowercased() ?? ""
                    facts.graphqlBody = type.hasPrefix("application/graphql") && !type.contains("json") ? .document : .json
                    record.captureRequestBodyBytes = GraphQLOperation.maxBodyBytes
                }
            }
            // Credentials and the caller's claims about itself stay at the edge.
            for name in strippedHeaders { head.headers.remove(name: name) }
            var uri = path
            let keyNames = self.keyNames
            let kept = Self.queryPairs(head.uri).filter { pair in
                let name = String(pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0])
                return !keyNames.contains((name.removingPercentEncoding ?? name).lowercased())
            }
            if !kept.isEmpty { uri += "?" + kept.joined(separator: "&") }
            head.uri = uri
            facts.upstreamURI = uri
            // Trace context: the gateway's span is this record's span; B3 from outside is replaced by W3C.
            for name in ["traceparent", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"] {
                head.headers.remove(name: name)
            }
            if trace.parentSpanID == nil { head.headers.remove(name: "tracestate") }
            head.headers.add(name: "traceparent", value: trace.traceparent(spanID: record.spanID))
            head.headers.add(name: "x-consumer-username", value: forward.caller.consumer)
            if let consumer = configuration.consumer(named: forward.caller.consumer) {
                head.headers.add(name: "x-consumer-id", value: consumer.id)
                if let custom = consumer.customID { head.headers.add(name: "x-consumer-custom-id", value: custom) }
            }
            if forward.caller.kind == .anonymous { head.headers.add(name: "x-anonymous-consumer", value: "true") }
            let clientIP = Self.ip(connection.remoteAddress)
            if let previous = head.headers.first(name: "x-forwarded-for") {
                head.headers.replaceOrAdd(name: "x-forwarded-for", value: "\(previous), \(clientIP)")
            } else {
                head.headers.add(name: "x-forwarded-for", value: clientIP)
            }
            head.headers.replaceOrAdd(name: "x-forwarded-proto", value: scheme)
            if !authority.isEmpty { head.headers.replaceOrAdd(name: "x-forwarded-host", value: authority) }
            record.upstreamCluster = backend.name
            let plan = ForwardPlan(
                targets: facts.backends.map { UpstreamTarget(host: $0.host, port: $0.port, expectedSPIFFEID: $0.spiffeID, http2: $0.grpc) },
                retries: rule.retryAttempts, idempotent: ForwardPlan.idempotentMethods.contains(head.method.rawValue),
                requestTimeout: rule.timeouts.request.map(Self.timeAmount), tryTimeout: rule.timeouts.backendRequest.map(Self.timeAmount),
                responseHeaders: forward.headers.map { ($0.name, $0.value) } + [("x-kong-request-id", requestID)],
                localReply: { _, message in Self.errorReply(message: message, requestID: requestID) })
            return .forwardPlan(plan)
        }
    }

    /// The gateway's JSON error body `{"message": …, "request_id": …}` and its headers.
    static func errorReply(message: String, requestID: String) -> (body: String, headers: [(String, String)]) {
        let body = JSONValue.object([("message", .string(message)), ("request_id", .string(requestID))]).serialized()
        return (body, [("content-type", "application/json; charset=utf-8"), ("x-request-id", requestID), ("x-kong-request-id", requestID)])
    }

    static func timeAmount(_ seconds: Double) -> TimeAmount { .nanoseconds(Int64((seconds * 1e9).rounded())) }

    /// The backends of a request's tries: the chosen one first, then for each retry the next backendRef of the rule
    /// with a non-zero weight (in list order, wrapping around); with a single backend every try goes to it.
    package static func tryOrder(_ backends: [BackendRef], first: BackendRef, retries: Int) -> [BackendRef] {
        var order = [first]
        guard retries > 0 else { return order }
        let usable = backends.filter { $0.weight > 0 }
        guard usable.count > 1, let start = usable.firstIndex(of: first) else {
            return order + Array(repeating: first, count: retries)
        }
        for i in 1...retries { order.append(usable[(start + i) % usable.count]) }
        return order
    }

    /// The refusal reason for a timeout, with the configured duration.
    static func timeoutReason(_ reason: String, _ timeouts: RouteTimeouts, tries: Int) -> String {
        func text(_ s: Double?) -> String {
            guard let s else { return "" }
            return s < 1 || s != s.rounded() ? " \(Int((s * 1000).rounded()))ms" : " \(Int(s))s"
        }
        switch reason {
        case "request timeout": return "request timeout\(text(timeouts.request)) (\(tries) \(tries == 1 ? "try" : "tries"))"
        case "backendRequest timeout":
            return "backendRequest timeout\(text(timeouts.backendRequest)) (\(tries) \(tries == 1 ? "try" : "tries"))"
        default: return reason
        }
    }

    package func finished(_ record: MeshAccessRecord) {
        guard let facts = record.policyContext as? GatewayRequestFacts else { return }
        let durationMillis = Int(record.durationNanos / 1_000_000)
        var log = KongLogRecord(
            requestID: facts.requestID, traceID: facts.traceID, method: facts.method, host: Self.hostName(facts.host),
            port: record.downstreamLocal.flatMap(HostPort.parse)?.port ?? listenPort, target: facts.target, requestSize: record.bytesReceived, requestHeaders: facts.requestHeaders,
            status: record.status, responseSize: record.bytesSent, clientIP: Self.ip(record.downstreamRemote),
            startedAtMillis: record.startNanos / 1_000_000, requestLatencyMillis: durationMillis,
            gatewayLatencyMillis: facts.edgeMillis)
        log.scheme = scheme
        log.routeName = facts.routeName
        log.caller = facts.caller
        log.credentialKind = facts.credentialKind
        var refusal = facts.refusalReason ?? record.refusal
        if facts.refusalReason == nil, let r = refusal, record.responseFlags == "UT" {
            refusal = Self.timeoutReason(r, facts.timeouts, tries: record.tries.count)
        }
        log.refusalReason = refusal
        log.credentialNames = configuration.keyAuth.keyNames
        log.clientCertificate = facts.clientCertificate
        log.httpVersion = record.httpVersion
        // A gRPC call: to a grpc backend, answered with a grpc-status, or refused here before it got one.
        let grpcRequest = facts.requestHeaders.contains { $0.name == "content-type" && $0.value.lowercased().hasPrefix("application/grpc") }
        if facts.backend?.grpc == true || record.grpcStatus != nil || grpcRequest {
            log.grpc = GRPCCall(path: facts.target, status: record.grpcStatus, message: record.grpcMessage)
        }
        switch facts.graphqlBody {
        case .json?: log.graphql = GraphQLOperation.fromJSON(record.capturedRequestBody)
        case .document?:
            log.graphql = GraphQLOperation.fromDocument(String(decoding: record.capturedRequestBody, as: UTF8.self), operationName: nil)
        case nil: log.graphql = facts.graphql
        }
        if let caller = facts.caller, let consumer = configuration.consumer(named: caller.consumer) {
            log.consumerID = consumer.id
            log.consumerCustomID = consumer.customID
        }
        var answering = facts.backend
        if let first = facts.backend {
            var tries: [KongLogRecord.Try] = record.tries.map { t in
                let failed = t.failure != nil
                return KongLogRecord.Try(
                    ip: t.host, port: t.port, startedAtMillis: t.startNanos / 1_000_000,
                    latencyMillis: Int(t.connectNanos / 1_000_000),
                    state: failed ? (t.failure == "status" ? "next" : "failed") : nil, code: failed ? t.status : nil)
            }
            if tries.isEmpty {
                let address = record.upstreamHost.flatMap(HostPort.parse)
                tries.append(KongLogRecord.Try(
                    ip: address?.host ?? first.host, port: address?.port ?? first.port, startedAtMillis: record.startNanos / 1_000_000,
                    latencyMillis: 0))
            }
            if !record.tries.isEmpty, !facts.backends.isEmpty {
                answering = facts.backends[min(record.tries.count - 1, facts.backends.count - 1)]
            }
            let backend = answering ?? first
            log.upstream = KongLogRecord.Upstream(
                serviceName: backend.name, host: backend.host, port: backend.port,
                protocolName: (backend.grpc ? "grpc" : "http") + (backend.spiffeID == nil ? "" : "s"), uri: facts.upstreamURI ?? facts.target,
                tries: tries)
            let statuses = record.tries.compactMap { $0.status.map(String.init) }
            if !statuses.isEmpty { log.upstreamStatus = statuses.joined(separator: ", ") }
            if record.refusal == nil { log.proxyLatencyMillis = max(0, durationMillis - facts.edgeMillis) }
        }
        sink.record(log)

        guard let spans else { return }
        var span = GatewaySpan(
            traceID: facts.traceID, spanID: record.spanID, parentSpanID: facts.parentSpanID, startNanos: record.startNanos,
            endNanos: record.startNanos + record.durationNanos, method: facts.method, target: facts.target, scheme: scheme,
            status: record.status, requestID: facts.requestID)
        span.host = facts.host.isEmpty ? nil : facts.host
        span.routeName = facts.routeName
        span.serviceName = log.upstream?.serviceName
        span.clientAddress = log.clientIP == "-" ? nil : log.clientIP
        span.userAgent = record.userAgent
        if let caller = facts.caller, caller.kind != .anonymous {
            span.consumer = caller.consumer
            span.consumerID = log.consumerID ?? caller.consumer
            span.consumerCustomID = log.consumerCustomID
            span.credentialID = caller.credentialID
        }
        span.credentialKind = facts.credentialKind ?? facts.caller?.kind
        if let last = log.upstream?.tries.last { span.upstreamAddress = "\(last.ip):\(last.port)" }
        span.refusalReason = refusal
        span.tries = record.tries.count
        span.httpVersion = record.httpVersion
        span.grpc = log.grpc
        spans.record(span)
    }

    /// A request the HTTP parser let through but the edge refuses (400): a target that is not origin-form, a
    /// missing, repeated or malformed Host, and framing a smuggler relies on (NIO's parser already refuses most of these, see `EdgeProtocolErrorHandler`).
    static func malformedHead(_ head: HTTPRequestHead) -> (Int, String)? {
        if PathNormalizer.normalize(head.uri) == nil {
            return (400, "the request target is not an origin-form path (absolute-form, authority-form, * or a bad escape)")
        }
        let hosts = head.headers["host"]
        if hosts.count > 1 { return (400, "several Host headers") }
        if hosts.isEmpty {
            if head.version.major == 1 && head.version.minor >= 1 { return (400, "missing Host header") }
        } else if !validHost(hosts[0]) {
            return (400, "invalid Host header")
        }
        let lengths = head.headers["content-length"]
        let codings = head.headers["transfer-encoding"]
        if !lengths.isEmpty && !codings.isEmpty { return (400, "request smuggling: both Content-Length and Transfer-Encoding") }
        if Set(lengths.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }).count > 1 {
            return (400, "request smuggling: conflicting Content-Length values")
        }
        if !codings.isEmpty {
            let last = codings.flatMap { $0.split(separator: ",") }.last?.trimmingCharacters(in: .whitespaces).lowercased()
            if last != "chunked" { return (400, "request smuggling: the final Transfer-Encoding is not chunked") }
        }
        return nil
    }

    /// `host[:port]` or `[v6]:port`: letters, digits, `-`, `.`, `_`, `:`, `[`, `]`, `%` only (no spaces, no
    /// control characters, no userinfo), at most 255 bytes.
    static func validHost(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard !bytes.isEmpty, bytes.count <= 255 else { return false }
        return bytes.allSatisfy { b in
            (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b)
                || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x3A || b == 0x5B || b == 0x5D || b == 0x25
        }
    }

    /// A head NIO's parser refused (see ``ProxyPolicy/rejected(_:_:)``): one Kong record with the status and reason.
    package func rejected(_ record: MeshAccessRecord, _ connection: DownstreamConnection) {
        var r = record
        var facts = GatewayRequestFacts(
            method: record.method, target: record.path, host: "-", requestHeaders: [], requestID: record.requestID ?? "",
            traceID: "", edgeMillis: 0)
        facts.refusalReason = record.refusal
        if let p = connection.peer {
            let validity = ClientCertificateValidity(notBefore: p.notBefore, notAfter: p.notAfter, at: Timestamp(nanoseconds: record.startNanos))
            facts.clientCertificate = KongLogRecord.ClientCertificate(p, validity: validity, tlsVersion: connection.tlsVersion)
        }
        r.policyContext = facts
        finished(r)
    }

    static func hostName(_ authority: String) -> String {
        var host = authority.lowercased()
        if host.hasPrefix("[") { return String(host.dropFirst().prefix { $0 != "]" }) }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        return host
    }

    /// The address part of `ip:port` / `[ip]:port`.
    static func ip(_ address: String?) -> String {
        guard let address else { return "-" }
        return HostPort.parse(address)?.host ?? address
    }

    static func queryPairs(_ target: String) -> [String] {
        guard let q = target.firstIndex(of: "?") else { return [] }
        return target[target.index(after: q)...].split(separator: "&").map(String.init)
    }
}

/// Where the gateway's spans go: an NDJSON file of OTLP/JSON export requests (`telemetry.spans_file`, one request
/// with one span per line) and, optionally, `trail serve`'s `/v1/traces` through a disk-buffered outbox that sends
/// them in batches, as the sidecar's spans go.
package final class GatewaySpanSink: Sendable {
    private let file: LineFile?
    let outbox: Outbox?
    let serviceName: String
    let spiffeID: String?

    package init(path: String?, outbox: Outbox?, serviceName: String, spiffeID: String?, file configFile: String) throws {
        self.file = try path.map { try LineFile(path: $0, setting: "\(configFile): telemetry.spans_file") }
        self.outbox = outbox
        self.serviceName = serviceName
        self.spiffeID = spiffeID
    }

    func record(_ span: GatewaySpan) {
        let json = span.json.serialized()
        file?.append(GatewaySpan.exportRequest(spans: [json], serviceName: serviceName, spiffeID: spiffeID))
        outbox?.append(json)
    }

    package func start() { outbox?.start() }

    package func stop() async {
        await outbox?.stop()
        file?.close()
    }
}

/// Where Kong log records go: an NDJSON file and, optionally, `trail serve` through a disk-buffered outbox.
package final class KongLogSink: Sendable {
    private let file: LineFile?
    let outbox: Outbox?

    package init(path: String?, outbox: Outbox?, file configFile: String) throws {
        self.file = try path.map { try LineFile(path: $0, setting: "\(configFile): telemetry.access_log") }
        self.outbox = outbox
    }

    func record(_ record: KongLogRecord) {
        let json = record.json.serialized()
        file?.append(json)
        outbox?.append(json)
    }

    package func start() { outbox?.start() }

    package func stop() async {
        await outbox?.stop()
        file?.close()
    }
}
