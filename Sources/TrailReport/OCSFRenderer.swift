import TrailCore

/// OCSF events as NDJSON for a SIEM: one API Activity event (class 6003, with the trace profile) per hop and
/// one Authentication event (class 3002) per authentication on an edge of the chain: the gateway's
/// authentication of the external principal, and each mutual-TLS handshake in which a workload presented its
/// certificate. Pinned to one released OCSF schema version, ``OCSFRenderer/schemaVersion``.
public struct OCSFRenderer: ReportRenderer {
    public init() {}
    public var formatName: String { "ocsf" }

    /// The released OCSF schema version the events follow (`metadata.version`).
    public static let schemaVersion = "1.5.0"

    public func render(_ r: IncidentReport) -> String {
        events(r).map { $0.serialized() + "\n" }.joined()
    }

    public func events(_ r: IncidentReport) -> [JSONValue] {
        var certificates: [String: ReportCertificate] = [:]
        for i in r.identities { for c in i.certificates { certificates[c.serial] = certificates[c.serial] ?? c } }
        var out: [JSONValue] = []
        for c in r.chains {
            for h in c.hops {
                let findings = ReportText.findings(of: h, in: c)
                out.append(apiActivity(h, chain: c, findings: findings))
                if let p = h.principal, p.type != .anonymous {
                    out.append(edgeAuthentication(h, principal: p, chain: c, findings: findings))
                }
                if h.transport == .mtls {
                    out.append(workloadAuthentication(h, chain: c, findings: findings, certificate: h.serial.flatMap { certificates[$0] }))
                }
            }
        }
        return out
    }

    // MARK: API Activity (6003)

    func apiActivity(_ h: Hop, chain c: Chain, findings: [Finding]) -> JSONValue {
        let activity = Self.activity(method: h.method)
        let severity = Self.severity(findings)
        var members: [(String, JSONValue)] = [
            ("activity_id", .int(Int64(activity.id))),
            ("activity_name", .string(activity.name)),
            ("category_uid", .int(6)),
            ("category_name", .string("Application Activity")),
            ("class_uid", .int(6003)),
            ("class_name", .string("API Activity")),
            ("type_uid", .int(Int64(600300 + activity.id))),
            ("type_name", .string("API Activity: \(activity.name)")),
            ("time", .int(h.start.milliseconds)),
            ("start_time", .int(h.start.milliseconds)),
        ]
        if let d = h.durationNanos {
            members += [("end_time", .int(h.start.adding(nanoseconds: d).milliseconds)), ("duration", .int(d / 1_000_000))]
        }
        members += [("severity_id", .int(Int64(severity.id))), ("severity", .string(severity.name))]
        members += Self.status(h, findings: findings)
        var message = "\(h.caller) → \(h.callee) \(ReportText.request(h))"
        if let s = h.status { message += " \(s)" }
        message += ", certificate \(ReportText.certificate(h))"
        members.append(("message", .string(message)))
        members.append(("metadata", Self.metadata(uid: "\(c.traceID)-\(h.index)-api", traceID: c.traceID, profiles: ["trace"])))

        var actor: [(String, JSONValue)] = [("user", Self.workloadUser(name: h.caller, spiffeID: h.callerSPIFFEID))]
        if let service = h.callerService { actor.append(("app_name", .string(service))) }
        if let p = h.policy { actor.append(("authorizations", .array([.object([("decision", .string(p.rawValue))])]))) }
        members.append(("actor", .object(actor)))

        var api: [(String, JSONValue)] = [("operation", .string(ReportText.request(h).isEmpty ? "unknown" : ReportText.request(h)))]
        var service: [(String, JSONValue)] = [("name", .string(h.calleeService ?? h.callee))]
        if let id = h.calleeSPIFFEID { service.append(("uid", .string(id))) }
        api.append(("service", .object(service)))
        if let rid = h.requestID { api.append(("request", .object([("uid", .string(rid))]))) }
        if let s = h.status { api.append(("response", .object([("code", .int(Int64(s)))]))) }
        members.append(("api", .object(api)))

        members.append(("src_endpoint", Self.endpoint(name: h.caller, spiffeID: h.callerSPIFFEID, service: h.callerService, address: h.callerAddress)))
        members.append(("dst_endpoint", Self.endpoint(name: h.callee, spiffeID: h.calleeSPIFFEID, service: h.calleeService, address: h.calleeAddress)))

        var request: [(String, JSONValue)] = []
        if let m = h.method?.uppercased(), Self.httpMethods.contains(m) { request.append(("http_method", .string(m))) }
        var url: [(String, JSONValue)] = []
        if let p = h.path { url.append(("path", .string(p))) }
        if let a = h.authority { url.append(("hostname", .string(a))) }
        if !url.isEmpty { request.append(("url", .object(url))) }
        if let ua = h.userAgent { request.append(("user_agent", .string(ua))) }
        if let rid = h.requestID { request.append(("uid", .string(rid))) }
        if !request.isEmpty { members.append(("http_request", .object(request))) }
        if let s = h.status {
            var response: [(String, JSONValue)] = [("code", .int(Int64(s)))]
            if let d = h.durationNanos { response.append(("latency", .int(d / 1_000_000))) }
            members.append(("http_response", .object(response)))
        }
        var trace: [(String, JSONValue)] = [("uid", .string(c.traceID))]
        trace.append(("start_time", .int(c.start.milliseconds)))
        trace.append(("end_time", .int(c.end.milliseconds)))
        members.append(("trace", .object(trace)))
        members.append(("unmapped", Self.unmapped(h, chain: c, findings: findings)))
        return .object(members)
    }

    // MARK: Authentication (3002)

    /// The gateway authenticated the external principal (JWT, API key, consumer credential, client certificate).
    /// A `credential-anomaly` on the hop (the credential used from a new address for a new route) raises the
    /// event's severity, is told in `status_detail` and sets `is_new_logon`.
    func edgeAuthentication(_ h: Hop, principal p: Principal, chain c: Chain, findings: [Finding]) -> JSONValue {
        let edgeKinds: Set<FindingKind> = [.unauthenticatedEdge, .credentialAnomaly]
        let relevant = findings.filter { edgeKinds.contains($0.kind) }
        let severity = Self.severity(relevant)
        var user: [(String, JSONValue)] = [("name", .string(p.name)), ("type_id", .int(1)), ("type", .string("User"))]
        if let cred = p.credential { user.append(("credential_uid", .string(cred))) }
        let proto: String
        switch p.type {
        case .jwt: proto = "JWT"
        case .apiKey: proto = "API key"
        case .clientCertificate: proto = "TLS client certificate"
        case .consumer: proto = "Kong consumer credential"
        case .workload: proto = "X.509-SVID"
        case .anonymous: proto = "none"
        }
        var members = Self.authenticationHeader(time: h.start, severity: severity)
        members += [
            ("status_id", .int(1)), ("status", .string("Success")),
        ]
        if !relevant.isEmpty { members.append(("status_detail", .string(relevant.map(\.detail).joined(separator: "; ")))) }
        if relevant.contains(where: { $0.kind == .credentialAnomaly }) { members.append(("is_new_logon", .bool(true))) }
        members += [
            ("message", .string("gateway authenticated \(p.name) (\(p.type.rawValue))" + (c.origin.clientIP.map { " from \($0)" } ?? ""))),
            ("metadata", Self.metadata(uid: "\(c.traceID)-\(h.index)-edge-auth", traceID: c.traceID, profiles: [])),
            ("user", .object(user)),
            ("auth_protocol_id", .int(99)), ("auth_protocol", .string(proto)),
            ("logon_type_id", .int(3)), ("logon_type", .string("Network")),
            ("is_remote", .bool(true)),
            ("src_endpoint", c.origin.clientIP.flatMap { Self.ipEndpoint($0) } ?? .object([("name", .string(p.name))])),
            ("dst_endpoint", Self.endpoint(name: h.caller, spiffeID: h.callerSPIFFEID, service: h.callerService, address: h.callerAddress)),
            ("service", .object([("name", .string(h.calleeService ?? h.callee))] + (h.calleeSPIFFEID.map { [("uid", JSONValue.string($0))] } ?? []))),
        ]
        return .object(members)
    }

    /// A workload presented its certificate to the callee's sidecar (mutual TLS).
    func workloadAuthentication(_ h: Hop, chain c: Chain, findings: [Finding], certificate: ReportCertificate?) -> JSONValue {
        let certificateKinds: Set<FindingKind> = [.revokedCertificate, .expiredCertificate, .unknownCertificate, .identityMismatch]
        let relevant = findings.filter { certificateKinds.contains($0.kind) }
        let severity = Self.severity(relevant)
        var members = Self.authenticationHeader(time: h.start, severity: severity)
        members += [
            ("status_id", .int(1)), ("status", .string("Success")),
            ("status_detail", .string("certificate \(h.certificateState.rawValue) at the time of the call" + (relevant.isEmpty ? "" : ": " + relevant.map(\.detail).joined(separator: "; ")))),
            ("message", .string("\(h.caller) authenticated to \(h.callee) with mutual TLS, certificate \(ReportText.certificate(h))")),
            ("metadata", Self.metadata(uid: "\(c.traceID)-\(h.index)-mtls", traceID: c.traceID, profiles: [])),
            ("user", Self.workloadUser(name: h.caller, spiffeID: h.callerSPIFFEID)),
            ("auth_protocol_id", .int(99)), ("auth_protocol", .string("mTLS (X.509-SVID)")),
            ("logon_type_id", .int(3)), ("logon_type", .string("Network")),
            ("is_remote", .bool(true)),
            ("src_endpoint", Self.endpoint(name: h.caller, spiffeID: h.callerSPIFFEID, service: h.callerService, address: h.callerAddress)),
            ("dst_endpoint", Self.endpoint(name: h.callee, spiffeID: h.calleeSPIFFEID, service: h.calleeService, address: h.calleeAddress)),
            ("service", .object([("name", .string(h.calleeService ?? h.callee))] + (h.calleeSPIFFEID.map { [("uid", JSONValue.string($0))] } ?? []))),
        ]
        if let serial = h.serial {
            var cert: [(String, JSONValue)] = [
                ("issuer", .string(certificate?.issuer ?? "unknown")),
                ("serial_number", .string(serial)),
            ]
            if let fp = h.fingerprintSHA256 ?? certificate?.fingerprintSHA256 {
                cert.append(("fingerprints", .array([.object([("algorithm_id", .int(3)), ("algorithm", .string("SHA-256")), ("value", .string(fp))])])))
            }
            if let id = h.callerSPIFFEID { cert.append(("sans", .array([.object([("name", .string(id)), ("type", .string("URI"))])]))) }
            if let nb = certificate?.notBefore { cert.append(("created_time", .int(nb.milliseconds))) }
            if let na = certificate?.notAfter { cert.append(("expiration_time", .int(na.milliseconds))) }
            members.append(("certificate", .object(cert)))
        }
        members.append(("unmapped", Self.unmapped(h, chain: c, findings: relevant)))
        return .object(members)
    }

    static func authenticationHeader(time: Timestamp, severity: (id: Int, name: String)) -> [(String, JSONValue)] {
        [
            ("activity_id", .int(1)), ("activity_name", .string("Logon")),
            ("category_uid", .int(3)), ("category_name", .string("Identity & Access Management")),
            ("class_uid", .int(3002)), ("class_name", .string("Authentication")),
            ("type_uid", .int(300201)), ("type_name", .string("Authentication: Logon")),
            ("time", .int(time.milliseconds)),
            ("severity_id", .int(Int64(severity.id))), ("severity", .string(severity.name)),
        ]
    }

    // MARK: Objects

    static func metadata(uid: String, traceID: String, profiles: [String]) -> JSONValue {
        var m: [(String, JSONValue)] = [
            ("version", .string(schemaVersion)),
            ("product", .object([("name", .string("Trail")), ("vendor_name", .string("Trail")), ("version", .string(IncidentReport.trailVersion))])),
            ("uid", .string(uid)),
            ("correlation_uid", .string(traceID)),
            ("log_name", .string("trail-report")),
        ]
        if !profiles.isEmpty { m.append(("profiles", .from(profiles))) }
        return .object(m)
    }

    static func workloadUser(name: String, spiffeID: String?) -> JSONValue {
        var u: [(String, JSONValue)] = [("name", .string(name)), ("type_id", .int(99)), ("type", .string("Workload"))]
        if let id = spiffeID { u.append(("uid", .string(id))) }
        return .object(u)
    }

    /// A network endpoint: the SPIFFE ID as `uid`, the identity as `name`, the service as `svc_name`, the address
    /// as `ip` (and `port`) when it is an IP address, else as `hostname`.
    static func endpoint(name: String, spiffeID: String?, service: String?, address: String?) -> JSONValue {
        var e: [(String, JSONValue)] = [("name", .string(name))]
        if let id = spiffeID { e.append(("uid", .string(id))) }
        if let s = service { e.append(("svc_name", .string(s))) }
        if let a = address {
            if let (ip, port) = splitAddress(a) {
                e.append(("ip", .string(ip)))
                if let port { e.append(("port", .int(Int64(port)))) }
            } else {
                e.append(("hostname", .string(a)))
            }
        }
        return .object(e)
    }

    static func ipEndpoint(_ address: String) -> JSONValue? {
        guard let (ip, port) = splitAddress(address) else { return nil }
        var e: [(String, JSONValue)] = [("ip", .string(ip))]
        if let port { e.append(("port", .int(Int64(port)))) }
        return .object(e)
    }

    /// `10.0.0.1`, `10.0.0.1:8080`, `[2001:db8::1]:443`, `2001:db8::1` → (ip, port); nil when not an IP address.
    static func splitAddress(_ a: String) -> (String, Int?)? {
        if isIPv4(a) || isIPv6(a) { return (a, nil) }
        if a.hasPrefix("["), let close = a.firstIndex(of: "]") {
            let ip = String(a[a.index(after: a.startIndex)..<close])
            let rest = a[a.index(after: close)...]
            guard isIPv6(ip) else { return nil }
            if rest.isEmpty { return (ip, nil) }
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (0...65535).contains(port) else { return nil }
            return (ip, port)
        }
        let parts = a.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 2, isIPv4(String(parts[0])), let port = Int(parts[1]), (0...65535).contains(port) {
            return (String(parts[0]), port)
        }
        return nil
    }

    static func isIPv4(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in
            !p.isEmpty && p.count <= 3 && p.allSatisfy(\.isASCII) && p.allSatisfy(\.isNumber) && (Int(p) ?? 256) <= 255
                && !(p.count > 1 && p.hasPrefix("0"))
        }
    }

    static func isIPv6(_ s: String) -> Bool {
        s.contains(":") && s.count <= 39 && s.allSatisfy { $0.isHexDigit || $0 == ":" }
            && s.split(separator: ":", omittingEmptySubsequences: false).count <= 8
            && !s.contains(":::")
    }

    /// Trail's own facts that OCSF has no attribute for.
    static func unmapped(_ h: Hop, chain c: Chain, findings: [Finding]) -> JSONValue {
        .object([("trail", .object([
            ("hop", .int(Int64(h.index))),
            ("parent_hop", .from(h.parent)),
            ("origin_principal", .string(c.origin.principal)),
            ("origin_principal_type", .string(c.origin.principalType.rawValue)),
            ("origin_client_ip", .from(c.origin.clientIP)),
            ("certificate_state", .string(h.certificateState.rawValue)),
            ("transport", .from(h.transport?.rawValue)),
            ("findings", .from(findings.map(\.kind.rawValue))),
            ("evidence", .array(h.rawRecordIDs.map { .int($0) })),
        ]))])
    }

    static let httpMethods: Set<String> = ["OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT", "PATCH"]

    /// OCSF API activity: 1 Create, 2 Read, 3 Update, 4 Delete, 0 Unknown.
    static func activity(method: String?) -> (id: Int, name: String) {
        switch method?.uppercased() {
        case "POST": return (1, "Create")
        case "GET", "HEAD", "OPTIONS": return (2, "Read")
        case "PUT", "PATCH": return (3, "Update")
        case "DELETE": return (4, "Delete")
        default: return (0, "Unknown")
        }
    }

    /// The most severe finding; Informational when there is none.
    static func severity(_ findings: [Finding]) -> (id: Int, name: String) {
        switch findings.map(\.severity).max() {
        case nil, .info?: return (1, "Informational")
        case .low?: return (2, "Low")
        case .medium?: return (3, "Medium")
        case .high?: return (4, "High")
        case .critical?: return (5, "Critical")
        }
    }

    /// 1 Success below HTTP 400 and not denied, 2 Failure otherwise, 0 Unknown without a status.
    static func status(_ h: Hop, findings: [Finding]) -> [(String, JSONValue)] {
        guard let s = h.status else { return [("status_id", .int(0)), ("status", .string("Unknown"))] }
        let failed = s >= 400 || h.policy == .deny
        var out: [(String, JSONValue)] = [
            ("status_id", .int(failed ? 2 : 1)), ("status", .string(failed ? "Failure" : "Success")),
            ("status_code", .string(String(s))),
        ]
        if !findings.isEmpty { out.append(("status_detail", .string(findings.map(\.detail).joined(separator: "; ")))) }
        return out
    }
}
