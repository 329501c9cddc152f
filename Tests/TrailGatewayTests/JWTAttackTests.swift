import Crypto
import Foundation
import Testing
import _CryptoExtras

@testable import TrailGateway

/// JWT attacks beyond `AuthenticationTests.refusedTokens`: algorithm and key-type mismatches both ways, HS256 with
/// every public key representation as the secret, `alg` spellings of none, keys the token brings itself (`jwk`,
/// `jku`, `x5c`), hostile `kid` values, and tokens replayed across issuers and audiences. Each is tried against the
/// gateway's JWTAuthenticator with the JWKS of the other tests (RSA `rsa-1`, EC `ec-1`, oct `hs-1`).
@Suite struct JWTAttackTests {
    static let now = AuthenticationTests.now
    static let claims = TokenMaker.claims()

    /// A token with this exact header JSON, signed as `signer` says.
    static func token(header: String, claims: String = claims, signer: Signer) -> String {
        let input = TokenMaker.segment(header) + "." + TokenMaker.segment(claims)
        let bytes = Array(input.utf8)
        let keys = TestKeys.shared
        let signature: [UInt8]
        switch signer {
        case .rsa: signature = Array(try! keys.rsa.signature(for: SHA256.hash(data: bytes), padding: .insecurePKCS1v1_5).rawRepresentation)
        case .ec: signature = Array(try! keys.p256.signature(for: SHA256.hash(data: bytes)).rawRepresentation)
        case .ecWith(let key): signature = Array(try! key.signature(for: SHA256.hash(data: bytes)).rawRepresentation)
        case .hmac(let secret): signature = Array(HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: secret)))
        case .bytes(let b): signature = b
        }
        return input + "." + Base64URL.encode(signature)
    }

    enum Signer {
        case rsa, ec
        case ecWith(P256.Signing.PrivateKey)
        case hmac([UInt8])
        case bytes([UInt8])
    }

    /// (case, token, status, reason prefix).
    static var attacks: [(String, String, Int, String)] {
        let keys = TestKeys.shared
        let rsaPEM = Array(keys.rsa.publicKey.pemRepresentation.utf8)
        let rsaDER = Array(keys.rsa.publicKey.derRepresentation)
        let ecPEM = Array(keys.p256.publicKey.pemRepresentation.utf8)
        let ecRaw = Array(keys.p256.publicKey.rawRepresentation)
        let primitives = try! keys.rsa.publicKey.getKeyPrimitives()
        let rsaJWK = Array(#"{"kty":"RSA","kid":"rsa-1","use":"sig","alg":"RS256","n":"\#(Base64URL.encode(primitives.modulus))","e":"\#(Base64URL.encode(primitives.publicExponent))"}"#.utf8)
        let attacker = P256.Signing.PrivateKey()
        let attackerRaw = Array(attacker.publicKey.rawRepresentation)
        let attackerJWK = #"{"kty":"EC","crv":"P-256","x":"\#(Base64URL.encode(attackerRaw[0..<32]))","y":"\#(Base64URL.encode(attackerRaw[32..<64]))"}"#
        let validES = token(header: #"{"alg":"ES256","typ":"JWT"}"#, signer: .ec)
        let esSignature = String(validES.split(separator: ".")[2])
        let c = TokenMaker.claims
        return [
            // Algorithm and key type disagree.
            ("ES256 header, RSA signature, RSA kid", token(header: #"{"alg":"ES256","kid":"rsa-1"}"#, signer: .rsa), 401, "no key of the issuer fits"),
            ("ES256 header, RSA signature, no kid", token(header: #"{"alg":"ES256"}"#, signer: .rsa), 401, "JWT signature is invalid"),
            ("RS256 header, EC signature, no kid", token(header: #"{"alg":"RS256"}"#, signer: .ec), 401, "JWT signature is invalid"),
            ("RS256 header, EC signature, EC kid", token(header: #"{"alg":"RS256","kid":"ec-1"}"#, signer: .ec), 401, "no key of the issuer fits"),
            ("ES256 header, HMAC signature, oct kid", token(header: #"{"alg":"ES256","kid":"hs-1"}"#, signer: .hmac(keys.hmacSecret)), 401, "no key of the issuer fits"),
            // HS256 keyed with a public key (key confusion), with and without the public key's kid.
            ("HS256 keyed with the RSA PEM, RSA kid", token(header: #"{"alg":"HS256","kid":"rsa-1"}"#, signer: .hmac(rsaPEM)), 401, "no key of the issuer fits"),
            ("HS256 keyed with the RSA PEM, no kid", token(header: #"{"alg":"HS256"}"#, signer: .hmac(rsaPEM)), 401, "JWT signature is invalid"),
            ("HS256 keyed with the RSA DER, no kid", token(header: #"{"alg":"HS256"}"#, signer: .hmac(rsaDER)), 401, "JWT signature is invalid"),
            ("HS256 keyed with the RSA JWK, no kid", token(header: #"{"alg":"HS256"}"#, signer: .hmac(rsaJWK)), 401, "JWT signature is invalid"),
            ("HS256 keyed with the EC PEM, EC kid", token(header: #"{"alg":"HS256","kid":"ec-1"}"#, signer: .hmac(ecPEM)), 401, "no key of the issuer fits"),
            ("HS256 keyed with the EC point, no kid", token(header: #"{"alg":"HS256"}"#, signer: .hmac(ecRaw)), 401, "JWT signature is invalid"),
            // `none` in every spelling, and with a real signature left on.
            ("alg NONE", token(header: #"{"alg":"NONE"}"#, signer: .bytes([])), 401, "JWT algorithm is not accepted"),
            ("alg nOnE", token(header: #"{"alg":"nOnE"}"#, signer: .bytes([])), 401, "JWT algorithm is not accepted"),
            ("alg empty", token(header: #"{"alg":""}"#, signer: .bytes([])), 401, "JWT algorithm is not accepted"),
            ("alg none with a valid signature", TokenMaker.segment(#"{"alg":"none"}"#) + "." + TokenMaker.segment(claims) + "." + esSignature, 401, "JWT algorithm is not accepted"),
            ("alg es256 in lower case", token(header: #"{"alg":"es256"}"#, signer: .ec), 401, "JWT algorithm is not accepted"),
            ("alg not a string", token(header: #"{"alg":["ES256"]}"#, signer: .ec), 401, "JWT header has no alg"),
            ("alg PS256", token(header: #"{"alg":"PS256"}"#, signer: .rsa), 401, "JWT algorithm is not accepted"),
            // Keys the token brings itself are never used.
            ("embedded jwk of the attacker", token(header: #"{"alg":"ES256","jwk":\#(attackerJWK)}"#, signer: .ecWith(attacker)), 401, "JWT signature is invalid"),
            ("jku to the attacker's JWKS", token(header: #"{"alg":"ES256","jku":"http://127.0.0.1:1/jwks.json"}"#, signer: .ecWith(attacker)), 401, "JWT signature is invalid"),
            ("x5u to the attacker's certificate", token(header: #"{"alg":"ES256","x5u":"http://127.0.0.1:1/cert.pem"}"#, signer: .ecWith(attacker)), 401, "JWT signature is invalid"),
            ("x5c with the attacker's key", token(header: #"{"alg":"ES256","x5c":["MIIBAA=="]}"#, signer: .ecWith(attacker)), 401, "JWT signature is invalid"),
            // Hostile kid values name no key.
            ("kid path traversal", token(header: #"{"alg":"ES256","kid":"../../../../dev/null"}"#, signer: .hmac([])), 401, "no key of the issuer fits"),
            ("kid SQL injection", token(header: #"{"alg":"HS256","kid":"x' UNION SELECT 'AAAA' --"}"#, signer: .hmac(Array("AAAA".utf8))), 401, "no key of the issuer fits"),
            ("kid not a string", token(header: #"{"alg":"ES256","kid":["ec-1"]}"#, signer: .ecWith(attacker)), 401, "JWT signature is invalid"),
            // Signature bytes that are almost right.
            ("ES256 signature with a byte more", token(header: #"{"alg":"ES256"}"#, signer: .bytes(Array(Base64URL.decode(esSignature)!) + [0])), 401, "JWT signature is invalid"),
            ("ES256 signature in DER", token(header: #"{"alg":"ES256"}"#, signer: .bytes(Array(try! keys.p256.signature(for: SHA256.hash(data: Array("x".utf8))).derRepresentation))), 401, "JWT signature is invalid"),
            ("empty signature", token(header: #"{"alg":"ES256"}"#, signer: .bytes([])), 401, "JWT signature is invalid"),
            // Replays across issuers and audiences.
            ("subject of another issuer", token(header: #"{"alg":"ES256"}"#, claims: c("https://idp.example.com", "trail-gateway", "partner-bob", 1_900_000_000, nil), signer: .ec), 403, "JWT subject maps to no consumer"),
            ("audience of another service", token(header: #"{"alg":"RS256"}"#, claims: c("https://rs-only.example", "other", "alice", 1_900_000_000, nil), signer: .rsa), 401, "JWT audience is not accepted"),
            ("issuer claim of one issuer, key of another", token(header: #"{"alg":"RS256"}"#, claims: c("https://idp.python.example", "trail-gateway", "partner-bob", 1_900_000_000, nil), signer: .rsa), 401, "JWT signature is invalid"),
            ("no audience", token(header: #"{"alg":"ES256"}"#, claims: #"{"iss":"https://idp.example.com","sub":"alice","exp":1900000000}"#, signer: .ec), 401, "JWT audience is not accepted"),
            ("exp as a string", token(header: #"{"alg":"ES256"}"#, claims: #"{"iss":"https://idp.example.com","aud":"trail-gateway","sub":"alice","exp":"1900000000"}"#, signer: .ec), 401, "JWT has no valid exp claim"),
            ("nbf as a string", token(header: #"{"alg":"ES256"}"#, claims: #"{"iss":"https://idp.example.com","aud":"trail-gateway","sub":"alice","exp":1900000000,"nbf":"0"}"#, signer: .ec), 401, "JWT nbf claim is not a number"),
            // Shapes.
            ("five segments (JWE)", validES + ".a.b", 401, "malformed JWT"),
            ("over 16 KiB", token(header: #"{"alg":"ES256"}"#, claims: #"{"pad":""# + String(repeating: "a", count: 20_000) + #""}"#, signer: .ec), 401, "malformed JWT"),
        ]
    }

    @Test(arguments: attacks)
    func attackIsRefused(_ c: (String, String, Int, String)) throws {
        try AuthenticationTests.expectRefusal(c)
    }

    /// The controls: the same helper makes tokens the gateway accepts, so the refusals above are the attacks'.
    @Test func theHelperMakesTokensThatPass() throws {
        let config = try AuthenticationTests.configuration()
        let jwt = JWTAuthenticator(settings: config.jwt, consumers: config.consumers)
        for token in [
            Self.token(header: #"{"alg":"ES256"}"#, signer: .ec), Self.token(header: #"{"alg":"RS256","kid":"rsa-1"}"#, signer: .rsa),
            Self.token(header: #"{"alg":"HS256","kid":"hs-1"}"#, signer: .hmac(TestKeys.shared.hmacSecret)),
            // Unknown header members that carry no key are ignored.
            Self.token(header: #"{"alg":"ES256","typ":"JWT","cty":"x"}"#, signer: .ec),
        ] {
            #expect(jwt.authenticate(AuthenticationTests.bearer(token), now: Self.now)?.caller?.consumer == "alice", "\(token.prefix(40))")
        }
    }
}
