import TrailCore
import TrailStore

/// JSON and table renderings of the store's answers. The JSON keys are a contract with users' scripts.
enum Render {
    static func finding(_ f: FindingRow) -> JSONValue {
        ChainJSON.finding(id: f.id, kind: f.kind, severity: f.severity, traceID: f.traceID, hop: f.hopIndex,
                principal: f.principal, identity: f.identity, serial: f.serial, time: f.time, detail: f.detail,
                evidence: f.rawIDs)
    }

    static func chain(_ c: Chain) -> JSONValue {
        .object([
            ("trace_id", .string(c.traceID)),
            ("origin", ChainJSON.origin(c.origin)),
            ("start", .string(c.start.description)),
            ("hops", .array(c.hops.map(ChainJSON.hop))),
            ("findings", .array(c.findings.map(ChainJSON.finding))),
            ("gaps", ChainJSON.gaps(c)),
        ])
    }

    /// A short label for a workload in tables: the SPIFFE path's last segment is not used; identities are shown whole.
    static func hopRows(_ c: Chain) -> [[String]] {
        c.hops.map { h in
            let indent = String(repeating: "  ", count: c.depth(of: h))
            return [
                String(h.index), indent + h.caller + " → " + h.callee,
                [h.method, h.path].compactMap { $0 }.joined(separator: " "), h.status.map(String.init) ?? "",
                h.start.description, h.transport?.rawValue ?? "?", h.serial ?? "", h.certificateState.rawValue,
                h.policy?.rawValue ?? "",
                c.findings.filter { $0.hopIndex == h.index }.map(\.kind.rawValue).joined(separator: ","),
            ]
        }
    }
}
