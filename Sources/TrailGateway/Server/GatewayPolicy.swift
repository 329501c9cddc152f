import Foundation
import NIOHTTP1
import Synchronization
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
    var upstreamURI: String?
    var edgeMillis: Int
    /// The partner's client certificate (edge mTLS) and its judgement at the time of the request.
    var clientCertificate: KongLogRecord.ClientCertificate?
}

/// The gateway's ``ProxyPolicy``: builds the ``EdgeRequest``, asks the ``RequestEvaluator`` (route,
/// authentication, ACL, rate limit), answers refusals itself, and forwards the rest to the chosen backend
/// (plain HTTP, or mTLS with the gateway's SVID when the backendRef names a `spiffe_id`) with a request id and
/// trace context, without credentials or hop-by-hop headers. Every request becomes a Kong log record.
package final class GatewayPolicy: ProxyPolicy {
    let configuration: GatewayConfiguration
    private let evaluator: Mutex<RequestEvaluator>
    let sink: KongLogSink
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

    package init(configuration: GatewayConfiguration, sink: KongLogSink, scheme: String, listenPort: Int) {
        self.configuration = configuration
        keyNames = Set(configuration.keyAuth.keyNames + ["apikey"])
        strippedHeaders = ["authorization", "proxy-authorization"] + Array(keyNames) + Array(Self.internalHeaders)
        self.evaluator = Mutex(RequestEvaluator(configuration: configuration))
        self.sink = sink
        self.scheme = scheme
        self.listenPort = listenPort
    }

    package func route(_ head: inout HTTPRequestHead, _ record: inout MeshAccessRecord, _ connection: DownstreamConnection) -> ProxyRoute {
        let started = MeshAccessRecord.nowNanos()
        let headers = head.headers.map { (name: $0.name.lowercased(), value: $0.value) }
        let (path, query) = RouteRequest.split(target: head.uri)
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
        let choice = Double.random(in: 0..<1, using: &connection.random)
        let decision = evaluator.withLock { $0.evaluate(request, now: Double(started) / 1e9, random: choice) }

        let trace = TraceContext.resolve(headers: headers, policy: configuration.server.incomingTrace, random: &connection.random)
        let requestID = head.headers.first(name: "x-request-id") ?? record.requestID ?? ""
        var facts = GatewayRequestFacts(
            method: head.method.rawValue, target: head.uri, host: authority.isEmpty ? host : authority, requestHeaders: headers,
            requestID: requestID, traceID: trace.traceID, edgeMillis: 0, clientCertificate: clientCertificate)
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
            let body = JSONValue.object([("message", .string(response.reason)), ("request_id", .string(requestID))]).serialized()
            var extra = response.headers.map { ($0.name, $0.value) }
            extra.append(("x-request-id", requestID))
            return .refuseWithHeaders(status: HTTPResponseStatus(statusCode: response.status), body: body, headers: extra)
        case .forward(let forward):
            let backend = forward.selection.backend
            facts.routeName = forward.selection.route.name
            facts.caller = forward.caller
            facts.credentialKind = forward.caller.kind
            facts.backend = backend
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
            return .forward(UpstreamTarget(host: backend.host, port: backend.port, expectedSPIFFEID: backend.spiffeID))
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
        log.refusalReason = facts.refusalReason ?? record.refusal
        log.credentialNames = configuration.keyAuth.keyNames
        log.clientCertificate = facts.clientCertificate
        if let caller = facts.caller, let consumer = configuration.consumer(named: caller.consumer) {
            log.consumerID = consumer.id
            log.consumerCustomID = consumer.customID
        }
        if let backend = facts.backend {
            var tries: [(ip: String, port: Int, startedAtMillis: Int64, latencyMillis: Int)] = []
            let address = record.upstreamHost.flatMap(HostPort.parse)
            tries.append((address?.host ?? backend.host, address?.port ?? backend.port, record.startNanos / 1_000_000, 0))
            log.upstream = KongLogRecord.Upstream(
                serviceName: backend.name, host: backend.host, port: backend.port,
                protocolName: backend.spiffeID == nil ? "http" : "https", uri: facts.upstreamURI ?? facts.target, tries: tries)
            if record.refusal == nil { log.proxyLatencyMillis = max(0, durationMillis - facts.edgeMillis) }
        }
        sink.record(log)
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

/// Where Kong log records go: an NDJSON file and, optionally, `trail serve` through a disk-buffered outbox.
package final class KongLogSink: Sendable {
    private let file: Mutex<Int32>
    let outbox: Outbox?

    package init(path: String?, outbox: Outbox?, file configFile: String) throws {
        var fd: Int32 = -1
        if let path {
            fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
            guard fd >= 0 else {
                throw ConfigError("\(configFile): telemetry.access_log: cannot open \(path): \(String(cString: strerror(errno)))")
            }
        }
        self.file = Mutex(fd)
        self.outbox = outbox
    }

    func record(_ record: KongLogRecord) {
        let json = record.json.serialized()
        var line = json
        line += "\n"
        file.withLock { fd in
            guard fd >= 0 else { return }
            _ = line.withUTF8 { write(fd, $0.baseAddress, $0.count) }
        }
        outbox?.append(json)
    }

    package func start() { outbox?.start() }

    package func stop() async {
        await outbox?.stop()
        file.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }
}
