import Foundation
import Testing

@testable import TrailGateway

@Suite struct AuthenticationTests {
    static let now = 1_800_000_000.0

    static func configuration(jwks: String = TestKeys.shared.jwksJSON) throws -> GatewayConfiguration {
        let yaml = """
            key_auth: {key_names: [apikey, x-api-key]}
            jwt:
              clock_skew_seconds: 30
              issuers:
                - {issuer: "https://idp.example.com", audiences: [trail-gateway, other], jwks_file: jwks.json}
                - {issuer: "https://idp.python.example", audiences: [trail-gateway], jwks_file: \(repositoryRoot)/fixtures/gateway/jwks-python.json}
                - {issuer: "https://rs-only.example", audiences: [trail-gateway], algorithms: [RS256], jwks_file: jwks.json}
            consumers:
              - username: alice
                credentials:
                  key-auth: [{key_sha256: \(sha256Hex("alice-key"))}]
                  jwt: [{issuer: "https://idp.example.com", subject: alice}, {issuer: "https://rs-only.example", subject: alice}]
              - username: bob
                credentials:
                  key-auth: [{key_sha256: \(sha256Hex("bob-key"))}]
                  jwt: [{issuer: "https://idp.python.example", subject: partner-bob}]
              - username: acme
                credentials:
                  mtls: [{spiffe_id: "spiffe://partners.example/acme"}, {subject: "CN=acme,O=Acme"}]
            routes:
              - name: r
                rules: [{backendRefs: [{name: a, port: 80}]}]
                auth: {methods: [mtls, jwt, key-auth]}
            """
        let folder = try TempFolder(files: ["gateway.yaml": yaml, "jwks.json": jwks])
        defer { folder.remove() }
        return try GatewayConfiguration.load(file: folder.path + "/gateway.yaml")
    }

    static func bearer(_ token: String) -> AuthRequest { AuthRequest(headers: [("authorization", "Bearer " + token)]) }

    // MARK: key-auth

    @Test func keyAuth() throws {
        let config = try Self.configuration()
        let auth = RouteAuthenticator(configuration: config)
        let route = config.routes[0].auth
        let viaHeader = auth.authenticate(AuthRequest(headers: [("apikey", "alice-key")]), auth: route, now: Self.now)
        #expect(viaHeader.caller?.consumer == "alice")
        #expect(viaHeader.caller?.kind == .keyAuth)
        #expect(viaHeader.caller?.credentialID == "key-auth:" + String(sha256Hex("alice-key").prefix(8)))
        let viaOtherName = auth.authenticate(AuthRequest(headers: [("x-api-key", "bob-key")]), auth: route, now: Self.now)
        #expect(viaOtherName.caller?.consumer == "bob")
        let viaQuery = auth.authenticate(AuthRequest(query: [("apikey", "bob-key")]), auth: route, now: Self.now)
        #expect(viaQuery.caller?.consumer == "bob")
    }

    // MARK: JWT, tokens made with swift-crypto keys

    @Test(arguments: [("HS256", "hs-1"), ("RS256", "rsa-1"), ("ES256", "ec-1"), ("RS256", nil), ("ES256", nil)] as [(String, String?)])
    func validTokens(_ c: (String, String?)) throws {
        let config = try Self.configuration()
        let jwt = JWTAuthenticator(settings: config.jwt, consumers: config.consumers)
        let token = TokenMaker.sign(alg: c.0, kid: c.1, claims: TokenMaker.claims())
        let outcome = try #require(jwt.authenticate(Self.bearer(token), now: Self.now))
        #expect(outcome == .authenticated(AuthenticatedCaller(consumer: "alice", kind: .jwt, credentialID: "https://idp.example.com#alice")))
    }

    /// (case, token, expected status, expected reason).
    static var refusals: [(String, String, Int, String)] {
        let c = TokenMaker.claims
        let s = { (alg: String, claims: String) in TokenMaker.sign(alg: alg, kid: nil, claims: claims) }
        let valid = s("RS256", c("https://idp.example.com", "trail-gateway", "alice", 1_900_000_000, nil))
        let parts = valid.split(separator: ".").map(String.init)
        let otherKeys = TestKeys(rsa: TestKeys.shared.rsa, p256: .init(), hmacSecret: Array(repeating: 1, count: 32))
        return [
            ("garbage", "not-a-jwt", 401, "malformed JWT"),
            ("two segments", parts[0] + "." + parts[1], 401, "malformed JWT"),
            ("standard base64 alphabet", parts[0] + "." + parts[1] + "." + parts[2].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/") + "+/", 401, "malformed JWT"),
            ("header not an object", TokenMaker.segment("[1]") + "." + parts[1] + "." + parts[2], 401, "malformed JWT"),
            ("crit header", TokenMaker.sign(alg: "RS256", kid: nil, claims: c("https://idp.example.com", "trail-gateway", "alice", 1_900_000_000, nil)).replacingOccurrences(of: parts[0], with: TokenMaker.segment(#"{"alg":"RS256","crit":["exp"]}"#)), 401, "JWT has critical header parameters"),
            ("alg none", TokenMaker.segment(#"{"alg":"none"}"#) + "." + parts[1] + ".", 401, "JWT algorithm is not accepted"),
            ("alg None", TokenMaker.segment(#"{"alg":"None"}"#) + "." + parts[1] + ".", 401, "JWT algorithm is not accepted"),
            ("alg HS512", TokenMaker.sign(alg: "HS512", kid: nil, claims: c("https://idp.example.com", "trail-gateway", "alice", 1_900_000_000, nil), signWith: "HS256"), 401, "JWT algorithm is not accepted"),
            ("no alg", TokenMaker.segment(#"{"typ":"JWT"}"#) + "." + parts[1] + "." + parts[2], 401, "JWT header has no alg"),
            ("wrong signature", parts[0] + "." + parts[1] + "." + Base64URL.encode([UInt8](repeating: 0, count: 256)), 401, "JWT signature is invalid"),
            ("tampered claims", parts[0] + "." + TokenMaker.segment(c("https://idp.example.com", "trail-gateway", "bob", 1_900_000_000, nil)) + "." + parts[2], 401, "JWT signature is invalid"),
            ("other ES256 key", TokenMaker.sign(alg: "ES256", kid: nil, claims: c("https://idp.example.com", "trail-gateway", "alice", 1_900_000_000, nil), keys: otherKeys), 401, "JWT signature is invalid"),
            ("other HS256 secret", TokenMaker.sign(alg: "HS256", kid: nil, claims: c("https://idp.example.com", "trail-gateway", "alice", 1_900_000_000, nil), keys: otherKeys), 401, "JWT signature is invalid"),
            ("unknown kid", TokenMaker.sign(alg: "RS256", kid: "nope", claims: c("https://idp.example.com", "trail-gateway", "alice", 1_900_000_000, nil)), 401, "no key of the issuer fits"),
            ("kid of another key type", TokenMaker.sign(alg: "RS256", kid: "ec-1", claims: c("https://idp.example.com", "trail-gateway", "alice", 1_900_000_000, nil)), 401, "no key of the issuer fits"),
            ("expired", s("ES256", c("https://idp.example.com", "trail-gateway", "alice", 1_799_999_960, nil)), 401, "JWT has expired"),
            ("no exp", s("ES256", c("https://idp.example.com", "trail-gateway", "alice", nil, nil)), 401, "JWT has no valid exp claim"),
            ("not yet valid", s("ES256", c("https://idp.example.com", "trail-gateway", "alice", 1_900_000_000, 1_800_000_040)), 401, "JWT is not valid yet"),
            ("wrong audience", s("ES256", c("https://idp.example.com", "someone-else", "alice", 1_900_000_000, nil)), 401, "JWT audience is not accepted"),
            ("wrong issuer", s("ES256", c("https://evil.example", "trail-gateway", "alice", 1_900_000_000, nil)), 401, "JWT issuer is not trusted"),
            ("HS256 token against RSA-only issuer", TokenMaker.sign(alg: "HS256", kid: nil, claims: c("https://rs-only.example", "trail-gateway", "alice", 1_900_000_000, nil)), 401, "JWT algorithm is not allowed for this issuer"),
            ("unknown subject", s("ES256", c("https://idp.example.com", "trail-gateway", "mallory", 1_900_000_000, nil)), 403, "JWT subject maps to no consumer"),
        ]
    }

    @Test(arguments: refusals)
    func refusedTokens(_ c: (String, String, Int, String)) throws {
        try Self.expectRefusal(c)
    }

    /// `c` is (what, token, status, reason prefix): the token is refused with that status and reason, as a JWT
    /// refusal, and the reason does not repeat the token.
    static func expectRefusal(_ c: (String, String, Int, String)) throws {
        let config = try configuration()
        let jwt = JWTAuthenticator(settings: config.jwt, consumers: config.consumers)
        let refusal = try #require(jwt.authenticate(bearer(c.1), now: now)?.refusal, "\(c.0) was accepted")
        #expect(refusal.status == c.2, "\(c.0): \(refusal.reason)")
        #expect(refusal.reason.hasPrefix(c.3), "\(c.0): \(refusal.reason)")
        #expect(refusal.kind == .jwt)
        #expect(!refusal.reason.contains(c.1) || c.1.isEmpty, "\(c.0): the token leaked into the reason")
    }

    @Test func clockSkewIsTolerated() throws {
        let config = try Self.configuration()
        let jwt = JWTAuthenticator(settings: config.jwt, consumers: config.consumers)
        let c = TokenMaker.claims
        let justExpired = TokenMaker.sign(alg: "ES256", kid: nil, claims: c("https://idp.example.com", "trail-gateway", "alice", 1_799_999_990, nil))
        #expect(jwt.authenticate(Self.bearer(justExpired), now: Self.now)?.caller?.consumer == "alice")
        let almostValid = TokenMaker.sign(alg: "ES256", kid: nil, claims: c("https://idp.example.com", "trail-gateway", "alice", 1_900_000_000, 1_800_000_020))
        #expect(jwt.authenticate(Self.bearer(almostValid), now: Self.now)?.caller?.consumer == "alice")
        let secondAudience = TokenMaker.sign(alg: "ES256", kid: nil, claims: #"{"iss":"https://idp.example.com","aud":["x","other"],"sub":"alice","exp":1900000000}"#)
        #expect(jwt.authenticate(Self.bearer(secondAudience), now: Self.now)?.caller?.consumer == "alice")
    }

    /// The classic confusion attack: an HS256 token whose secret is the RSA public key, against a JWKS that holds
    /// only that RSA key.
    @Test func hs256TokenAgainstAnRSAKeyIsRefused() throws {
        let config = try Self.configuration(jwks: TestKeys.shared.rsaOnlyJWKS)
        let jwt = JWTAuthenticator(settings: config.jwt, consumers: config.consumers)
        for kid: String? in [nil, "rsa-1"] {
            let token = TokenMaker.sign(alg: "HS256", kid: kid, claims: TokenMaker.claims(), signWith: "HS256-with-RSA-public-key")
            let refusal = try #require(jwt.authenticate(Self.bearer(token), now: Self.now)?.refusal)
            #expect(refusal.status == 401)
            #expect(refusal.reason == "no key of the issuer fits the JWT's algorithm and key id")
        }
    }

    // MARK: JWT, tokens and JWKS made by PyJWT + cryptography (fixtures/gateway/make-jwt-fixtures.py)

    @Test(arguments: ["RS256", "ES256"])
    func tokensFromAnIndependentImplementation(_ alg: String) throws {
        let config = try Self.configuration()
        let jwt = JWTAuthenticator(settings: config.jwt, consumers: config.consumers)
        let data = try #require(FileManager.default.contents(atPath: repositoryRoot + "/fixtures/gateway/tokens-python.json"))
        let tokens = try #require(try JSONSerialization.jsonObject(with: data) as? [String: String])
        let token = try #require(tokens[alg])
        #expect(jwt.authenticate(Self.bearer(token), now: Self.now)?.caller
            == AuthenticatedCaller(consumer: "bob", kind: .jwt, credentialID: "https://idp.python.example#partner-bob"))
        // One flipped signature bit is refused.
        var bytes = Array(token.utf8)
        let i = bytes.count - 5
        bytes[i] = bytes[i] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(jwt.authenticate(Self.bearer(String(decoding: bytes, as: UTF8.self)), now: Self.now)?.refusal?.status == 401)
        // Before nbf (1800000000) minus the skew: refused.
        #expect(jwt.authenticate(Self.bearer(token), now: Self.now - 31)?.refusal?.reason == "JWT is not valid yet")
    }

    // MARK: mTLS and the route's order of methods

    @Test func partnerCertificates() throws {
        let config = try Self.configuration()
        let auth = RouteAuthenticator(configuration: config)
        let route = config.routes[0].auth
        let bySPIFFE = AuthRequest(peerCertificate: PeerCertificateIdentity(spiffeIDs: ["spiffe://partners.example/acme"]))
        #expect(auth.authenticate(bySPIFFE, auth: route, now: Self.now)
            == .authenticated(AuthenticatedCaller(consumer: "acme", kind: .mtls, credentialID: "spiffe://partners.example/acme")))
        let bySubject = AuthRequest(peerCertificate: PeerCertificateIdentity(subject: "CN=acme,O=Acme"))
        #expect(auth.authenticate(bySubject, auth: route, now: Self.now).caller?.consumer == "acme")
        let unknown = AuthRequest(peerCertificate: PeerCertificateIdentity(spiffeIDs: ["spiffe://partners.example/other"], subject: "CN=x"))
        #expect(auth.authenticate(unknown, auth: route, now: Self.now)
            == .refused(AuthRefusal(status: 403, reason: "client certificate maps to no consumer", kind: .mtls)))
    }

    /// (case, request, route auth, expected outcome summary "consumer/kind" or "status/kind/reason").
    static let routeCases: [(String, AuthRequest, RouteAuth, String)] = [
        ("missing credentials", AuthRequest(), RouteAuth(methods: [.keyAuth, .jwt], allowAnonymous: false, anonymousConsumer: "anonymous"),
         "401/-/no credentials; this route accepts key-auth, jwt"),
        ("missing, anonymous allowed", AuthRequest(), RouteAuth(methods: [.keyAuth], allowAnonymous: true, anonymousConsumer: "guest"),
         "guest/anonymous"),
        ("wrong key, anonymous allowed", AuthRequest(headers: [("apikey", "wrong")]), RouteAuth(methods: [.keyAuth], allowAnonymous: true, anonymousConsumer: "guest"),
         "401/key-auth/invalid API key"),
        ("empty key", AuthRequest(headers: [("apikey", "")]), RouteAuth(methods: [.keyAuth], allowAnonymous: false, anonymousConsumer: "anonymous"),
         "401/key-auth/empty API key"),
        ("key on a jwt-only route", AuthRequest(headers: [("apikey", "alice-key")]), RouteAuth(methods: [.jwt], allowAnonymous: false, anonymousConsumer: "anonymous"),
         "401/-/no credentials; this route accepts jwt"),
        ("certificate first", AuthRequest(headers: [("apikey", "alice-key")], peerCertificate: PeerCertificateIdentity(subject: "CN=acme,O=Acme")),
         RouteAuth(methods: [.mtls, .keyAuth], allowAnonymous: false, anonymousConsumer: "anonymous"), "acme/mtls"),
        ("key first", AuthRequest(headers: [("apikey", "alice-key")], peerCertificate: PeerCertificateIdentity(subject: "CN=acme,O=Acme")),
         RouteAuth(methods: [.keyAuth, .mtls], allowAnonymous: false, anonymousConsumer: "anonymous"), "alice/key-auth"),
        ("non-bearer authorization", AuthRequest(headers: [("authorization", "Basic YWxpY2U6eA==")]),
         RouteAuth(methods: [.jwt], allowAnonymous: false, anonymousConsumer: "anonymous"), "401/-/no credentials; this route accepts jwt"),
    ]

    @Test(arguments: routeCases)
    func routeAuthentication(_ c: (String, AuthRequest, RouteAuth, String)) throws {
        let auth = RouteAuthenticator(configuration: try Self.configuration())
        let summary: String
        switch auth.authenticate(c.1, auth: c.2, now: Self.now) {
        case .authenticated(let caller): summary = "\(caller.consumer)/\(caller.kind.rawValue)"
        case .refused(let r): summary = "\(r.status)/\(r.kind?.rawValue ?? "-")/\(r.reason)"
        }
        #expect(summary == c.3, "\(c.0)")
    }
}
