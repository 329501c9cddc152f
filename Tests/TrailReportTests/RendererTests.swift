import Foundation
import Testing
import TrailCore
@testable import TrailReport

@Suite("report renderers")
struct RendererTests {
    let report = HostileReport.make()

    @Test func htmlEscapesTelemetryEverywhereAndDrawsEveryHop() {
        let html = HTMLRenderer().render(report)
        #expect(!html.contains("<script"), "no script element, also not from evidence")
        #expect(!html.contains("<img"))
        #expect(!html.contains("<b>"), "SPIFFE-ish ids with markup are escaped in SVG text and tables")
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(!html.contains("\u{1B}"))
        #expect(html.contains("Content-Security-Policy"))
        #expect(!html.contains("http://") || !html.contains("src=\"http"))
        // Attribute values: the quote in the origin principal cannot end an attribute.
        #expect(!html.contains("mallory\""))
        let svg = ChainDiagram(chain: report.chains[0]).render()
        #expect(svg.components(separatedBy: "<g class=\"hop").count - 1 == 2)
        #expect(svg.contains("data-hop=\"1\" data-certificate=\"revoked\""))
        #expect(svg.contains("⚠ revoked-certificate (high)"))
        #expect(!svg.contains("<b>") && !svg.contains("<img"))
    }

    @Test func markdownCellsAndBlocksCannotBeBrokenOutOf() {
        let md = MarkdownRenderer().render(report)
        // Hop table rows keep their 10 columns: every `|` from telemetry is escaped.
        let rows = md.split(separator: "\n").filter { ($0.hasPrefix("| 0 |") || $0.hasPrefix("| 1 |")) && $0.contains(" → ") }
        #expect(rows.count == 2)
        for row in rows {
            var unescaped = 0
            var previous: Character = " "
            for ch in row {
                if ch == "|" && previous != "\\" { unescaped += 1 }
                previous = (previous == "\\" && ch == "\\") ? " " : ch
            }
            #expect(unescaped == 11, "\(row)")
        }
        // Outside code blocks no markup from telemetry survives (inside them, CommonMark shows it literally).
        let prose = md.components(separatedBy: "## Evidence")[0]
        #expect(!prose.contains("<script>") && !prose.contains("<img"))
        // The Mermaid block: labels use entity codes, so no quote, backtick or bracket from telemetry.
        let mermaid = md.components(separatedBy: "```mermaid\n")[1].components(separatedBy: "\n```\n")[0]
        #expect(!mermaid.contains("`") && !mermaid.contains("<"))
        #expect(mermaid.contains("#quot;#gt;#lt;img"))
        // Evidence with a ``` run gets a longer fence; binary evidence is base64.
        #expect(md.contains("````text\ntwo ``` </pre><script>x</script>\n````"))
        #expect(md.contains("base64: /wAB"))
        // Reproduction commands quote the store path for the shell.
        #expect(md.contains("--db 'store; rm -rf /.db'"))
    }

    @Test func csvPrefixesFormulasAndOCSFIsOneEventPerLine() throws {
        let csv = CSVReportRenderer().render(report)
        #expect(csv.hasPrefix(CSVReportRenderer.columns.joined(separator: ",") + "\r\n"))
        #expect(!csv.contains("\u{1B}"))
        #expect(csv.split(separator: "\r\n").count == 3)
        let ocsf = OCSFRenderer().render(report)
        let events = try ocsf.split(separator: "\n").map { try JSONParser.parse(Array($0.utf8)) }
        #expect(events.map { $0["class_uid"]?.int } == [6003, 3002, 6003, 3002])
        #expect(events[2]["severity_id"]?.int == 4)
        #expect(events[3]["certificate"]?["serial_number"]?.string == "11")
        #expect(events[0]["src_endpoint"]?["ip"]?.string == "10.0.0.1" && events[0]["src_endpoint"]?["port"]?.int == 8080)
        #expect(!ocsf.contains("<script>"), "JSON escapes < and >")
    }

    @Test func jsonCarriesTheEvidenceForOfflineVerification() throws {
        let json = JSONReportRenderer().render(report)
        let claimed = try ClaimedEvidence.parse(Array(json.utf8), name: "r.json")
        #expect(claimed.entries.count == 3)
        #expect(claimed.entries[2].bytes == [0xFF, 0x00, 0x01])
        let ok = EvidenceVerifier.verify(claimed) { $0.bytes }
        #expect(ok.ok)
    }
}

@Suite("evidence manifest")
struct EvidenceTests {
    @Test func setHashIsDefinedOverSortedHexHashes() {
        // Computed independently: printf '%s' "$(sha256 of 'one' and 'two', sorted, one per line)" | sha256sum
        let hashes = [EvidenceManifest.sha256(Array("two".utf8)), EvidenceManifest.sha256(Array("one".utf8))]
        #expect(hashes[1] == "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed")
        #expect(EvidenceManifest.setHash(hashes) == "2a28db94244ae5518fd0a573ed35b60a1ac6a408270351073d080ef9a9b83d90")
        #expect(EvidenceManifest.setHash(hashes.reversed()) == EvidenceManifest.setHash(hashes))
    }

    @Test func aChangedByteAndAMissingRecordAreNamed() throws {
        let manifest = HostileReport.make().evidence
        let claimed = try ClaimedEvidence.parse(Array(EvidenceBundle.file(manifest).utf8), name: "bundle.json")
        let summary = EvidenceVerifier.verify(claimed) { e in
            switch e.id {
            case 1: var b = e.bytes!; b[0] ^= 0x01; return b
            case 2: return nil
            default: return e.bytes
            }
        }
        #expect(!summary.ok)
        #expect(summary.problems.map(\.id) == [1, 2])
        if case .changed = summary.problems[0].outcome {} else { Issue.record("record 1 should be changed") }
        #expect(summary.problems[1].outcome == .missing)
        #expect(summary.manifestConsistent)
    }
}

@Suite("escaping")
struct EscapingTests {
    @Test func eachContextEscapesWhatWouldBreakIt() {
        #expect(Escape.html("<a href=\"x\">'&'</a>") == "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;")
        #expect(Escape.html("a\u{1B}b\u{202E}c") == "a\\u{1b}b\\u{202e}c")
        #expect(Escape.markdown("a|b`c*[x](javascript:y)<i>") == "a\\|b\\`c\\*\\[x\\](javascript:y)&lt;i&gt;")
        #expect(Escape.mermaid("a\"]-->b[\"`x`") == "a#quot;#93;--#gt;b#91;#quot;#96;x#96;")
        #expect(Escape.fence(for: "a ```` b") == "`````")
        #expect(Escape.csv("=1+1") == "'=1+1")
        #expect(Escape.csv("-3") == "-3")
        #expect(Escape.csv("a,\"b\"") == "\"a,\"\"b\"\"\"")
    }
}
