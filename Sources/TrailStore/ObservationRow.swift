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

    static func arguments(_ o: Observation, rawID: Int64, traceID: String) -> StatementArguments {
        let c = o.callerCertificate
        let sans: String? = (c?.uriSANs.isEmpty ?? true) ? nil : JSONValue.from(c!.uriSANs).serialized()
        let values: [(any DatabaseValueConvertible)?] = [
            rawID, o.kind.rawValue, o.format, traceID, traceID, o.spanID, o.parentSpanID, o.requestID, o.start.nanoseconds,
            o.durationNanos, o.method, o.path, o.authority, o.operation, o.status,
            o.caller.spiffeID, o.caller.service, o.caller.address, o.caller.port,
            o.callee.spiffeID, o.callee.service, o.callee.address, o.callee.port,
            o.transport?.rawValue, o.tlsVersion, c?.serial, c?.fingerprintSHA256, c?.notBefore?.nanoseconds,
            c?.notAfter?.nanoseconds, sans, c?.subject, o.xfccURI, o.principal?.name, o.principal?.type.rawValue,
            o.principal?.credential, o.userAgent, o.policy?.rawValue, o.responseFlags, o.route,
        ]
        return StatementArguments(values)
    }

    static let selectSQL = "SELECT id, \(columns.joined(separator: ", ")) FROM observation"

    static func decode(_ row: Row) -> StoredObservation {
        func ts(_ column: String) -> Timestamp? { (row[column] as Int64?).map(Timestamp.init(nanoseconds:)) }
        let traceID: String = row["trace_id"]
        var certificate: PresentedCertificate?
        let serial: String? = row["cert_serial"]
        let sha: String? = row["cert_sha256"]
        let sansText: String? = row["cert_uri_sans"]
        let sans = sansText.flatMap { try? JSONParser.parse(Array($0.utf8)) }?.array?.compactMap(\.string) ?? []
        if serial != nil || sha != nil || !sans.isEmpty || row["cert_not_after"] != nil {
            certificate = PresentedCertificate(
                serial: serial, fingerprintSHA256: sha, notBefore: ts("cert_not_before"), notAfter: ts("cert_not_after"),
                uriSANs: sans, subject: row["cert_subject"])
        }
        var principal: Principal?
        if let name: String = row["principal"] {
            principal = Principal(
                name: name, type: PrincipalType(rawValue: row["principal_type"] ?? "") ?? .consumer,
                credential: row["credential"])
        }
        let o = Observation(
            kind: ObservationKind(rawValue: row["kind"]) ?? .inbound, format: row["format"],
            traceID: traceID.hasPrefix("untraced:") ? nil : traceID, spanID: row["span_id"],
            parentSpanID: row["parent_span_id"], requestID: row["request_id"],
            start: Timestamp(nanoseconds: row["start"]), durationNanos: row["duration"], method: row["method"],
            path: row["path"], authority: row["authority"], operation: row["operation"], status: row["status"],
            caller: Endpoint(
                spiffeID: row["caller_spiffe"], service: row["caller_service"], address: row["caller_address"],
                port: row["caller_port"]),
            callee: Endpoint(
                spiffeID: row["callee_spiffe"], service: row["callee_service"], address: row["callee_address"],
                port: row["callee_port"]),
            transport: (row["transport"] as String?).flatMap(Transport.init(rawValue:)),
            tlsVersion: row["tls_version"], callerCertificate: certificate, xfccURI: row["xfcc_uri"],
            principal: principal, userAgent: row["user_agent"],
            policy: (row["policy"] as String?).flatMap(PolicyDecision.init(rawValue:)),
            responseFlags: row["response_flags"], route: row["route"])
        return StoredObservation(id: row["id"], rawRecordID: row["raw_id"], observation: o)
    }
}
