import Crypto
import Foundation
import TrailCore

/// The demo's identity provider: signs ES256 JWTs for its users and publishes the verification key as a JWKS
/// file for the gateway's `jwt.issuers[].jwks_file`.
struct TokenIssuer {
    let issuer: String
    let audience: String
    let keyID = "demo-es256"
    private let key = P256.Signing.PrivateKey()

    init(issuer: String, audience: String) {
        self.issuer = issuer
        self.audience = audience
    }

    /// The JWKS document (public key only).
    var jwks: String {
        let raw = key.publicKey.rawRepresentation
        let key = JSONValue.object([
            ("kty", .string("EC")), ("crv", .string("P-256")), ("alg", .string("ES256")), ("use", .string("sig")),
            ("kid", .string(keyID)), ("x", .string(Self.base64URL(raw.prefix(32)))), ("y", .string(Self.base64URL(raw.suffix(32)))),
        ])
        return JSONValue.object([("keys", .array([key]))]).serialized()
    }

    /// A token for `subject`, valid from now for `lifetime` seconds.
    func token(subject: String, lifetime: Int = 3600) throws -> String {
        let now = Int64(Date().timeIntervalSince1970)
        let header = JSONValue.object([("alg", .string("ES256")), ("typ", .string("JWT")), ("kid", .string(keyID))])
        let claims = JSONValue.object([
            ("iss", .string(issuer)), ("sub", .string(subject)), ("aud", .string(audience)),
            ("iat", .int(now)), ("nbf", .int(now - 5)), ("exp", .int(now + Int64(lifetime))),
        ])
        let input = Self.base64URL(Data(header.serialized().utf8)) + "." + Self.base64URL(Data(claims.serialized().utf8))
        let signature = try key.signature(for: Data(input.utf8))
        return input + "." + Self.base64URL(signature.rawRepresentation)
    }

    static func base64URL<D: DataProtocol>(_ data: D) -> String {
        Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
