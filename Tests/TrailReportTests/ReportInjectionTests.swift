import Foundation
import Testing
import TrailCore
@testable import TrailReport
import TrailStore

/// Script and markup in every report format. One hostile string at a time goes into every telemetry field a
/// report shows (principal, client address, path, user agent, both identities, request id, finding detail,
/// evidence bytes and source); each format is compared with the report of a harmless string of the same length:
/// the hostile one must have exactly the same structure (HTML elements, Markdown lines and cells, CSV records and
/// fields, JSON and OCSF documents), with the string inside as inert text.
@Suite("script and markup in every report format")
struct ReportInjectionTests {
    static let payloads: [String] = [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(2)>",
        "'><svg onload=alert(3)>",
        "javascript:alert(4)//",
        "</title></style></code></pre><script>alert(5)</script>",
        "<!-- --><![CDATA[ ]]>",
        "<iframe srcdoc=\"&lt;script&gt;alert(6)&lt;/script&gt;\">",
        "[click](javascript:alert(7)) ![x](http://evil.example/x.png) <http://evil.example>",
        "`code` ``` ~~~ **bold** _em_ | cell | \\",
        "x\n# heading\n<script>alert(8)</script>\n---",
        "\"] --> evil[\"x\"]\nclick n0 call alert(9)\n%%{init: {'securityLevel': 'loose'}}%%",
        "=HYPERLINK(\"http://evil.example\",\"x\")",
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
        "</script>\u{2028}\u{2029}<script>alert(10)</script>",
        "\u{1B}]8;;http://evil.example\u{07}link\u{1B}]8;;\u{07}\u{202E}\u{85}",
        "{{7*7}} ${7*7} #{7*7} <%= 7*7 %>",
    ]

    /// A report whose telemetry fields all hold `s`.
    static func report(_ s: String) -> IncidentReport {
        let t0 = Timestamp.parseRFC3339("2026-05-04T10:00:00Z")!
        let a = "spiffe://x.example/ns/a/sa/front" + s, b = "spiffe://x.example/ns/a/sa/back" + s
        func hop(_ i: Int, parent: Int?, caller: String, callee: String, state: CertificateState) -> Hop {
            Hop(index: i, parent: parent, caller: caller, callerSPIFFEID: caller, callerService: s, callerAddress: "10.0.0.\(i + 1):8080",
                callee: callee, calleeSPIFFEID: callee, calleeService: s, calleeAddress: s, method: "POST", path: "/a" + s,
                operation: s, authority: s, status: 200, start: t0.adding(nanoseconds: Int64(i) * 1_000_000), durationNanos: 5_000_000,
                transport: .mtls, tlsVersion: s, serial: "1\(i)", fingerprintSHA256: nil, certificateState: state, policy: .allow,
                requestID: s, userAgent: s, principal: Principal(name: s, type: .consumer, credential: s), observedBy: [.inbound], observationIDs: [Int64(i + 1)],
                rawRecordIDs: [Int64(i + 1)], chainPath: [])
        }
        let hops = [hop(0, parent: nil, caller: a, callee: b, state: .valid), hop(1, parent: 0, caller: b, callee: a, state: .revoked)]
        let finding = Finding(kind: .revokedCertificate, traceID: "4bf92f3577b34da6a3ce929d0e0e4736", hopIndex: 1, principal: s,
                              identity: b, serial: "11", time: hops[1].start, detail: s, rawRecordIDs: [2])
        let chain = Chain(traceID: "4bf92f3577b34da6a3ce929d0e0e4736",
                          origin: ChainOrigin(principal: s, principalType: .consumer, clientIP: s, viaGateway: true),
                          hops: hops, gaps: [], findings: [finding])
        let records = [
            EvidenceRecord(id: 1, sha256: EvidenceManifest.sha256(Array(s.utf8)), format: "kong", source: s, line: 1, bytes: Array(s.utf8)),
            EvidenceRecord(id: 2, sha256: EvidenceManifest.sha256(Array(("2" + s).utf8)), format: "envoy-json", source: s, line: 2,
                           bytes: Array(("2" + s).utf8)),
        ]
        let reportFinding = ReportFinding(id: "f1", finding: finding, why: finding.kind.explanation)
        return IncidentReport(
            title: "Trail incident report: principal \(s)", scope: .principal(s), window: TimeWindow(),
            summary: ReportBuilder.summary(chains: [chain], findings: [finding]), chains: [chain],
            timeline: ReportBuilder.timeline(chains: [chain], findings: [reportFinding], identities: []),
            findings: [reportFinding], identities: [], evidence: EvidenceManifest(records: records), judgedAt: chain.end,
            reportArguments: ["--principal", s], storePath: "trail.db")
    }

    /// A harmless string with as many characters (and UTF-8 bytes) as `s`, so layout is the same.
    static func harmless(_ s: String) -> String { String(repeating: "x", count: s.utf8.count) }

    // MARK: HTML

    /// The elements and attribute names of an HTML document, in order: what a browser would build.
    static func structure(ofHTML html: String) -> [String] {
        var out: [String] = []
        var rest = Substring(html)
        while let open = rest.firstIndex(of: "<") {
            rest = rest[rest.index(after: open)...]
            let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "/" || $0 == "!" || $0 == "-" }
            guard let close = rest.firstIndex(of: ">") else {
                out.append("unclosed <\(name)")
                break
            }
            let inside = rest[..<close]
            var attributes: [String] = []
            var quoted = false
            var word = ""
            for ch in inside.dropFirst(name.count) {
                if ch == "\"" { quoted.toggle(); continue }
                if quoted { continue }
                if ch == "=" { attributes.append(word); word = "" } else if ch == " " || ch == "\n" { word = "" } else { word.append(ch) }
            }
            out.append("<\(name) \(attributes.joined(separator: " "))>")
            rest = rest[rest.index(after: close)...]
        }
        return out
    }

    @Test(arguments: payloads)
    func htmlHasTheStructureOfAHarmlessReport(_ s: String) {
        let hostile = HTMLRenderer().render(Self.report(s))
        let plain = HTMLRenderer().render(Self.report(Self.harmless(s)))
        #expect(Self.structure(ofHTML: hostile) == Self.structure(ofHTML: plain), "\(s.debugDescription)")
        #expect(!hostile.lowercased().contains("<script") && !hostile.lowercased().contains("<img") && !hostile.contains("<iframe"))
        #expect(HostileBytes.raw(hostile).isEmpty, "\(s.debugDescription): raw \(HostileBytes.raw(hostile))")
        // The policy that would stop a script anyway is there, once, before any telemetry.
        #expect(hostile.components(separatedBy: "Content-Security-Policy").count == 2)
        #expect(hostile.range(of: "Content-Security-Policy")!.lowerBound < hostile.range(of: "<title>")!.lowerBound)
    }

    // MARK: Markdown

    /// Unescaped `|` in a Markdown line (a backslash escapes the next character).
    static func cellBreaks(_ line: Substring) -> Int {
        var n = 0, escaped = false
        for ch in line {
            if escaped { escaped = false; continue }
            if ch == "\\" { escaped = true } else if ch == "|" { n += 1 }
        }
        return n
    }

    /// `](` (a link or image target) not escaped as `\](`.
    static func hasLinkSyntax(_ line: Substring) -> Bool {
        var previous: Character = " "
        var escaped = false
        for ch in line {
            if ch == "(" && previous == "]" && !escaped { return true }
            escaped = previous == "\\" && !escaped
            previous = ch
        }
        return false
    }

    /// A Markdown document's lines outside fenced blocks, and the Mermaid block's lines.
    static func markdownParts(_ md: String) -> (prose: [Substring], mermaid: [Substring]) {
        var prose: [Substring] = [], mermaid: [Substring] = []
        var fence: Substring?
        var inMermaid = false
        for line in md.split(separator: "\n", omittingEmptySubsequences: false) {
            if let f = fence {
                if line == f { fence = nil; inMermaid = false } else if inMermaid { mermaid.append(line) }
                continue
            }
            if line.hasPrefix("```") || line.hasPrefix("~~~") {
                fence = line.prefix { $0 == line.first }
                inMermaid = line.hasSuffix("mermaid")
                continue
            }
            prose.append(line)
        }
        return (prose, mermaid)
    }

    /// A Mermaid line without its quoted labels: the statement a renderer parses.
    static func skeleton(_ line: Substring) -> String {
        var out = "", quoted = false
        for ch in line {
            if ch == "\"" { quoted.toggle(); out.append(ch) } else if !quoted { out.append(ch) }
        }
        return out
    }

    @Test(arguments: payloads)
    func markdownHasTheStructureOfAHarmlessReport(_ s: String) {
        let hostile = MarkdownRenderer().render(Self.report(s))
        let plain = MarkdownRenderer().render(Self.report(Self.harmless(s)))
        let h = Self.markdownParts(hostile), p = Self.markdownParts(plain)
        // Outside fenced blocks: the same lines, table cells and block starts; no HTML, link or image syntax.
        #expect(h.prose.count == p.prose.count, "\(s.debugDescription): \(h.prose.count) lines, \(p.prose.count) for the harmless report")
        for (hl, pl) in zip(h.prose, p.prose) {
            #expect(Self.cellBreaks(hl) == Self.cellBreaks(pl), "\(s.debugDescription): \(hl.prefix(160))")
            #expect(!hl.contains("<") && !Self.hasLinkSyntax(hl), "\(s.debugDescription): \(hl.prefix(160))")
            #expect(hl.first == pl.first, "\(s.debugDescription): a line starts differently: \(hl.prefix(80))")
        }
        // The Mermaid block: the same statements; telemetry only inside quoted labels, with no quote, bracket,
        // backtick, `<`, `%` or brace of its own (no directive, no click handler, no new node).
        #expect(h.mermaid.map(Self.skeleton) == p.mermaid.map(Self.skeleton), "\(s.debugDescription): \(h.mermaid)")
        #expect(!h.mermaid.joined().contains("<") && !h.mermaid.joined().contains("%") && !h.mermaid.joined().contains("{"))
        #expect(HostileBytes.raw(hostile).isEmpty, "\(s.debugDescription): raw \(HostileBytes.raw(hostile))")
    }

    // MARK: CSV

    /// RFC 4180 records.
    static func parseCSV(_ text: String) -> [[String]] {
        var records: [[String]] = [], record: [String] = [], field = ""
        var quoted = false
        var chars = Array(text)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if quoted {
                if c == "\"" {
                    if i + 1 < chars.count && chars[i + 1] == "\"" { field.append("\""); i += 1 } else { quoted = false }
                } else {
                    field.append(c)
                }
            } else if c == "\"" {
                quoted = true
            } else if c == "," {
                record.append(field); field = ""
            } else if c == "\r\n" || c == "\n" {
                record.append(field); records.append(record); record = []; field = ""
            } else {
                field.append(c)
            }
            i += 1
        }
        chars = []
        if !field.isEmpty || !record.isEmpty { record.append(field); records.append(record) }
        return records
    }

    @Test(arguments: payloads)
    func csvCellsAreInert(_ s: String) {
        let hostile = Self.parseCSV(CSVReportRenderer().render(Self.report(s)))
        let plain = Self.parseCSV(CSVReportRenderer().render(Self.report(Self.harmless(s))))
        #expect(hostile.map(\.count) == plain.map(\.count), "\(s.debugDescription): records and fields differ")
        for field in hostile.joined() {
            guard let first = field.unicodeScalars.first else { continue }
            let formula = ["=", "+", "@", "\t", "\r"].contains(first) || (first == "-" && Double(field) == nil)
            #expect(!formula, "\(s.debugDescription): a cell a spreadsheet would run: \(field.prefix(60))")
        }
        #expect(HostileBytes.raw(hostile.joined().joined()).isEmpty)
    }

    // MARK: JSON and OCSF

    @Test(arguments: payloads)
    func jsonAndOCSFCarryTheStringInertAndIntact(_ s: String) throws {
        let json = JSONReportRenderer().render(Self.report(s))
        let ocsf = OCSFRenderer().render(Self.report(s))
        for (name, text) in [("json", json), ("ocsf", ocsf)] {
            #expect(!text.contains("<") && !text.contains(">") && !text.contains("&"), "\(name): \(s.debugDescription)")
            #expect(HostileBytes.raw(text.replacingOccurrences(of: "\n", with: "")).isEmpty, "\(name): raw \(HostileBytes.raw(text))")
        }
        // Lossless: a JSON reader gets the string back.
        let doc = try JSONParser.parse(Array(json.utf8))
        #expect(HostileBytes.strings(in: doc).contains(s), "the JSON report lost the string")
        let events = try ocsf.split(separator: "\n").map { try JSONParser.parse(Array($0.utf8)) }
        let plainEvents = OCSFRenderer().render(Self.report(Self.harmless(s))).split(separator: "\n")
        #expect(events.count == plainEvents.count, "one event per line: \(events.count) vs \(plainEvents.count)")
        #expect(events.contains { HostileBytes.strings(in: $0).contains { $0.contains(s) } })
    }
}

enum HostileBytes {
    /// Characters that must not appear raw in an output: C0 controls but LF and tab (evidence keeps its line
    /// structure), DEL, C1, U+2028/9, bidi controls.
    static func raw(_ text: String) -> [String] {
        text.unicodeScalars.filter { u in
            (u.value < 0x20 && u != "\n" && u != "\t") || u.value == 0x7F || (0x80...0x9F).contains(u.value) || u == "\u{2028}" || u == "\u{2029}"
                || (0x202A...0x202E).contains(u.value) || (0x2066...0x2069).contains(u.value)
        }.map { "U+" + String($0.value, radix: 16) }
    }

    static func strings(in value: JSONValue) -> [String] {
        switch value {
        case .string(let s): return [s]
        case .array(let values): return values.flatMap(strings)
        case .object(let members): return members.flatMap { [$0.0] + strings(in: $0.1) }
        default: return []
        }
    }
}
