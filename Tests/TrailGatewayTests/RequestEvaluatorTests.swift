import Testing
import TrailMesh

@testable import TrailGateway

@Suite struct RequestEvaluatorTests {
    static let yaml = """
        consumers:
          - username: alice
            groups: [admins]
            credentials: {key-auth: [{key_sha256: \(sha256Hex("alice-key"))}]}
          - username: ci-bot
            credentials: {key-auth: [{key_sha256: \(sha256Hex("bot-key"))}]}
        routes:
          - name: admin
            hostnames: [api.example.com]
            rules:
              - matches: [{path: {type: PathPrefix, value: /admin}}]
                backendRefs: [{name: admin, port: 8443}]
            auth: {methods: [key-auth]}
            acl: {allow: {groups: [admins]}}
            rate_limit: {per_consumer: {requests: 2, window: 10s}}
        """

    /// (case, host, path, headers, expected summary).
    static let cases: [(String, String, String, [(name: String, value: String)], String)] = [
        ("forwarded", "api.example.com", "/admin/x", [("apikey", "alice-key")], "forward admin alice key-auth"),
        ("no route", "api.example.com", "/other", [("apikey", "alice-key")], "404 - no route matches the request"),
        ("no key", "api.example.com", "/admin", [], "401 - no credentials; this route accepts key-auth"),
        ("wrong key", "api.example.com", "/admin", [("apikey", "nope")], "401 key-auth invalid API key"),
        ("acl", "api.example.com", "/admin", [("apikey", "bot-key")], "403 key-auth consumer is not allowed by the route's acl"),
    ]

    static func summary(_ d: EdgeDecision) -> String {
        switch d {
        case .forward(let f): return "forward \(f.selection.backend.name) \(f.caller.consumer) \(f.caller.kind.rawValue)"
        case .respond(let r): return "\(r.status) \(r.credentialKind?.rawValue ?? "-") \(r.reason)"
        }
    }

    @Test(arguments: cases)
    func decisions(_ c: (String, String, String, [(name: String, value: String)], String)) throws {
        var evaluator = RequestEvaluator(configuration: try GatewayConfiguration.parse(yaml: Self.yaml, file: "g.yaml"))
        let request = EdgeRequest(
            route: RouteRequest(host: c.1, path: c.2, method: "GET", headers: c.3), auth: AuthRequest(headers: c.3))
        #expect(Self.summary(evaluator.evaluate(request, now: 1_800_000_000, random: 0.5)) == c.4, "\(c.0)")
    }

    @Test func rateLimitAnswers429WithHeaders() throws {
        var evaluator = RequestEvaluator(configuration: try GatewayConfiguration.parse(yaml: Self.yaml, file: "g.yaml"))
        let headers = [(name: "apikey", value: "alice-key")]
        let request = EdgeRequest(
            route: RouteRequest(host: "api.example.com", path: "/admin", method: "GET", headers: headers),
            auth: AuthRequest(headers: headers))
        for _ in 0..<2 {
            guard case .forward(let f) = evaluator.evaluate(request, now: 1_800_000_000, random: 0) else {
                Issue.record("refused too early")
                return
            }
            #expect(f.headers.contains { $0.name == "RateLimit-Limit" && $0.value == "2" })
        }
        guard case .respond(let r) = evaluator.evaluate(request, now: 1_800_000_003, random: 0) else {
            Issue.record("third request passed")
            return
        }
        #expect(r.status == 429)
        #expect(r.caller?.consumer == "alice")
        #expect(r.headers.map(\.name) == ["Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"])
        #expect(r.headers.first?.value == "7")
    }

    static let partnerYAML = """
        consumers:
          - username: acme
            credentials: {mtls: [{spiffe_id: "spiffe://partners.example/acme"}]}
          - username: alice
            credentials: {key-auth: [{key_sha256: \(sha256Hex("alice-key"))}]}
        routes:
          - name: catalog
            rules:
              - backendRefs: [{name: catalog, port: 8080}]
            auth: {methods: [key-auth, mtls]}
        """

    /// An expired (or not yet valid) partner certificate is refused with 401 on any route, before any upstream,
    /// even when the request also carries another valid credential; the consumer it names is kept for the log.
    @Test(arguments: [
        (ClientCertificateValidity.expired, "client certificate has expired"),
        (.notYetValid, "client certificate is not yet valid"),
    ])
    func partnerCertificateOutOfItsWindowIsRefused(_ c: (ClientCertificateValidity, String)) throws {
        var evaluator = RequestEvaluator(configuration: try GatewayConfiguration.parse(yaml: Self.partnerYAML, file: "g.yaml"))
        let headers = [(name: "apikey", value: "alice-key")]
        for path in ["/items", "/anything"] {
            let request = EdgeRequest(
                route: RouteRequest(host: "api.example.com", path: path, method: "GET", headers: headers),
                auth: AuthRequest(
                    headers: headers,
                    peerCertificate: PeerCertificateIdentity(spiffeIDs: ["spiffe://partners.example/acme"], validity: c.0)))
            guard case .respond(let r) = evaluator.evaluate(request, now: 1_800_000_000, random: 0) else {
                Issue.record("an out-of-window certificate was forwarded")
                return
            }
            #expect(r.status == 401)
            #expect(r.reason == c.1)
            #expect(r.credentialKind == .mtls)
            #expect(r.caller == AuthenticatedCaller(consumer: "acme", kind: .mtls, credentialID: "spiffe://partners.example/acme"))
            #expect(r.routeName == "catalog")
        }
        let valid = EdgeRequest(
            route: RouteRequest(host: "api.example.com", path: "/items", method: "GET"),
            auth: AuthRequest(peerCertificate: PeerCertificateIdentity(spiffeIDs: ["spiffe://partners.example/acme"])))
        #expect(Self.summary(evaluator.evaluate(valid, now: 1_800_000_000, random: 0)) == "forward catalog acme mtls")
    }
}
