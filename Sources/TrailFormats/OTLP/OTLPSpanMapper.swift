import TrailCore

/// Turns decoded OTLP spans into ``Observation``s. Used by both the protobuf and the JSON parser so that
/// one span gives the same observation whatever its encoding.
///
/// SERVER spans become `.serverSpan`, CLIENT spans `.clientSpan`; INTERNAL, PRODUCER, CONSUMER and
/// UNSPECIFIED spans give no observation. A span with an invalid id, no start time or a malformed field is
/// a partial rejection of its record; its siblings are kept.
enum OTLPSpanMapper {
    struct SpanRejection: Error {
        var reason: String
    }

    /// One record for one decoded request. `spanRaw(i, j, k)` gives the bytes to keep for a rejected span.
    static func record(
        for request: OTLPTraceRequest, format: InputFormat, location: RecordLocation, raw: [UInt8],
        spanRaw: (Int, Int, Int) -> [UInt8]
    ) -> ParsedRecord {
        var observations: [Observation] = []
        var rejections: [Rejection] = []
        for (i, resourceSpans) in request.resourceSpans.enumerated() {
            let resource = OTLPAttributes(resourceSpans.resourceAttributes)
            let serviceName = resource.string("service.name")
            for (j, scopeSpans) in resourceSpans.scopeSpans.enumerated() {
                for (k, span) in scopeSpans.spans.enumerated() {
                    switch observation(for: span, serviceName: serviceName, format: format) {
                    case .success(let observation?):
                        observations.append(observation)
                    case .success(nil):
                        break
                    case .failure(let rejection):
                        rejections.append(Rejection(
                            format: format,
                            location: RecordLocation(
                                line: location.line, detail: "resourceSpans[\(i)].scopeSpans[\(j)].spans[\(k)]"),
                            raw: spanRaw(i, j, k), reason: rejection.reason))
                    }
                }
            }
        }
        return ParsedRecord(
            format: format, location: location, raw: raw, observations: observations, partialRejections: rejections)
    }

    // MARK: Ids

    /// Validates an id's bytes; returns the reason it is invalid, or nil.
    static func idProblem(_ bytes: [UInt8]?, name: String, length: Int) -> String? {
        guard let bytes else { return "invalid \(name): not a hex string" }
        if bytes.isEmpty { return "invalid \(name): empty" }
        if bytes.count != length { return "invalid \(name): \(bytes.count) bytes, expected \(length)" }
        if !bytes.contains(where: { $0 != 0 }) { return "invalid \(name): all zero" }
        return nil
    }

    // MARK: Span → observation

    static func observation(
        for span: OTLPSpan, serviceName resourceService: String?, format: InputFormat
    ) -> Result<Observation?, SpanRejection> {
        if let problem = span.problem { return .failure(SpanRejection(reason: problem)) }
        if let p = idProblem(span.traceID, name: "traceId", length: 16) { return .failure(SpanRejection(reason: p)) }
        if let p = idProblem(span.spanID, name: "spanId", length: 8) { return .failure(SpanRejection(reason: p)) }
        var parentSpanID: String?
        if span.parentSpanID?.isEmpty != true {
            if let p = idProblem(span.parentSpanID, name: "parentSpanId", length: 8) {
                return .failure(SpanRejection(reason: p))
            }
            parentSpanID = span.parentSpanID.flatMap(TraceIDs.spanID(bytes:))
        }
        // Trail's sidecar passes traceparent on unchanged, so its span (`component: proxy` with `trail.direction`)
        // is what its access-log line says, not a hop of the application: it maps to the same kind as that line.
        // Envoy's spans, which start a span of their own on the wire, stay server and client spans.
        let proxy = span.attributes.contains { $0.key == "component" && $0.value == .string("proxy") }
            && span.attributes.contains { $0.key == "trail.direction" }
        // Trail's gateway writes a server span (`component: gateway`) per request that says what its Kong log
        // line says: it maps to the same gateway observation, and the correlator joins the two as twins.
        let gateway = span.kind == 2 && span.attributes.contains { $0.key == "component" && $0.value == .string("gateway") }
        let kind: ObservationKind
        switch span.kind {
        case 2 where gateway: kind = .gateway
        case 2: kind = proxy ? .inbound : .serverSpan
        case 3: kind = proxy ? .outbound : .clientSpan
        default: return .success(nil)
        }
        guard span.startTimeUnixNano != 0 else {
            return .failure(SpanRejection(reason: "missing startTimeUnixNano"))
        }
        guard span.startTimeUnixNano <= UInt64(Int64.max) else {
            return .failure(SpanRejection(reason: "startTimeUnixNano \(span.startTimeUnixNano) is out of range"))
        }
        let start = Int64(span.startTimeUnixNano)
        var duration: Int64?
        if span.endTimeUnixNano >= span.startTimeUnixNano, span.endTimeUnixNano <= UInt64(Int64.max) {
            duration = Int64(span.endTimeUnixNano) - start
        }

        let a = OTLPAttributes(span.attributes)
        var obs = Observation(
            kind: kind, format: format.rawValue,
            traceID: span.traceID.flatMap(TraceIDs.traceID(bytes:)),
            spanID: span.spanID.flatMap(TraceIDs.spanID(bytes:)),
            parentSpanID: parentSpanID,
            start: Timestamp(nanoseconds: start), durationNanos: duration)

        // HTTP request.
        let method = a.string("http.request.method", "http.method")
        obs.method = method
        let url = a.string("url.full", "http.url").map(OTLPURL.init)
        if let p = a.string("url.path") {
            obs.path = p
        } else if let target = a.string("http.target") {
            obs.path = OTLPURL.stripQuery(target)
        } else if let url {
            obs.path = url.path
        }
        obs.authority = a.string("server.address", "http.host") ?? url?.host
        if let status = a.int("http.response.status_code", "http.status_code"), (1...999).contains(status) {
            obs.status = Int(status)
        }
        obs.operation = operation(span: span, attributes: a, method: method)
        obs.requestID = a.string("http.request.header.x-request-id", "guid:x-request-id", "kong.request.id")
        obs.userAgent = a.string("user_agent.original", "http.user_agent", "user_agent")
        obs.policy = a.string("trail.policy").flatMap(PolicyDecision.init(rawValue:))
        obs.responseFlags = a.string("response_flags").flatMap { $0 == "-" ? nil : $0 }
        if let version = a.string("tls.protocol.version") {
            let name = a.string("tls.protocol.name")?.lowercased() ?? "tls"
            obs.tlsVersion = (name == "ssl" ? "SSLv" : "TLSv") + version
        }

        // Service name: the resource's, unless it is a default that says nothing.
        var service = resourceService
        if service == nil || service == "istio-proxy" || service?.hasPrefix("unknown_service") == true {
            service = a.string("istio.canonical_service")
        }

        switch kind {
        case .gateway:
            mapGateway(&obs, attributes: a)
        case .serverSpan, .inbound:
            mapServer(&obs, attributes: a, service: service)
        default:
            mapClient(&obs, attributes: a, service: service)
        }
        if proxy || gateway {
            // The span is the proxy's; the request's wire ids are its parent's, as an access-log line records them.
            obs.spanID = nil
            obs.transport = a.string("trail.transport").flatMap(Transport.init(rawValue:)) ?? obs.transport
        }
        return .success(obs)
    }

    static func operation(span: OTLPSpan, attributes a: OTLPAttributes, method: String?) -> String? {
        if let service = a.string("rpc.service"), let rpcMethod = a.string("rpc.method") {
            return service + "/" + rpcMethod
        }
        if let type = a.string("graphql.operation.type"), let name = a.string("graphql.operation.name") {
            return type + " " + name
        }
        if span.name.isEmpty || span.name == method { return nil }
        return span.name
    }

    static func mapServer(_ obs: inout Observation, attributes a: OTLPAttributes, service: String?) {
        obs.callee.service = service
        obs.callee.spiffeID = a.string("trail.callee.spiffe_id")
        obs.caller.address = a.string(
            "client.address", "http.client_ip", "network.peer.address", "net.sock.peer.addr", "net.peer.ip",
            "peer.address"
        ).map(OTLPAddress.stripPort)
        obs.caller.spiffeID = a.string("trail.caller.spiffe_id")
        obs.caller.service = a.string("trail.caller.service")

        let hasClientCertificate = a.containsKey(withPrefix: "tls.client.") || a.contains("trail.caller.serial")
        if hasClientCertificate {
            let fingerprint = a.string("tls.client.hash.sha256")
            let notBefore = a.string("tls.client.not_before").flatMap { Timestamp.parseRFC3339($0) }
            let notAfter = a.string("tls.client.not_after").flatMap { Timestamp.parseRFC3339($0) }
            let subject = a.string("tls.client.subject")
            let serial = a.string("trail.caller.serial")
            if fingerprint != nil || notBefore != nil || notAfter != nil || subject != nil || serial != nil {
                obs.callerCertificate = PresentedCertificate(
                    serial: serial, fingerprintSHA256: fingerprint, notBefore: notBefore, notAfter: notAfter,
                    subject: subject)
            }
            obs.transport = .mtls
        } else if let established = a.bool("tls.established") {
            obs.transport = established ? .tls : .plaintext
        }

        if let name = a.string("enduser.id", "user.id") {
            let type = a.string("trail.principal.type").flatMap(PrincipalType.init(rawValue:)) ?? .consumer
            obs.principal = Principal(name: name, type: type)
        }
    }

    /// Trail's gateway span, read as its Kong log line is (``KongLogParser``): the external client, the consumer
    /// (`enduser.id`, `trail.principal.type`, credential `authenticated_entity.id`), the route and the upstream
    /// service and address the request went to.
    static func mapGateway(_ obs: inout Observation, attributes a: OTLPAttributes) {
        mapServer(&obs, attributes: a, service: nil)
        if let name = obs.principal?.name {
            let type = obs.principal?.type ?? .consumer
            obs.principal = Principal(name: name, type: type, credential: type == .anonymous ? nil : a.string("authenticated_entity.id"))
        } else {
            obs.principal = Principal(name: "anonymous", type: .anonymous)
        }
        obs.callee.service = a.string("kong.service.name")
        if let upstream = a.string("upstream_address") {
            obs.callee.address = OTLPAddress.stripPort(upstream)
            if let port = OTLPAddress.port(upstream), (0...65535).contains(port) { obs.callee.port = Int(port) }
        }
        obs.route = a.string("kong.route.name", "http.route")
        obs.operation = nil
        if obs.transport == nil {
            switch a.string("url.scheme")?.lowercased() {
            case "http"?: obs.transport = .plaintext
            case "https"?: obs.transport = .tls
            default: break
            }
        }
    }

    static func mapClient(_ obs: inout Observation, attributes a: OTLPAttributes, service: String?) {
        obs.caller.service = service
        obs.caller.spiffeID = a.string("trail.caller.spiffe_id")
        obs.callee.spiffeID = a.string("trail.callee.spiffe_id")

        let serverAddress = a.string("server.address")
        let peerName = a.string("net.peer.name")
        var calleeService = a.string("service.peer.name", "peer.service")
        if calleeService == nil, let s = serverAddress, !OTLPAddress.isIPLiteral(s) { calleeService = s }
        if calleeService == nil, let s = peerName, !OTLPAddress.isIPLiteral(s) { calleeService = s }
        // Envoy/Istio: `upstream_cluster` is `outbound|9080||reviews.default.svc.cluster.local`.
        if calleeService == nil, let cluster = a.string("upstream_cluster.name", "upstream_cluster") {
            calleeService = OTLPAddress.clusterHost(cluster)
        }
        obs.callee.service = calleeService

        var address = a.string("network.peer.address", "net.peer.ip", "net.sock.peer.addr").map(OTLPAddress.stripPort)
        if address == nil, let s = serverAddress, OTLPAddress.isIPLiteral(s) { address = OTLPAddress.stripPort(s) }
        if address == nil, let s = peerName, OTLPAddress.isIPLiteral(s) { address = OTLPAddress.stripPort(s) }
        var port = a.int("server.port", "net.peer.port")
        if address == nil, let upstream = a.string("upstream_address") {
            address = OTLPAddress.stripPort(upstream)
            if port == nil { port = OTLPAddress.port(upstream) }
        }
        obs.callee.address = address
        if let port, (0...65535).contains(port) { obs.callee.port = Int(port) }
    }
}

/// The parts of an absolute URL the mapper needs.
struct OTLPURL {
    /// Host without userinfo and port.
    var host: String?
    /// Path without query and fragment; "/" when the URL has none.
    var path: String?

    init(_ text: String) {
        var rest = Substring(text)
        if let schemeEnd = rest.firstRange(of: "://") {
            rest = rest[schemeEnd.upperBound...]
            let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
            var authority = rest[..<authorityEnd]
            if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
            let h = OTLPAddress.stripPort(String(authority))
            host = h.isEmpty ? nil : h
            rest = rest[authorityEnd...]
            let p = OTLPURL.stripQuery(String(rest))
            path = p.isEmpty ? "/" : p
        } else if rest.hasPrefix("/") {
            path = OTLPURL.stripQuery(text)
        }
    }

    static func stripQuery(_ target: String) -> String {
        guard let cut = target.firstIndex(where: { $0 == "?" || $0 == "#" }) else { return target }
        return String(target[..<cut])
    }
}

/// Address helpers: IP literals and `host:port` forms.
enum OTLPAddress {
    /// True for a dotted-quad IPv4 or an IPv6 literal (optionally in brackets, with a zone).
    static func isIPLiteral(_ text: String) -> Bool {
        var t = Substring(text)
        if t.hasPrefix("["), t.hasSuffix("]") { t = t.dropFirst().dropLast() }
        if let percent = t.firstIndex(of: "%") { t = t[..<percent] }
        if t.contains(":") {
            return t.utf8.count >= 2 && t.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46) || c == 0x3A
                    || c == 0x2E
            }
        }
        let parts = t.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        return parts.allSatisfy { p in
            !p.isEmpty && p.utf8.count <= 3 && p.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } && (Int(p) ?? 256) <= 255
        }
    }

    /// `10.0.0.1:5000` → `10.0.0.1`, `[::1]:5000` → `::1`, `host:80` → `host`; a bare IPv6 is kept.
    static func stripPort(_ text: String) -> String {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            return String(text[text.index(after: text.startIndex)..<close])
        }
        let colons = text.utf8.reduce(0) { $0 + ($1 == 0x3A ? 1 : 0) }
        guard colons == 1, let colon = text.firstIndex(of: ":") else { return text }
        let port = text[text.index(after: colon)...]
        guard !port.isEmpty, port.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return text }
        return String(text[..<colon])
    }

    /// The port of `host:port` / `[v6]:port`, or nil.
    static func port(_ text: String) -> Int64? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        if !text.hasPrefix("[") && text.utf8.reduce(0, { $0 + ($1 == 0x3A ? 1 : 0) }) != 1 { return nil }
        return Int64(text[text.index(after: colon)...])
    }

    /// The host of an Istio cluster name (`outbound|9080||reviews.default.svc.cluster.local`), or the name.
    static func clusterHost(_ cluster: String) -> String? {
        let parts = cluster.split(separator: "|", omittingEmptySubsequences: false)
        if parts.count == 4 { return parts[3].isEmpty ? nil : String(parts[3]) }
        return cluster
    }
}
