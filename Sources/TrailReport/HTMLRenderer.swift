import TrailCore

/// One self-contained HTML file: inline CSS and SVG, no scripts, no external resources (a Content Security
/// Policy forbids them too), readable on screen and printable. Every telemetry string is HTML-escaped,
/// also inside SVG text and attributes.
public struct HTMLRenderer: ReportRenderer {
    public init() {}
    public var formatName: String { "html" }

    static let style = """
        :root { color-scheme: light; }
        body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1c2326; margin: 2rem auto; max-width: 1180px; padding: 0 1rem; }
        h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { border-bottom: 2px solid #cfd8dc; padding-bottom: .2rem; margin-top: 2rem; }
        .meta { color: #546e7a; }
        table { border-collapse: collapse; width: 100%; margin: .6rem 0; font-size: 13px; }
        th, td { border: 1px solid #cfd8dc; padding: 3px 6px; text-align: left; vertical-align: top; overflow-wrap: break-word; }
        th { background: #eceff1; } td.nowrap { white-space: nowrap; }
        table.hops { font-size: 12px; } table.hops td { max-width: 16rem; } div.scroll { overflow-x: auto; } table.hops code { font-size: 11px; }
        dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
        dl.summary dt { font-weight: bold; }
        .sev-high, .sev-critical, .bad { color: #b71c1c; font-weight: bold; }
        .sev-medium { color: #e65100; font-weight: bold; } .sev-low, .sev-info { color: #455a64; font-weight: bold; }
        .finding { border-left: 4px solid #c62828; padding: .2rem .8rem; margin: .8rem 0; background: #fff5f5; }
        .diagram { overflow-x: auto; } svg.chain-diagram { font-family: system-ui, sans-serif; }
        pre { background: #f5f7f8; border: 1px solid #cfd8dc; padding: .5rem; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; max-height: 24rem; overflow: auto; }
        code { font-size: 12px; overflow-wrap: break-word; }
        @media print {
          body { margin: 0; max-width: none; font-size: 10pt; }
          h2, h3 { break-after: avoid; } .diagram, .finding, tr { break-inside: avoid; }
          pre { max-height: none; overflow: visible; }
          div.scroll { overflow: visible; } table.hops { font-size: 8pt; } table.hops td { max-width: 11rem; }
          svg.chain-diagram { max-width: 100%; height: auto; }
          a { color: inherit; text-decoration: none; }
        }
        """

    public func render(_ r: IncidentReport) -> String {
        func e(_ s: String) -> String { Escape.html(s) }
        var out = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="generator" content="Trail \(IncidentReport.trailVersion)">
            <title>\(e(r.title))</title>
            <style>
            \(Self.style)
            </style>
            </head>
            <body>

            """
        out += "<h1>\(e(r.title))</h1>\n"
        out += "<p class=\"meta\">Scope: \(e(r.scope.title)) · window: \(e(ReportText.window(r.window))) · store: <code>\(e(r.storePath))</code> · Trail \(IncidentReport.trailVersion)</p>\n"

        // Summary
        let s = r.summary
        out += "<section id=\"summary\"><h2>Summary</h2>\n<dl class=\"summary\">\n"
        func item(_ k: String, _ v: String) { out += "<dt>\(k)</dt><dd>\(v)</dd>\n" }
        item("Who", s.principals.map(e).joined(separator: ", "))
        item("From where", (s.clientIPs.isEmpty ? "no client address logged" : s.clientIPs.map(e).joined(separator: ", ")) + (s.viaGateway ? " (through the gateway)" : ""))
        item("What", s.requests.map(e).joined(separator: "<br>"))
        item("When", "\(ReportText.time(s.start)) to \(ReportText.time(s.end)) (\(r.chains.count) chain\(r.chains.count == 1 ? "" : "s"), \(s.hopCount) hop\(s.hopCount == 1 ? "" : "s"))")
        item("Through", s.paths.map { $0.map { e(Names.short($0)) }.joined(separator: " → ") }.joined(separator: "<br>"))
        item("Identities", s.identities.map { "<code>\(e($0))</code>" }.joined(separator: "<br>"))
        item("Certificates at call time", s.certificateStates.map { st in
            let text = "\(st.state.rawValue) \(st.hops)"
            return ReportText.isBadState(st.state) ? "<span class=\"bad\">\(text)</span>" : text
        }.joined(separator: ", "))
        item("What was wrong", r.findings.isEmpty ? e(ReportText.verdict(r)) : "<span class=\"bad\">\(e(ReportText.verdict(r)))</span>")
        out += "</dl></section>\n"

        // Chains
        out += "<section id=\"chains\"><h2>Chains</h2>\n"
        for c in r.chains {
            out += "<section class=\"chain\" id=\"trace-\(e(c.traceID))\"><h3>Trace <code>\(e(c.traceID))</code></h3>\n"
            out += "<p>Origin: \(e(ReportText.origin(c.origin)))</p>\n"
            out += "<div class=\"diagram\">\n" + ChainDiagram(chain: c).render() + "\n</div>\n"
            out += "<div class=\"scroll\"><table class=\"hops\"><thead><tr><th>#</th><th>parent</th><th>caller → callee</th><th>request</th><th>status</th><th>start</th><th>transport</th><th>certificate</th><th>policy</th><th>user agent</th><th>findings</th></tr></thead><tbody>\n"
            for h in c.hops {
                let f = ReportText.findings(of: h, in: c).map { "<span class=\"sev-\($0.severity.rawValue)\">\($0.kind.rawValue)</span>" }.joined(separator: ", ")
                let cert = ReportText.isBadState(h.certificateState) ? "<span class=\"bad\">\(e(ReportText.certificate(h)))</span>" : e(ReportText.certificate(h))
                out += "<tr><td>\(h.index)</td><td>\(h.parent.map(String.init) ?? "")</td><td><code>\(e(h.caller))</code> →<br><code>\(e(h.callee))</code></td><td>\(e(ReportText.request(h)))</td><td>\(h.status.map(String.init) ?? "")</td><td>\(ReportText.time(h.start))</td><td>\(h.transport?.rawValue ?? "?")</td><td>\(cert)</td><td>\(h.policy?.rawValue ?? "")</td><td>\(e(h.userAgent ?? ""))</td><td>\(f)</td></tr>\n"
            }
            out += "</tbody></table></div>\n"
            for g in c.gaps { out += "<p>Gap before hop \(g.beforeHop): \(e(g.detail))</p>\n" }
            out += "</section>\n"
        }
        out += "</section>\n"

        // Findings
        out += "<section id=\"findings\"><h2>Findings</h2>\n"
        if r.findings.isEmpty { out += "<p>None.</p>\n" }
        for f in r.findings {
            let x = f.finding
            out += "<div class=\"finding\"><h3><span class=\"sev-\(x.severity.rawValue)\">\(x.kind.rawValue) (\(x.severity.rawValue))</span></h3>\n<dl class=\"summary\">\n"
            item("Id", "<code>\(e(f.id))</code>")
            item("Where", "trace <code>\(e(x.traceID))</code>\(x.hopIndex.map { ", hop \($0)" } ?? ""), at \(ReportText.time(x.time))")
            if let p = x.principal { item("Principal", e(p)) }
            if let i = x.identity { item("Identity", "<code>\(e(i))</code>") }
            if let sr = x.serial { item("Certificate serial", e(sr)) }
            item("What", e(x.detail))
            item("Why it matters", e(f.why))
            item("Evidence", x.rawRecordIDs.map { "<a href=\"#record-\($0)\">\($0)</a>" }.joined(separator: ", "))
            out += "</dl></div>\n"
        }
        out += "</section>\n"

        // Timeline
        out += "<section id=\"timeline\"><h2>Timeline</h2>\n<table><thead><tr><th>time</th><th>trace</th><th>hop</th><th>event</th></tr></thead><tbody>\n"
        for t in r.timeline {
            let alarming = t.kind == .finding || (t.kind == .certificate && (t.text.hasSuffix(" revoked") || t.text.contains(" revoked (") || t.text.contains(" expired")))
            let cls = alarming ? " class=\"bad\"" : ""
            out += "<tr><td class=\"nowrap\">\(ReportText.time(t.time))</td><td class=\"nowrap\"><code>\(e(t.traceID ?? ""))</code></td><td>\(t.hop.map(String.init) ?? "")</td><td\(cls)>\(e(t.text))</td></tr>\n"
        }
        out += "</tbody></table></section>\n"

        // Identities
        out += "<section id=\"identities\"><h2>Identities and certificates</h2>\n<p>Certificate states are judged at \(ReportText.time(r.judgedAt)), the end of the last chain.</p>\n"
        for i in r.identities {
            out += "<h3><code>\(e(i.spiffeID))</code></h3>\n"
            if !i.services.isEmpty { out += "<p>Seen as: \(i.services.map(e).joined(separator: ", "))</p>\n" }
            out += "<table><thead><tr><th>serial</th><th>valid from</th><th>valid to</th><th>issuer</th><th>events</th><th>state</th><th>presented in</th></tr></thead><tbody>\n"
            for c in i.certificates {
                let events = c.events.map { "\($0.kind) \(ReportText.time($0.time))\($0.reason.map { " (\($0))" } ?? "")" }.joined(separator: "; ")
                let state = ["revoked", "expired", "not-yet-valid", "unknown"].contains(c.state) ? "<span class=\"bad\">\(e(c.state))</span>" : e(c.state)
                out += "<tr><td>\(e(c.serial))</td><td>\(ReportText.time(c.notBefore))</td><td>\(ReportText.time(c.notAfter))</td><td>\(e(c.issuer ?? ""))</td><td>\(e(events))</td><td>\(state)</td><td>\(e(c.presentedIn.joined(separator: ", ")))</td></tr>\n"
            }
            out += "</tbody></table>\n"
        }
        out += "</section>\n"

        // Evidence
        out += "<section id=\"evidence\"><h2>Evidence</h2>\n"
        out += "<p>\(r.evidence.records.count) raw records, decompressed as ingested. Set SHA-256: <code class=\"set-sha256\">\(r.evidence.setSHA256)</code> (\(e(EvidenceManifest.setHashDefinition))). Verify with <code>trail verify</code> on the JSON report or an evidence bundle.</p>\n"
        out += "<table><thead><tr><th>record</th><th>sha256</th><th>format</th><th>source</th></tr></thead><tbody>\n"
        for x in r.evidence.records {
            out += "<tr><td><a href=\"#record-\(x.id)\">\(x.id)</a></td><td><code>\(x.sha256)</code></td><td>\(e(x.format))</td><td>\(e(x.source)):\(x.line)</td></tr>\n"
        }
        out += "</tbody></table>\n"
        for x in r.evidence.records {
            let body = x.text.map { Escape.html($0.hasSuffix("\n") ? String($0.dropLast()) : $0, keepNewlines: true) } ?? ("base64: " + Base64.encode(x.bytes))
            out += "<h4 id=\"record-\(x.id)\">Record \(x.id) <small><code>\(x.sha256)</code></small></h4>\n<pre>\(body)</pre>\n"
        }
        out += "</section>\n"

        // Reproduce
        out += "<section id=\"reproduce\"><h2>Reproduce</h2>\n<pre>"
        out += r.reproduceCommands(format: formatName).map(e).joined(separator: "\n")
        out += "</pre></section>\n</body>\n</html>\n"
        return out
    }
}
