import TrailCore

/// Reads SPIRE server and agent logs (`InputFormat.spire`): logrus text lines
/// (`time="…" level=info msg="…" key=value key="quoted \" value"`) and logrus JSON lines
/// (`{"time":"…","level":"info","msg":"…",…}`), detected line by line.
///
/// Every line with a `time` and a `msg` is a record. These messages yield identity events:
///
/// | message (`msg`)                        | event      | fields used                                                    |
/// |----------------------------------------|------------|----------------------------------------------------------------|
/// | `Signed X509 SVID` (server)            | `.issued`  | `spiffe_id`; `serial_num` (decimal → hex); `expiration` or `expires_at` → notAfter |
/// | `Creating X509-SVID` (agent)           | `.issued`  | `spiffe_id`; `expires_at` → notAfter if present               |
/// | `Renewing X509-SVID` (agent)           | `.renewed` | `spiffe_id`; `expires_at` → notAfter                          |
/// | `API accessed`, `type=audit`, `status=success`, `method` = `BatchNewX509SVID` / `MintX509SVID` | `.issued` | `spiffe_id` (if present) |
/// | `API accessed`, `type=audit`, `status=success`, `method` = `BanAgent` / `DeleteAgent` | `.revoked` | `spiffe_id` (or `agent_id`); reason = method |
///
/// The event time is the line's `time`. Other messages are records without events. A line without
/// `time` or `msg`, with an unreadable `time`, or with an unterminated quoted value is rejected. A known
/// message whose SPIFFE ID or serial is invalid keeps its record and carries a partial rejection.
public struct SPIRELogParser: Sendable {
    public init() {}

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        var out: [ParseResult] = []
        for (line, bytes) in LineSplitter.lines(in: input) {
            out.append(parseLine(bytes, line: line))
        }
        return out
    }

    func parseLine(_ bytes: ArraySlice<UInt8>, line: Int) -> ParseResult {
        let format = InputFormat.spire
        let raw = Array(bytes)
        let location = RecordLocation(line: line)
        func reject(_ reason: String) -> ParseResult {
            .rejected(Rejection(format: format, location: location, raw: raw, reason: reason))
        }
        let first = bytes.first(where: { $0 != 0x20 && $0 != 0x09 })
        let fields: [(String, String)]
        if first == UInt8(ascii: "{") {
            let value: JSONValue
            do {
                value = try JSONParser.parse(bytes)
            } catch {
                return reject(error.description)
            }
            guard let members = value.object else { return reject("not a JSON object") }
            fields = members.compactMap { k, v in (v.string ?? v.text).map { (k, $0) } }
        } else {
            switch Self.logfmtFields(bytes) {
            case .success(let f): fields = f
            case .failure(let e): return reject(e.reason)
            }
        }
        func field(_ key: String) -> String? {
            for (k, v) in fields where k == key { return v.isEmpty ? nil : v }
            return nil
        }
        guard let timeText = field("time") else {
            return reject(field("msg") == nil ? "not a SPIRE log line: no time and no msg" : "missing time")
        }
        guard let msg = field("msg") else { return reject("missing msg") }
        guard let lineTime = Timestamp.parseRFC3339(timeText) else {
            return reject("time: \"\(timeText)\" is not an RFC 3339 time")
        }
        var record = ParsedRecord(format: format, location: location, raw: raw)
        var partial: [String] = []

        func spiffe(_ key: String) -> String? {
            guard let text = field(key) else { return nil }
            do {
                return try SPIFFEID(parsing: text).description
            } catch {
                partial.append("\(key): \(error.description)")
                return nil
            }
        }
        func time(_ keys: String...) -> Timestamp? {
            for key in keys {
                guard let text = field(key) else { continue }
                guard let t = Timestamp.parseRFC3339(text) else {
                    partial.append("\(key): \"\(text)\" is not an RFC 3339 time")
                    return nil
                }
                return t
            }
            return nil
        }
        func event(_ kind: IdentityEventKind, spiffeID: String?, serial: String? = nil, notAfter: Timestamp? = nil,
                   reason: String? = nil) {
            guard spiffeID != nil || serial != nil else { return }
            record.identityEvents.append(IdentityEvent(
                kind: kind, spiffeID: spiffeID, serial: serial, notAfter: notAfter, time: lineTime, reason: reason,
                format: format.rawValue))
        }

        switch msg {
        case "Signed X509 SVID":
            let id = spiffe("spiffe_id")
            var serial: String?
            if let s = field("serial_num") {
                if let hex = DecimalSerial.hex(fromDecimal: s) {
                    serial = hex
                } else {
                    partial.append("serial_num: \"\(s)\" is not a decimal integer")
                }
            }
            let notAfter = time("expiration", "expires_at")
            if id == nil && serial == nil && partial.isEmpty { partial.append("Signed X509 SVID without spiffe_id or serial_num") }
            event(.issued, spiffeID: id, serial: serial, notAfter: notAfter)
        case "Creating X509-SVID":
            let id = spiffe("spiffe_id")
            if id == nil && partial.isEmpty { partial.append("Creating X509-SVID without spiffe_id") }
            event(.issued, spiffeID: id, notAfter: time("expires_at"))
        case "Renewing X509-SVID":
            let id = spiffe("spiffe_id")
            if id == nil && partial.isEmpty { partial.append("Renewing X509-SVID without spiffe_id") }
            event(.renewed, spiffeID: id, notAfter: time("expires_at"))
        case "API accessed":
            guard field("type") == "audit", field("status") == "success", let method = field("method") else { break }
            switch method {
            case "BatchNewX509SVID", "MintX509SVID":
                event(.issued, spiffeID: spiffe("spiffe_id"), notAfter: time("expires_at"))
            case "BanAgent", "DeleteAgent":
                let id = field("spiffe_id") != nil ? spiffe("spiffe_id") : spiffe("agent_id")
                event(.revoked, spiffeID: id, reason: method)
            default:
                break
            }
        default:
            break
        }
        record.partialRejections = partial.map {
            Rejection(format: format, location: location, raw: raw, reason: $0)
        }
        return .record(record)
    }

    /// The key=value pairs of a logrus text line, values unquoted (Go `strconv.Quote` escapes).
    static func logfmtFields(_ b: ArraySlice<UInt8>) -> Result<[(String, String)], IdentityParseError> {
        var out: [(String, String)] = []
        var i = b.startIndex
        let end = b.endIndex
        while i < end {
            while i < end, b[i] == 0x20 || b[i] == 0x09 { i += 1 }
            guard i < end else { break }
            let keyStart = i
            while i < end, b[i] != UInt8(ascii: "="), b[i] != 0x20, b[i] != 0x09 { i += 1 }
            let key = String(decoding: b[keyStart..<i], as: UTF8.self)
            guard i < end, b[i] == UInt8(ascii: "=") else {
                // A bare word: not something logrus writes; skip it.
                continue
            }
            i += 1
            if i < end, b[i] == UInt8(ascii: "\"") {
                i += 1
                var value: [UInt8] = []
                var closed = false
                while i < end {
                    let c = b[i]
                    if c == UInt8(ascii: "\"") {
                        closed = true
                        i += 1
                        break
                    }
                    if c == UInt8(ascii: "\\"), i + 1 < end {
                        i += 1
                        let e = b[i]
                        i += 1
                        switch e {
                        case UInt8(ascii: "n"): value.append(0x0A)
                        case UInt8(ascii: "t"): value.append(0x09)
                        case UInt8(ascii: "r"): value.append(0x0D)
                        case UInt8(ascii: "a"): value.append(0x07)
                        case UInt8(ascii: "b"): value.append(0x08)
                        case UInt8(ascii: "f"): value.append(0x0C)
                        case UInt8(ascii: "v"): value.append(0x0B)
                        case UInt8(ascii: "x"):
                            guard let v = hexValue(b, i, 2) else { return .failure(IdentityParseError("\(key): bad \\x escape")) }
                            value.append(UInt8(v))
                            i += 2
                        case UInt8(ascii: "u"), UInt8(ascii: "U"):
                            let n = e == UInt8(ascii: "u") ? 4 : 8
                            guard let v = hexValue(b, i, n), let scalar = Unicode.Scalar(v) else {
                                return .failure(IdentityParseError("\(key): bad \\\(Character(Unicode.Scalar(e))) escape"))
                            }
                            value.append(contentsOf: Array(String(Character(scalar)).utf8))
                            i += n
                        case UInt8(ascii: "0")...UInt8(ascii: "7"):
                            guard i + 1 < end, let a = octal(b[i - 1]), let b1 = octal(b[i]), let c1 = octal(b[i + 1]),
                                a <= 3
                            else { return .failure(IdentityParseError("\(key): bad octal escape")) }
                            value.append(a << 6 | b1 << 3 | c1)
                            i += 2
                        default: value.append(e)  // \" \\ \' and anything else
                        }
                        continue
                    }
                    value.append(c)
                    i += 1
                }
                guard closed else { return .failure(IdentityParseError("\(key): unterminated quoted value")) }
                out.append((key, String(decoding: value, as: UTF8.self)))
            } else {
                let valueStart = i
                while i < end, b[i] != 0x20, b[i] != 0x09 { i += 1 }
                out.append((key, String(decoding: b[valueStart..<i], as: UTF8.self)))
            }
        }
        return .success(out)
    }

    private static func octal(_ c: UInt8) -> UInt8? {
        c >= 0x30 && c <= 0x37 ? c - 0x30 : nil
    }

    private static func hexValue(_ b: ArraySlice<UInt8>, _ at: Int, _ n: Int) -> UInt32? {
        guard b.endIndex - at >= n else { return nil }
        var v: UInt32 = 0
        for k in 0..<n {
            let c = b[at + k]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            default: return nil
            }
            v = v << 4 | d
        }
        return v
    }
}
