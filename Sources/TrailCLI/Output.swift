import Foundation
import TrailCore

/// Rows for display: the same data as table, CSV or JSON.
struct Output {
    var columns: [String]
    var rows: [[String]]
    /// JSON form (usually an array of objects with richer structure than the table).
    var json: JSONValue

    func render(_ format: OutputFormat) -> String {
        switch format {
        case .json: return json.serialized(pretty: true) + "\n"
        case .csv: return CSV.render(columns: columns, rows: rows)
        case .table: return TextTable.render(columns: columns, rows: rows)
        }
    }
}

/// Terminal tables. Log data is attacker-controlled: control characters (terminal escape sequences
/// included) are shown escaped, never written raw.
enum TextTable {
    static func sanitize(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F || (scalar.value >= 0x80 && scalar.value < 0xA0)
                || scalar == "\u{2028}" || scalar == "\u{2029}" || (scalar.value >= 0x202A && scalar.value <= 0x202E)
                || (scalar.value >= 0x2066 && scalar.value <= 0x2069)
            {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func render(columns: [String], rows: [[String]], maxWidth: Int = 100) -> String {
        let cells = rows.map { $0.map { cell -> String in
            let s = sanitize(cell)
            return s.count > maxWidth ? String(s.prefix(maxWidth - 1)) + "…" : s
        } }
        var widths = columns.map(\.count)
        for row in cells {
            for (i, c) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) }
        }
        func line(_ values: [String]) -> String {
            values.enumerated().map { i, v in
                i == values.count - 1 ? v : v + String(repeating: " ", count: max(0, widths[i] - v.count))
            }.joined(separator: "  ")
        }
        var out = line(columns.map { $0.uppercased() }) + "\n"
        for row in cells { out += line(row) + "\n" }
        if rows.isEmpty { out += "(no rows)\n" }
        return out
    }
}

/// RFC 4180 CSV. Cells that a spreadsheet would run as a formula (starting with = + - @ or a tab) are
/// prefixed with a single quote: log data must never execute. Control characters are shown escaped as in tables
/// (as the report's CSV does): CSV goes to a terminal by default.
enum CSV {
    static func cell(_ s: String) -> String { CSVCell.escape(TextTable.sanitize(s)) }

    static func render(columns: [String], rows: [[String]]) -> String {
        var out = columns.map(cell).joined(separator: ",") + "\r\n"
        for row in rows { out += row.map(cell).joined(separator: ",") + "\r\n" }
        return out
    }
}
