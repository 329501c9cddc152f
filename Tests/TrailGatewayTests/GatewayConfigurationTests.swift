import Foundation
import Testing
import TrailMesh

@testable import TrailGateway

@Suite struct GatewayConfigurationTests {
    /// The `yaml` block of README's gateway configuration section.
    static func readmeExample() throws -> String {
        let readme = try String(contentsOfFile: repositoryRoot + "/README.md", encoding: .utf8)
        let section = try #require(readme.range(of: "### Gateway configuration"))
        let rest = readme[section.upperBound...]
        let start = try #require(rest.range(of: "```yaml\n"))
        let end = try #require(rest[start.upperBound...].range(of: "```"))
        return String(rest[start.upperBound..<end.lowerBound])
    }

    @Test func readmeExampleLoads() throws {
        let folder = try TempFolder(files: ["gateway.yaml": try Self.readmeExample(), "jwks.json": TestKeys.shared.jwksJSON])
        defer { folder.remove() }
        let config = try GatewayConfiguration.load(file: folder.path + "/gateway.yaml")
        #expect(config.consumers.map(\.username) == ["alice", "partner-acme", "ci-bot"])
        #expect(config.jwt.issuers.first?.keys.keys.count == 3)
        #expect(config.jwt.clockSkewSeconds == 60)
        let payments = try #require(config.routes.first)
        #expect(payments.hostnames == ["api.example.com", "*.api.example.com"])
        #expect(payments.rules[0].backendRefs.map(\.weight) == [90, 10])
        #expect(payments.rules[0].backendRefs[0].spiffeID == "spiffe://shop.example/ns/shop/sa/payments")
        #expect(payments.rules[1].backendRefs[0].spiffeID == nil)
        #expect(config.server.listenPort == 8443)
        #expect(config.server.mesh?.spiffeID == "spiffe://shop.example/ns/edge/sa/gateway")
        #expect(config.server.tls?.clientCA == folder.path + "/partners-ca.pem")
        #expect(payments.rules[0].timeouts == RouteTimeouts(request: 10, backendRequest: 2))
        #expect(payments.rules[0].retryAttempts == 2)
        #expect(payments.rules[1].backendRefs[0].host == "receipts")
        #expect(payments.auth.methods == [.mtls, .jwt, .keyAuth])
        #expect(payments.acl?.denyConsumers == ["ci-bot"])
        #expect(payments.rateLimits.perConsumer == RateLimitRule(limit: 100, windowSeconds: 60))
        #expect(config.consumer(named: "partner-acme")?.certificates.count == 2)
        #expect(config.consumer(named: "partner-acme")?.rateLimit == RateLimitRule(limit: 1000, windowSeconds: 3600))
        let catalog = config.routes[1]
        #expect(catalog.auth.allowAnonymous)
        if case .prefix("") = catalog.rules[0].matches[0].path {} else { Issue.record("default match is not PathPrefix /") }
    }

    static let base = """
        routes:
          - name: r
            rules:
              - backendRefs:
                  - {name: a, port: 80}
            auth: {anonymous: true}
        """

    /// (description, YAML, expected fragment of the error).
    static let invalid: [(String, String, String)] = [
        ("unknown top-level key", "listne: 1\n" + base, "t.yaml: listne (line 1): unknown key"),
        ("bad listen", "listen: nowhere\n" + base, "t.yaml: listen (line 1): 'nowhere' is not HOST:PORT"),
        ("unknown backend protocol", base.replacingOccurrences(of: "port: 80}", with: "port: 80, protocol: h2c}"),
         "t.yaml: routes[0].rules[0].backendRefs[0].protocol (line 5): protocol 'h2c' is not supported: use http (HTTP/1.1, the default) or grpc (HTTP/2)"),
        ("backend spiffe_id without mesh", base.replacingOccurrences(of: "port: 80}", with: "port: 80, spiffe_id: spiffe://shop.example/ns/shop/sa/a}"),
         "a backendRef has spiffe_id, so the gateway needs its own SVID"),
        ("backend spiffe_id not a SPIFFE ID", "mesh: {spiffe_id: spiffe://shop.example/gw, trust_bundle: b.pem, svid: {cert: c.pem, key: k.pem}}\n"
            + base.replacingOccurrences(of: "port: 80}", with: "port: 80, spiffe_id: https://a}"),
         "routes[0].rules[0].backendRefs[0].spiffe_id (line 6): 'https://a' is not a workload SPIFFE ID"),
        ("mesh without svid", "mesh: {spiffe_id: spiffe://shop.example/gw, trust_bundle: b.pem}\n" + base,
         "t.yaml: mesh (line 1): missing key 'svid'"),
        ("tls without key", "tls: {cert: c.pem}\n" + base, "t.yaml: tls (line 1): missing key 'key'"),
        ("ingest without buffer", "telemetry: {ingest: https://127.0.0.1:9000}\n" + base,
         "t.yaml: telemetry (line 1): 'buffer_dir' is required with 'ingest'"),
        ("spool bound too small", "telemetry: {ingest: https://127.0.0.1:9000, buffer_dir: b, buffer_max_bytes: 4096}\n" + base,
         "t.yaml: telemetry.buffer_max_bytes (line 1): must be at least 65536"),
        ("bad trace policy", "trace: {incoming: maybe}\n" + base, "t.yaml: trace.incoming (line 1): expected trust or restart"),
        ("no routes", "consumers: []\n", "missing key 'routes'"),
        ("bad port", base.replacingOccurrences(of: "port: 80", with: "port: 70000"),
         "t.yaml: routes[0].rules[0].backendRefs[0].port (line 5): a port is between 1 and 65535"),
        ("bad path type", base.replacingOccurrences(of: "      - backendRefs:", with: "      - matches: [{path: {type: Glob, value: /x}}]\n        backendRefs:"),
         "routes[0].rules[0].matches[0].path.type (line 4): 'Glob' is not a path match type"),
        ("bad regex", base.replacingOccurrences(of: "      - backendRefs:", with: "      - matches: [{path: {type: RegularExpression, value: \"/(x\"}}]\n        backendRefs:"),
         "routes[0].rules[0].matches[0].path.value (line 4): not a valid regular expression"),
        ("bad duration", base.replacingOccurrences(of: "      - backendRefs:", with: "      - timeouts: {request: 10 seconds}\n        backendRefs:"),
         "routes[0].rules[0].timeouts.request (line 4): '10 seconds' is not a duration"),
        ("backend timeout longer than request", base.replacingOccurrences(of: "      - backendRefs:", with: "      - timeouts: {request: 1s, backendRequest: 2s}\n        backendRefs:"),
         "timeouts.backendRequest (line 4): backendRequest must not be longer than request"),
        ("plain key", "consumers:\n  - username: a\n    credentials:\n      key-auth:\n        - key_sha256: my-secret\n" + base,
         "consumers[0].credentials.key-auth[0].key_sha256 (line 5): expected 64 hex digits"),
        ("closed route", base.replacingOccurrences(of: "auth: {anonymous: true}", with: "auth: {methods: []}"),
         "routes[0].auth (line 6): no auth method and anonymous is false"),
        ("unknown method", base.replacingOccurrences(of: "auth: {anonymous: true}", with: "auth: {methods: [basic-auth]}"),
         "routes[0].auth.methods[0] (line 6): 'basic-auth' is not an auth method"),
        ("acl names unknown consumer", base + "\n    acl: {allow: {consumers: [mallory]}}",
         "routes[0] (line 2): acl names consumer 'mallory', which is not defined"),
        ("jwt route without issuers", base.replacingOccurrences(of: "auth: {anonymous: true}", with: "auth: {methods: [jwt]}"),
         "routes[0] (line 2): route accepts jwt but no jwt.issuers are configured"),
        ("duplicate route", base + "\n" + base.replacingOccurrences(of: "routes:\n", with: ""),
         "route 'r' is defined twice"),
        ("jwks file missing", "jwt:\n  issuers:\n    - {issuer: i, audiences: [a], jwks_file: nope.json}\n" + base,
         "jwt.issuers[0].jwks_file (line 3): cannot read the JWKS file"),
        ("rate limit window", base + "\n    rate_limit: {total: {requests: 5, window: 500ms}}",
         "routes[0].rate_limit.total.window (line 7): a window is whole seconds"),
        ("hostname with port", base.replacingOccurrences(of: "  - name: r\n", with: "  - name: r\n    hostnames: [\"a.example:443\"]\n"),
         "routes[0].hostnames[0] (line 3): 'a.example:443' is not a hostname"),
        ("lowercase method", base.replacingOccurrences(of: "      - backendRefs:", with: "      - matches: [{method: get}]\n        backendRefs:"),
         "routes[0].rules[0].matches[0].method (line 4): 'get' is not an HTTP method"),
    ]

    @Test(arguments: invalid)
    func invalidConfigurationsNameTheKeyPathAndLine(_ c: (String, String, String)) throws {
        do {
            _ = try GatewayConfiguration.parse(yaml: c.1, file: "/tmp/t.yaml")
            Issue.record("\(c.0): accepted")
        } catch let error as ConfigError {
            #expect(error.description.contains(c.2), "\(c.0): \(error.description)")
        }
    }

    @Test func jwksRefusesKeysThatDoNotFitTheirAlgorithm() {
        let bad: [(String, String)] = [
            (#"{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}"#, "at least 32 bytes"),
            (#"{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}"#, "crv P-256"),
            (#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}"#, "kty 'OKP' is not supported"),
            (#"{"keys":[]}"#, "empty"),
            ("[1]", "'keys' list"),
        ]
        for (json, fragment) in bad {
            #expect(throws: (any Error).self) { try JWKSet.parse(Array(json.utf8)) }
            do { _ = try JWKSet.parse(Array(json.utf8)) } catch {
                #expect("\(error)".contains(fragment), "\(error)")
            }
        }
        let hs = Base64URL.encode([UInt8](repeating: 7, count: 32))
        #expect(throws: (any Error).self) {
            try JWKSet.parse(Array(#"{"keys":[{"kty":"oct","alg":"RS256","k":"\#(hs)"}]}"#.utf8))
        }
    }

    @Test func serverSettings() throws {
        let yaml = """
            listen: 0.0.0.0:8443
            tls: {cert: edge.pem, key: edge.key, client_ca: partners.pem}
            mesh:
              spiffe_id: spiffe://shop.example/ns/edge/sa/gateway
              trust_bundle: /ca/bundle.pem
              svid: {cert: gw/svid.pem, key: gw/svid.key}
            telemetry: {access_log: gw.ndjson, ingest: "https://127.0.0.1:7443", buffer_dir: buf}
            trace: {incoming: restart}
            """ + "\n" + Self.base.replacingOccurrences(of: "port: 80}", with: "port: 80, spiffe_id: spiffe://shop.example/ns/shop/sa/a}")
        let server = try GatewayConfiguration.parse(yaml: yaml, file: "/etc/trail/g.yaml").server
        #expect(server.listenHost == "0.0.0.0" && server.listenPort == 8443)
        #expect(server.tls == EdgeTLS(certificate: "/etc/trail/edge.pem", key: "/etc/trail/edge.key", clientCA: "/etc/trail/partners.pem"))
        #expect(server.mesh == MeshIdentity(
            spiffeID: "spiffe://shop.example/ns/edge/sa/gateway", trustBundle: "/ca/bundle.pem",
            certificate: "/etc/trail/gw/svid.pem", key: "/etc/trail/gw/svid.key"))
        #expect(server.telemetry.accessLog == "/etc/trail/gw.ndjson")
        #expect(server.telemetry.ingest == "https://127.0.0.1:7443")
        #expect(server.telemetry.bufferDirectory == "/etc/trail/buf")
        #expect(server.telemetry.bufferMaxBytes == 512 << 20)
        let bounded = try GatewayConfiguration.parse(
            yaml: yaml.replacingOccurrences(of: "buffer_dir: buf}", with: "buffer_dir: buf, buffer_max_bytes: 1048576}"), file: "/etc/trail/g.yaml")
        #expect(bounded.server.telemetry.bufferMaxBytes == 1 << 20)
        #expect(server.incomingTrace == .restart)
        let config = try GatewayConfiguration.parse(yaml: yaml, file: "/etc/trail/g.yaml")
        #expect(config.routes[0].rules[0].backendRefs[0].spiffeID == "spiffe://shop.example/ns/shop/sa/a")
    }

    @Test func durations() {
        #expect(GatewayDuration.seconds("10s") == 10)
        #expect(GatewayDuration.seconds("500ms") == 0.5)
        #expect(GatewayDuration.seconds("1h1m1s") == 3661)
        #expect(GatewayDuration.seconds("") == nil)
        #expect(GatewayDuration.seconds("5") == nil)
        #expect(GatewayDuration.seconds("1d") == nil)
        #expect(GatewayDuration.seconds("1s1s1s1s1s") == nil)
    }
}
