import GRDB
import TrailCore
import TrailCorrelator

/// Mapping between ``Observation`` and the `observation` table.
enum ObservationRow {
    static let columns = [
        "raw_id", "kind", "format", "trace_id", "chain_id", "span_id", "parent_span_id", "request_id", "start", "duration",
        "method", "path", "authority", "operation", "status",
        "caller_spiffe", "caller_service", "caller_address", "caller_port",
        "callee_spiffe", "callee_service", "callee_address", "callee_port",
        "transport", "tls_version", "cert_serial", "cert_sha256", "cert_not_before", "cert_not_after",
        "cert_uri_sans", "cert_subject", "xfcc_uri", "principal", "principal_type", "credential",
        "user_agent", "policy", "response_flags", "route",
    ]

    static let insertSQL =
        "INSERT INTO observation(\(columns.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))"

    static func bind(_ o: Observation, rawID: Int64, traceID: String, to s: RawStatement) {
        let c = o.callerCertificate
        s.bind(rawID)
        s.bind(o.kind.rawValue)
        s.bind(o.format)
        s.bind(traceID)
        s.bind(traceID)
        s.bind(o.spanID)
        s.bind(o.parentSpanID)
        s.bind(o.requestID)
        s.bind(o.start.nanoseconds)
        s.bind(o.durationNanos)
        s.bind(o.method)
        s.bind(o.path)
        s.bind(o.authority)
        s.bind(o.operation)
        s.bind(o.status)
        s.bind(o.caller.spiffeID)
        s.bind(o.caller.service)
        s.bind(o.caller.address)
        s.bind(o.caller.port)
        s.bind(o.callee.spiffeID)
        s.bind(o.callee.service)
        s.bind(o.callee.address)
        s.bind(o.callee.port)
        s.bind(o.transport?.rawValue)
        s.bind(o.tlsVersion)
        s.bind(c?.serial)
        s.bind(c?.fingerprintSHA256)
        s.bind(c?.notBefore?.nanoseconds)
        s.bind(c?.notAfter?.nanoseconds)
        s.bind((c?.uriSANs.isEmpty ?? true) ? nil : JSONValue.from(c!.uriSANs).serialized())
        s.bind(c?.subject)
        s.bind(o.xfccURI)
        s.bind(o.principal?.name)
        s.bind(o.principal?.type.rawValue)
        s.bind(o.principal?.credential)
        s.bind(o.userAgent)
        s.bind(o.policy?.rawValue)
        s.bind(o.responseFlags)
        s.bind(o.route)
    }

    static let selectSQL = "SELECT id, \(columns.joined(separator: ", ")) FROM observation"

    /// Decodes a row of `selectSQL` (column 0 is the id, then `columns` in order).
    static func decode(_ s: RawStatement) -> StoredObservation {
        func ts(_ c: Int32) -> Timestamp? { s.int64(c).map(Timestamp.init(nanoseconds:)) }
        let traceID = s.string(4) ?? ""
        var certificate: PresentedCertificate?
        let serial = s.string(26), sha = s.string(27), sansText = s.string(30)
        let sans = sansText.flatMap { try? JSONParser.parse(Array($0.utf8)) }?.array?.compactMap(\.string) ?? []
        if serial != nil || sha != nil || !sans.isEmpty || s.int64(29) != nil {
            certificate = PresentedCertificate(
                serial: serial, fingerprintSHA256: sha, notBefore: ts(28), notAfter: ts(29), uriSANs: sans,
                subject: s.string(31))
        }
        var principal: Principal?
        if let name = s.string(33) {
            principal = Principal(
                name: name, type: PrincipalType(rawValue: s.string(34) ?? "") ?? .consumer, credential: s.string(35))
        }
        let o = Observation(
            kind: ObservationKind(rawValue: s.string(2) ?? "") ?? .inbound, format: s.string(3) ?? "",
            traceID: traceID.hasPrefix("untraced:") ? nil : traceID, spanID: s.string(6),
            parentSpanID: s.string(7), requestID: s.string(8), start: Timestamp(nanoseconds: s.int64(9) ?? 0),
            durationNanos: s.int64(10), method: s.string(11), path: s.string(12), authority: s.string(13),
            operation: s.string(14), status: s.int(15),
            caller: Endpoint(spiffeID: s.string(16), service: s.string(17), address: s.string(18), port: s.int(19)),
            callee: Endpoint(spiffeID: s.string(20), service: s.string(21), address: s.string(22), port: s.int(23)),
            transport: s.string(24).flatMap(Transport.init(rawValue:)), tlsVersion: s.string(25),
            callerCertificate: certificate, xfccURI: s.string(32), principal: principal, userAgent: s.string(36),
            policy: s.string(37).flatMap(PolicyDecision.init(rawValue:)), responseFlags: s.string(38),
            route: s.string(39))
        return StoredObservation(id: s.int64(0) ?? 0, rawRecordID: s.int64(1) ?? 0, observation: o)
    }
}
