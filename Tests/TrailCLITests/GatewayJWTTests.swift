import Foundation
import Testing
import TrailCore

/// JWT authentication at `trail gateway`, end to end with curl and with keys and tokens made fresh by PyJWT and
/// `cryptography` (`fixtures/gateway/jwt_cases.py`): valid RS256, ES256 and HS256 tokens pass as their consumer;
/// missing, expired, not-yet-valid, wrong-audience, wrong-issuer, unknown-key, tampered, `alg: none` and
/// key-confusion tokens are refused with 401 and logged without the token; the chain of a valid request starts
/// at the JWT subject.
@Suite("trail gateway JWT with real tokens", .serialized)
struct GatewayJWTTests {
    typealias M = MeshTests

    @Test func everyJWTCaseIsAnsweredAsItShouldAndLogged() throws {
        let e = try GatewayUpstreamTests.Estate()
        let issuer = "https://idp.test.example"
        let (status, _, err) = try M.run("/usr/bin/env", [
            "python3", CLI.root.appendingPathComponent("fixtures/gateway/jwt_cases.py").path, e.dir.path, issuer, "trail-gateway", "alice",
        ], in: e.dir)
        try #require(status == 0, "jwt_cases.py failed (pip install pyjwt cryptography): \(err)")
        let upstream = try e.upstream("good")
        try e.write("""
            listen: 127.0.0.1:0
            telemetry:
              access_log: gateway-access.ndjson
            jwt:
              issuers:
                - issuer: \(issuer)
                  audiences: [trail-gateway]
                  jwks_file: jwks.json
            consumers:
              - username: alice
                credentials:
                  jwt:
                    - {issuer: "\(issuer)", subject: alice}
            routes:
              - name: api
                rules:
                  - backendRefs:
                      - {name: good, host: 127.0.0.1, port: \(upstream)}
                auth:
                  methods: [jwt]
            """, "gateway.yaml")
        let gateway = try e.start(["gateway", "--config", "gateway.yaml"], "gateway")
        let tokens = try #require(try JSONParser.parse(Array(try Data(contentsOf: e.dir.appendingPathComponent("tokens.json"))))
            .object)

        var valid = 0
        for (name, value) in tokens {
            let token = try #require(value.string)
            let trace = String(repeating: "0", count: 16) + String(format: "%016x", UInt64.random(in: 1...UInt64.max))
            let (code, body) = try M.curl([
                "-H", "authorization: Bearer \(token)", "-H", "x-request-id: jwt-\(name)",
                "-H", "traceparent: 00-\(trace)-00f067aa0ba902b7-01", "\(gateway.url)/orders/\(name)",
            ], in: e.dir)
            let expected = ["rs256", "es256", "hs256"].contains(name) ? 200 : 401
            #expect(code == expected, "\(name): \(code) \(body)")
            if expected == 200 { valid += 1 }
            let line = try #require(e.line(requestID: "jwt-\(name)"), "\(name) was not logged")
            #expect(line["response"]?["status"]?.int == Int64(expected), "\(name)")
            if expected == 401 {
                let reason = line["refusal_reason"]?.string ?? ""
                #expect(reason.hasPrefix("JWT") || reason.hasPrefix("no key"), "\(name): refusal reason '\(reason)'")
                #expect(line["consumer"]?["username"]?.string == nil, "\(name) was taken for a consumer")
            } else {
                #expect(line["consumer"]?["username"]?.string == "alice", "\(name)")
                #expect(line["credential_type"]?.string == "jwt", "\(name)")
            }
        }
        #expect(valid == 3)
        let missing = try M.curl(["-H", "x-request-id: jwt-missing", "\(gateway.url)/orders/none"], in: e.dir)
        #expect(missing.0 == 401)
        let malformed = try M.curl(["-H", "authorization: Bearer not.a.jwt", "\(gateway.url)/orders/bad"], in: e.dir)
        #expect(malformed.0 == 401)

        // No token, not even its signature, reaches the log.
        _ = e.line(requestID: "jwt-missing")
        let log = (try? String(contentsOf: e.dir.appendingPathComponent("gateway-access.ndjson"), encoding: .utf8)) ?? ""
        for (name, value) in tokens {
            let signature = String(value.string?.split(separator: ".", omittingEmptySubsequences: false).last ?? "")
            let payload = String(value.string?.split(separator: ".", omittingEmptySubsequences: false).dropFirst().first ?? "")
            if !signature.isEmpty { #expect(!log.contains(signature), "the \(name) token's signature is in the log") }
            #expect(!log.contains(payload), "the \(name) token's payload is in the log")
        }

        // The analyst's view: alice's three requests are chains that start at her, authenticated by JWT.
        let db = e.dir.appendingPathComponent("trail.db").path
        _ = try M.run(CLI.binary.path, ["ingest", "--db", db, "gateway-access.ndjson"], in: e.dir)
        let activity = try JSONParser.parse(Array(try M.trail(["activity", "alice", "--db", db, "--format", "json"], in: e.dir).utf8))
        let chains = activity.array ?? []
        #expect(chains.count == 3)
        for chain in chains {
            #expect(chain["origin"]?["principal"]?.string == "alice")
            #expect(chain["origin"]?["principal_type"]?.string == "jwt")
        }
    }
}
