import Testing
@testable import TrailMesh

@Suite("Istio-shaped authorization policies")
struct PolicyTests {
    static let policies = """
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: payments-from-orders
          namespace: shop
        spec:
          action: ALLOW
          rules:
          - from:
            - source:
                principals: ["shop.example/ns/shop/sa/orders", "spiffe://shop.example/ns/shop/sa/scheduler"]
            to:
            - operation:
                methods: ["POST"]
                paths: ["/pay*", "*/health"]
                notPaths: ["/pay/admin"]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: no-batch
          namespace: shop
        spec:
          action: DENY
          rules:
          - from:
            - source:
                namespaces: ["batch"]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: only-orders-soon
          namespace: shop
          annotations:
            istio.io/dry-run: "true"
        spec:
          action: ALLOW
          rules:
          - from:
            - source:
                principals: ["shop.example/ns/shop/sa/orders"]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: audit-refunds
        spec:
          action: AUDIT
          rules:
          - to:
            - operation:
                paths: ["/pay/refund"]
        """

    func decide(_ principal: String?, _ method: String, _ path: String) throws -> AuthorizationDecision {
        PolicyEngine(policies: try AuthorizationPolicy.load(text: Self.policies)).decide(
            AuthorizationRequest(principal: principal, method: method, path: path))
    }

    @Test func allowMatchesPrincipalMethodAndPathPatterns() throws {
        let d = try decide("spiffe://shop.example/ns/shop/sa/orders", "POST", "/pay/charge?x=1")
        #expect(d.allowed)
        #expect(d.policy == "ns[shop]-policy[payments-from-orders]")
        #expect(!d.dryRunDenied)
        #expect(try decide("spiffe://shop.example/ns/shop/sa/scheduler", "POST", "/v1/health").allowed)
    }

    @Test func anythingAnAllowPolicyDoesNotMatchIsDenied() throws {
        #expect(try !decide("spiffe://shop.example/ns/shop/sa/orders", "GET", "/pay/charge").allowed)
        #expect(try !decide("spiffe://shop.example/ns/shop/sa/orders", "POST", "/pay/admin").allowed)
        #expect(try !decide("spiffe://shop.example/ns/shop/sa/web", "POST", "/pay/charge").allowed)
        // Plaintext: no principal, so principal rules cannot match.
        #expect(try !decide(nil, "POST", "/pay/charge").allowed)
    }

    @Test func denyWinsOverAllow() throws {
        let text = Self.policies.replacingOccurrences(of: "namespaces: [\"batch\"]", with: "namespaces: [\"sh*\"]")
        let d = PolicyEngine(policies: try AuthorizationPolicy.load(text: text)).decide(
            AuthorizationRequest(principal: "spiffe://shop.example/ns/shop/sa/orders", method: "POST", path: "/pay/charge"))
        #expect(!d.allowed)
        #expect(d.policy == "ns[shop]-policy[no-batch]")
    }

    @Test func dryRunRecordsWhatWouldBeDeniedWithoutEnforcing() throws {
        let d = try decide("spiffe://shop.example/ns/shop/sa/scheduler", "POST", "/pay/refund")
        #expect(d.allowed)
        #expect(d.dryRunDenied)
        #expect(d.dryRunPolicy == "ns[shop]-policy[only-orders-soon]")
        #expect(d.audited == ["ns[default]-policy[audit-refunds]"])
    }

    @Test func noAllowPolicyAllowsAndAnEmptyAllowPolicyAllowsNothing() throws {
        let none = PolicyEngine(policies: [])
        #expect(none.decide(AuthorizationRequest(principal: nil, method: "GET", path: "/")).allowed)
        let empty = try AuthorizationPolicy.load(text: "metadata:\n  name: deny-all\nspec: {}\n")
        #expect(!PolicyEngine(policies: empty).decide(AuthorizationRequest(principal: "spiffe://a.b/c", method: "GET", path: "/")).allowed)
        let all = try AuthorizationPolicy.load(text: "metadata:\n  name: allow-all\nspec:\n  rules:\n  - {}\n")
        #expect(PolicyEngine(policies: all).decide(AuthorizationRequest(principal: nil, method: "GET", path: "/")).allowed)
    }

    @Test(arguments: [
        ("metadata:\n  name: x\nspec:\n  action: CUSTOM\n", "spec.action (line 4)"),
        ("metadata:\n  name: x\nspec:\n  rules:\n  - to:\n    - operation:\n        path: [\"/a\"]\n", "spec.rules[0].to[0].operation.path (line 7): unknown key"),
        ("metadata:\n  name: x\nspec:\n  rules:\n  - to:\n    - operation:\n        paths: [\"a\"]\n", "must start with /"),
        ("spec: {}\n", "metadata.name is required"),
        ("metadata: [1\n", "not valid YAML"),
    ])
    func badPoliciesSayWhere(text: String, message: String) {
        #expect {
            _ = try AuthorizationPolicy.load(text: text, file: "p.yaml")
        } throws: { error in
            String(describing: error).contains(message) && String(describing: error).hasPrefix("p.yaml")
        }
    }
}

@Suite("Path normalisation before authorization")
struct PathNormalizerTests {
    @Test(arguments: [
        ("/pay/admin", "/pay/admin"),
        ("/pay//admin", "/pay/admin"),
        ("/pay/./admin", "/pay/admin"),
        ("/x/../pay/admin", "/pay/admin"),
        ("/../../pay/admin", "/pay/admin"),
        ("/pay/%61dmin", "/pay/admin"),
        ("/pay/%2fadmin", "/pay/%2Fadmin"),
        ("/pay/admin/?a=../b", "/pay/admin/?a=../b"),
        ("/pay/x/..", "/pay/"),
        ("/", "/"),
    ])
    func normalises(input: String, expected: String) {
        #expect(PathNormalizer.normalize(input) == expected)
    }

    @Test func refusesWhatIsNotAnOriginFormPath() {
        #expect(PathNormalizer.normalize("pay/admin") == nil)
        #expect(PathNormalizer.normalize("/pay/%zz") == nil)
        #expect(PathNormalizer.normalize("/pay/%4") == nil)
    }

    @Test func aPolicyOnAPathCannotBeSidesteppedBySpelling() throws {
        let policies = try AuthorizationPolicy.load(text: """
            metadata: {name: no-admin, namespace: shop}
            spec:
              action: DENY
              rules:
              - to: [{operation: {paths: ["/pay/admin"]}}]
            """)
        let engine = PolicyEngine(policies: policies)
        for spelling in ["/pay//admin", "/pay/./admin", "/x/../pay/admin", "/pay/%61dmin"] {
            let path = try #require(PathNormalizer.normalize(spelling))
            #expect(!engine.decide(AuthorizationRequest(principal: nil, method: "GET", path: path)).allowed, "\(spelling)")
        }
    }
}
