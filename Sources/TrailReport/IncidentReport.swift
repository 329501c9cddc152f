import TrailCore
import TrailStore

/// One incident report: a plain value built once from the store (``ReportBuilder``) and rendered by one small
/// renderer per format. Everything in it is deterministic for a given store and request: no wall-clock time.
public struct IncidentReport: Sendable {
    /// The schema version of Trail's JSON report (`report.version`).
    public static let formatVersion = 1
    /// Trail's version, written into report metadata and OCSF `metadata.product.version`.
    public static let trailVersion = "0.1.0"

    public var title: String
    public var scope: ReportScope
    public var window: TimeWindow
    public var summary: ReportSummary
    /// Chains in scope, oldest first.
    public var chains: [Chain]
    /// Hops, findings and certificate events in time order.
    public var timeline: [TimelineEntry]
    public var findings: [ReportFinding]
    /// The SPIFFE IDs that took part, with their certificates and lifecycle events.
    public var identities: [ReportIdentity]
    public var evidence: EvidenceManifest
    /// Instant at which certificate states in ``identities`` are judged: the end of the last chain.
    public var judgedAt: Timestamp
    /// Arguments that select the scope and window (`--trace X --since T`), used to build reproduction commands.
    public var reportArguments: [String]
    public var storePath: String

    /// The exact commands that reproduce this report and the facts it rests on.
    public func reproduceCommands(format: String) -> [String] {
        let db = ["--db", storePath]
        var out = [Shell.command(["trail", "report"] + reportArguments + ["--format", format] + db)]
        for c in chains { out.append(Shell.command(["trail", "chain", c.traceID] + db)) }
        for t in Set(findings.map(\.finding.traceID)).sorted() {
            out.append(Shell.command(["trail", "findings", "--trace", t] + db))
        }
        if let first = evidence.records.first {
            out.append(Shell.command(["trail", "evidence", String(first.id), "--verbose"] + db) + "   # likewise for every evidence record id")
        }
        out.append(Shell.command(["trail", "report"] + reportArguments + ["--format", "json", "-o", "report.json"] + db))
        out.append(Shell.command(["trail", "verify", "report.json"] + db))
        return out
    }
}

/// Who, what, when, from where, through which chain, which identities and certificates, what was wrong.
public struct ReportSummary: Sendable {
    /// Origin principals with their type, e.g. `alice (jwt)`.
    public var principals: [String]
    public var clientIPs: [String]
    /// Distinct requests per callee, e.g. `POST /payments/charge → spiffe://…/payments`.
    public var requests: [String]
    public var start: Timestamp?
    public var end: Timestamp?
    /// Distinct chain paths, entry point first.
    public var paths: [[String]]
    public var identities: [String]
    /// Hops per certificate state, in ``CertificateState`` order.
    public var certificateStates: [(state: CertificateState, hops: Int)]
    /// Findings per severity, most severe first.
    public var findingsBySeverity: [(severity: Severity, count: Int)]
    public var hopCount: Int
    public var viaGateway: Bool
}

/// One line of the timeline.
public struct TimelineEntry: Sendable {
    public enum Kind: String, Sendable { case hop, finding, certificate }
    public var time: Timestamp
    public var kind: Kind
    public var traceID: String?
    public var hop: Int?
    /// Plain text made of telemetry strings: renderers escape it.
    public var text: String
}

/// A finding with its stable id and why it matters.
public struct ReportFinding: Sendable {
    public var id: String
    public var finding: Finding
    public var why: String
}

/// A workload identity and its certificates.
public struct ReportIdentity: Sendable {
    public var spiffeID: String
    public var services: [String]
    public var certificates: [ReportCertificate]
}

public struct ReportCertificate: Sendable {
    public var serial: String
    public var fingerprintSHA256: String?
    public var notBefore: Timestamp?
    public var notAfter: Timestamp?
    public var issuer: String?
    public var events: [CertificateEvent]
    /// State at ``IncidentReport/judgedAt``.
    public var state: String
    /// `trace#hop` of the hops in scope where it was presented.
    public var presentedIn: [String]

    public struct CertificateEvent: Sendable {
        public var kind: String
        public var time: Timestamp
        public var reason: String?
    }
}

/// POSIX shell quoting for the reproduction commands.
enum Shell {
    static func quote(_ s: String) -> String {
        let safe = s.unicodeScalars.allSatisfy {
            CharacterSetSafe.contains($0)
        }
        if safe && !s.isEmpty { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func command(_ args: [String]) -> String { args.map(quote).joined(separator: " ") }

    private enum CharacterSetSafe {
        static func contains(_ u: Unicode.Scalar) -> Bool {
            switch u {
            case "a"..."z", "A"..."Z", "0"..."9", "-", "_", ".", "/", ":", "=", ",", "@", "+": return true
            default: return false
            }
        }
    }
}
