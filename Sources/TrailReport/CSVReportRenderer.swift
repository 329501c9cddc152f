import TrailCore

/// One CSV row per hop (RFC 4180, CRLF), with the chain's origin, the hop's certificate state, its findings and
/// the SHA-256 of each raw record behind it, for spreadsheets and SIEM lookups. Formula-like cells are
/// prefixed with `'`.
public struct CSVReportRenderer: ReportRenderer {
    public init() {}
    public var formatName: String { "csv" }

    public static let columns = [
        "trace_id", "hop", "parent", "start", "origin_principal", "origin_type", "client_ip", "caller", "callee",
        "method", "path", "status", "transport", "serial", "certificate", "policy", "user_agent", "findings",
        "severity", "evidence_sha256",
    ]

    public func render(_ r: IncidentReport) -> String {
        let hashes = Dictionary(uniqueKeysWithValues: r.evidence.records.map { ($0.id, $0.sha256) })
        var out = Self.columns.map(Escape.csv).joined(separator: ",") + "\r\n"
        for c in r.chains {
            for h in c.hops {
                let findings = ReportText.findings(of: h, in: c)
                var row: [String] = [c.traceID, String(h.index), h.parent.map(String.init) ?? "", h.start.description]
                row += [c.origin.principal, c.origin.principalType.rawValue, c.origin.clientIP ?? "", h.caller, h.callee]
                row += [h.method ?? "", h.path ?? h.operation ?? "", h.status.map(String.init) ?? ""]
                row += [h.transport?.rawValue ?? "", h.serial ?? "", h.certificateState.rawValue, h.policy?.rawValue ?? ""]
                row.append(h.userAgent ?? "")
                row.append(findings.map(\.kind.rawValue).joined(separator: " "))
                row.append(findings.map(\.severity).max()?.rawValue ?? "")
                let evidence: [String] = h.rawRecordIDs.compactMap { hashes[$0] }
                row.append(evidence.joined(separator: " "))
                out += row.map { Escape.csv(Escape.controls($0)) }.joined(separator: ",") + "\r\n"
            }
        }
        return out
    }
}
