import TrailCore
import Foundation

/// Escaping for strings that came from telemetry. Every such string is attacker-controlled (a user agent, a
/// path, a header); each output format escapes it with the function for the context it lands in.
enum Escape {
    /// True for characters that must never reach an output raw: C0/C1 controls, DEL, line/paragraph
    /// separators and bidirectional overrides.
    static func isDangerousControl(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || u.value == 0x7F || (u.value >= 0x80 && u.value < 0xA0) || u == "\u{2028}" || u == "\u{2029}"
            || (u.value >= 0x202A && u.value <= 0x202E) || (u.value >= 0x2066 && u.value <= 0x2069)
    }

    /// Control characters shown as `\u{1b}`; everything else unchanged.
    static func controls(_ s: String, keepNewlines: Bool = false) -> String {
        var out = ""
        for u in s.unicodeScalars {
            if isDangerousControl(u) && !(keepNewlines && (u == "\n" || u == "\t")) {
                out += "\\u{" + String(u.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }

    /// HTML text and attribute values (also inside SVG): `& < > " '` as character references, controls escaped.
    static func html(_ s: String, keepNewlines: Bool = false) -> String {
        var out = ""
        for ch in controls(s, keepNewlines: keepNewlines).unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    /// Markdown inline text (table cells, list items): one line, no HTML, no links, no emphasis, no cell breaks.
    static func markdown(_ s: String) -> String {
        var out = ""
        for ch in controls(s).unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\\", "`", "*", "_", "[", "]", "|", "~":
                out += "\\"
                out.unicodeScalars.append(ch)
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    /// Text inside a Mermaid node or edge label (`["…"]`, `|"…"|`): Mermaid's entity codes for the characters
    /// that would end the label, the code block or open HTML, and for `%` (Mermaid reads `%%{…}%%` directives
    /// and `%%` comments anywhere in the text).
    static func mermaid(_ s: String) -> String {
        var out = ""
        for ch in controls(s).unicodeScalars {
            switch ch {
            case "\"": out += "#quot;"
            case "<": out += "#lt;"
            case ">": out += "#gt;"
            case "&": out += "#amp;"
            case "`": out += "#96;"
            case "#": out += "#35;"
            case "%": out += "#37;"
            case "|": out += "#124;"
            case "[": out += "#91;"
            case "]": out += "#93;"
            case "{": out += "#123;"
            case "}": out += "#125;"
            case ";": out += "#59;"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    /// A Markdown code fence longer than any run of backticks in `text`, so the text cannot close it.
    static func fence(for text: String) -> String {
        var longest = 0, run = 0
        for ch in text.unicodeScalars {
            if ch == "`" { run += 1; longest = max(longest, run) } else { run = 0 }
        }
        return String(repeating: "`", count: max(3, longest + 1))
    }

    /// RFC 4180 CSV cell with the formula guard of `trail`'s other CSV output.
    static func csv(_ s: String) -> String { CSVCell.escape(s) }
}

/// Short display names: `spiffe://shop.example/ns/shop/sa/orders` → `orders` for diagrams; full IDs elsewhere.
enum Names {
    static func short(_ identity: String) -> String {
        if identity.hasPrefix("spiffe://"), let last = identity.split(separator: "/").last { return String(last) }
        return identity
    }
}
