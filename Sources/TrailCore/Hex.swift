/// Hex encoding and the id rules shared by every trace format.
public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Lowercase hex of the bytes.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Bytes of a hex string (either case), or nil if it has an odd length or a non-hex character.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = value(u[i]), let lo = value(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    @inline(__always)
    static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }

    /// True if every character is a hex digit (either case).
    public static func isHex(_ text: some StringProtocol) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { value($0) != nil }
    }
}

/// Normalisation of trace and span ids so that every source joins on the same text.
public enum TraceIDs {
    /// 32 lowercase hex characters. Accepts 32 or 16 hex characters (a B3/Jaeger 64-bit id is left-padded
    /// with 16 zeros), either case. Returns nil for all-zero, wrong-length or non-hex ids.
    public static func normalizeTraceID(_ text: some StringProtocol) -> String? {
        let t = text.lowercased()
        guard Hex.isHex(t) else { return nil }
        let padded: String
        switch t.utf8.count {
        case 32: padded = t
        case 16: padded = String(repeating: "0", count: 16) + t
        default: return nil
        }
        guard padded.utf8.contains(where: { $0 != 0x30 }) else { return nil }
        return padded
    }

    /// 16 lowercase hex characters, or nil for all-zero, wrong-length or non-hex ids.
    public static func normalizeSpanID(_ text: some StringProtocol) -> String? {
        let t = text.lowercased()
        guard t.utf8.count == 16, Hex.isHex(t), t.utf8.contains(where: { $0 != 0x30 }) else { return nil }
        return t
    }

    /// Trace id from raw bytes (OTLP protobuf): 16 bytes, not all zero.
    public static func traceID(bytes: some Collection<UInt8>) -> String? {
        guard bytes.count == 16, bytes.contains(where: { $0 != 0 }) else { return nil }
        return Hex.encode(bytes)
    }

    /// Span id from raw bytes (OTLP protobuf): 8 bytes, not all zero.
    public static func spanID(bytes: some Collection<UInt8>) -> String? {
        guard bytes.count == 8, bytes.contains(where: { $0 != 0 }) else { return nil }
        return Hex.encode(bytes)
    }
}
