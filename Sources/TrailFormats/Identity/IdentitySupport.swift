import Foundation
import SwiftASN1
import TrailCore

/// Serial numbers as some systems print them: a decimal big integer (Go's `big.Int.String()`, which SPIRE
/// writes as `serial_num`).
public enum DecimalSerial {
    /// The longest decimal serial accepted (RFC 5280 serials are at most 20 octets, i.e. 49 digits).
    public static let maximumDigits = 100

    /// Lower-case hex of a non-negative decimal integer of any length ("4098" → "1002"), without leading
    /// zeros ("0" for zero). Nil if the text is empty, longer than ``maximumDigits`` or not all digits.
    public static func hex(fromDecimal text: some StringProtocol) -> String? {
        let digits = Array(text.utf8)
        guard !digits.isEmpty, digits.count <= maximumDigits else { return nil }
        // Little-endian base-2^32 limbs.
        var limbs: [UInt32] = [0]
        for c in digits {
            guard c >= 0x30, c <= 0x39 else { return nil }
            var carry = UInt64(c - 0x30)
            for k in 0..<limbs.count {
                let v = UInt64(limbs[k]) * 10 + carry
                limbs[k] = UInt32(truncatingIfNeeded: v)
                carry = v >> 32
            }
            if carry != 0 { limbs.append(UInt32(carry)) }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(limbs.count * 4)
        for limb in limbs.reversed() {
            bytes.append(UInt8(truncatingIfNeeded: limb >> 24))
            bytes.append(UInt8(truncatingIfNeeded: limb >> 16))
            bytes.append(UInt8(truncatingIfNeeded: limb >> 8))
            bytes.append(UInt8(truncatingIfNeeded: limb))
        }
        return CertificateSerial.normalize(bytes: bytes)
    }
}

/// One `-----BEGIN <label>-----` … `-----END <label>-----` block of a PEM text.
struct PEMBlock {
    var label: String
    /// 1-based line of the BEGIN line.
    var line: Int
    /// The block's bytes from `-----BEGIN` to the end of the END line's dashes.
    var raw: [UInt8]
    /// The base64 body decoded, or nil if it is not valid base64.
    var der: [UInt8]?
    /// False if the input ended before the END line.
    var terminated: Bool
}

enum PEMScanner {
    private static let begin = Array("-----BEGIN ".utf8)
    private static let end = Array("-----END ".utf8)
    private static let dashes = Array("-----".utf8)

    /// Every PEM block in the input, in order. Text between blocks is ignored.
    static func blocks(in input: [UInt8]) -> [PEMBlock] {
        var out: [PEMBlock] = []
        var i = 0
        var line = 1
        var lineCursor = 0
        func lineAt(_ index: Int) -> Int {
            while lineCursor < index {
                if input[lineCursor] == 0x0A { line += 1 }
                lineCursor += 1
            }
            return line
        }
        while let b = find(begin, in: input, from: i) {
            let labelStart = b + begin.count
            guard let labelEnd = find(dashes, in: input, from: labelStart),
                !input[labelStart..<labelEnd].contains(0x0A)
            else {
                i = labelStart
                continue
            }
            let label = String(decoding: input[labelStart..<labelEnd], as: UTF8.self)
            let bodyStart = labelEnd + dashes.count
            let startLine = lineAt(b)
            let endMarker = end + Array(label.utf8) + dashes
            guard let e = find(endMarker, in: input, from: bodyStart) else {
                var stop = input.count
                while stop > b, input[stop - 1] == 0x0A || input[stop - 1] == 0x0D || input[stop - 1] == 0x20 {
                    stop -= 1
                }
                out.append(PEMBlock(label: label, line: startLine, raw: Array(input[b..<stop]), der: nil, terminated: false))
                break
            }
            let blockEnd = e + endMarker.count
            let der = decodeBase64(input[bodyStart..<e])
            out.append(PEMBlock(label: label, line: startLine, raw: Array(input[b..<blockEnd]), der: der, terminated: true))
            i = blockEnd
        }
        return out
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], from start: Int) -> Int? {
        guard !needle.isEmpty, hay.count >= needle.count, start <= hay.count - needle.count else { return nil }
        let first = needle[0]
        var i = start
        let last = hay.count - needle.count
        while i <= last {
            if hay[i] == first {
                var k = 1
                while k < needle.count, hay[i + k] == needle[k] { k += 1 }
                if k == needle.count { return i }
            }
            i += 1
        }
        return nil
    }

    /// Standard base64 with line breaks and spaces allowed; headers (`Key: value` lines, RFC 1421) skipped.
    static func decodeBase64(_ body: ArraySlice<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(body.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        var padding = 0
        // Skip RFC 1421 header lines (those containing ':').
        var lines = body.split(separator: 0x0A, omittingEmptySubsequences: false)
        if lines.contains(where: { $0.contains(UInt8(ascii: ":")) }) {
            lines = lines.filter { !$0.contains(UInt8(ascii: ":")) }
        }
        for l in lines {
            for c in l {
                let v: UInt32
                switch c {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - 65)
                case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - 97 + 26)
                case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - 48 + 52)
                case UInt8(ascii: "+"): v = 62
                case UInt8(ascii: "/"): v = 63
                case UInt8(ascii: "="):
                    padding += 1
                    continue
                case 0x20, 0x09, 0x0D: continue
                default: return nil
                }
                guard padding == 0 else { return nil }
                acc = (acc << 6) | v
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
                    acc &= (1 << UInt32(bits)) - 1
                }
            }
        }
        guard padding <= 2, bits < 6 else { return nil }
        return out
    }
}

enum DERSplitter {
    /// Splits concatenated DER values (tag, length, content). A value whose length runs past the end is
    /// returned as the rest of the input with `truncated` set.
    static func elements(in input: [UInt8]) -> [(bytes: ArraySlice<UInt8>, truncated: Bool)] {
        var out: [(ArraySlice<UInt8>, Bool)] = []
        var i = 0
        while i < input.count {
            guard let len = totalLength(input, at: i), i + len <= input.count else {
                out.append((input[i...], true))
                break
            }
            out.append((input[i..<(i + len)], false))
            i += len
        }
        return out
    }

    /// The whole TLV length of the value at `i` (single-byte tags only), nil if the header is cut short.
    static func totalLength(_ b: [UInt8], at i: Int) -> Int? {
        guard i + 2 <= b.count else { return nil }
        let first = Int(b[i + 1])
        if first < 0x80 { return 2 + first }
        let n = first & 0x7F
        guard n >= 1, n <= 4, i + 2 + n <= b.count else { return nil }
        var len = 0
        for k in 0..<n { len = len << 8 | Int(b[i + 2 + k]) }
        return 2 + n + len
    }
}

enum IdentityTime {
    /// Largest whole second a `Timestamp` can hold (2262-04-11T23:47:16Z).
    static let maxSeconds: Int64 = Int64.max / 1_000_000_000

    /// A timestamp from epoch seconds, clamped to the range a `Timestamp` holds (certificates may say
    /// 9999-12-31T23:59:59Z for "no expiry").
    static func clamped(seconds: Int64, nanos: Int64 = 0) -> Timestamp {
        if seconds >= maxSeconds { return Timestamp(nanoseconds: Int64.max) }
        if seconds <= -maxSeconds { return Timestamp(nanoseconds: Int64.min) }
        return Timestamp(nanoseconds: seconds * 1_000_000_000 + nanos)
    }

    static func from(date: Date) -> Timestamp {
        let t = date.timeIntervalSince1970
        guard t.isFinite else { return Timestamp(nanoseconds: 0) }
        if t >= Double(maxSeconds) { return Timestamp(nanoseconds: Int64.max) }
        if t <= -Double(maxSeconds) { return Timestamp(nanoseconds: Int64.min) }
        let secs = Int64(t.rounded(.down))
        let nanos = Int64(((t - Double(secs)) * 1e9).rounded())
        return clamped(seconds: secs, nanos: min(nanos, 999_999_999))
    }

    /// A time from a JSON value: an RFC 3339 string or epoch seconds (integer or fractional).
    static func from(json value: JSONValue) -> Timestamp? {
        switch value {
        case .string(let s):
            if let t = Timestamp.parseRFC3339(s) { return t }
            if let d = Double(s), d.isFinite, abs(d) < Double(maxSeconds) { return Timestamp(epochSeconds: d) }
            return nil
        case .int(let i):
            guard i > -maxSeconds, i < maxSeconds else { return nil }
            return Timestamp(seconds: i)
        case .double(let d):
            guard d.isFinite, abs(d) < Double(maxSeconds) else { return nil }
            return Timestamp(epochSeconds: d)
        default:
            return nil
        }
    }
}

enum ASN1Text {
    /// A plain-words reason for a DER decoding error.
    static func reason(_ error: any Error) -> String {
        if let e = error as? ASN1Error {
            switch e.code {
            case .truncatedASN1Field: return "DER is truncated"
            case .unexpectedFieldType: return "unexpected ASN.1 field type"
            case .invalidASN1Object: return "malformed ASN.1 object"
            case .invalidASN1IntegerEncoding: return "malformed ASN.1 INTEGER"
            case .unsupportedFieldLength: return "unsupported ASN.1 field length"
            case .invalidStringRepresentation: return "malformed ASN.1 string"
            case .tooFewOIDComponents: return "malformed object identifier"
            case .invalidPEMDocument: return "malformed PEM document"
            default: return "malformed DER (\(e.code))"
            }
        }
        if let e = error as? IdentityParseError { return e.reason }
        return String(describing: error)
    }
}

/// A failure with a human reason, thrown by the identity parsers and ``CertificateSummary``.
public struct IdentityParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
