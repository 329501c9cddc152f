/// A point in time in UTC, in nanoseconds since the Unix epoch.
///
/// Stored as one integer so that the store keeps full precision and orders by it cheaply.
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    /// Values outside the representable range (about 1677 to 2262) clamp to its ends instead of trapping.
    public init(milliseconds: Int64) { self.nanoseconds = Self.scaled(milliseconds, by: 1_000_000) }
    public init(seconds: Int64) { self.nanoseconds = Self.scaled(seconds, by: 1_000_000_000) }

    static func scaled(_ value: Int64, by factor: Int64) -> Int64 {
        let (result, overflow) = value.multipliedReportingOverflow(by: factor)
        return overflow ? (value < 0 ? Int64.min : Int64.max) : result
    }
    /// From fractional epoch seconds (as some logs write them), rounded to the microsecond.
    /// Out-of-range and non-finite values clamp to the representable range instead of trapping.
    public init(epochSeconds: Double) {
        let micros = (epochSeconds * 1_000_000).rounded()
        guard micros.isFinite else {
            self.nanoseconds = micros > 0 ? Int64.max : Int64.min
            return
        }
        // 2^62 microseconds is beyond year 2262 yet converts to Int64 exactly.
        let limit = 4_611_686_018_427_387_904.0
        self.nanoseconds = Self.scaled(Int64(max(-limit, min(limit, micros))), by: 1000)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    public var milliseconds: Int64 { nanoseconds / 1_000_000 }

    public func adding(nanoseconds delta: Int64) -> Timestamp { Timestamp(nanoseconds: nanoseconds.addingSaturating(delta)) }

    /// RFC 3339 in UTC with microseconds, e.g. `2026-05-04T10:00:00.123456Z`.
    public var description: String { rfc3339(fractionDigits: 6) }

    /// RFC 3339 in UTC with the given number of fraction digits (0, 3, 6 or 9).
    public func rfc3339(fractionDigits: Int = 6) -> String {
        var secs = nanoseconds / 1_000_000_000
        var frac = nanoseconds % 1_000_000_000
        if frac < 0 {
            frac += 1_000_000_000
            secs -= 1
        }
        let days = Int64((Double(secs) / 86400).rounded(.down))
        let secOfDay = secs - days * 86400
        let (y, m, d) = Timestamp.civil(fromDays: days)
        var s = pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T"
        s += pad(secOfDay / 3600, 2) + ":" + pad(secOfDay / 60 % 60, 2) + ":" + pad(secOfDay % 60, 2)
        if fractionDigits > 0 {
            var divisor: Int64 = 1
            for _ in 0..<(9 - min(9, fractionDigits)) { divisor *= 10 }
            s += "." + pad(frac / divisor, min(9, fractionDigits))
        }
        return s + "Z"
    }

    private func pad(_ v: Int64, _ width: Int) -> String {
        let t = String(v)
        return t.count >= width ? t : String(repeating: "0", count: width - t.count) + t
    }

    // MARK: Calendar arithmetic (proleptic Gregorian, Howard Hinnant's algorithms)

    static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    /// Builds a timestamp from calendar fields in UTC.
    public static func utc(
        year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0, nanosecond: Int = 0
    ) -> Timestamp {
        let days = days(fromCivil: Int64(year), Int64(month), Int64(day))
        let secs = days &* 86400 &+ Int64(hour) &* 3600 &+ Int64(minute) &* 60 &+ Int64(second)
        let (ns, overflow) = secs.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return Timestamp(nanoseconds: secs < 0 ? Int64.min : Int64.max) }
        let (total, overflow2) = ns.addingReportingOverflow(Int64(nanosecond))
        return Timestamp(nanoseconds: overflow2 ? Int64.max : total)
    }

    // MARK: Parsing

    /// Parses RFC 3339 / ISO 8601 date-times as logs write them: `2026-05-04T10:00:00Z`,
    /// `2026-05-04T10:00:00.123456789+02:00`, `2026-05-04 10:00:00.123Z`, and a date-time without a zone
    /// (taken as UTC, as Envoy's default `%START_TIME%` is). Returns nil for anything else.
    public static func parseRFC3339(_ text: some StringProtocol) -> Timestamp? {
        var bytes = Array(text.utf8)
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes.removeLast() }
        return parseRFC3339(bytes: bytes[...])
    }

    public static func parseRFC3339(bytes b: ArraySlice<UInt8>) -> Timestamp? {
        var i = b.startIndex
        func digits(_ n: Int) -> Int64? {
            guard b.endIndex - i >= n else { return nil }
            var v: Int64 = 0
            for _ in 0..<n {
                let c = b[i]
                guard c >= 0x30 && c <= 0x39 else { return nil }
                v = v * 10 + Int64(c - 0x30)
                i += 1
            }
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < b.endIndex, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(0x2D), let month = digits(2), expect(0x2D), let day = digits(2) else {
            return nil
        }
        guard (1...12).contains(month), (1...31).contains(day) else { return nil }
        guard i < b.endIndex, b[i] == 0x54 || b[i] == 0x74 || b[i] == 0x20 else { return nil }
        i += 1
        guard let hour = digits(2), expect(0x3A), let minute = digits(2), expect(0x3A), let second = digits(2) else {
            return nil
        }
        guard hour < 24, minute < 60, second <= 60 else { return nil }
        var nanos: Int64 = 0
        if i < b.endIndex, b[i] == 0x2E || b[i] == 0x2C {
            i += 1
            var count = 0
            while i < b.endIndex, b[i] >= 0x30, b[i] <= 0x39 {
                if count < 9 { nanos = nanos * 10 + Int64(b[i] - 0x30) }
                count += 1
                i += 1
            }
            guard count > 0 else { return nil }
            for _ in count..<9 where count < 9 { nanos *= 10 }
        }
        var offsetSeconds: Int64 = 0
        if i < b.endIndex {
            let c = b[i]
            if c == 0x5A || c == 0x7A {
                i += 1
            } else if c == 0x2B || c == 0x2D {
                i += 1
                guard let oh = digits(2) else { return nil }
                _ = expect(0x3A)
                guard let om = digits(2) else { return nil }
                offsetSeconds = (oh * 3600 + om * 60) * (c == 0x2D ? -1 : 1)
            } else {
                return nil
            }
        }
        guard i == b.endIndex else { return nil }
        // Int64 nanoseconds cover 1677-09-21 to 2262-04-11; anything outside cannot be represented.
        guard (1678...2261).contains(year) else { return nil }
        let days = days(fromCivil: year, month, day)
        let secs = days * 86400 + hour * 3600 + minute * 60 + min(second, 59) - offsetSeconds
        return Timestamp(nanoseconds: secs * 1_000_000_000 + nanos)
    }
}

extension Int64 {
    /// Addition that stops at the ends of the range instead of trapping (times from hostile input).
    public func addingSaturating(_ other: Int64) -> Int64 {
        let (result, overflow) = addingReportingOverflow(other)
        return overflow ? (other < 0 ? Int64.min : Int64.max) : result
    }
}
