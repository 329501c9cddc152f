import Foundation
import TrailCore

/// Markdown for incident tickets: summary, timeline, each chain as a Mermaid diagram and a table, findings,
/// identities, the evidence with hashes, and the commands that reproduce it. Every telemetry string is
/// escaped for the context it lands in (table cell, Mermaid label, code block).
public struct MarkdownRenderer: ReportRenderer {
    public init() {}
    public var formatName: String { "md" }

    public func render(_ r: IncidentReport) -> String {
        var out = ""
        func line(_ s: String = "") { out += s + "\n" }
        let e = Escape.markdown

        line("# \(e(r.title))")
        line()
        line("Scope: \(e(r.scope.title)) · window: \(e(ReportText.window(r.window))) · store: \(e(r.storePath)) · Trail \(IncidentReport.trailVersion)")
        line()

        line("## Summary")
        line()
        let s = r.summary
        line("- **Who:** \(s.principals.map(e).joined(separator: ", "))")
        line("- **From where:** \(s.clientIPs.isEmpty ? "no client address logged" : s.clientIPs.map(e).joined(separator: ", "))\(s.viaGateway ? " (through the gateway)" : "")")
        line("- **What:** \(s.requests.map(e).joined(separator: "; "))")
        line("- **When:** \(ReportText.time(s.start)) to \(ReportText.time(s.end)) (\(r.chains.count) chain\(r.chains.count == 1 ? "" : "s"), \(s.hopCount) hop\(s.hopCount == 1 ? "" : "s"))")
        line("- **Through:** \(s.paths.map { $0.map { e(Names.short($0)) }.joined(separator: " → ") }.joined(separator: "; "))")
        line("- **Identities:** \(s.identities.map(e).joined(separator: ", "))")
        line("- **Certificates at call time:** \(s.certificateStates.map { "\($0.state.rawValue) \($0.hops)" }.joined(separator: ", "))")
        line("- **What was wrong:** \(e(ReportText.verdict(r)))")
        line()

        line("## Chains")
        for c in r.chains {
            line()
            line("### Trace \(e(c.traceID))")
            line()
            line("Origin: \(e(ReportText.origin(c.origin))).")
            line()
            out += mermaid(c)
            line()
            line("| # | parent | caller → callee | request | status | start | transport | certificate | policy | findings |")
            line("|---|---|---|---|---|---|---|---|---|---|")
            for h in c.hops {
                let f = ReportText.findings(of: h, in: c).map { "**\($0.kind.rawValue)**" }.joined(separator: ", ")
                let cert = ReportText.isBadState(h.certificateState) ? "**\(e(ReportText.certificate(h)))**" : e(ReportText.certificate(h))
                line("| \(h.index) | \(h.parent.map(String.init) ?? "") | \(e(h.caller)) → \(e(h.callee)) | \(e(ReportText.request(h))) | \(h.status.map(String.init) ?? "") | \(ReportText.time(h.start)) | \(h.transport?.rawValue ?? "?") | \(cert) | \(h.policy?.rawValue ?? "") | \(f) |")
            }
            for g in c.gaps { line("\nGap before hop \(g.beforeHop): \(e(g.detail))") }
        }
        line()

        line("## Findings")
        line()
        if r.findings.isEmpty { line("None.") }
        for f in r.findings {
            let x = f.finding
            line("### \(x.kind.rawValue) (\(x.severity.rawValue))")
            line()
            line("- **Id:** \(f.id)")
            line("- **Where:** trace \(e(x.traceID))\(x.hopIndex.map { ", hop \($0)" } ?? ""), at \(ReportText.time(x.time))")
            if let p = x.principal { line("- **Principal:** \(e(p))") }
            if let i = x.identity { line("- **Identity:** \(e(i))") }
            if let s = x.serial { line("- **Certificate serial:** \(e(s))") }
            line("- **What:** \(e(x.detail))")
            line("- **Why it matters:** \(e(f.why))")
            line("- **Evidence:** records \(x.rawRecordIDs.map(String.init).joined(separator: ", "))")
            line()
        }

        line("## Timeline")
        line()
        line("| time | trace | hop | event |")
        line("|---|---|---|---|")
        for t in r.timeline {
            let marker = t.kind == .finding ? "**finding** " : (t.kind == .certificate ? "certificate event: " : "")
            line("| \(ReportText.time(t.time)) | \(e(t.traceID ?? "")) | \(t.hop.map(String.init) ?? "") | \(marker)\(e(t.kind == .certificate ? String(t.text.dropFirst("certificate ".count)) : t.text)) |")
        }
        line()

        line("## Identities and certificates")
        line()
        line("Certificate states are judged at \(ReportText.time(r.judgedAt)), the end of the last chain.")
        for i in r.identities {
            line()
            line("### \(e(i.spiffeID))")
            line()
            if !i.services.isEmpty { line("Seen as: \(i.services.map(e).joined(separator: ", "))") ; line() }
            line("| serial | valid from | valid to | issuer | events | state | presented in |")
            line("|---|---|---|---|---|---|---|")
            for c in i.certificates {
                let events = c.events.map { "\($0.kind) \(ReportText.time($0.time))\($0.reason.map { " (\($0))" } ?? "")" }.joined(separator: "; ")
                line("| \(e(c.serial)) | \(ReportText.time(c.notBefore)) | \(ReportText.time(c.notAfter)) | \(e(c.issuer ?? "")) | \(e(events)) | \(e(c.state)) | \(e(c.presentedIn.joined(separator: ", "))) |")
            }
        }
        line()

        line("## Evidence")
        line()
        line("\(r.evidence.records.count) raw records, shown decompressed as ingested. Set SHA-256: `\(r.evidence.setSHA256)` (\(e(EvidenceManifest.setHashDefinition))). Verify with `trail verify` on the JSON report or an evidence bundle.")
        line()
        line("| record | sha256 | format | source |")
        line("|---|---|---|---|")
        for x in r.evidence.records {
            line("| \(x.id) | `\(x.sha256)` | \(e(x.format)) | \(e(x.source)):\(x.line) |")
        }
        for x in r.evidence.records {
            line()
            line("#### Record \(x.id)")
            line()
            let body: String
            if let text = x.text {
                body = Escape.controls(text, keepNewlines: true)
            } else {
                body = "base64: " + Base64.encode(x.bytes)
            }
            let fence = Escape.fence(for: body)
            line(fence + "text")
            line(body.hasSuffix("\n") ? String(body.dropLast()) : body)
            line(fence)
        }
        line()

        line("## Reproduce")
        line()
        line("```sh")
        for c in r.reproduceCommands(format: formatName) { line(Escape.controls(c).replacingOccurrences(of: "`", with: "\\`")) }
        line("```")
        return out
    }

    /// `flowchart LR`: the origin, then one node per identity, one edge per hop labelled with its index,
    /// request, status and certificate state; hops with findings or bad certificates drawn red and dashed.
    func mermaid(_ c: Chain) -> String {
        var nodes: [String: String] = [:]
        var order: [String] = []
        func node(_ identity: String) -> String {
            if let id = nodes[identity] { return id }
            let id = "n\(order.count)"
            nodes[identity] = id
            order.append(identity)
            return id
        }
        var edges: [String] = []
        var red: [Int] = []
        let roots = c.hops.filter { $0.parent == nil }
        for h in roots {
            _ = node(h.caller)
        }
        for h in c.hops { _ = node(h.caller); _ = node(h.callee) }
        var e = 0
        for h in roots {
            edges.append("    origin -.-> \(node(h.caller))")
            e += 1
        }
        for h in c.hops {
            let findings = ReportText.findings(of: h, in: c)
            var label = "\(h.index): \(ReportText.request(h))"
            if let s = h.status { label += " \(s)" }
            label += " · \(ReportText.certificate(h))"
            if !findings.isEmpty { label += " · ⚠ " + findings.map(\.kind.rawValue).joined(separator: ", ") }
            edges.append("    \(node(h.caller)) -->|\"\(Escape.mermaid(label))\"| \(node(h.callee))")
            if !findings.isEmpty || ReportText.isBadState(h.certificateState) { red.append(e) }
            e += 1
        }
        var out = "```mermaid\nflowchart LR\n"
        out += "    origin([\"\(Escape.mermaid(ReportText.origin(c.origin)))\"])\n"
        for identity in order {
            out += "    \(nodes[identity]!)[\"\(Escape.mermaid(Names.short(identity)))\"]\n"
        }
        out += edges.joined(separator: "\n") + "\n"
        for i in red { out += "    linkStyle \(i) stroke:#c62828,stroke-width:3px,stroke-dasharray:6 3\n" }
        out += "```\n"
        return out
    }
}

/// Base64 without Foundation in the renderers' signatures.
enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i], b1 = i + 1 < bytes.count ? bytes[i + 1] : 0, b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
            out.append(table[Int(b0 >> 2)])
            out.append(table[Int((b0 & 3) << 4 | b1 >> 4)])
            out.append(i + 1 < bytes.count ? table[Int((b1 & 15) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? table[Int(b2 & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
