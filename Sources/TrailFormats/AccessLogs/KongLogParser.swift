import TrailCore

/// Reads Kong Gateway logging-plugin records (http-log, file-log, tcp-log): a single JSON object, a JSON array
/// (an http-log batch), or NDJSON / concatenated objects. One record gives one `.gateway` observation.
///
/// Field mapping (formats.md §1):
/// - traceID: `trace_id.{w3c,b3,jaeger,ot,aws,gcp,instana}` (hex) or `trace_id.datadog` (decimal), else the
///   `traceparent`, `b3`, `x-b3-traceid`/`x-b3-spanid` or `uber-trace-id` request header;
///   parentSpanID: the span id of that header (the caller's span). spanID stays nil.
/// - requestID: header `x-request-id`, else `correlation_id`, else `request.id`.
/// - start: `started_at` (ms); durationNanos: `latencies.request` (ms; `latencies.session` for streams).
/// - method, path (`request.uri` without query), authority (`host` header), status (`response.status`),
///   userAgent, route (`route.name`), responseFlags (`source`).
/// - caller.address: `client_ip`. callee: `service.name` (else `service.host`), address/port of the last
///   `tries` entry (else `service.host`/`service.port`).
/// - transport: `request.tls` (`session.tls` for streams) present → mtls when `client_verify` is `SUCCESS` or
///   `FAILED:…` (a client certificate was presented, verified or not), else tls; tlsVersion: `tls.version`.
/// - callerCertificate (Trail extension, `trail gateway` writes it): `tls.client_certificate` with `serial`
///   (hex), `sha256`, `not_before` / `not_after` (RFC 3339 or epoch seconds), `uri_sans`, `subject`.
/// - operation (Trail extension, `trail gateway` writes it on GraphQL routes): `graphql.operation_type` and
///   `graphql.operation_name`, joined by a space (`mutation CreateOrder`, `query`).
///   On a gRPC call, the RPC method `package.Service/Method` from `grpc.service` and `grpc.method`, as the OTLP
///   mapper writes `rpc.service`/`rpc.method`.
/// - principal, policy: see ``KongLogParser/principal(_:headers:)`` and the code.
public struct KongLogParser: Sendable {
    public init() {}

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        JSONRecordReader.parse(input, format: .kong) { value, location, raw in
            switch Self.map(value) {
            case .failure(let reason):
                return .rejected(Rejection(format: .kong, location: location, raw: raw, reason: reason.description))
            case .success(let (observation, problems)):
                return .record(ParsedRecord(
                    format: .kong, location: location, raw: raw, observations: [observation],
                    partialRejections: problems.map { Rejection(format: .kong, location: location, raw: raw, reason: $0) }))
            }
        }
    }

    struct Reason: Error, CustomStringConvertible {
        var description: String
    }

    /// The observation of one record, plus reasons for parts of it that were ignored.
    static func map(_ v: JSONValue) -> Result<(Observation, [String]), Reason> {
        guard case .object = v else { return .failure(Reason(description: "record is not a JSON object")) }
        var problems: [String] = []

        // Start time (required).
        guard let startedAt = v["started_at"], !startedAt.isNull else {
            return .failure(Reason(description: "missing started_at"))
        }
        let start: Timestamp
        if let ms = startedAt.int {
            start = Timestamp(milliseconds: ms)
        } else if let d = startedAt.double, d.isFinite, abs(d) < 9.2e12 {
            start = Timestamp(nanoseconds: Int64((d * 1_000_000).rounded()))
        } else {
            return .failure(Reason(
                description: "started_at: '\(AccessLog.clip(startedAt.text ?? "?"))' is not epoch milliseconds"))
        }

        let request = v["request"]
        let headers = AccessLogHeaders(headers: request?["headers"])
        let session = v["session"]
        let isStream = session?.object != nil

        var obs = Observation(kind: .gateway, format: InputFormat.kong.rawValue, start: start)

        // Trace ids.
        var trace = AccessLog.TraceInputs()
        if let ids = v["trace_id"] {
            if let members = ids.object {
                let order = ["w3c", "b3", "jaeger", "ot", "aws", "gcp", "instana", "datadog"]
                for name in order {
                    for (k, value) in members where k == name {
                        if let t = value.text {
                            trace.explicit.append(("trace_id.\(name)", t, name == "datadog"))
                        }
                    }
                }
            } else if let t = ids.text {
                trace.explicit.append(("trace_id", t, false))
            }
        }
        trace.traceparent = headers.first("traceparent")
        trace.b3 = headers.first("b3")
        trace.b3TraceID = headers.first("x-b3-traceid")
        trace.b3SpanID = headers.first("x-b3-spanid")
        trace.b3ParentSpanID = headers.first("x-b3-parentspanid")
        trace.b3Sampled = headers.first("x-b3-sampled")
        trace.uberTraceID = headers.first("uber-trace-id")
        let resolved = trace.resolve()
        obs.traceID = resolved.traceID
        obs.parentSpanID = resolved.parentSpanID
        problems += resolved.problems

        obs.requestID = headers.first("x-request-id") ?? v["correlation_id"]?.text ?? request?["id"]?.text

        // Duration.
        let latencies = v["latencies"]
        obs.durationNanos = AccessLog.nanos(milliseconds: isStream ? latencies?["session"] : latencies?["request"])

        // Request.
        if !isStream {
            obs.method = request?["method"]?.text
            if let uri = request?["uri"]?.text { obs.path = AccessLog.pathWithoutQuery(uri) }
            obs.authority = headers.first("host")
            obs.userAgent = headers.first("user-agent")
            if let status = v["response"]?["status"] {
                if let s = status.int, let i = Int(exactly: s) { obs.status = i } else if let t = status.text {
                    problems.append("response.status: '\(AccessLog.clip(t))' is not a number")
                }
            }
        } else if let s = session?["status"]?.int, let i = Int(exactly: s) {
            obs.status = i
        }
        obs.route = v["route"]?["name"]?.text
        if let graphql = v["graphql"], graphql.object != nil {
            let parts = [graphql["operation_type"]?.string, graphql["operation_name"]?.string].compactMap { $0 }.filter { !$0.isEmpty }
            if !parts.isEmpty { obs.operation = parts.joined(separator: " ") }
        }
        if let grpc = v["grpc"], grpc.object != nil, let service = grpc["service"]?.string, let method = grpc["method"]?.string,
            !service.isEmpty, !method.isEmpty
        {
            obs.operation = "\(service)/\(method)"
        }
        obs.responseFlags = v["source"]?.text

        // Endpoints.
        obs.caller.address = v["client_ip"]?.text
        let service = v["service"]
        obs.callee.service = service?["name"]?.text ?? service?["host"]?.text
        if let tries = v["tries"]?.array, let last = tries.last, let ip = last["ip"]?.text {
            obs.callee.address = ip
            obs.callee.port = last["port"]?.int.flatMap { Int(exactly: $0) }
        } else if let host = service?["host"]?.text {
            obs.callee.address = host
            obs.callee.port = service?["port"]?.int.flatMap { Int(exactly: $0) }
        }

        // Transport.
        let tls = isStream ? session?["tls"] : request?["tls"]
        if let tls, tls.object != nil {
            obs.transport = Self.clientCertificatePresented(tls["client_verify"]?.text) ? .mtls : .tls
            obs.tlsVersion = tls["version"]?.text
            if let certificate = tls["client_certificate"], certificate.object != nil {
                let (presented, certificateProblems) = Self.clientCertificate(certificate)
                obs.callerCertificate = presented
                problems += certificateProblems
            }
        } else if isStream {
            obs.transport = .plaintext
        } else if let url = request?["url"]?.text, url.lowercased().hasPrefix("http://") {
            obs.transport = .plaintext
        }

        obs.principal = principal(v, headers: headers)

        if let p = v["policy"]?.text {
            if let decision = AccessLog.policy(p) {
                obs.policy = decision
            } else {
                problems.append("policy: '\(AccessLog.clip(p))' is not allow, deny or dry-run-deny")
            }
        }
        return .success((obs, problems))
    }

    /// nginx's `$ssl_client_verify`: `SUCCESS` and `FAILED:reason` both mean a client certificate was presented
    /// (`NONE`: none was).
    static func clientCertificatePresented(_ clientVerify: String?) -> Bool {
        guard let clientVerify else { return false }
        return clientVerify == "SUCCESS" || clientVerify.hasPrefix("FAILED")
    }

    /// A client_verify that names the caller by its certificate: `SUCCESS`, or a failure of the validity window
    /// only (`FAILED:certificate has expired`, `FAILED:certificate is not yet valid`: the chain is trusted, so the
    /// certificate still says who called). Other failures (unknown CA, bad signature) identify no one.
    static func certificateNamesCaller(_ clientVerify: String?) -> Bool {
        switch clientVerify {
        case "SUCCESS", "FAILED:certificate has expired", "FAILED:certificate is not yet valid": true
        default: false
        }
    }

    /// Trail's `tls.client_certificate` extension; a malformed member is left out and reported.
    static func clientCertificate(_ c: JSONValue) -> (PresentedCertificate?, [String]) {
        var problems: [String] = []
        var serial: String?
        if let s = c["serial"]?.text {
            if let n = CertificateSerial.normalize(s) { serial = n } else {
                problems.append("request.tls.client_certificate.serial: '\(AccessLog.clip(s))' is not hex")
            }
        }
        var fingerprint: String?
        if let f = c["sha256"]?.text {
            if let n = Fingerprint.normalize(f) { fingerprint = n } else {
                problems.append("request.tls.client_certificate.sha256: '\(AccessLog.clip(f))' is not a SHA-256 digest")
            }
        }
        func time(_ key: String) -> Timestamp? {
            guard let value = c[key], !value.isNull else { return nil }
            if let text = value.string, let t = Timestamp.parseRFC3339(text) { return t }
            if let seconds = value.double, seconds.isFinite, abs(seconds) < 9.2e9 { return Timestamp(epochSeconds: seconds) }
            problems.append("request.tls.client_certificate.\(key): '\(AccessLog.clip(value.text ?? "?"))' is not RFC 3339 or epoch seconds")
            return nil
        }
        var uriSANs = c["uri_sans"]?.array?.compactMap(\.string) ?? []
        if uriSANs.isEmpty, let id = c["spiffe_id"]?.string { uriSANs = [id] }
        let subject = c["subject"]?.string.flatMap { $0.isEmpty ? nil : $0 }
        let presented = PresentedCertificate(
            serial: serial, fingerprintSHA256: fingerprint, notBefore: time("not_before"), notAfter: time("not_after"),
            uriSANs: uriSANs, subject: subject)
        return (presented.isEmpty && subject == nil ? nil : presented, problems)
    }

    /// The edge principal.
    /// - name: `consumer.username`, else `consumer.custom_id`, else `consumer.id`; with no consumer but an
    ///   `authenticated_entity`, its `id`; with neither but a `tls.client_certificate`, its `spiffe_id`, first
    ///   URI SAN or subject (type client-certificate, credential its serial); else `anonymous` (type `.anonymous`).
    /// - credential: `authenticated_entity.id`.
    /// - type: a custom field `credential_type` / `auth_type` (key-auth → api-key, jwt → jwt,
    ///   mtls-auth → client-certificate, basic-auth, oauth2 and others → consumer), else inferred: an `apikey`
    ///   header or query parameter → api-key; `request.tls.client_verify` SUCCESS, `FAILED:certificate has
    ///   expired` or `FAILED:certificate is not yet valid` → client-certificate; `authorization: Bearer …` → jwt;
    ///   else consumer.
    static func principal(_ v: JSONValue, headers: AccessLogHeaders) -> Principal {
        let consumer = v["consumer"]
        let entity = v["authenticated_entity"]
        let credential = entity?["id"]?.text
        let name = consumer?["username"]?.text ?? consumer?["custom_id"]?.text ?? consumer?["id"]?.text ?? credential
        guard let name else {
            let tls = v["session"]?["tls"]?.object != nil ? v["session"]?["tls"] : v["request"]?["tls"]
            if let certificate = tls?["client_certificate"], certificate.object != nil,
                let id = certificate["spiffe_id"]?.string ?? certificate["uri_sans"]?.array?.first?.string
                    ?? certificate["subject"]?.string.flatMap({ $0.isEmpty ? nil : $0 })
            {
                return Principal(
                    name: id, type: .clientCertificate,
                    credential: certificate["serial"]?.text.flatMap { CertificateSerial.normalize($0) })
            }
            return Principal(name: "anonymous", type: .anonymous)
        }

        var type: PrincipalType?
        if let declared = v["credential_type"]?.text ?? v["auth_type"]?.text {
            type = principalType(declared)
        }
        if type == nil {
            let request = v["request"]
            let queryHasKey = request?["querystring"]?["apikey"] != nil
            if headers.has("apikey") || queryHasKey {
                type = .apiKey
            } else if certificateNamesCaller(request?["tls"]?["client_verify"]?.text)
                || certificateNamesCaller(v["session"]?["tls"]?["client_verify"]?.text)
            {
                type = .clientCertificate
            } else if let auth = headers.first("authorization"), auth.lowercased().hasPrefix("bearer") {
                type = .jwt
            } else {
                type = .consumer
            }
        }
        return Principal(name: name, type: type ?? .consumer, credential: credential)
    }

    /// Maps a Kong plugin name (or a Trail principal type name) to a principal type.
    static func principalType(_ declared: String) -> PrincipalType {
        switch declared.lowercased() {
        case "key-auth", "key-auth-enc", "apikey", "api-key", "api_key": return .apiKey
        case "jwt", "openid-connect", "oidc", "jwt-signer": return .jwt
        case "mtls-auth", "mtls", "client-certificate", "client_certificate": return .clientCertificate
        case "workload": return .workload
        case "anonymous": return .anonymous
        default: return .consumer
        }
    }
}
