/// A parsed JSON value.
///
/// Trail parses JSON itself rather than through Foundation: log ingestion is dominated by JSON parsing, and
/// it needs exact 64-bit integers (OTLP nanosecond times), byte offsets and line numbers for evidence.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// An integer that fits in Int64.
    case int(Int64)
    /// Any other number.
    case double(Double)
    case string(String)
    case array([JSONValue])
    /// Members in document order. Lookups are linear: log objects are small.
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.double(a), .double(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let b): hasher.combine(b)
        case .int(let i): hasher.combine(i)
        case .double(let d): hasher.combine(d)
        case .string(let s): hasher.combine(s)
        case .array(let a): hasher.combine(a)
        case .object(let o):
            for (k, v) in o {
                hasher.combine(k)
                hasher.combine(v)
            }
        }
    }

    /// The member named `key` of an object, nil otherwise.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        for (k, v) in members where k == key { return v }
        return nil
    }

    /// Follows a dotted path of object keys (`request.headers.host`).
    public func value(at path: String) -> JSONValue? {
        var current: JSONValue? = self
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            current = current?[String(part)]
        }
        return current
    }

    public var object: [(String, JSONValue)]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var array: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The string, if this is a string.
    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var bool: Bool? {
        switch self {
        case .bool(let b): return b
        case .string("true"): return true
        case .string("false"): return false
        default: return nil
        }
    }

    /// An integer from a number or a numeric string ("200" and 200 alike; "1.0" and 1.0 too).
    public var int: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d):
            guard d.isFinite, d.rounded() == d, abs(d) < 9.2e18 else { return nil }
            return Int64(d)
        case .string(let s):
            if let i = Int64(s) { return i }
            if let d = Double(s), d.isFinite, d.rounded() == d, abs(d) < 9.2e18 { return Int64(d) }
            return nil
        default: return nil
        }
    }

    /// A floating-point value from a number or a numeric string.
    public var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .string(let s): return Double(s)
        default: return nil
        }
    }

    /// A string, a number or a bool rendered as text; nil for null and for the "unset" markers Envoy writes
    /// (`""` and `"-"`).
    public var text: String? {
        switch self {
        case .string(let s): return s.isEmpty || s == "-" ? nil : s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .bool(let b): return String(b)
        default: return nil
        }
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

/// An error in a JSON document, with the byte offset where it was found.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public var offset: Int
    public var message: String

    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

/// A fast, strict JSON parser over UTF-8 bytes (RFC 8259). Nesting is limited to 512 levels.
public struct JSONParser {
    public static let maximumDepth = 512

    /// Parses one complete JSON document (surrounding whitespace allowed).
    public static func parse(_ bytes: some Collection<UInt8>) throws(JSONParseError) -> JSONValue {
        let array = Array(bytes)
        return try array.withUnsafeBufferPointer { (buf) throws(JSONParseError) -> JSONValue in
            var p = JSONParser(buf)
            p.skipWhitespace()
            let v = try p.parseValue(depth: 0)
            p.skipWhitespace()
            guard p.index == buf.count else { throw p.error("unexpected data after the JSON value") }
            return v
        }
    }

    let bytes: UnsafeBufferPointer<UInt8>
    var index: Int

    init(_ bytes: UnsafeBufferPointer<UInt8>, index: Int = 0) {
        self.bytes = bytes
        self.index = index
    }

    func error(_ message: String) -> JSONParseError { JSONParseError(offset: index, message: message) }

    @inline(__always)
    mutating func skipWhitespace() {
        while index < bytes.count {
            let c = bytes[index]
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
            index += 1
        }
    }

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character '\(Self.printable(bytes[index]))'")
        }
    }

    static func printable(_ c: UInt8) -> String {
        c >= 0x20 && c < 0x7F ? String(UnicodeScalar(c)) : "\\x" + Hex.encode([c])
    }

    mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let n = word.utf8CodeUnitCount
        guard bytes.count - index >= n else { throw error("unexpected end of input") }
        let w = word.utf8Start
        for k in 0..<n where bytes[index + k] != w[k] { throw error("invalid literal") }
        index += n
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= Self.maximumDepth else { throw error("nesting deeper than \(Self.maximumDepth)") }
        index += 1
        var members: [(String, JSONValue)] = []
        // Log records are objects of a few dozen members: grow once or twice, not six times.
        members.reserveCapacity(16)
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a member name") }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            members.append((key, value))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in an object") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            throw error("expected ',' or '}'")
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= Self.maximumDepth else { throw error("nesting deeper than \(Self.maximumDepth)") }
        index += 1
        var values: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(values)
        }
        while true {
            skipWhitespace()
            values.append(try parseValue(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in an array") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(values)
            }
            throw error("expected ',' or ']'")
        }
    }

    mutating func parseString() throws(JSONParseError) -> String {
        index += 1
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw error("control character in a string") }
            index += 1
        }
        var out = [UInt8](UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: out, as: UTF8.self)
            }
            if c < 0x20 { throw error("control character in a string") }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                index += 1
                continue
            }
            index += 1
            guard index < bytes.count else { break }
            let e = bytes[index]
            index += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    // High surrogate: a low one must follow.
                    if bytes.count - index >= 6, bytes[index] == 0x5C, bytes[index + 1] == UInt8(ascii: "u") {
                        index += 2
                        let low = try hex4()
                        if low >= 0xDC00 && low < 0xE000 {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            scalar = 0xFFFD
                        }
                    } else {
                        scalar = 0xFFFD
                    }
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    scalar = 0xFFFD
                }
                let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw error("invalid escape '\\\(Self.printable(e))'")
            }
        }
        throw error("unterminated string")
    }

    mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let d = Hex.value(bytes[index]) else { throw error("invalid \\u escape") }
            v = v << 4 | UInt32(d)
            index += 1
        }
        return v
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        guard index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 else { throw error("invalid number") }
        if bytes[index] == 0x30, index + 1 < bytes.count, bytes[index + 1] >= 0x30, bytes[index + 1] <= 0x39 {
            throw error("leading zero in a number")
        }
        var magnitude: UInt64 = 0
        var overflow = false
        while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
            let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (m2, o2) = m1.addingReportingOverflow(UInt64(bytes[index] - 0x30))
            magnitude = m2
            overflow = overflow || o1 || o2
            index += 1
        }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            let fracStart = index
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
            guard index > fracStart else { throw error("invalid number") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            let expStart = index
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
            guard index > expStart else { throw error("invalid number") }
        }
        if isInteger && !overflow {
            if negative, magnitude <= UInt64(Int64.max) + 1 {
                return .int(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
            }
            if !negative, magnitude <= UInt64(Int64.max) { return .int(Int64(magnitude)) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let d = Double(text) else { throw error("invalid number") }
        return .double(d)
    }
}

/// One JSON value found in a stream of JSON records, with where it was.
public struct JSONRecord: Sendable {
    /// 1-based line of the value's first byte.
    public var line: Int
    /// Index of the element when the input was a top-level array, else nil.
    public var arrayIndex: Int?
    /// The value's bytes exactly as they were in the input.
    public var raw: [UInt8]
    /// The parsed value, or the reason it could not be parsed.
    public var value: Result<JSONValue, JSONParseError>
}

/// Splits an input into JSON records. It reads NDJSON, concatenated (pretty-printed) JSON values, and a
/// top-level JSON array whose elements are records (`splitArrays`). A value that does not parse is reported
/// with its line and the reader resumes on the next line, so one bad record never hides the others.
public enum JSONRecordReader {
    public static func records(in input: [UInt8], splitArrays: Bool = true) -> [JSONRecord] {
        var out: [JSONRecord] = []
        input.withUnsafeBufferPointer { buf in
            var p = JSONParser(buf)
            var line = 1
            var lineCursor = 0
            func advanceLines(to target: Int) {
                while lineCursor < target {
                    if buf[lineCursor] == 0x0A { line += 1 }
                    lineCursor += 1
                }
            }
            func readValue(arrayIndex: Int?) {
                let start = p.index
                advanceLines(to: start)
                let startLine = line
                do {
                    let v = try p.parseValue(depth: 0)
                    out.append(JSONRecord(
                        line: startLine, arrayIndex: arrayIndex, raw: Array(buf[start..<p.index]), value: .success(v)))
                } catch {
                    // A record cut short on its line (NDJSON) makes the parser run on into the next record.
                    // When the next line starts a new value, only the first line is the bad record.
                    var firstNewline = start
                    while firstNewline < buf.count, buf[firstNewline] != 0x0A { firstNewline += 1 }
                    if error.offset > firstNewline, firstNewline < buf.count {
                        var k = firstNewline + 1
                        while k < buf.count, buf[k] == 0x20 || buf[k] == 0x09 || buf[k] == 0x0D { k += 1 }
                        if k < buf.count, buf[k] == UInt8(ascii: "{") || buf[k] == UInt8(ascii: "[") {
                            var rawEnd = firstNewline
                            if rawEnd > start, buf[rawEnd - 1] == 0x0D { rawEnd -= 1 }
                            var e = error
                            e.offset = firstNewline - start
                            e.message = "the record ends before its JSON value is complete"
                            out.append(JSONRecord(
                                line: startLine, arrayIndex: arrayIndex, raw: Array(buf[start..<rawEnd]),
                                value: .failure(e)))
                            p.index = firstNewline + 1
                            return
                        }
                    }
                    var end = max(error.offset, start)
                    while end < buf.count, buf[end] != 0x0A { end += 1 }
                    var rawEnd = end
                    if rawEnd > start, buf[rawEnd - 1] == 0x0D { rawEnd -= 1 }
                    var e = error
                    e.offset -= start
                    out.append(JSONRecord(
                        line: startLine, arrayIndex: arrayIndex, raw: Array(buf[start..<rawEnd]), value: .failure(e)))
                    p.index = min(end + 1, buf.count)
                }
            }
            // Skip a UTF-8 byte order mark.
            if buf.count >= 3, buf[0] == 0xEF, buf[1] == 0xBB, buf[2] == 0xBF { p.index = 3 }
            p.skipWhitespace()
            if splitArrays, p.index < buf.count, buf[p.index] == UInt8(ascii: "[") {
                p.index += 1
                var element = 0
                while true {
                    p.skipWhitespace()
                    guard p.index < buf.count else { break }
                    if buf[p.index] == UInt8(ascii: "]") {
                        p.index += 1
                        break
                    }
                    if buf[p.index] == UInt8(ascii: ",") {
                        p.index += 1
                        continue
                    }
                    readValue(arrayIndex: element)
                    element += 1
                }
            }
            while true {
                p.skipWhitespace()
                guard p.index < buf.count else { break }
                readValue(arrayIndex: nil)
            }
        }
        return out
    }
}

extension JSONRecordReader {
    /// Reads the records of `input` and maps each parsed value; a record that is not valid JSON becomes a
    /// rejection with its line and the parser's reason, so `map` only ever sees values. A record's location is
    /// its line, plus `[i]` for an element of a top-level array.
    public static func parse(
        _ input: [UInt8], format: InputFormat, splitArrays: Bool = true,
        _ map: (_ value: JSONValue, _ location: RecordLocation, _ raw: [UInt8]) -> ParseResult
    ) -> [ParseResult] {
        records(in: input, splitArrays: splitArrays).map { record in
            let location = RecordLocation(line: record.line, detail: record.arrayIndex.map { "[\($0)]" })
            switch record.value {
            case .failure(let error):
                return .rejected(Rejection(format: format, location: location, raw: record.raw, reason: error.description))
            case .success(let value):
                return map(value, location, record.raw)
            }
        }
    }

    /// The first record only (the first element when the input is a top-level array), without reading the
    /// rest of the input; nil if it does not parse.
    public static func firstValue(in input: [UInt8]) -> JSONValue? {
        input.withUnsafeBufferPointer { buf in
            var p = JSONParser(buf)
            if buf.count >= 3, buf[0] == 0xEF, buf[1] == 0xBB, buf[2] == 0xBF { p.index = 3 }
            p.skipWhitespace()
            if p.index < buf.count, buf[p.index] == UInt8(ascii: "[") {
                p.index += 1
                p.skipWhitespace()
            }
            return try? p.parseValue(depth: 0)
        }
    }
}

/// Splits bytes into lines (LF or CRLF), keeping 1-based line numbers and skipping blank lines.
public enum LineSplitter {
    public static func lines(in input: [UInt8]) -> [(line: Int, bytes: ArraySlice<UInt8>)] {
        var out: [(Int, ArraySlice<UInt8>)] = []
        var start = 0
        var line = 1
        var i = 0
        if input.count >= 3, input[0] == 0xEF, input[1] == 0xBB, input[2] == 0xBF {
            start = 3
            i = 3
        }
        while i <= input.count {
            if i == input.count || input[i] == 0x0A {
                var end = i
                if end > start, input[end - 1] == 0x0D { end -= 1 }
                let slice = input[start..<end]
                if slice.contains(where: { $0 != 0x20 && $0 != 0x09 }) { out.append((line, slice)) }
                line += 1
                start = i + 1
            }
            i += 1
        }
        return out
    }
}

// MARK: - Writing

extension JSONValue {
    /// Serialises the value. Strings are escaped per RFC 8259, and additionally `<`, `>`, `&`, U+2028, U+2029, C1
    /// controls and bidirectional controls are written as `\u` escapes so that attacker-controlled text stays inert
    /// when embedded in HTML, read line by line, or shown on a terminal.
    public func serialized(pretty: Bool = false) -> String {
        // Bytes first, one String at the end: appending to a String costs a String per run of text.
        var out = [UInt8]()
        out.reserveCapacity(1024)
        write(to: &out, pretty: pretty, indent: 0)
        return String(decoding: out, as: UTF8.self)
    }

    private func write(to out: inout [UInt8], pretty: Bool, indent: Int) {
        switch self {
        case .null: out += "null".utf8
        case .bool(let b): out += (b ? "true" : "false").utf8
        case .int(let i): out += String(i).utf8
        case .double(let d): out += (d.isFinite ? (d.rounded() == d && abs(d) < 1e15 ? String(Int64(d)) : String(d)) : "null").utf8
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let values):
            if values.isEmpty {
                out += "[]".utf8
                return
            }
            out.append(UInt8(ascii: "["))
            for (n, v) in values.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                if pretty { JSONValue.newline(&out, indent: indent + 1) }
                v.write(to: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { JSONValue.newline(&out, indent: indent) }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            if members.isEmpty {
                out += "{}".utf8
                return
            }
            out.append(UInt8(ascii: "{"))
            for (n, (k, v)) in members.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                if pretty { JSONValue.newline(&out, indent: indent + 1) }
                JSONValue.writeString(k, to: &out)
                out.append(UInt8(ascii: ":"))
                if pretty { out.append(UInt8(ascii: " ")) }
                v.write(to: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { JSONValue.newline(&out, indent: indent) }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func newline(_ out: inout [UInt8], indent: Int) {
        out.append(UInt8(ascii: "\n"))
        for _ in 0..<indent { out += "  ".utf8 }
    }

    /// Appends `s` as a JSON string. Runs of bytes that need no escaping are appended whole (log lines are
    /// mostly such runs); quotes, backslashes, C0 and C1 control characters, DEL, `<`, `>`, `&`, U+2028, U+2029 and
    /// the bidirectional controls are escaped (all losslessly: a JSON reader gets the same string back).
    static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = s
        text.withUTF8 { bytes in
            var runStart = 0
            var i = 0
            while i < bytes.count {
                let b = bytes[i]
                var escape: String?
                var width = 1
                switch b {
                case 0x22: escape = "\\\""
                case 0x5C: escape = "\\\\"
                case 0x0A: escape = "\\n"
                case 0x0D: escape = "\\r"
                case 0x09: escape = "\\t"
                case 0x3C, 0x3E, 0x26: escape = "\\u" + JSONValue.hex4(UInt32(b))
                case 0xC2 where i + 1 < bytes.count && bytes[i + 1] >= 0x80 && bytes[i + 1] <= 0x9F:
                    // C1 controls (U+0080–U+009F): NEL ends a line for some log readers, CSI drives some terminals.
                    escape = "\\u" + JSONValue.hex4(UInt32(bytes[i + 1]))
                    width = 2
                case 0xE2 where i + 2 < bytes.count && JSONValue.isSeparatorOrBidi(bytes[i + 1], bytes[i + 2]):
                    // U+2028, U+2029, and the bidirectional embeddings, overrides and isolates (U+202A–U+202E,
                    // U+2066–U+2069) that make a terminal show text in another order than it is.
                    escape = "\\u" + JSONValue.hex4(((UInt32(bytes[i + 1]) & 0x3F) << 6 | (UInt32(bytes[i + 2]) & 0x3F)) | 0x2000)
                    width = 3
                default:
                    if b < 0x20 || b == 0x7F { escape = "\\u" + JSONValue.hex4(UInt32(b)) }
                }
                if let escape {
                    if i > runStart { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i])) }
                    out += escape.utf8
                    i += width
                    runStart = i
                } else {
                    i += 1
                }
            }
            if bytes.count > runStart { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count])) }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// The last two UTF-8 bytes of U+2028, U+2029, U+202A–U+202E or U+2066–U+2069 (after a 0xE2 lead byte).
    static func isSeparatorOrBidi(_ b1: UInt8, _ b2: UInt8) -> Bool {
        (b1 == 0x80 && b2 >= 0xA8 && b2 <= 0xAE) || (b1 == 0x81 && b2 >= 0xA6 && b2 <= 0xA9)
    }

    static func hex4(_ v: UInt32) -> String {
        let h = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 4 - h.count)) + h
    }

    /// Convenience constructors for building output.
    public static func from(_ s: String?) -> JSONValue { s.map { .string($0) } ?? .null }
    public static func from(_ i: Int?) -> JSONValue { i.map { .int(Int64($0)) } ?? .null }
    public static func from(_ i: Int64?) -> JSONValue { i.map { .int($0) } ?? .null }
    public static func from(_ strings: [String]) -> JSONValue { .array(strings.map { .string($0) }) }
}
