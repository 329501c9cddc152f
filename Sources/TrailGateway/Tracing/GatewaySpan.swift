import Foundation
import TrailCore

/// The gateway's OTLP server span for one request (kind SERVER, refused requests included), written as OTLP/JSON.
///
/// Its span id is the one the gateway sends upstream as the parent in `traceparent`, its parent the caller's span
/// (none when the trace starts at the edge). Trail's OTLP mapper reads a span marked `component: gateway` as the
/// same gateway observation as the request's Kong log line: the attributes below carry what that line carries
/// (request id, route, service, client address, consumer, credential kind, upstream address), so `trail ingest`
/// of both gives one hop with the same principal, and the correlator joins the two as twins.
package struct GatewaySpan: Sendable {
    package var traceID: String
    package var spanID: String
    package var parentSpanID: String?
    package var startNanos: Int64
    package var endNanos: Int64
    package var method: String
    /// The request target as received; the span keeps only the path.
    package var target: String
    package var scheme: String
    package var host: String?
    package var routeName: String?
    package var serviceName: String?
    package var status: Int
    package var clientAddress: String?
    package var userAgent: String?
    package var requestID: String
    /// The consumer's username; nil when there is none (the Kong line then names the caller `anonymous`).
    package var consumer: String?
    package var consumerID: String?
    package var consumerCustomID: String?
    /// The credential that named the consumer (`authenticated_entity.id`).
    package var credentialID: String?
    package var credentialKind: CredentialKind?
    /// `ip:port` of the try that answered (or the last try).
    package var upstreamAddress: String?
    package var refusalReason: String?
    /// Number of upstream tries.
    package var tries: Int = 0
    /// The caller's HTTP version (`network.protocol.version`: `1.1`, `2`).
    package var httpVersion: String?
    /// A gRPC call: `rpc.system` grpc, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`.
    package var grpc: GRPCCall?

    package init(
        traceID: String, spanID: String, parentSpanID: String?, startNanos: Int64, endNanos: Int64, method: String,
        target: String, scheme: String, status: Int, requestID: String
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.startNanos = startNanos
        self.endNanos = endNanos
        self.method = method
        self.target = target
        self.scheme = scheme
        self.status = status
        self.requestID = requestID
    }

    /// The principal type Trail's Kong parser derives from the line's `credential_type` (and `anonymous` when the
    /// line has no consumer), so both records name the same principal.
    package var principalType: PrincipalType {
        guard consumer != nil else { return .anonymous }
        switch credentialKind {
        case .keyAuth?: return .apiKey
        case .jwt?: return .jwt
        case .mtls?: return .clientCertificate
        case .anonymous?: return .anonymous
        case nil: return .consumer
        }
    }

    var path: String { String(target.prefix { $0 != "?" && $0 != "#" }) }

    /// The span as one OTLP/JSON span object.
    package var json: JSONValue {
        func attr(_ key: String, _ v: String?) -> JSONValue? {
            v.map { .object([("key", .string(key)), ("value", .object([("stringValue", .string($0))]))]) }
        }
        func intAttr(_ key: String, _ v: Int) -> JSONValue {
            .object([("key", .string(key)), ("value", .object([("intValue", .string(String(v)))]))])
        }
        var attributes: [JSONValue] = [
            attr("component", "gateway"),
            attr("http.request.method", method), attr("url.path", path), attr("url.scheme", scheme),
            attr("server.address", host), attr("http.route", routeName),
            attr("client.address", clientAddress), attr("user_agent.original", userAgent),
            attr("kong.request.id", requestID), attr("http.request.header.x-request-id", requestID),
            attr("kong.route.name", routeName), attr("kong.service.name", serviceName),
            attr("enduser.id", consumer ?? "anonymous"), attr("trail.principal.type", principalType.rawValue),
            attr("consumer.username", consumer), attr("consumer.id", consumerID), attr("consumer.custom_id", consumerCustomID),
            attr("authenticated_entity.id", credentialID), attr("kong.credential_type", credentialKind?.rawValue),
            attr("upstream_address", upstreamAddress), attr("trail.refusal", refusalReason),
        ].compactMap { $0 }
        if let httpVersion, let a = attr("network.protocol.version", httpVersion) { attributes.append(a) }
        if let grpc {
            attributes += [attr("rpc.system", "grpc"), attr("rpc.service", grpc.service), attr("rpc.method", grpc.method)].compactMap { $0 }
            if let code = grpc.status.flatMap({ Int($0) }) { attributes.append(intAttr("rpc.grpc.status_code", code)) }
        }
        attributes.append(intAttr("http.response.status_code", status))
        if tries > 0 { attributes.append(intAttr("kong.tries", tries)) }
        var span: [(String, JSONValue)] = [("traceId", .string(traceID)), ("spanId", .string(spanID))]
        if let parentSpanID { span.append(("parentSpanId", .string(parentSpanID))) }
        span += [
            ("name", .string(routeName.map { "\(method) \($0)" } ?? method)),
            ("kind", .int(2)),
            ("startTimeUnixNano", .string(String(startNanos))),
            ("endTimeUnixNano", .string(String(max(endNanos, startNanos)))),
            ("attributes", .array(attributes)),
            ("status", .object([("code", .int(status >= 500 || status == 0 ? 2 : 0))])),
        ]
        return .object(span)
    }

    /// One OTLP/JSON export request holding `spans` (serialized span objects) under the gateway's resource.
    package static func exportRequest(spans: [String], serviceName: String, spiffeID: String?) -> String {
        var resource: [JSONValue] = [
            .object([("key", .string("service.name")), ("value", .object([("stringValue", .string(serviceName))]))])
        ]
        if let spiffeID {
            resource.append(.object([("key", .string("trail.spiffe_id")), ("value", .object([("stringValue", .string(spiffeID))]))]))
        }
        let resourceJSON = JSONValue.object([("attributes", .array(resource))]).serialized()
        return "{\"resourceSpans\":[{\"resource\":\(resourceJSON),\"scopeSpans\":[{\"scope\":{\"name\":\"trail-gateway\"},\"spans\":[\(spans.joined(separator: ","))]}]}]}"
    }
}
