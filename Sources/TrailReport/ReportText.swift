import TrailCore
import TrailStore

/// Plain-text pieces shared by the renderers (unescaped: each renderer escapes for its context).
enum ReportText {
    static func request(_ h: Hop) -> String {
        [h.method, h.path ?? h.operation].compactMap { $0 }.joined(separator: " ")
    }

    static func time(_ t: Timestamp?) -> String { t.map { $0.rfc3339(fractionDigits: 3) } ?? "" }

    static func origin(_ o: ChainOrigin) -> String {
        var s = "\(o.principal) (\(o.principalType.rawValue))"
        if let ip = o.clientIP { s += " from \(ip)" }
        s += o.viaGateway ? " via the gateway" : " inside the mesh"
        return s
    }

    static func certificate(_ h: Hop) -> String {
        h.certificateState.rawValue + (h.serial.map { " (\($0))" } ?? "")
    }

    /// Hop states an analyst must look at even without a finding.
    static func isBadState(_ s: CertificateState) -> Bool {
        switch s {
        case .revoked, .expired, .notYetValid, .unknown: return true
        case .valid, .none, .unlogged: return false
        }
    }

    static func findings(of h: Hop, in c: Chain) -> [Finding] {
        c.findings.filter { $0.hopIndex == h.index }
    }

    static func window(_ w: TimeWindow) -> String {
        switch (w.since, w.until) {
        case (nil, nil): return "all time"
        case (let s?, nil): return "since \(time(s))"
        case (nil, let u?): return "until \(time(u))"
        case (let s?, let u?): return "\(time(s)) to \(time(u))"
        }
    }

    /// One sentence saying what was wrong, or that nothing was.
    static func verdict(_ r: IncidentReport) -> String {
        if r.findings.isEmpty { return "No findings: every identity on the way was valid and no rule was broken." }
        let counts = r.summary.findingsBySeverity.map { "\($0.count) \($0.severity.rawValue)" }.joined(separator: ", ")
        let kinds = Array(Set(r.findings.map(\.finding.kind.rawValue))).sorted().joined(separator: ", ")
        return "\(r.findings.count) finding\(r.findings.count == 1 ? "" : "s") (\(counts)): \(kinds)."
    }
}
