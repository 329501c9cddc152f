import Testing

@testable import TrailGateway

@Suite struct RouterTests {
    static let yaml = """
        routes:
          - name: catch-all
            rules:
              - backendRefs: [{name: default, port: 80}]
            auth: {anonymous: true}
          - name: api
            hostnames: [api.example.com]
            rules:
              - matches: [{path: {type: PathPrefix, value: /v1}}]
                backendRefs: [{name: v1-prefix, port: 80}]
              - matches: [{path: {type: PathPrefix, value: /v1/users/}}]
                backendRefs: [{name: users-prefix, port: 80}]
              - matches: [{path: {type: Exact, value: /v1/users/me}}]
                backendRefs: [{name: me-exact, port: 80}]
              - matches: [{path: {type: PathPrefix, value: /v1/users}, method: DELETE}]
                backendRefs: [{name: users-delete, port: 80}]
              - matches:
                  - path: {type: PathPrefix, value: /v1/users}
                    headers: [{name: X-Canary, value: "true"}]
                backendRefs: [{name: users-canary, port: 80}]
              - matches:
                  - path: {type: PathPrefix, value: /v1/users}
                    headers: [{name: x-canary, value: "true"}, {name: x-region, value: "eu-.*", type: RegularExpression}]
                backendRefs: [{name: users-canary-eu, port: 80}]
              - matches:
                  - path: {type: PathPrefix, value: /v1/users}
                    queryParams: [{name: debug, value: "1"}]
                backendRefs: [{name: users-debug, port: 80}]
              - matches: [{path: {type: RegularExpression, value: "/v1/users/[0-9]+"}}]
                backendRefs: [{name: user-by-id, port: 80}]
            auth: {anonymous: true}
          - name: wildcard
            hostnames: ["*.example.com"]
            rules:
              - matches: [{path: {type: Exact, value: /v1/users/me}}]
                backendRefs: [{name: wildcard-me, port: 80}]
            auth: {anonymous: true}
          - name: longer-wildcard
            hostnames: ["*.eu.example.com"]
            rules:
              - backendRefs: [{name: eu-wildcard, port: 80}]
            auth: {anonymous: true}
        """

    static let router: Router = {
        let config = try! GatewayConfiguration.parse(yaml: yaml, file: "router.yaml")
        return Router(routes: config.routes)
    }()

    /// (host, method, target, headers, expected backend or nil for no route).
    static let cases: [(String, String, String, [(name: String, value: String)], String?)] = [
        ("api.example.com", "GET", "/v1/users/me", [], "me-exact"),               // Exact beats every prefix
        ("api.example.com", "GET", "/v1/users/42", [], "users-prefix"),            // longer prefix (/v1/users/) beats regex
        ("api.example.com", "GET", "/v1/orders", [], "v1-prefix"),
        ("api.example.com", "GET", "/v1", [], "v1-prefix"),
        ("api.example.com", "GET", "/v1x", [], "default"),                         // prefixes match whole segments
        ("api.example.com", "DELETE", "/v1/users", [], "users-delete"),            // method beats headers
        ("api.example.com", "GET", "/v1/users", [("x-canary", "true")], "users-canary"),
        ("api.example.com", "GET", "/v1/users", [("x-canary", "true"), ("x-region", "eu-west")], "users-canary-eu"),
        ("api.example.com", "GET", "/v1/users", [("x-canary", "true"), ("x-region", "us-east")], "users-canary"),
        ("api.example.com", "DELETE", "/v1/users", [("x-canary", "true")], "users-delete"),
        ("api.example.com", "GET", "/v1/users?debug=1", [], "users-debug"),        // headers beat query params
        ("api.example.com", "GET", "/v1/users?debug=1", [("x-canary", "true")], "users-canary"),
        ("API.EXAMPLE.COM", "GET", "/v1/users/me", [], "me-exact"),                // hostnames are case-insensitive
        ("www.example.com", "GET", "/v1/users/me", [], "wildcard-me"),             // wildcard beats no hostnames
        ("www.example.com", "GET", "/other", [], "default"),
        ("example.com", "GET", "/v1/users/me", [], "default"),                     // *.example.com does not match example.com
        ("a.eu.example.com", "GET", "/v1/users/me", [], "eu-wildcard"),            // longer wildcard wins before path rules
        ("other.test", "GET", "/anything", [], "default"),
    ]

    @Test(arguments: cases)
    func precedence(_ c: (String, String, String, [(name: String, value: String)], String?)) {
        let (path, query) = RouteRequest.split(target: c.2)
        let request = RouteRequest(host: c.0, path: path, method: c.1, headers: c.3, query: query)
        #expect(Self.router.route(request, random: 0)?.backend.name == c.4, "\(c.1) \(c.0)\(c.2)")
    }

    @Test func regexPathWhenNoPrefixMatches() throws {
        let config = try GatewayConfiguration.parse(yaml: """
            routes:
              - name: r
                rules:
                  - matches: [{path: {type: Exact, value: /a}}]
                    backendRefs: [{name: exact, port: 80}]
                  - matches: [{path: {type: RegularExpression, value: "/items/[0-9]+"}}]
                    backendRefs: [{name: regex, port: 80}]
                auth: {anonymous: true}
            """, file: "r.yaml")
        let router = Router(routes: config.routes)
        #expect(router.route(RouteRequest(host: "h", path: "/items/12", method: "GET"), random: 0)?.backend.name == "regex")
        #expect(router.route(RouteRequest(host: "h", path: "/items/12/x", method: "GET"), random: 0) == nil)
        #expect(router.route(RouteRequest(host: "h", path: "/b", method: "GET"), random: 0) == nil)
    }

    @Test func weightedBackendsAreDeterministicAndProportional() {
        let backends = [
            BackendRef(name: "a", host: "a", port: 1, weight: 90), BackendRef(name: "off", host: "o", port: 1, weight: 0),
            BackendRef(name: "b", host: "b", port: 1, weight: 10),
        ]
        #expect(Router.pickBackend(backends, random: 0)?.name == "a")
        #expect(Router.pickBackend(backends, random: 0.8999)?.name == "a")
        #expect(Router.pickBackend(backends, random: 0.9)?.name == "b")
        #expect(Router.pickBackend(backends, random: 0.99999)?.name == "b")
        #expect(Router.pickBackend(backends, random: 1.0)?.name == "b")
        var counts: [String: Int] = [:]
        for i in 0..<1000 { counts[Router.pickBackend(backends, random: Double(i) / 1000)!.name, default: 0] += 1 }
        #expect(counts == ["a": 900, "b": 100])
        #expect(Router.pickBackend([BackendRef(name: "z", host: "z", port: 1, weight: 0)], random: 0.5) == nil)
    }

    @Test func splitsQueries() {
        let (path, query) = RouteRequest.split(target: "/p?a=1&b=x%20y&c&d=e+f")
        #expect(path == "/p")
        #expect(query.map(\.name) == ["a", "b", "c", "d"])
        #expect(query.map(\.value) == ["1", "x y", "", "e f"])
    }
}
