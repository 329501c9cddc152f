import TrailCore

/// An inline SVG of one chain, drawn by Trail (no scripts, no external resources): the origin, then one row per
/// hop with the callee's identity, the request, the certificate state and serial, and the findings, indented
/// by depth in the tree. Every string is escaped for SVG text and attributes.
struct ChainDiagram {
    let chain: Chain

    static let rowHeight = 66
    static let indent = 34
    static let boxWidth = 200
    static let boxHeight = 44
    static let labelWidth = 520

    /// Fill colour per certificate state: red for states a finding is made of, orange for plaintext.
    static func color(_ s: CertificateState) -> String {
        switch s {
        case .valid: return "#2e7d32"
        case .revoked, .expired, .notYetValid, .unknown: return "#c62828"
        case .none: return "#ef6c00"
        case .unlogged: return "#757575"
        }
    }

    /// The arrowhead's element id: unique per chain, letters and digits only.
    var markerID: String { "arrow-" + chain.traceID.filter { $0.isASCII && ($0.isLetter || $0.isNumber) } }

    func render() -> String {
        let c = chain
        let roots = c.hops.filter { $0.parent == nil }
        // Rows: origin, each root's caller, then each hop's callee in tree order.
        var rows: [(kind: String, depth: Int)] = [("origin", 0)]
        var rootRow: [Int: Int] = [:]
        var calleeRow: [Int: Int] = [:]
        var order: [Hop] = []
        func visit(_ h: Hop) {
            calleeRow[h.index] = rows.count
            rows.append(("hop", c.depth(of: h) + 2))
            order.append(h)
            for child in c.hops where child.parent == h.index { visit(child) }
        }
        for r in roots {
            rootRow[r.index] = rows.count
            rows.append(("caller", 1))
            visit(r)
        }
        let maxDepth = rows.map(\.depth).max() ?? 0
        let width = 16 + Self.indent * maxDepth + Self.boxWidth + 16 + Self.labelWidth
        let height = rows.count * Self.rowHeight + 8
        func e(_ s: String) -> String { Escape.html(s) }

        var out = "<svg class=\"chain-diagram\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" data-trace=\"\(e(c.traceID))\" data-hops=\"\(c.hops.count)\">\n"
        out += "<title>\(e("Chain of trace \(c.traceID): \(c.hops.count) hops"))</title>\n"
        out += "<defs><marker id=\"\(markerID)\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#455a64\"/></marker></defs>\n"

        func x(_ depth: Int) -> Int { 8 + Self.indent * depth }
        func y(_ row: Int) -> Int { 4 + row * Self.rowHeight }

        // Origin.
        out += "<g class=\"origin\"><rect x=\"\(x(0))\" y=\"\(y(0))\" width=\"\(Self.boxWidth + Self.labelWidth)\" height=\"\(Self.boxHeight)\" rx=\"22\" fill=\"#eceff1\" stroke=\"#455a64\"/>"
        out += "<text x=\"\(x(0) + 14)\" y=\"\(y(0) + 27)\" font-size=\"14\" font-weight=\"bold\">\(e(Self.clip("origin: " + ReportText.origin(c.origin), 90)))</text></g>\n"

        for r in roots {
            let row = rootRow[r.index]!
            out += "<g class=\"caller\">"
            out += connector(fromRow: 0, fromDepth: 0, toRow: row, toDepth: 1, color: "#455a64", dashed: true)
            out += box(x: x(1), y: y(row), identity: r.caller, fill: "#ffffff", stroke: "#455a64")
            out += "</g>\n"
        }
        for h in order {
            let row = calleeRow[h.index]!
            let depth = rows[row].depth
            let parentRow: Int
            let parentDepth: Int
            if let p = h.parent, let pr = calleeRow[p] {
                parentRow = pr
                parentDepth = rows[pr].depth
            } else {
                parentRow = rootRow[h.index] ?? 0
                parentDepth = 1
            }
            let findings = ReportText.findings(of: h, in: c)
            let bad = !findings.isEmpty || ReportText.isBadState(h.certificateState)
            let stateColor = Self.color(h.certificateState)
            out += "<g class=\"hop\(bad ? " flagged" : "")\" data-hop=\"\(h.index)\" data-certificate=\"\(e(h.certificateState.rawValue))\">"
            out += "<title>\(e("hop \(h.index): \(h.caller) → \(h.callee) \(ReportText.request(h))"))</title>"
            out += connector(fromRow: parentRow, fromDepth: parentDepth, toRow: row, toDepth: depth,
                             color: bad ? "#c62828" : "#455a64", dashed: h.transport == .plaintext)
            out += box(x: x(depth), y: y(row), identity: h.callee, fill: "#ffffff", stroke: bad ? "#c62828" : "#455a64")
            // Certificate state badge on the box's left edge.
            out += "<rect class=\"cert-state\" x=\"\(x(depth) - 6)\" y=\"\(y(row) + 8)\" width=\"12\" height=\"28\" rx=\"3\" fill=\"\(stateColor)\"/>"
            let lx = x(depth) + Self.boxWidth + 12
            var line1 = "#\(h.index) \(ReportText.request(h))"
            if let s = h.status { line1 += " → \(s)" }
            if let p = h.policy, p != .allow { line1 += " · policy \(p.rawValue)" }
            out += "<text x=\"\(lx)\" y=\"\(y(row) + 15)\" font-size=\"13\">\(e(Self.clip(line1, 70)))</text>"
            let line2 = "caller \(Names.short(h.caller)) · certificate \(ReportText.certificate(h)) · \(h.transport?.rawValue ?? "transport unknown")"
            out += "<text x=\"\(lx)\" y=\"\(y(row) + 31)\" font-size=\"12\" fill=\"\(stateColor)\">\(e(Self.clip(line2, 80)))</text>"
            if !findings.isEmpty {
                let line3 = "⚠ " + findings.map { "\($0.kind.rawValue) (\($0.severity.rawValue))" }.joined(separator: ", ")
                out += "<text class=\"finding\" x=\"\(lx)\" y=\"\(y(row) + 47)\" font-size=\"12\" font-weight=\"bold\" fill=\"#c62828\">\(e(Self.clip(line3, 80)))</text>"
            }
            out += "</g>\n"
        }
        out += "</svg>"
        return out
    }

    func box(x: Int, y: Int, identity: String, fill: String, stroke: String) -> String {
        "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(Self.boxWidth)\" height=\"\(Self.boxHeight)\" rx=\"6\" fill=\"\(fill)\" stroke=\"\(stroke)\" stroke-width=\"1.5\"/>"
            + "<text x=\"\(x + 12)\" y=\"\(y + 20)\" font-size=\"14\" font-weight=\"bold\">\(Escape.html(Self.clip(Names.short(identity), 24)))</text>"
            + "<text x=\"\(x + 12)\" y=\"\(y + 36)\" font-size=\"10\" fill=\"#546e7a\">\(Escape.html(Self.clipLeft(identity.hasPrefix("spiffe://") ? String(identity.dropFirst(9)) : identity, 34)))</text>"
    }

    /// An elbow from the parent box (down its left side) to the child box's left edge.
    func connector(fromRow: Int, fromDepth: Int, toRow: Int, toDepth: Int, color: String, dashed: Bool) -> String {
        let x0 = 8 + Self.indent * fromDepth + 14
        let y0 = 4 + fromRow * Self.rowHeight + Self.boxHeight
        let x1 = 8 + Self.indent * toDepth - 7
        let y1 = 4 + toRow * Self.rowHeight + Self.boxHeight / 2
        return "<path d=\"M \(x0) \(y0) L \(x0) \(y1) L \(x1) \(y1)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\"\(dashed ? " stroke-dasharray=\"5 3\"" : "") marker-end=\"url(#\(markerID))\"/>"
    }

    /// Keeps the end of an identity (its most specific part) to a width.
    static func clipLeft(_ s: String, _ n: Int) -> String {
        s.count > n ? "…" + String(s.suffix(n - 1)) : s
    }

    /// Keeps diagram text to a width; the full strings are in the tables.
    static func clip(_ s: String, _ n: Int) -> String {
        s.count > n ? String(s.prefix(n - 1)) + "…" : s
    }
}
