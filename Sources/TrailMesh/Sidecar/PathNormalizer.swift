/// Normalises a request target before authorization, as Istio recommends (`pathNormalization: MERGE_SLASHES`,
/// which includes BASE): percent-encoded unreserved characters decoded and other escapes upper-cased (RFC 3986
/// §6.2.2), dot segments removed (§5.2.4), repeated slashes merged. Without it a policy on `/pay/admin` could be
/// passed by `/pay//admin`, `/pay/./admin`, `/x/../pay/admin` or `/pay/%61dmin`. The query is kept as it is.
package enum PathNormalizer {
    /// The normalised target, or nil when it is not an origin-form target (`/…`) or has a malformed escape.
    package static func normalize(_ target: String) -> String? {
        let bytes = Array(target.utf8)
        guard bytes.first == 0x2F else { return nil }
        let queryStart = bytes.firstIndex(where: { $0 == 0x3F || $0 == 0x23 }) ?? bytes.count
        var path: [UInt8] = []
        path.reserveCapacity(queryStart)
        var i = 0
        while i < queryStart {
            let b = bytes[i]
            if b == 0x25 {
                guard i + 2 < queryStart, let hi = hex(bytes[i + 1]), let lo = hex(bytes[i + 2]) else { return nil }
                let value = hi << 4 | lo
                if isUnreserved(value) {
                    path.append(value)
                } else {
                    path += [0x25, upperHex(hi), upperHex(lo)]
                }
                i += 3
            } else {
                path.append(b)
                i += 1
            }
        }
        // Segments: merge slashes, drop ".", resolve "..".
        var segments: [ArraySlice<UInt8>] = []
        for segment in path.split(separator: 0x2F, omittingEmptySubsequences: true) {
            if segment.elementsEqual([0x2E]) { continue }
            if segment.elementsEqual([0x2E, 0x2E]) {
                _ = segments.popLast()
                continue
            }
            segments.append(segment)
        }
        var out: [UInt8] = [0x2F]
        for (n, segment) in segments.enumerated() {
            if n > 0 { out.append(0x2F) }
            out += segment
        }
        // A trailing slash (or a trailing dot segment) keeps naming a directory.
        if segments.count > 0, let last = path.last, last == 0x2F || path.suffix(2).elementsEqual([0x2F, 0x2E])
            || path.suffix(3).elementsEqual([0x2F, 0x2E, 0x2E])
        {
            out.append(0x2F)
        }
        out += bytes[queryStart...]
        return String(decoding: out, as: UTF8.self)
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    private static func upperHex(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x41 + v - 10 }

    private static func isUnreserved(_ c: UInt8) -> Bool {
        (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || (0x30...0x39).contains(c)
            || c == 0x2D || c == 0x2E || c == 0x5F || c == 0x7E
    }
}
