/// One RFC 4180 CSV cell. Cells a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return) get a leading `'`: log data must never execute. Negative numbers are data and stay as they are.
public enum CSVCell {
    public static func escape(_ s: String) -> String {
        var v = s
        if let first = v.unicodeScalars.first, ["=", "+", "-", "@", "\t", "\r"].contains(first) {
            if !(first == "-" && Double(v) != nil) { v = "'" + v }
        }
        if v.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            var quoted = "\""
            for ch in v {
                quoted.append(ch)
                if ch == "\"" { quoted.append("\"") }
            }
            return quoted + "\""
        }
        return v
    }
}

extension Chain {
    /// How many hops lie between `hop` and the chain's first hop (0 for a root hop), for indented drawings.
    public func depth(of hop: Hop) -> Int {
        var d = 0
        var p = hop.parent
        while let q = p, d < hops.count {
            d += 1
            p = hops.first { $0.index == q }?.parent
        }
        return d
    }
}
