/// Turns a report into one output format. Renderers are pure: the same report gives the same bytes.
public protocol ReportRenderer: Sendable {
    /// The `--format` name.
    var formatName: String { get }
    func render(_ report: IncidentReport) -> String
}

/// The formats `trail report --format` accepts.
public enum ReportFormat: String, Sendable, CaseIterable {
    case md, html, json, csv, ocsf

    public var renderer: any ReportRenderer {
        switch self {
        case .md: return MarkdownRenderer()
        case .html: return HTMLRenderer()
        case .json: return JSONReportRenderer()
        case .csv: return CSVReportRenderer()
        case .ocsf: return OCSFRenderer()
        }
    }
}
