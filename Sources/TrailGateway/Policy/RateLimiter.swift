/// Fixed-window rate limiting (Kong's rate-limiting plugin, `local` policy): each key counts requests in windows
/// aligned to multiples of the window length since the epoch. A pure value; the caller passes the time, so tests
/// drive it with any clock and the server keeps one instance per event loop or behind a lock.
package struct RateLimiter: Sendable {
    /// One limit to apply to a request, e.g. `route:payments` or `consumer:alice@route:payments`.
    package struct Limit: Sendable, Equatable {
        package var key: String
        package var rule: RateLimitRule

        package init(key: String, rule: RateLimitRule) {
            self.key = key
            self.rule = rule
        }
    }

    /// The answer for one request: whether it may pass, and the headers to send (Kong's names).
    package struct Decision: Sendable, Equatable {
        package var allowed: Bool
        /// The most restrictive limit's `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and, when
        /// refused, `Retry-After` (seconds until its window ends); then, for limits whose window is a Kong period
        /// (1s, 1m, 1h, 1d), Kong's `X-RateLimit-Limit-<Period>` and `X-RateLimit-Remaining-<Period>`.
        package var headers: [(name: String, value: String)]

        package static func == (a: Decision, b: Decision) -> Bool {
            a.allowed == b.allowed && a.headers.elementsEqual(b.headers) { $0.name == $1.name && $0.value == $1.value }
        }
    }

    private struct Window: Sendable {
        var start: Int64
        var count: Int
    }

    private var windows: [String: Window] = [:]

    /// Kong rate-limiting's periods that a window can equal (months and years have no fixed length).
    static let kongPeriods: [(seconds: Int, name: String)] = [(1, "Second"), (60, "Minute"), (3600, "Hour"), (86400, "Day")]

    package init() {}

    /// Counts the request against every limit if all have room; otherwise counts nothing and refuses.
    /// - Parameter now: seconds since the Unix epoch.
    package mutating func check(_ limits: [Limit], now: Double) -> Decision {
        guard !limits.isEmpty else { return Decision(allowed: true, headers: []) }
        let second = Int64(now.rounded(.down))
        var states: [(limit: Limit, start: Int64, used: Int)] = []
        for limit in limits {
            let length = Int64(limit.rule.windowSeconds)
            let start = second - ((second % length) + length) % length
            let window = windows[limit.key]
            let used = window?.start == start ? window?.count ?? 0 : 0
            states.append((limit, start, used))
        }
        let allowed = states.allSatisfy { $0.used < $0.limit.rule.limit }
        if allowed {
            for s in states { windows[s.limit.key] = Window(start: s.start, count: s.used + 1) }
        }
        // Report the limit with the fewest remaining requests (after counting this one), the soonest reset on ties.
        let report = states.map { s -> (limit: Int, remaining: Int, reset: Int64) in
            let used = allowed ? s.used + 1 : s.used
            return (s.limit.rule.limit, max(0, s.limit.rule.limit - used), s.start + Int64(s.limit.rule.windowSeconds) - second)
        }.min { ($0.remaining, $0.reset) < ($1.remaining, $1.reset) } ?? (0, 0, 0)
        var headers = [
            (name: "RateLimit-Limit", value: String(report.limit)),
            (name: "RateLimit-Remaining", value: String(report.remaining)),
            (name: "RateLimit-Reset", value: String(report.reset)),
        ]
        // Kong's per-period names for limits whose window is one of its periods (the tightest limit per period).
        for (seconds, period) in Self.kongPeriods {
            let same = states.filter { $0.limit.rule.windowSeconds == seconds }.map { s in
                (limit: s.limit.rule.limit, remaining: max(0, s.limit.rule.limit - (allowed ? s.used + 1 : s.used)))
            }
            guard let tightest = same.min(by: { $0.remaining < $1.remaining }) else { continue }
            headers.append((name: "X-RateLimit-Limit-\(period)", value: String(tightest.limit)))
            headers.append((name: "X-RateLimit-Remaining-\(period)", value: String(tightest.remaining)))
        }
        if !allowed {
            let blocking = states.filter { $0.used >= $0.limit.rule.limit }
                .map { $0.start + Int64($0.limit.rule.windowSeconds) - second }.max() ?? report.reset
            headers.insert((name: "Retry-After", value: String(blocking)), at: 0)
        }
        return Decision(allowed: allowed, headers: headers)
    }

    /// Drops windows that ended before `now` (call now and then to bound memory).
    package mutating func prune(now: Double, longestWindowSeconds: Int) {
        let cutoff = Int64(now.rounded(.down)) - Int64(longestWindowSeconds)
        windows = windows.filter { $0.value.start > cutoff }
    }

    /// The limits that apply to a consumer on a route: the consumer's own limit (all routes), the route's
    /// per-consumer limit and the route's total.
    /// - Parameters:
    ///   - consumer: the caller's username (the anonymous consumer's for anonymous callers), nil when unknown.
    ///   - consumerLimit: the consumer's own `rate_limit`, if it is a configured consumer with one.
    package static func limits(route: Route, consumer: String?, consumerLimit: RateLimitRule?) -> [Limit] {
        var out: [Limit] = []
        if let consumer, let rule = consumerLimit { out.append(Limit(key: "consumer:\(consumer)", rule: rule)) }
        if let consumer, let rule = route.rateLimits.perConsumer {
            out.append(Limit(key: "route:\(route.name)|consumer:\(consumer)", rule: rule))
        }
        if let rule = route.rateLimits.total { out.append(Limit(key: "route:\(route.name)", rule: rule)) }
        return out
    }
}
