import TrailCore
import TrailStore

/// Builds an ``IncidentReport`` from the store: resolves the scope to traces, loads their chains, findings,
/// the identities and certificates involved, and the raw records behind all of them.
public struct ReportBuilder {
    public let store: TrailStore

    public init(store: TrailStore) { self.store = store }

    /// An error in what was asked for: names the scope and says what to do.
    public struct Error: Swift.Error, CustomStringConvertible, Sendable {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    public func build(_ request: ReportRequest) throws -> IncidentReport {
        let traceIDs = try resolve(request)
        var chains = try traceIDs.compactMap { try store.chain(traceID: $0) }
        chains = chains.filter { c in
            c.start >= (request.window.since ?? c.start) && c.start <= (request.window.until ?? c.start)
        }
        chains.sort { ($0.start, $0.traceID) < ($1.start, $1.traceID) }
        if case .finding(let id) = request.scope {
            // The chain the finding was made in, with only that finding.
            chains = chains.map { c in
                var c = c
                c.findings = c.findings.filter { TrailStore.findingID($0) == id }
                return c
            }
        }
        guard !chains.isEmpty else {
            throw Error("no chains for \(request.scope.title)\(Self.windowText(request.window)) in \(store.path); check the value, or widen --since/--until")
        }

        let findings = chains.flatMap(\.findings)
            .sorted { ($0.time, $0.traceID, $0.hopIndex ?? -1, $0.kind.rawValue) < ($1.time, $1.traceID, $1.hopIndex ?? -1, $1.kind.rawValue) }
            .map { ReportFinding(id: TrailStore.findingID($0), finding: $0, why: $0.kind.explanation) }
        let end = chains.map(\.end).max() ?? Timestamp(nanoseconds: 0)
        let identities = try identities(chains: chains, at: end)
        let evidence = try evidence(chains: chains, findings: findings.map(\.finding))
        var arguments = request.scope.arguments
        if let s = request.window.since { arguments += ["--since", s.rfc3339(fractionDigits: 9)] }
        if let u = request.window.until { arguments += ["--until", u.rfc3339(fractionDigits: 9)] }

        return IncidentReport(
            title: "Trail incident report: \(request.scope.title)",
            scope: request.scope, window: request.window,
            summary: Self.summary(chains: chains, findings: findings.map(\.finding)),
            chains: chains,
            timeline: Self.timeline(chains: chains, findings: findings, identities: identities),
            findings: findings, identities: identities, evidence: evidence, judgedAt: end,
            reportArguments: arguments, storePath: request.storePath)
    }

    // MARK: Scope → traces

    func resolve(_ request: ReportRequest) throws -> [String] {
        switch request.scope {
        case .trace(let id):
            let normalized = TrailStore.normalizeTraceArgument(id)
            guard try store.chain(traceID: normalized) != nil else {
                throw Error("no chain with trace id \(normalized) in \(store.path); list traces with `trail activity` or `trail findings`")
            }
            return [normalized]
        case .finding(let id):
            guard let f = try store.finding(id: id) else {
                throw Error("no finding with id \(id) in \(store.path); list them with `trail findings`")
            }
            return [f.traceID]
        case .principal(let p):
            return try store.activity(principal: p, window: request.window)
        case .identity(let i):
            return try store.activity(principal: i, window: request.window)
        case .resource(let r):
            let rows = try store.whoAccessed(ResourceMatcher.parse(r), window: request.window)
            var seen = Set<String>()
            return rows.flatMap(\.traceIDs).filter { seen.insert($0).inserted }
        case .query(let name, _):
            guard let query = request.query else { throw Error("query \(name) was not loaded") }
            let result = try store.run(query, arguments: try query.arguments(request.queryParameters, now: .now))
            guard let column = result.columns.firstIndex(of: "trace_id") else {
                throw Error("query '\(name)' returns no trace_id column (it returns \(result.columns.joined(separator: ", "))); a report needs the traces to cover")
            }
            var seen = Set<String>()
            return result.rows.compactMap { $0[column].string }.filter { seen.insert($0).inserted }
        }
    }

    static func windowText(_ w: TimeWindow) -> String {
        var parts: [String] = []
        if let s = w.since { parts.append("since \(s)") }
        if let u = w.until { parts.append("until \(u)") }
        return parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")"
    }

    // MARK: Parts

    func identities(chains: [Chain], at time: Timestamp) throws -> [ReportIdentity] {
        var involved = Set<String>()
        var presented: [String: [String]] = [:]
        for c in chains {
            for h in c.hops {
                if let s = h.callerSPIFFEID { involved.insert(s) }
                if let s = h.calleeSPIFFEID { involved.insert(s) }
                if let serial = h.serial { presented[serial, default: []].append("\(c.traceID)#\(h.index)") }
            }
        }
        return try store.identities(at: time).filter { involved.contains($0.spiffeID) }.map { row in
            ReportIdentity(spiffeID: row.spiffeID, services: row.services, certificates: row.certificates.map { c in
                ReportCertificate(
                    serial: c.serial, fingerprintSHA256: c.fingerprint, notBefore: c.notBefore, notAfter: c.notAfter,
                    issuer: c.issuer,
                    events: c.events.map { .init(kind: $0.kind, time: $0.time, reason: $0.reason) },
                    state: c.state, presentedIn: presented[c.serial] ?? [])
            })
        }
    }

    func evidence(chains: [Chain], findings: [Finding]) throws -> EvidenceManifest {
        var ids = Set<Int64>()
        for c in chains { for h in c.hops { ids.formUnion(h.rawRecordIDs) } }
        for f in findings { ids.formUnion(f.rawRecordIDs) }
        let serials = Set(chains.flatMap { $0.hops.compactMap(\.serial) }).sorted()
        ids.formUnion(try store.identityEventRawIDs(serials: serials))
        var records: [EvidenceRecord] = []
        for id in ids.sorted() {
            guard let e = try store.evidence(id: id) else {
                throw Error("raw record \(id) is referenced by a hop or finding but missing from \(store.path); the store is damaged, re-ingest the sources")
            }
            let hash = EvidenceManifest.sha256(e.bytes)
            guard hash == e.sha256.lowercased() else {
                throw Error("raw record \(id) no longer matches the SHA-256 recorded when it was ingested (\(e.sha256)); the store was altered, see `trail evidence \(id) --verbose`")
            }
            records.append(EvidenceRecord(id: id, sha256: hash, format: e.format, source: e.source, line: e.line, bytes: e.bytes))
        }
        return EvidenceManifest(records: records)
    }

    static func summary(chains: [Chain], findings: [Finding]) -> ReportSummary {
        func distinct<T: Hashable>(_ values: [T]) -> [T] {
            var seen = Set<T>()
            return values.filter { seen.insert($0).inserted }
        }
        let hops = chains.flatMap(\.hops)
        let states = CertificateState.allCases.compactMap { s -> (state: CertificateState, hops: Int)? in
            let n = hops.filter { $0.certificateState == s }.count
            return n == 0 ? nil : (s, n)
        }
        let severities = Severity.allCases.reversed().compactMap { s -> (severity: Severity, count: Int)? in
            let n = findings.filter { $0.severity == s }.count
            return n == 0 ? nil : (s, n)
        }
        let paths = distinct(chains.flatMap { c in
            // Leaves' paths: every path that is not a prefix of another hop's path in the chain.
            c.hops.map(\.chainPath).filter { p in !c.hops.contains { $0.chainPath.count > p.count && Array($0.chainPath.prefix(p.count)) == p } }
        })
        return ReportSummary(
            principals: distinct(chains.map { "\($0.origin.principal) (\($0.origin.principalType.rawValue))" }),
            clientIPs: distinct(chains.compactMap(\.origin.clientIP)),
            requests: distinct(hops.map { h in
                ([h.method, h.path ?? h.operation].compactMap { $0 }.joined(separator: " ")) + " → " + h.callee
            }),
            start: chains.map(\.start).min(), end: chains.map(\.end).max(),
            paths: paths,
            identities: distinct(hops.flatMap { [$0.callerSPIFFEID, $0.calleeSPIFFEID].compactMap { $0 } }).sorted(),
            certificateStates: states, findingsBySeverity: severities, hopCount: hops.count,
            viaGateway: chains.contains { $0.origin.viaGateway })
    }

    static func timeline(chains: [Chain], findings: [ReportFinding], identities: [ReportIdentity]) -> [TimelineEntry] {
        var out: [TimelineEntry] = []
        for c in chains {
            for h in c.hops {
                let request = [h.method, h.path ?? h.operation].compactMap { $0 }.joined(separator: " ")
                var text = "\(h.caller) → \(h.callee) \(request)"
                if let s = h.status { text += " \(s)" }
                text += ", certificate \(h.certificateState.rawValue)" + (h.serial.map { " (\($0))" } ?? "")
                if h.parent == nil {
                    text = "\(c.origin.principal)" + (c.origin.clientIP.map { " from \($0)" } ?? "") + ": " + text
                }
                out.append(TimelineEntry(time: h.start, kind: .hop, traceID: c.traceID, hop: h.index, text: text))
            }
        }
        for f in findings {
            out.append(TimelineEntry(
                time: f.finding.time, kind: .finding, traceID: f.finding.traceID, hop: f.finding.hopIndex,
                text: "\(f.finding.kind.rawValue) (\(f.finding.severity.rawValue)): \(f.finding.detail)"))
        }
        // Certificate lifecycle events that fall inside the span of the report.
        if let start = chains.map(\.start).min(), let end = chains.map(\.end).max() {
            var seen = Set<String>()
            for i in identities {
                for c in i.certificates {
                    for e in c.events where e.time >= start && e.time <= end {
                        let text = "certificate \(c.serial) of \(i.spiffeID) \(e.kind)" + (e.reason.map { " (\($0))" } ?? "")
                        if seen.insert("\(e.time.nanoseconds)|\(text)").inserted {
                            out.append(TimelineEntry(time: e.time, kind: .certificate, traceID: nil, hop: nil, text: text))
                        }
                    }
                }
            }
        }
        let order: [TimelineEntry.Kind: Int] = [.certificate: 0, .hop: 1, .finding: 2]
        return out.sorted {
            ($0.time, order[$0.kind] ?? 0, $0.traceID ?? "", $0.hop ?? -1, $0.text)
                < ($1.time, order[$1.kind] ?? 0, $1.traceID ?? "", $1.hop ?? -1, $1.text)
        }
    }
}
