import Foundation
import TrailCore

/// One try of a forwarded request at one upstream (Kong's `tries[]` entry).
package struct UpstreamTry: Sendable, Equatable {
    /// Where the try went: the connected address when there was a connection, else the target.
    package var host: String
    package var port: Int
    /// Wall-clock start, nanoseconds since the epoch.
    package var startNanos: Int64
    /// Time to get a connection (pooled or new), nanoseconds.
    package var connectNanos: Int64 = 0
    /// The upstream's status, or the status nginx records for a failed try (502 connect error or reset, 504
    /// timeout); nil while the try is running.
    package var status: Int?
    /// Why the try failed (`connect`, `reset`, `timeout`, `status`); nil for the try that answered the caller.
    package var failure: String?

    package init(host: String, port: Int, startNanos: Int64, connectNanos: Int64 = 0, status: Int? = nil, failure: String? = nil) {
        self.host = host
        self.port = port
        self.startNanos = startNanos
        self.connectNanos = connectNanos
        self.status = status
        self.failure = failure
    }
}

/// What a sidecar (or, later, the gateway) saw of one request, accepted or refused. Written as an Envoy JSON
/// access-log line with the keys Trail's Envoy parser reads (so a real Envoy and Trail's sidecar look the same
/// to the correlator), and as an OTLP span with `component: proxy`, as Envoy's own spans are marked.
public struct MeshAccessRecord: Sendable {
    public enum Direction: String, Sendable { case inbound, outbound }

    public var direction: Direction
    /// Wall-clock start in nanoseconds since the epoch.
    public var startNanos: Int64
    public var durationNanos: Int64 = 0
    public var method: String
    /// The request target as received (path and query).
    public var path: String
    public var authority: String?
    public var status: Int = 0
    /// Envoy response flags (`-`, `NR`, `UF`, `UC`, `URX`).
    public var responseFlags = "-"
    public var responseCodeDetails = "via_upstream"
    public var requestID: String?
    public var userAgent: String?
    public var traceparent: String?
    public var b3TraceID: String?
    public var b3SpanID: String?
    public var b3ParentSpanID: String?
    public var b3Sampled: String?
    public var xForwardedClientCert: String?
    public var downstreamRemote: String?
    public var downstreamLocal: String?
    public var upstreamHost: String?
    public var upstreamLocal: String?
    public var upstreamCluster: String?
    /// This workload's SPIFFE ID.
    public var localSPIFFEID: String
    /// The other side's certificate: the caller's (inbound) or the callee's (outbound).
    public var peer: PeerCertificateFacts?
    /// "TLSv1.3", "TLSv1.2"; nil for plaintext.
    public var tlsVersion: String?
    /// "allow", "deny" or "dry-run-deny"; nil when no policy applies (outbound).
    public var policy: String?
    public var policyName: String?
    /// Why the request or connection was refused (certificate, policy, route), nil when it was not.
    public var refusal: String?
    /// The caller's HTTP version: `1.1`, `1.0` or `2` (an HTTP/2 stream).
    public var httpVersion = "1.1"
    /// A gRPC exchange's `grpc-status` (from the trailers, or the headers of a Trailers-Only response) and
    /// `grpc-message`; nil when the upstream sent none.
    public var grpcStatus: String?
    public var grpcMessage: String?
    public var bytesReceived = 0
    public var bytesSent = 0
    /// The span this record is exported as.
    public var spanID: String
    /// One entry per upstream try (connection attempts and retries), in order; empty when nothing was tried.
    package var tries: [UpstreamTry] = []
    /// Facts a proxy policy carries from `route` to `finished` for its own log (the gateway's consumer, route,
    /// refusal); not written by the Envoy or OTLP encoders.
    package var policyContext: (any Sendable)?
    /// How many bytes of the request body the policy wants to see (set in `route`; 0: none). The proxy keeps
    /// at most this prefix in ``capturedRequestBody`` while it streams the body on.
    package var captureRequestBodyBytes = 0
    package var capturedRequestBody: [UInt8] = []

    public init(direction: Direction, startNanos: Int64, method: String, path: String, localSPIFFEID: String) {
        self.direction = direction
        self.startNanos = startNanos
        self.method = method
        self.path = path
        self.localSPIFFEID = localSPIFFEID
        var random = SystemRandomNumberGenerator()
        var id = random.next() as UInt64
        if id == 0 { id = 1 }
        self.spanID = Hex.encode(withUnsafeBytes(of: &id) { Array($0) })
    }

    package static func nowNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// The W3C trace context the request carried (or its B3 headers), as (trace id, parent span id).
    var traceContext: (traceID: String, parentID: String?)? {
        if let tp = traceparent, let parsed = W3CTraceParent(tp) { return (parsed.traceID, parsed.parentID) }
        if let t = b3TraceID.flatMap({ TraceIDs.normalizeTraceID($0) }) { return (t, b3SpanID?.lowercased()) }
        return nil
    }

    private func value(_ s: String?) -> JSONValue { s.map { .string($0) } ?? .null }

    /// One Envoy JSON access-log line.
    public func envoyJSON() -> String {
        let inbound = direction == .inbound
        var m: [(String, JSONValue)] = [
            ("start_time", .string(Timestamp(nanoseconds: startNanos).rfc3339(fractionDigits: 3))),
            ("method", .string(method)),
            ("path", .string(path)),
            ("protocol", .string("HTTP/1.1")),
            ("response_code", .int(Int64(status))),
            ("response_flags", .string(responseFlags)),
            ("response_code_details", .string(responseCodeDetails)),
            ("bytes_received", .int(Int64(bytesReceived))),
            ("bytes_sent", .int(Int64(bytesSent))),
            ("duration", .int(durationNanos / 1_000_000)),
            ("authority", value(authority)),
            ("user_agent", value(userAgent)),
            ("request_id", value(requestID)),
            ("traceparent", value(traceparent)),
            ("x_b3_traceid", value(b3TraceID)),
            ("x_b3_spanid", value(b3SpanID)),
            ("x_b3_parentspanid", value(b3ParentSpanID)),
            ("x_b3_sampled", value(b3Sampled)),
            ("downstream_remote_address", value(downstreamRemote)),
            ("downstream_local_address", value(downstreamLocal)),
            ("upstream_host", value(upstreamHost)),
            ("upstream_local_address", value(upstreamLocal)),
            ("upstream_cluster", value(upstreamCluster)),
        ]
        if inbound {
            m += [
                ("downstream_local_uri_san", .string(localSPIFFEID)),
                ("downstream_peer_uri_san", peer.map { .string($0.uriSANs.joined(separator: ",")) } ?? .null),
                ("downstream_peer_serial", value(peer?.serial)),
                ("downstream_peer_fingerprint_256", value(peer?.fingerprintSHA256)),
                ("downstream_peer_subject", value(peer?.subject)),
                ("downstream_peer_cert_v_start", value(peer?.notBefore.rfc3339(fractionDigits: 0))),
                ("downstream_peer_cert_v_end", value(peer?.notAfter.rfc3339(fractionDigits: 0))),
                ("downstream_tls_version", value(tlsVersion)),
                ("x_forwarded_client_cert", value(xForwardedClientCert)),
            ]
        } else {
            m += [
                ("upstream_local_uri_san", .string(localSPIFFEID)),
                ("upstream_peer_uri_san", peer.map { .string($0.uriSANs.joined(separator: ",")) } ?? .null),
                ("upstream_peer_serial", value(peer?.serial)),
                ("upstream_peer_fingerprint_256", value(peer?.fingerprintSHA256)),
                ("upstream_tls_version", value(tlsVersion)),
            ]
        }
        m += [
            ("policy", value(policy)),
            ("policy_name", value(policyName)),
            ("refusal_reason", value(refusal)),
            ("trace_id", value(traceContext?.traceID)),
            ("span_id", .string(spanID)),
        ]
        return JSONValue.object(m).serialized()
    }

    /// One OTLP/JSON span (without its resource); nil when the request carried no trace context.
    public func otlpSpan() -> String? {
        guard let context = traceContext else { return nil }
        func attr(_ key: String, _ v: String?) -> JSONValue? {
            v.map { .object([("key", .string(key)), ("value", .object([("stringValue", .string($0))]))]) }
        }
        func intAttr(_ key: String, _ v: Int) -> JSONValue {
            .object([("key", .string(key)), ("value", .object([("intValue", .string(String(v)))]))])
        }
        let inbound = direction == .inbound
        let caller = inbound ? peer?.spiffeID : localSPIFFEID
        let callee = inbound ? localSPIFFEID : peer?.spiffeID
        var attributes: [JSONValue] = [
            attr("component", "proxy"), attr("trail.direction", direction.rawValue),
            attr("http.request.method", method), attr("url.path", String(path.prefix { $0 != "?" })),
            attr("server.address", authority), attr("user_agent.original", userAgent), attr("http.request.header.x-request-id", requestID),
            attr("trail.caller.spiffe_id", caller), attr("trail.callee.spiffe_id", callee),
            attr(inbound ? "trail.caller.serial" : "trail.callee.serial", peer?.serial),
            attr(inbound ? "tls.client.hash.sha256" : "tls.server.hash.sha256", peer?.fingerprintSHA256),
            attr(inbound ? "tls.client.subject" : "tls.server.subject", peer?.subject),
            attr(inbound ? "tls.client.not_before" : "tls.server.not_before", peer?.notBefore.rfc3339(fractionDigits: 0)),
            attr(inbound ? "tls.client.not_after" : "tls.server.not_after", peer?.notAfter.rfc3339(fractionDigits: 0)),
            attr("tls.protocol.version", tlsVersion.map { $0.hasPrefix("TLSv") ? String($0.dropFirst(4)) : $0 }),
            attr("trail.transport", tlsVersion == nil ? "plaintext" : "mtls"),
            attr("trail.policy", policy), attr("trail.policy.name", policyName), attr("trail.refusal", refusal),
            attr("upstream_cluster", upstreamCluster), attr("response_flags", responseFlags),
            attr("network.peer.address", (inbound ? downstreamRemote : upstreamHost)),
        ].compactMap { $0 }
        attributes.append(intAttr("http.response.status_code", status))
        var span: [(String, JSONValue)] = [
            ("traceId", .string(context.traceID)),
            ("spanId", .string(spanID)),
        ]
        if let p = context.parentID { span.append(("parentSpanId", .string(p))) }
        span += [
            ("name", .string("\(direction == .inbound ? "ingress" : "egress") \(method) \(path.prefix { $0 != "?" })")),
            ("kind", .int(direction == .inbound ? 2 : 3)),
            ("startTimeUnixNano", .string(String(startNanos))),
            ("endTimeUnixNano", .string(String(startNanos + durationNanos))),
            ("attributes", .array(attributes)),
            ("status", .object([("code", .int(status >= 500 || status == 0 ? 2 : 0))])),
        ]
        return JSONValue.object(span).serialized()
    }

    /// Wraps spans (lines of `otlpSpan()`) into one OTLP/JSON export request.
    static func otlpRequest(spans: [String], service: String, spiffeID: String) -> [UInt8] {
        let resource = "{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":\(JSONValue.string(service).serialized())}},{\"key\":\"trail.spiffe_id\",\"value\":{\"stringValue\":\(JSONValue.string(spiffeID).serialized())}}]}"
        return Array("{\"resourceSpans\":[{\"resource\":\(resource),\"scopeSpans\":[{\"scope\":{\"name\":\"trail-sidecar\"},\"spans\":[\(spans.joined(separator: ","))]}]}]}".utf8)
    }
}
