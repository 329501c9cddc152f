import TrailCore
import TrailStore

/// The whole report as one JSON document (the `evidence` member carries every record's bytes, so
/// `trail verify REPORT.json` works offline). Chains use the keys of `trail chain --format json`.
/// JSON escapes `<`, `>` and `&` like all of Trail's JSON output.
public struct JSONReportRenderer: ReportRenderer {
    public init() {}
    public var formatName: String { "json" }

    public func render(_ r: IncidentReport) -> String {
        document(r).serialized(pretty: true) + "\n"
    }

    public func document(_ r: IncidentReport) -> JSONValue {
        let s = r.summary
        return .object([
            ("report", .object([
                ("version", .int(Int64(IncidentReport.formatVersion))),
                ("generator", .string("Trail \(IncidentReport.trailVersion)")),
                ("title", .string(r.title)),
                ("scope", .object([("kind", .string(r.scope.kind)), ("arguments", .from(r.scope.arguments))])),
                ("window", .object([("since", .from(r.window.since?.description)), ("until", .from(r.window.until?.description))])),
                ("store", .string(r.storePath)),
                ("certificates_judged_at", .string(r.judgedAt.description)),
            ])),
            ("summary", .object([
                ("principals", .from(s.principals)),
                ("client_ips", .from(s.clientIPs)),
                ("requests", .from(s.requests)),
                ("start", .from(s.start?.description)),
                ("end", .from(s.end?.description)),
                ("chains", .int(Int64(r.chains.count))),
                ("hops", .int(Int64(s.hopCount))),
                ("via_gateway", .bool(s.viaGateway)),
                ("paths", .array(s.paths.map { .from($0) })),
                ("identities", .from(s.identities)),
                ("certificate_states", .object(s.certificateStates.map { ($0.state.rawValue, .int(Int64($0.hops))) })),
                ("findings_by_severity", .object(s.findingsBySeverity.map { ($0.severity.rawValue, .int(Int64($0.count))) })),
                ("verdict", .string(ReportText.verdict(r))),
            ])),
            ("timeline", .array(r.timeline.map { t in
                .object([("time", .string(t.time.description)), ("kind", .string(t.kind.rawValue)),
                         ("trace_id", .from(t.traceID)), ("hop", .from(t.hop)), ("text", .string(t.text))])
            })),
            ("chains", .array(r.chains.map(Self.chain))),
            ("findings", .array(r.findings.map(Self.finding))),
            ("identities", .array(r.identities.map { i in
                .object([
                    ("spiffe_id", .string(i.spiffeID)),
                    ("services", .from(i.services)),
                    ("certificates", .array(i.certificates.map { c in
                        .object([
                            ("serial", .string(c.serial)),
                            ("fingerprint_sha256", .from(c.fingerprintSHA256)),
                            ("not_before", .from(c.notBefore?.description)),
                            ("not_after", .from(c.notAfter?.description)),
                            ("issuer", .from(c.issuer)),
                            ("state", .string(c.state)),
                            ("presented_in", .from(c.presentedIn)),
                            ("events", .array(c.events.map { e in
                                .object([("kind", .string(e.kind)), ("time", .string(e.time.description)), ("reason", .from(e.reason))])
                            })),
                        ])
                    })),
                ])
            })),
            ("evidence", EvidenceBundle.json(r.evidence, includeData: true)),
            ("reproduce", .from(r.reproduceCommands(format: formatName))),
        ])
    }

    static func finding(_ f: ReportFinding) -> JSONValue { ChainJSON.finding(f.finding) }

    static func chain(_ c: Chain) -> JSONValue {
        .object([
            ("trace_id", .string(c.traceID)),
            ("origin", ChainJSON.origin(c.origin)),
            ("start", .string(c.start.description)),
            ("hops", .array(c.hops.map(ChainJSON.hop))),
            ("findings", .array(c.findings.map { .string(TrailStore.findingID($0)) })),
            ("gaps", ChainJSON.gaps(c)),
        ])
    }
}
