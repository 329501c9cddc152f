/// The GraphQL operation of one request, for the record only (never for a decision): its type (`query`,
/// `mutation`, `subscription`) and name. Read from a bounded prefix of the request (the gateway keeps at most
/// ``GraphQLOperation/maxBodyBytes`` of a body), tolerating a cut-off document: what the prefix shows is used.
package struct GraphQLOperation: Sendable, Equatable {
    package var type: String?
    package var name: String?

    package init(type: String?, name: String?) {
        self.type = type
        self.name = name
    }

    /// How much of a POST body the gateway looks at.
    package static let maxBodyBytes = 64 * 1024

    /// `mutation CreateOrder`, `query`, `CreateOrder` (for `Observation.operation`).
    package var summary: String? {
        let parts = [type, name].compactMap { $0 }
        return parts.isEmpty ? nil : parts.joined(separator: " ")
    }

    /// A JSON body (`{"query": "...", "operationName": "..."}`, or a batch whose first element is used).
    package static func fromJSON(_ bytes: [UInt8]) -> GraphQLOperation? {
        var scanner = JSONPrefixScanner(bytes)
        let (query, operationName) = scanner.queryMembers()
        guard let query else { return operationName.map { GraphQLOperation(type: nil, name: $0) } }
        return fromDocument(query, operationName: operationName)
    }

    /// A GET's query parameters `query` and `operationName` (already decoded).
    package static func fromParameters(query: String?, operationName: String?) -> GraphQLOperation? {
        guard let query else { return nil }
        return fromDocument(query, operationName: operationName.flatMap { $0.isEmpty ? nil : $0 })
    }

    /// The operation named `operationName` in the document (its type, when the prefix shows its definition),
    /// else the first operation definition.
    package static func fromDocument(_ document: String, operationName: String?) -> GraphQLOperation? {
        let wanted = operationName.flatMap(validName)
        let definitions = operationDefinitions(Array(document.utf8))
        if let wanted {
            let type = definitions.first { $0.name == wanted }?.type
            return GraphQLOperation(type: type, name: wanted)
        }
        guard let first = definitions.first else { return nil }
        return first
    }

    /// A GraphQL Name (`[_A-Za-z][_0-9A-Za-z]*`, at most 128 characters), else nil: names from the request are
    /// written to logs and terminals.
    static func validName(_ s: String) -> String? {
        let u = Array(s.utf8)
        guard !u.isEmpty, u.count <= 128, isNameStart(u[0]), u.allSatisfy(isNameContinue) else { return nil }
        return s
    }

    static func isNameStart(_ b: UInt8) -> Bool { b == 0x5F || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) }
    static func isNameContinue(_ b: UInt8) -> Bool { isNameStart(b) || (0x30...0x39).contains(b) }

    /// The operation definitions at the top level of a (possibly cut) executable document, in order.
    static func operationDefinitions(_ d: [UInt8]) -> [GraphQLOperation] {
        var result: [GraphQLOperation] = []
        var i = 0
        var braces = 0
        var parens = 0
        /// After `query`/`mutation`/`subscription` at the top level: the next name (if before `(`, `@` or `{`).
        var pendingType: String?
        /// Between `fragment` and its selection set (`fragment F on query {` names no operation).
        var inFragmentHeader = false
        var lastTopLevelWasFragment = false
        while i < d.count {
            let b = d[i]
            switch b {
            case 0x20, 0x09, 0x0A, 0x0D, 0x2C: i += 1
            case 0x23:  // comment
                while i < d.count, d[i] != 0x0A, d[i] != 0x0D { i += 1 }
            case 0x22:  // string or block string
                if i + 2 < d.count, d[i + 1] == 0x22, d[i + 2] == 0x22 {
                    i += 3
                    while i < d.count {
                        if d[i] == 0x5C, i + 3 < d.count, d[i + 1] == 0x22, d[i + 2] == 0x22, d[i + 3] == 0x22 { i += 4; continue }
                        if d[i] == 0x22, i + 2 < d.count, d[i + 1] == 0x22, d[i + 2] == 0x22 { i += 3; break }
                        i += 1
                    }
                } else {
                    i += 1
                    while i < d.count, d[i] != 0x22, d[i] != 0x0A {
                        i += d[i] == 0x5C ? 2 : 1
                    }
                    i += 1
                }
            case 0x7B:  // {
                if braces == 0 && parens == 0 {
                    if let type = pendingType {
                        result.append(GraphQLOperation(type: type, name: nil))
                        pendingType = nil
                    } else if !lastTopLevelWasFragment {
                        // `{ … }` at the top level, not a fragment's selection set: the query shorthand.
                        result.append(GraphQLOperation(type: "query", name: nil))
                    }
                    lastTopLevelWasFragment = false
                }
                braces += 1
                i += 1
            case 0x7D:
                braces = max(0, braces - 1)
                i += 1
            case 0x28:
                if braces == 0, parens == 0, let type = pendingType {
                    result.append(GraphQLOperation(type: type, name: nil))
                    pendingType = nil
                }
                parens += 1
                i += 1
            case 0x29:
                parens = max(0, parens - 1)
                i += 1
            default:
                if isNameStart(b) {
                    let start = i
                    while i < d.count, isNameContinue(d[i]) { i += 1 }
                    guard braces == 0 && parens == 0 else { continue }
                    let name = String(decoding: d[start..<i], as: UTF8.self)
                    if let type = pendingType {
                        // Cut off right after the name: the name is only certain when something follows it.
                        if i < d.count { result.append(GraphQLOperation(type: type, name: name)) }
                        pendingType = nil
                    } else if name == "query" || name == "mutation" || name == "subscription", !inFragmentHeader {
                        pendingType = name
                    } else if name == "fragment" {
                        inFragmentHeader = true
                        lastTopLevelWasFragment = true
                    }
                    continue
                }
                if b == 0x40, braces == 0, parens == 0, let type = pendingType {  // @directive
                    result.append(GraphQLOperation(type: type, name: nil))
                    pendingType = nil
                }
                i += 1
            }
            if braces > 0 { inFragmentHeader = false }
        }
        if let pendingType { result.append(GraphQLOperation(type: pendingType, name: nil)) }
        return result
    }
}

/// Reads the `query` and `operationName` string members of a JSON object (or of the first object of an
/// array) from a prefix that may be cut anywhere; other members are skipped without being built.
struct JSONPrefixScanner {
    let b: [UInt8]
    var i = 0

    init(_ bytes: [UInt8]) { b = bytes }

    mutating func queryMembers() -> (query: String?, operationName: String?) {
        var query: String?
        var operationName: String?
        skipSpace()
        if peek == 0x5B {  // [ batch: the first operation
            i += 1
            skipSpace()
        }
        guard peek == 0x7B else { return (nil, nil) }
        i += 1
        while i < b.count {
            skipSpace()
            if peek == 0x2C { i += 1; continue }
            guard peek == 0x22, let key = string(allowCut: false) else { break }
            skipSpace()
            guard peek == 0x3A else { break }
            i += 1
            skipSpace()
            if key == "query" || key == "operationName", peek == 0x22 {
                let value = string(allowCut: key == "query")
                if key == "query" { query = value } else { operationName = value }
            } else if !skipValue() {
                break
            }
        }
        return (query, operationName)
    }

    var peek: UInt8? { i < b.count ? b[i] : nil }

    mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 }
    }

    /// A JSON string at `i`; a cut-off string is returned as far as it goes only with `allowCut`.
    mutating func string(allowCut: Bool) -> String? {
        i += 1
        var out: [UInt8] = []
        var pendingHigh: UInt32?
        while i < b.count {
            let c = b[i]
            if c == 0x22 {
                i += 1
                return String(decoding: out, as: UTF8.self)
            }
            if c == 0x5C {
                guard i + 1 < b.count else { break }
                let e = b[i + 1]
                i += 2
                switch e {
                case 0x6E: out.append(0x0A)
                case 0x74: out.append(0x09)
                case 0x72: out.append(0x0D)
                case 0x62: out.append(0x08)
                case 0x66: out.append(0x0C)
                case 0x75:
                    guard i + 4 <= b.count, let v = UInt32(String(decoding: b[i..<i + 4], as: UTF8.self), radix: 16) else {
                        i = b.count
                        continue
                    }
                    i += 4
                    if (0xD800...0xDBFF).contains(v) {
                        pendingHigh = v
                        continue
                    }
                    var scalar = v
                    if let high = pendingHigh, (0xDC00...0xDFFF).contains(v) {
                        scalar = 0x10000 + ((high - 0xD800) << 10) + (v - 0xDC00)
                    }
                    pendingHigh = nil
                    let character = Unicode.Scalar(scalar).map { String(Character($0)) } ?? "\u{FFFD}"
                    out += Array(character.utf8)
                default: out.append(e)
                }
                continue
            }
            out.append(c)
            i += 1
        }
        return allowCut ? String(decoding: out, as: UTF8.self) : nil
    }

    /// Skips one value; false when the prefix ends inside it.
    mutating func skipValue() -> Bool {
        var depth = 0
        while i < b.count {
            let c = b[i]
            switch c {
            case 0x22:
                guard string(allowCut: false) != nil else { return false }
                if depth == 0 { return true }
                continue
            case 0x7B, 0x5B: depth += 1
            case 0x7D, 0x5D:
                if depth == 0 { return true }  // the end of the enclosing object
                depth -= 1
                if depth == 0 {
                    i += 1
                    return true
                }
            case 0x2C where depth == 0: return true
            default: break
            }
            i += 1
        }
        return false
    }
}
