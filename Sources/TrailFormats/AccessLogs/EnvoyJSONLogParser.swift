import TrailCore

/// Reads Envoy / Istio JSON access-log lines (Istio's default JSON keys, formats.md §2.6, plus identity keys
/// named as the snake_case of the Envoy operator, e.g. `downstream_peer_uri_san`). One line gives one
/// `.inbound` or `.outbound` observation. `"200"` and `200` are read alike; `"-"`, `""` and `null` are unset.
public struct EnvoyJSONLogParser: Sendable {
    public init() {}

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        JSONRecordReader.parse(input, format: .envoyJSON) { value, location, raw in
            guard let members = value.object else {
                return .rejected(Rejection(
                    format: .envoyJSON, location: location, raw: raw, reason: "record is not a JSON object"))
            }
            return EnvoyAccessLogMapper.result(AccessLogFields(members), format: .envoyJSON, location: location, raw: raw)
        }
    }
}

/// Maps Envoy access-log fields (keyed by the snake_case operator names) to an observation. Shared by the JSON
/// and the text parser so that both give identical observations.
enum EnvoyAccessLogMapper {
    struct Reason: Error, CustomStringConvertible {
        var description: String
    }

    static func result(_ f: AccessLogFields, format: InputFormat, location: RecordLocation, raw: [UInt8]) -> ParseResult {
        switch map(f, format: format) {
        case .failure(let reason):
            return .rejected(Rejection(format: format, location: location, raw: raw, reason: reason.description))
        case .success(let (observation, problems)):
            return .record(ParsedRecord(
                format: format, location: location, raw: raw, observations: [observation],
                partialRejections: problems.map { Rejection(format: format, location: location, raw: raw, reason: $0) }))
        }
    }

    /// Istio cluster names that are not a service.
    static let nonServiceClusters: Set<String> = [
        "PassthroughCluster", "BlackHoleCluster", "InboundPassthroughCluster", "InboundPassthroughClusterIpv4",
        "InboundPassthroughClusterIpv6",
    ]

    static func map(_ f: AccessLogFields, format: InputFormat) -> Result<(Observation, [String]), Reason> {
        var problems: [String] = []

        // Start time (required).
        guard let startValue = f.value("start_time"), let startText = startValue.text else {
            return .failure(Reason(description: "missing start_time"))
        }
        let start: Timestamp
        if let t = Timestamp.parseRFC3339(startText) {
            start = t
        } else if let t = AccessLog.epochTime(startValue) {
            start = t
        } else {
            return .failure(Reason(description: "start_time: '\(AccessLog.clip(startText))' is not an RFC 3339 time"))
        }

        // Direction.
        let cluster = f.text("upstream_cluster")
        let peerURISAN = f.text("downstream_peer_uri_san")
        let kind: ObservationKind
        if let cluster, cluster.hasPrefix("inbound|") {
            kind = .inbound
        } else if let cluster, cluster.hasPrefix("outbound|") {
            kind = .outbound
        } else {
            kind = peerURISAN != nil ? .inbound : .outbound
        }

        var obs = Observation(kind: kind, format: format.rawValue, start: start)
        obs.durationNanos = AccessLog.nanos(milliseconds: f.value("duration"))
        obs.method = f.text("method")
        obs.path = f.text("path").map(AccessLog.pathWithoutQuery)
        obs.authority = f.text("authority")
        if let code = f.value("response_code"), let text = code.text {
            if let i = code.int, let s = Int(exactly: i) {
                obs.status = s
            } else {
                problems.append("response_code: '\(AccessLog.clip(text))' is not a number")
            }
        }
        obs.requestID = f.text("request_id")
        obs.userAgent = f.text("user_agent")
        obs.responseFlags = f.text("response_flags")
        obs.route = f.text("route_name")

        // Trace ids.
        var trace = AccessLog.TraceInputs()
        if let t = f.text("trace_id") { trace.explicit.append(("trace_id", t, false)) }
        trace.traceparent = f.text("traceparent")
        trace.b3 = f.text("b3")
        trace.b3TraceID = f.text("x_b3_traceid")
        trace.b3SpanID = f.text("x_b3_spanid")
        trace.b3ParentSpanID = f.text("x_b3_parentspanid")
        trace.b3Sampled = f.text("x_b3_sampled")
        let resolved = trace.resolve()
        obs.traceID = resolved.traceID
        obs.parentSpanID = resolved.parentSpanID
        problems += resolved.problems

        let service = serviceName(
            cluster: cluster, authority: obs.authority, sni: f.text("requested_server_name"), kind: kind)
        let downstreamRemote = f.text("downstream_remote_address").flatMap(AccessLog.hostPort)

        if kind == .inbound {
            // The downstream peer called this workload.
            let sans = peerURISAN.map(splitSANs) ?? []
            obs.caller.spiffeID = sans.first
            obs.caller.address = downstreamRemote?.host
            obs.caller.port = downstreamRemote?.port
            obs.callee.spiffeID = f.text("downstream_local_uri_san").flatMap { splitSANs($0).first }
            obs.callee.service = service
            if let local = f.text("downstream_local_address").flatMap(AccessLog.hostPort) {
                obs.callee.address = local.host
                obs.callee.port = local.port
            }
            var cert = PresentedCertificate(
                serial: f.text("downstream_peer_serial"),
                fingerprintSHA256: f.text("downstream_peer_fingerprint_256"),
                uriSANs: sans, subject: f.text("downstream_peer_subject"))
            for (key, keyPath) in [("downstream_peer_cert_v_start", \PresentedCertificate.notBefore),
                                   ("downstream_peer_cert_v_end", \PresentedCertificate.notAfter)] {
                if let t = f.text(key) {
                    if let ts = AccessLog.certificateTime(t) {
                        cert[keyPath: keyPath] = ts
                    } else {
                        problems.append("\(key): '\(AccessLog.clip(t))' is not a time")
                    }
                }
            }
            if let serial = f.text("downstream_peer_serial"), cert.serial == nil {
                problems.append("downstream_peer_serial: '\(AccessLog.clip(serial))' is not hex")
            }
            if let fp = f.text("downstream_peer_fingerprint_256"), cert.fingerprintSHA256 == nil {
                problems.append("downstream_peer_fingerprint_256: '\(AccessLog.clip(fp))' is not a SHA-256 hex digest")
            }
            if !cert.isEmpty || cert.subject != nil { obs.callerCertificate = cert }
            let peerIdentity = peerURISAN != nil || f.text("downstream_peer_serial") != nil
                || f.text("downstream_peer_fingerprint_256") != nil
            obs.tlsVersion = f.text("downstream_tls_version")
            obs.transport = transport(
                peerIdentity: peerIdentity, version: obs.tlsVersion, versionKeyPresent: f.has("downstream_tls_version"))
            if let xfcc = f.text("x_forwarded_client_cert") {
                switch XFCC.parse(xfcc) {
                case .success(let elements): obs.xfccURI = elements.last?.uri
                case .failure(let e): problems.append(e.description)
                }
            }
        } else {
            // This workload called the upstream peer.
            obs.caller.spiffeID = f.text("upstream_local_uri_san").flatMap { splitSANs($0).first }
            obs.caller.address = downstreamRemote?.host
            // The port the callee saw the connection come from (its inbound `downstream_remote_address`).
            obs.caller.port = f.text("upstream_local_address").flatMap(AccessLog.hostPort)?.port
            let upstreamPeer = f.text("upstream_peer_uri_san")
            obs.callee.spiffeID = upstreamPeer.flatMap { splitSANs($0).first }
            obs.callee.service = service
            if let host = f.text("upstream_host").flatMap(AccessLog.hostPort) {
                obs.callee.address = host.host
                obs.callee.port = host.port
            }
            obs.tlsVersion = f.text("upstream_tls_version")
            obs.transport = transport(
                peerIdentity: upstreamPeer != nil, version: obs.tlsVersion,
                versionKeyPresent: f.has("upstream_tls_version"))
        }

        if let p = f.text("policy") {
            if let decision = AccessLog.policy(p) {
                obs.policy = decision
            } else {
                problems.append("policy: '\(AccessLog.clip(p))' is not allow, deny or dry-run-deny")
            }
        } else if let details = f.text("response_code_details"), details.hasPrefix("rbac_access_denied") {
            obs.policy = .deny
        }
        return .success((obs, problems))
    }

    static func transport(peerIdentity: Bool, version: String?, versionKeyPresent: Bool) -> Transport? {
        if peerIdentity { return .mtls }
        if version != nil { return .tls }
        if versionKeyPresent { return .plaintext }
        return nil
    }

    /// `%DOWNSTREAM_PEER_URI_SAN%` joins several SANs with `,`.
    static func splitSANs(_ text: String) -> [String] {
        guard text.utf8.contains(0x2C) || text.utf8.first == 0x20 || text.utf8.last == 0x20 else { return [text] }
        return text.utf8.split(separator: 0x2C).compactMap { part -> String? in
            var p = part[...]
            while let f = p.first, f == 0x20 || f == 0x09 { p = p.dropFirst() }
            while let l = p.last, l == 0x20 || l == 0x09 { p = p.dropLast() }
            return p.isEmpty ? nil : String(Substring(p))
        }
    }

    /// The callee's service name:
    /// - an Istio cluster `direction|port|subset|fqdn` with an fqdn: the fqdn's first DNS label;
    /// - an Istio cluster without fqdn (inbound): the first label of `authority` if it is not an IP, else of
    ///   the fqdn in an Istio SNI (`outbound_.8000_._.httpbin.foo.svc.cluster.local`);
    /// - Istio's passthrough / blackhole clusters: nil;
    /// - any other cluster name: the name itself; no cluster: the authority's first label.
    static func serviceName(cluster: String?, authority: String?, sni: String?, kind: ObservationKind) -> String? {
        func fromAuthority() -> String? {
            if let host = authority.flatMap(AccessLog.authorityHost), let label = AccessLog.firstLabel(host) {
                return label
            }
            if let sni, sni.hasPrefix("outbound_.") {
                let parts = sni.split(separator: "_", omittingEmptySubsequences: false)
                // outbound_ .8000_ ._ .fqdn → the last part starts with "." + fqdn
                if let last = parts.last, last.hasPrefix("."), last.count > 1 {
                    return AccessLog.firstLabel(last.dropFirst())
                }
            }
            return nil
        }
        guard let cluster else { return fromAuthority() }
        let parts = cluster.utf8.split(separator: 0x7C, maxSplits: 4, omittingEmptySubsequences: false)
        if parts.count == 4 {
            let fqdn = Substring(parts[3])
            if !fqdn.isEmpty { return AccessLog.firstLabel(fqdn) ?? String(fqdn) }
            return fromAuthority()
        }
        if nonServiceClusters.contains(cluster) { return nil }
        return cluster
    }
}
