import Testing

@testable import TrailGateway

@Suite struct AccessControlTests {
    static let rule = ACLRule(allowConsumers: ["carol"], allowGroups: ["admins", "partners"], denyConsumers: ["mallory"], denyGroups: ["suspended"])

    /// (consumer, groups, rule, allowed).
    static let cases: [(String, [String], ACLRule?, Bool)] = [
        ("alice", ["admins"], rule, true),
        ("carol", [], rule, true),
        ("dave", ["users"], rule, false),
        ("mallory", ["admins"], rule, false),           // a denied consumer, even in an allowed group
        ("erin", ["admins", "suspended"], rule, false),  // a denied group wins
        ("anonymous", [], rule, false),
        ("anyone", [], nil, true),
        ("anyone", [], ACLRule(allowConsumers: [], allowGroups: [], denyConsumers: [], denyGroups: ["bots"]), true),
        ("robot", ["bots"], ACLRule(allowConsumers: [], allowGroups: [], denyConsumers: [], denyGroups: ["bots"]), false),
    ]

    @Test(arguments: cases)
    func decisions(_ c: (String, [String], ACLRule?, Bool)) {
        let decision = AccessControl.decide(c.2, consumer: c.0, groups: c.1)
        #expect((decision == .allow) == c.3, "\(c.0) \(c.1)")
        if case .deny(let reason) = decision { #expect(reason.contains("acl")) }
    }
}

@Suite struct RateLimiterTests {
    static func headers(_ d: RateLimiter.Decision) -> [String: String] {
        Dictionary(uniqueKeysWithValues: d.headers.map { ($0.name, $0.value) })
    }

    @Test func fixedWindowCountsAndAnswersKongHeaders() {
        var limiter = RateLimiter()
        let limits = [RateLimiter.Limit(key: "route:r", rule: RateLimitRule(limit: 3, windowSeconds: 60))]
        let t0 = 1_800_000_000.0  // a multiple of 60: the window is [t0, t0 + 60)
        for i in 0..<3 {
            let d = limiter.check(limits, now: t0 + Double(i))
            #expect(d.allowed)
            #expect(Self.headers(d) == [
                "RateLimit-Limit": "3", "RateLimit-Remaining": String(2 - i), "RateLimit-Reset": String(60 - i),
                "X-RateLimit-Limit-Minute": "3", "X-RateLimit-Remaining-Minute": String(2 - i),
            ])
        }
        let refused = limiter.check(limits, now: t0 + 15.5)
        #expect(!refused.allowed)
        #expect(refused.headers.first?.name == "Retry-After")
        #expect(Self.headers(refused) == [
            "Retry-After": "45", "RateLimit-Limit": "3", "RateLimit-Remaining": "0", "RateLimit-Reset": "45",
            "X-RateLimit-Limit-Minute": "3", "X-RateLimit-Remaining-Minute": "0",
        ])
        // The next window starts fresh.
        let next = limiter.check(limits, now: t0 + 60)
        #expect(next.allowed)
        #expect(Self.headers(next)["RateLimit-Remaining"] == "2")
    }

    @Test func theTightestLimitIsReportedAndARefusalCountsNothing() {
        var limiter = RateLimiter()
        let consumer = RateLimiter.Limit(key: "consumer:alice", rule: RateLimitRule(limit: 2, windowSeconds: 1))
        let route = RateLimiter.Limit(key: "route:r", rule: RateLimitRule(limit: 100, windowSeconds: 60))
        let t0 = 1_800_000_000.0
        #expect(Self.headers(limiter.check([consumer, route], now: t0))["RateLimit-Limit"] == "2")
        #expect(limiter.check([consumer, route], now: t0 + 0.5).allowed)
        let refused = limiter.check([consumer, route], now: t0 + 0.9)
        #expect(!refused.allowed)
        #expect(Self.headers(refused)["Retry-After"] == "1")
        // Another consumer on the same route still passes; the refused request was not counted on the route (4 so far).
        let bob = RateLimiter.Limit(key: "consumer:bob", rule: RateLimitRule(limit: 2, windowSeconds: 1))
        let other = limiter.check([bob, route], now: t0 + 0.9)
        #expect(other.allowed)
        #expect(Self.headers(limiter.check([route], now: t0 + 1))["RateLimit-Remaining"] == "96")
    }

    @Test func kongPeriodHeadersOnlyForKongPeriods() {
        var limiter = RateLimiter()
        let perSecond = RateLimiter.Limit(key: "a", rule: RateLimitRule(limit: 5, windowSeconds: 1))
        let perHour = RateLimiter.Limit(key: "b", rule: RateLimitRule(limit: 50, windowSeconds: 3600))
        let odd = RateLimiter.Limit(key: "c", rule: RateLimitRule(limit: 9, windowSeconds: 30))
        let h = Self.headers(limiter.check([perSecond, perHour, odd], now: 1_800_000_000))
        #expect(h["X-RateLimit-Limit-Second"] == "5" && h["X-RateLimit-Remaining-Second"] == "4")
        #expect(h["X-RateLimit-Limit-Hour"] == "50" && h["X-RateLimit-Remaining-Hour"] == "49")
        #expect(h.keys.filter { $0.hasPrefix("X-RateLimit") }.count == 4)
        #expect(h["RateLimit-Limit"] == "5")
    }

    @Test func limitsForARoute() throws {
        let config = try GatewayConfiguration.parse(yaml: """
            routes:
              - name: r
                rules: [{backendRefs: [{name: a, port: 80}]}]
                auth: {anonymous: true}
                rate_limit: {per_consumer: {requests: 5, window: 1s}, total: {requests: 50, window: 1m}}
            """, file: "t.yaml")
        let limits = RateLimiter.limits(route: config.routes[0], consumer: "alice", consumerLimit: RateLimitRule(limit: 9, windowSeconds: 3600))
        #expect(limits.map(\.key) == ["consumer:alice", "route:r|consumer:alice", "route:r"])
        #expect(RateLimiter.limits(route: config.routes[0], consumer: nil, consumerLimit: nil).map(\.key) == ["route:r"])
        var limiter = RateLimiter()
        #expect(limiter.check([], now: 0) == RateLimiter.Decision(allowed: true, headers: []))
    }
}
