import Foundation
import TrailCore
import TrailMesh

/// One access-log record in Kong's logging-plugin JSON schema (`kong.log.serialize()`, formats.md §1.2), so Kong
/// users' tooling and Trail's own `KongLogParser` read it. Extra keys: `credential_type` (key-auth, jwt, mtls,
/// anonymous), for refused requests `refusal_reason`, and for a request whose connection presented a client
/// certificate `request.tls.client_certificate` (`serial`, `sha256`, `subject`, `uri_sans`, `spiffe_id`,
/// `not_before`, `not_after`) next to Kong's `request.tls.client_verify` (`SUCCESS`,
/// `FAILED:certificate has expired`, `FAILED:certificate is not yet valid`) and `request.tls.version`; on a
/// `graphql: true` route, `graphql` (`operation_type`: query, mutation or subscription; `operation_name`); the
/// caller's HTTP version as `request.http_version` (`1.1`, `2`); and for a gRPC call `grpc` (`service`, `method`,
/// `status`: the answer's `grpc-status` as a number, `message`: its `grpc-message`).
///
/// Credentials never reach the output: the values of `authorization`, `proxy-authorization`, `cookie`,
/// `set-cookie`, `apikey` and the configured key names are replaced by `REDACTED` in headers, and those query
/// parameters are redacted in `querystring`, `uri`, `url` and `upstream_uri`.
package struct KongLogRecord: Sendable {
    package struct Upstream: Sendable {
        package var serviceName: String
        package var host: String
        package var port: Int
        package var protocolName: String
        /// The URI sent upstream, with query.
        package var uri: String
        /// One entry per attempt, as Kong's balancer records them.
        package var tries: [Try]

        package init(
            serviceName: String, host: String, port: Int, protocolName: String = "https", uri: String,
            tries: [Try] = []
        ) {
            self.serviceName = serviceName
            self.host = host
            self.port = port
            self.protocolName = protocolName
            self.uri = uri
            self.tries = tries
        }
    }

    /// One balancer try (`tries[]`): `balancer_start` (ms epoch), `ip`, `port`, `balancer_latency` (ms, here the
    /// time to get a connection); a failed try also has `state` (`failed` for a connection error, reset or
    /// timeout, `next` for a retryable status) and `code` (the status nginx records: 502, 503, 504).
    package struct Try: Sendable, Equatable {
        package var ip: String
        package var port: Int
        package var startedAtMillis: Int64
        package var latencyMillis: Int
        package var state: String?
        package var code: Int?

        package init(ip: String, port: Int, startedAtMillis: Int64, latencyMillis: Int, state: String? = nil, code: Int? = nil) {
            self.ip = ip
            self.port = port
            self.startedAtMillis = startedAtMillis
            self.latencyMillis = latencyMillis
            self.state = state
            self.code = code
        }
    }

    /// The client certificate of an edge mTLS connection: `request.tls` (Kong's `client_verify` and `version`, and
    /// Trail's `client_certificate`).
    package struct ClientCertificate: Sendable, Equatable {
        /// Normalised serial (lowercase hex, no separators or leading zeros, as Trail writes serials everywhere).
        package var serial: String
        package var fingerprintSHA256: String
        package var subject: String
        package var uriSANs: [String]
        package var spiffeID: String?
        package var notBefore: Timestamp
        package var notAfter: Timestamp
        /// nginx's `$ssl_client_verify`: `SUCCESS` or `FAILED:reason`.
        package var clientVerify: String
        package var tlsVersion: String?

        package init(
            serial: String, fingerprintSHA256: String, subject: String, uriSANs: [String], spiffeID: String?,
            notBefore: Timestamp, notAfter: Timestamp, clientVerify: String, tlsVersion: String? = nil
        ) {
            self.serial = serial
            self.fingerprintSHA256 = fingerprintSHA256
            self.subject = subject
            self.uriSANs = uriSANs
            self.spiffeID = spiffeID
            self.notBefore = notBefore
            self.notAfter = notAfter
            self.clientVerify = clientVerify
            self.tlsVersion = tlsVersion
        }

        package init(_ facts: PeerCertificateFacts, validity: ClientCertificateValidity, tlsVersion: String?) {
            self.init(
                serial: facts.serial, fingerprintSHA256: facts.fingerprintSHA256, subject: facts.subject,
                uriSANs: facts.uriSANs, spiffeID: facts.spiffeID, notBefore: facts.notBefore, notAfter: facts.notAfter,
                clientVerify: validity.clientVerify, tlsVersion: tlsVersion)
        }

        var json: JSONValue {
            var members: [(String, JSONValue)] = [
                ("serial", .string(serial)), ("sha256", .string(fingerprintSHA256)), ("subject", .string(subject)),
                ("uri_sans", .array(uriSANs.map { .string($0) })),
            ]
            if let spiffeID { members.append(("spiffe_id", .string(spiffeID))) }
            members += [
                ("not_before", .string(notBefore.rfc3339(fractionDigits: 0))),
                ("not_after", .string(notAfter.rfc3339(fractionDigits: 0))),
            ]
            return .object(members)
        }
    }

    /// 32 lowercase hex digits; written as `request.id` and as the `x-request-id` request header.
    package var requestID: String
    /// 32 lowercase hex digits, written as `trace_id.w3c`.
    package var traceID: String?
    package var method: String
    package var scheme: String = "https"
    package var host: String
    package var port: Int
    /// The original request target, with query.
    package var target: String
    package var requestSize: Int
    /// Request headers as received (names any case; written lowercase).
    package var requestHeaders: [(name: String, value: String)]
    package var status: Int
    package var responseSize: Int
    package var responseHeaders: [(name: String, value: String)] = []
    package var routeName: String?
    package var upstream: Upstream?
    package var caller: AuthenticatedCaller?
    /// The consumer entity's `id` and `custom_id` (the log's `consumer` object), when known.
    package var consumerID: String?
    package var consumerCustomID: String?
    /// The credential kind presented, also for refused requests.
    package var credentialKind: CredentialKind?
    package var refusalReason: String?
    package var clientIP: String
    package var startedAtMillis: Int64
    /// `latencies.request`, `.kong` and `.proxy` (-1 when there was no upstream), in ms.
    package var requestLatencyMillis: Int
    package var gatewayLatencyMillis: Int
    package var proxyLatencyMillis: Int = -1
    /// nginx's `$upstream_status`: each try's status, `, `-separated (`"503, 200"`); nil without an upstream.
    package var upstreamStatus: String?
    /// `source` when set (`kong` for replies the gateway made after trying the upstream, e.g. a 504).
    package var source: String?
    /// Header and query names that carry API keys (lowercase), besides `apikey`.
    package var credentialNames: [String] = []
    /// The connection's client certificate, when one was presented (edge mTLS).
    package var clientCertificate: ClientCertificate?
    /// A GraphQL route's operation (Trail extension `graphql`: `operation_type`, `operation_name`).
    package var graphql: GraphQLOperation?
    /// The caller's HTTP version (`1.1`, `2`): Trail extension `request.http_version` (Kong's record has no such
    /// field; its OpenTelemetry span calls it `http.flavor`).
    package var httpVersion: String?
    /// A gRPC call (Trail extension `grpc`: `service`, `method`, `status`, `message`).
    package var grpc: GRPCCall?

    package init(
        requestID: String, traceID: String?, method: String, host: String, port: Int, target: String,
        requestSize: Int, requestHeaders: [(name: String, value: String)], status: Int, responseSize: Int,
        clientIP: String, startedAtMillis: Int64, requestLatencyMillis: Int, gatewayLatencyMillis: Int
    ) {
        self.requestID = requestID
        self.traceID = traceID
        self.method = method
        self.host = host
        self.port = port
        self.target = target
        self.requestSize = requestSize
        self.requestHeaders = requestHeaders
        self.status = status
        self.responseSize = responseSize
        self.clientIP = clientIP
        self.startedAtMillis = startedAtMillis
        self.requestLatencyMillis = requestLatencyMillis
        self.gatewayLatencyMillis = gatewayLatencyMillis
    }

    static let alwaysSecretHeaders: Set<String> = ["authorization", "proxy-authorization", "cookie", "set-cookie", "apikey"]

    private var secretNames: Set<String> { Self.alwaysSecretHeaders.union(credentialNames.map { $0.lowercased() }) }

    /// The record as JSON.
    package var json: JSONValue {
        let secrets = secretNames
        var requestHeaderMembers = Self.headerObject(requestHeaders.filter { $0.name.lowercased() != "x-request-id" }, secrets)
        requestHeaderMembers.append(("x-request-id", .string(requestID)))
        let uri = redactQuery(target, secrets)
        let (_, query) = RouteRequest.split(target: target)
        var request: [(String, JSONValue)] = [
            ("id", .string(requestID)),
            ("method", .string(method)),
            ("uri", .string(uri)),
            ("url", .string("\(scheme)://\(host):\(port)\(uri)")),
            ("size", .int(Int64(requestSize))),
            ("querystring", .object(query.map { ($0.name, .string(secrets.contains($0.name.lowercased()) ? "REDACTED" : $0.value)) })),
            ("headers", .object(requestHeaderMembers)),
        ]
        if let httpVersion { request.append(("http_version", .string(httpVersion))) }
        if let certificate = clientCertificate {
            var tls: [(String, JSONValue)] = [("client_verify", .string(certificate.clientVerify))]
            if let version = certificate.tlsVersion { tls.append(("version", .string(version))) }
            tls.append(("client_certificate", certificate.json))
            request.append(("tls", .object(tls)))
        } else if scheme == "https", credentialKind == .mtls {
            request.append(("tls", .object([("client_verify", .string("SUCCESS"))])))
        }
        var root: [(String, JSONValue)] = [
            ("request", .object(request)),
            ("response", .object([
                ("status", .int(Int64(status))),
                ("size", .int(Int64(responseSize))),
                ("headers", .object(
                    Self.headerObject(responseHeaders.filter { $0.name.lowercased() != "x-kong-request-id" }, secrets)
                        + [("x-kong-request-id", .string(requestID))])),
            ])),
        ]
        if let routeName { root.append(("route", .object([("id", .string(routeName)), ("name", .string(routeName))]))) }
        if let upstream {
            root.append(("service", .object([
                ("id", .string(upstream.serviceName)), ("name", .string(upstream.serviceName)),
                ("host", .string(upstream.host)), ("port", .int(Int64(upstream.port))),
                ("protocol", .string(upstream.protocolName)),
            ])))
            root.append(("upstream_uri", .string(redactQuery(upstream.uri, secrets))))
            root.append(("tries", .array(upstream.tries.map { t in
                var members: [(String, JSONValue)] = [
                    ("balancer_start", .int(t.startedAtMillis)), ("ip", .string(t.ip)), ("port", .int(Int64(t.port))),
                    ("balancer_latency", .int(Int64(t.latencyMillis))),
                ]
                if let state = t.state { members.append(("state", .string(state))) }
                if let code = t.code { members.append(("code", .int(Int64(code)))) }
                return .object(members)
            })))
            if let upstreamStatus { root.append(("upstream_status", .string(upstreamStatus))) }
        }
        if let caller, caller.kind != .anonymous {
            let consumerID = self.consumerID ?? caller.consumer
            var consumer: [(String, JSONValue)] = [("id", .string(consumerID)), ("username", .string(caller.consumer))]
            if let consumerCustomID { consumer.append(("custom_id", .string(consumerCustomID))) }
            root.append(("consumer", .object(consumer)))
            root.append(("authenticated_entity", .object([
                ("id", .string(caller.credentialID)), ("consumer_id", .string(consumerID)),
            ])))
        }
        if let kind = credentialKind ?? caller?.kind { root.append(("credential_type", .string(kind.rawValue))) }
        if let refusalReason { root.append(("refusal_reason", .string(refusalReason))) }
        if let graphql, graphql.type != nil || graphql.name != nil {
            var members: [(String, JSONValue)] = []
            if let type = graphql.type { members.append(("operation_type", .string(type))) }
            if let name = graphql.name { members.append(("operation_name", .string(name))) }
            root.append(("graphql", .object(members)))
        }
        if let grpc { root.append(("grpc", grpc.json)) }
        root += [
            ("client_ip", .string(clientIP)),
            ("started_at", .int(startedAtMillis)),
            ("latencies", .object([
                ("request", .int(Int64(requestLatencyMillis))), ("kong", .int(Int64(gatewayLatencyMillis))),
                ("proxy", .int(Int64(proxyLatencyMillis))),
            ])),
            ("source", .string(source ?? (upstream == nil || proxyLatencyMillis < 0 ? "kong" : "upstream"))),
        ]
        if let traceID { root.append(("trace_id", .object([("w3c", .string(traceID))]))) }
        return .object(root)
    }

    /// One NDJSON line (Kong's file-log), ending in `\n`.
    package var line: String { json.serialized() + "\n" }

    /// Kong's header object: lowercase names in first-seen order, a repeated header as an array of its values.
    private static func headerObject(_ headers: [(name: String, value: String)], _ secrets: Set<String>) -> [(String, JSONValue)] {
        var order: [String] = []
        var values: [String: [String]] = [:]
        for (name, value) in headers {
            let n = name.lowercased()
            if values[n] == nil { order.append(n) }
            values[n, default: []].append(secrets.contains(n) ? "REDACTED" : value)
        }
        return order.map { n in
            let v = values[n] ?? []
            return (n, v.count == 1 ? .string(v[0]) : .array(v.map { .string($0) }))
        }
    }

    private func redactQuery(_ target: String, _ secrets: Set<String>) -> String {
        guard let q = target.firstIndex(of: "?") else { return target }
        let pairs = target[target.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
            let name = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
            let decoded = String(name).removingPercentEncoding ?? String(name)
            return secrets.contains(decoded.lowercased()) ? "\(name)=REDACTED" : String(pair)
        }
        return String(target[...q]) + pairs.joined(separator: "&")
    }
}

/// A gRPC call as the gateway saw it: the RPC method from the path `/package.Service/Method` and the
/// `grpc-status` (and `grpc-message`) of the answer's trailers.
package struct GRPCCall: Sendable, Equatable {
    /// `package.Service`; nil when the path is not a gRPC method path.
    package var service: String?
    package var method: String?
    /// `grpc-status` as sent (a decimal code, `0` is OK); nil when the upstream sent none (e.g. refused at the edge).
    package var status: String?
    package var message: String?

    package init(service: String?, method: String?, status: String?, message: String? = nil) {
        self.service = service
        self.method = method
        self.status = status
        self.message = message
    }

    /// - Parameter path: the request target, `/package.Service/Method` (a query, which gRPC never sends, is ignored).
    package init(path: String, status: String?, message: String?) {
        let bare = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? path
        let parts = bare.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 3, parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty {
            self.init(service: String(parts[1]), method: String(parts[2]), status: status, message: message)
        } else {
            self.init(service: nil, method: nil, status: status, message: message)
        }
    }

    var json: JSONValue {
        var members: [(String, JSONValue)] = []
        if let service { members.append(("service", .string(service))) }
        if let method { members.append(("method", .string(method))) }
        if let status { members.append(("status", Int64(status).map { JSONValue.int($0) } ?? JSONValue.string(status))) }
        if let message, !message.isEmpty { members.append(("message", .string(message))) }
        return .object(members)
    }
}
