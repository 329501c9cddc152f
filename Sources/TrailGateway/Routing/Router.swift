import Foundation

/// The parts of a request that routing reads.
package struct RouteRequest: Sendable {
    /// Host without port, any case.
    package var host: String
    /// The path without query string.
    package var path: String
    package var method: String
    /// Header names lowercase.
    package var headers: [(name: String, value: String)]
    package var query: [(name: String, value: String)]

    package init(
        host: String, path: String, method: String, headers: [(name: String, value: String)] = [],
        query: [(name: String, value: String)] = []
    ) {
        self.host = host
        self.path = path
        self.method = method
        self.headers = headers
        self.query = query
    }

    /// Splits a request target (`/a/b?x=1&y`) into path and decoded query parameters.
    package static func split(target: String) -> (path: String, query: [(name: String, value: String)]) {
        guard let q = target.firstIndex(of: "?") else { return (target, []) }
        let path = String(target[..<q])
        let query = target[target.index(after: q)...].split(separator: "&").map { pair in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (s: Substring) in (String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding) ?? String(s) }
            return (name: decode(kv[0]), value: kv.count > 1 ? decode(kv[1]) : "")
        }
        return (path, query)
    }
}

/// Where a request goes: the route, the rule within it, and the backend chosen by weight.
package struct RouteSelection: Sendable {
    package var routeIndex: Int
    package var ruleIndex: Int
    package var route: Route
    package var rule: RouteRule
    package var backend: BackendRef
}

/// Matches requests to routes with Gateway API precedence (HTTPRoute spec, `HTTPRouteRule.matches`):
/// 1. hostname: an exact hostname over a wildcard, a longer one over a shorter one, over routes without hostnames;
/// 2. then, across all matches: an `Exact` path, then the `PathPrefix` with the most characters, then
///    `RegularExpression` paths (implementation-specific in the spec; here after every prefix, a longer pattern
///    first); then a method match; then the most header matches; then the most query-parameter matches;
/// 3. remaining ties: the route listed first, then the rule listed first.
package struct Router: Sendable {
    private struct Candidate: Sendable {
        var routeIndex: Int
        var ruleIndex: Int
        var match: RouteMatch
    }

    private let routes: [Route]
    private let candidates: [Candidate]

    package init(routes: [Route]) {
        self.routes = routes
        var all: [Candidate] = []
        for (r, route) in routes.enumerated() {
            for (u, rule) in route.rules.enumerated() {
                for match in rule.matches { all.append(Candidate(routeIndex: r, ruleIndex: u, match: match)) }
            }
        }
        // Stable sort by match precedence; hostname precedence is per request (it depends on which name matched).
        self.candidates = all.enumerated().sorted { a, b in
            let ka = Self.matchRank(a.element.match), kb = Self.matchRank(b.element.match)
            return ka != kb ? ka.lexicographicallyPrecedes(kb) : a.offset < b.offset
        }.map(\.element)
    }

    /// The route for a request, or nil (404). `random` is a value in `0..<1` used to pick a weighted backend, so
    /// the choice is deterministic for a given value.
    package func route(_ request: RouteRequest, random: Double) -> RouteSelection? {
        let host = request.host.lowercased()
        var best: (hostRank: [Int], candidate: Candidate)?
        for candidate in candidates {
            guard let hostRank = Self.hostRank(routes[candidate.routeIndex].hostnames, host) else { continue }
            if let b = best, !hostRank.lexicographicallyPrecedes(b.hostRank) { continue }
            guard Self.matches(candidate.match, request) else { continue }
            best = (hostRank, candidate)
        }
        guard let chosen = best?.candidate else { return nil }
        let route = routes[chosen.routeIndex]
        let rule = route.rules[chosen.ruleIndex]
        guard let backend = Self.pickBackend(rule.backendRefs, random: random) else { return nil }
        return RouteSelection(routeIndex: chosen.routeIndex, ruleIndex: chosen.ruleIndex, route: route, rule: rule, backend: backend)
    }

    /// Smaller sorts first.
    private static func matchRank(_ m: RouteMatch) -> [Int] {
        let path: [Int]
        switch m.path {
        case .exact(let p): path = [0, -p.utf8.count]
        case .prefix(let p): path = [1, -p.utf8.count]
        case .regularExpression(let r): path = [2, -r.pattern.utf8.count]
        }
        return path + [m.method == nil ? 1 : 0, -m.headers.count, -m.queryParams.count]
    }

    /// nil when no hostname matches; smaller is more specific.
    private static func hostRank(_ hostnames: [String], _ host: String) -> [Int]? {
        if hostnames.isEmpty { return [2, 0] }
        var best: [Int]?
        for name in hostnames {
            let rank: [Int]?
            if name.hasPrefix("*.") {
                // A wildcard matches one or more labels before the suffix, never the bare suffix.
                let suffix = name.dropFirst(1)
                rank = host.hasSuffix(suffix) && host.count > suffix.count ? [1, -name.count] : nil
            } else {
                rank = name == host ? [0, -name.count] : nil
            }
            if let rank, best.map({ rank.lexicographicallyPrecedes($0) }) ?? true { best = rank }
        }
        return best
    }

    private static func matches(_ m: RouteMatch, _ r: RouteRequest) -> Bool {
        switch m.path {
        case .exact(let p): guard r.path == p else { return false }
        case .prefix(let p):
            guard r.path.hasPrefix(p) else { return false }
            let rest = r.path.utf8.dropFirst(p.utf8.count)
            guard rest.isEmpty || rest.first == UInt8(ascii: "/") || p.isEmpty else { return false }
        case .regularExpression(let re): guard re.matches(r.path) else { return false }
        }
        if let method = m.method, method != r.method { return false }
        for h in m.headers {
            guard let value = r.headers.first(where: { $0.name == h.name })?.value, h.value.matches(value) else { return false }
        }
        for q in m.queryParams {
            guard let value = r.query.first(where: { $0.name == q.name })?.value, q.value.matches(value) else { return false }
        }
        return true
    }

    /// Weighted choice: backends with weight 0 are never picked.
    package static func pickBackend(_ backends: [BackendRef], random: Double) -> BackendRef? {
        let total = backends.reduce(0) { $0 + $1.weight }
        guard total > 0 else { return nil }
        var point = Int((min(max(random, 0), 0.999_999_999) * Double(total)).rounded(.down))
        for backend in backends where backend.weight > 0 {
            if point < backend.weight { return backend }
            point -= backend.weight
        }
        return backends.last { $0.weight > 0 }
    }
}

extension ValueCondition {
    func matches(_ value: String) -> Bool {
        switch self {
        case .exact(let v): return v == value
        case .regularExpression(let re): return re.matches(value)
        }
    }
}
