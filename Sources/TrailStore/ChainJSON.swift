import TrailCore

/// The JSON of chains and hops that every output shares (`trail chain --format json`, reports): the keys are a
/// contract with users' scripts.
public enum ChainJSON {
    public static func ms(_ ns: Int64?) -> JSONValue {
        guard let ns else { return .null }
        return .double(Double(ns) / 1e6)
    }

    public static func origin(_ o: ChainOrigin) -> JSONValue {
        .object([
            ("principal", .string(o.principal)),
            ("principal_type", .string(o.principalType.rawValue)),
            ("client_ip", .from(o.clientIP)),
            ("via_gateway", .bool(o.viaGateway)),
            ("credential", .from(o.credential)),
        ])
    }

    public static func hop(_ h: Hop) -> JSONValue {
        .object([
            ("index", .int(Int64(h.index))),
            ("parent", .from(h.parent)),
            ("caller", .string(h.caller)),
            ("callee", .string(h.callee)),
            ("caller_spiffe_id", .from(h.callerSPIFFEID)),
            ("callee_spiffe_id", .from(h.calleeSPIFFEID)),
            ("caller_service", .from(h.callerService)),
            ("callee_service", .from(h.calleeService)),
            ("method", .from(h.method)),
            ("path", .from(h.path)),
            ("operation", .from(h.operation)),
            ("status", .from(h.status)),
            ("start", .string(h.start.description)),
            ("duration_ms", ms(h.durationNanos)),
            ("mtls", h.transport.map { .bool($0 == .mtls) } ?? .null),
            ("transport", .from(h.transport?.rawValue)),
            ("serial", .from(h.serial)),
            ("fingerprint_sha256", .from(h.fingerprintSHA256)),
            ("certificate", .string(h.certificateState.rawValue)),
            ("policy", .from(h.policy?.rawValue)),
            ("principal", .from(h.principal?.name)),
            ("request_id", .from(h.requestID)),
            ("user_agent", .from(h.userAgent)),
            ("observed_by", .from(h.observedBy.map(\.rawValue))),
            ("evidence", .array(h.rawRecordIDs.map { .int($0) })),
        ])
    }

    public static func gaps(_ c: Chain) -> JSONValue {
        .array(c.gaps.map { .object([("before_hop", .int(Int64($0.beforeHop))), ("detail", .string($0.detail))]) })
    }

    public static func finding(
        id: String?, kind: String, severity: String, traceID: String, hop: Int?, principal: String?, identity: String?,
        serial: String?, time: Timestamp, detail: String, evidence: [Int64]
    ) -> JSONValue {
        let f = (id: id, kind: kind, severity: severity, traceID: traceID, hopIndex: hop, principal: principal,
                 identity: identity, serial: serial, time: time, detail: detail, rawIDs: evidence)
        return .object([
            ("id", .from(f.id)),
            ("kind", .string(f.kind)),
            ("severity", .string(f.severity)),
            ("trace_id", .string(f.traceID)),
            ("hop", .from(f.hopIndex)),
            ("principal", .from(f.principal)),
            ("identity", .from(f.identity)),
            ("serial", .from(f.serial)),
            ("time", .string(f.time.description)),
            ("detail", .string(f.detail)),
            ("why", .from(FindingKind(rawValue: f.kind)?.explanation)),
            ("evidence", .array(f.rawIDs.map { .int($0) })),
        ])
    }

    public static func finding(_ f: Finding) -> JSONValue {
        finding(id: TrailStore.findingID(f), kind: f.kind.rawValue, severity: f.severity.rawValue, traceID: f.traceID, hop: f.hopIndex,
                principal: f.principal, identity: f.identity, serial: f.serial, time: f.time, detail: f.detail,
                evidence: f.rawRecordIDs)
    }
}
