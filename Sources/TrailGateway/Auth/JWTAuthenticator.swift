import Crypto
import Foundation
import TrailCore
import _CryptoExtras

/// Verifies a compact JWS bearer token (`Authorization: Bearer …`) and maps it to a consumer.
///
/// Order: shape → header (`alg` must be HS256, RS256 or ES256 and allowed for the issuer; `none` is refused) →
/// claims parsed to find the issuer → signature with a key of that issuer's JWKS whose type fits `alg` (and whose
/// `kid` matches when the token names one) → `exp` (required), `nbf`, `aud` with ``JWTSettings/clockSkewSeconds``
/// → the consumer claim must be listed under a consumer's `jwt` credentials (403 otherwise).
package struct JWTAuthenticator: Sendable {
    private let settings: JWTSettings
    private let consumers: [Consumer]

    package init(settings: JWTSettings, consumers: [Consumer]) {
        self.settings = settings
        self.consumers = consumers
    }

    /// The bearer token, if the request has one.
    package static func bearerToken(in request: AuthRequest) -> String? {
        guard let value = request.header("authorization") else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }

    /// nil when the request carries no bearer token. `now` is seconds since the Unix epoch.
    package func authenticate(_ request: AuthRequest, now: Double) -> AuthOutcome? {
        guard let token = Self.bearerToken(in: request) else { return nil }
        switch verify(token, now: now) {
        case .failure(let refusal): return .refused(refusal)
        case .success(let caller): return .authenticated(caller)
        }
    }

    package func verify(_ token: String, now: Double) -> Result<AuthenticatedCaller, AuthRefusal> {
        func refuse(_ reason: String) -> Result<AuthenticatedCaller, AuthRefusal> {
            .failure(.unauthorized(reason, .jwt))
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard token.utf8.count <= 16_384, parts.count == 3,
            let headerBytes = Base64URL.decode(parts[0]), let claimBytes = Base64URL.decode(parts[1]),
            let signature = Base64URL.decode(parts[2])
        else { return refuse("malformed JWT") }
        guard let header = try? JSONParser.parse(headerBytes), header.object != nil,
            let claims = try? JSONParser.parse(claimBytes), claims.object != nil
        else { return refuse("malformed JWT") }

        guard let algName = header["alg"]?.string else { return refuse("JWT header has no alg") }
        guard let alg = JWTAlgorithm(rawValue: algName) else { return refuse("JWT algorithm is not accepted") }
        if let crit = header["crit"], !crit.isNull { return refuse("JWT has critical header parameters") }

        guard let iss = claims["iss"]?.string, let issuer = settings.issuers.first(where: { $0.issuer == iss }) else {
            return refuse("JWT issuer is not trusted")
        }
        guard issuer.algorithms.contains(alg) else { return refuse("JWT algorithm is not allowed for this issuer") }

        let kid = header["kid"]?.string
        let candidates = issuer.keys.keys.filter { $0.algorithm == alg && (kid == nil || $0.keyID == kid) }
        guard !candidates.isEmpty else { return refuse("no key of the issuer fits the JWT's algorithm and key id") }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard candidates.contains(where: { Self.verifySignature(signature, over: signingInput, with: $0) }) else {
            return refuse("JWT signature is invalid")
        }

        let skew = Double(settings.clockSkewSeconds)
        guard let exp = Self.numericDate(claims["exp"]) else { return refuse("JWT has no valid exp claim") }
        guard now < exp + skew else { return refuse("JWT has expired") }
        if let nbfValue = claims["nbf"] {
            guard let nbf = Self.numericDate(nbfValue) else { return refuse("JWT nbf claim is not a number") }
            guard now + skew >= nbf else { return refuse("JWT is not valid yet") }
        }
        let audiences: [String]
        switch claims["aud"] {
        case .string(let a)?: audiences = [a]
        case .array(let list)?: audiences = list.compactMap(\.string)
        default: audiences = []
        }
        guard audiences.contains(where: issuer.audiences.contains) else { return refuse("JWT audience is not accepted") }

        guard let subject = claims[issuer.consumerClaim]?.string, !subject.isEmpty else {
            return .failure(.forbidden("JWT has no \(issuer.consumerClaim) claim naming a consumer", .jwt))
        }
        let wanted = JWTSubject(issuer: iss, subject: subject)
        guard let consumer = consumers.first(where: { $0.jwtSubjects.contains(wanted) }) else {
            return .failure(.forbidden("JWT subject maps to no consumer", .jwt))
        }
        return .success(AuthenticatedCaller(consumer: consumer.username, kind: .jwt, credentialID: "\(iss)#\(subject)"))
    }

    static func numericDate(_ value: JSONValue?) -> Double? {
        switch value {
        case .int(let i)?: return Double(i)
        case .double(let d)? where d.isFinite: return d
        default: return nil
        }
    }

    static func verifySignature(_ signature: [UInt8], over input: [UInt8], with key: JSONWebKey) -> Bool {
        switch key.material {
        case .hmac(let secret):
            let mac = Array(HMAC<SHA256>.authenticationCode(for: input, using: secret))
            return ConstantTime.equal(mac, signature)
        case .rsa(let publicKey):
            return publicKey.isValidSignature(
                _RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: input),
                padding: .insecurePKCS1v1_5)
        case .p256(let publicKey):
            guard signature.count == 64, let sig = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else {
                return false
            }
            return publicKey.isValidSignature(sig, for: SHA256.hash(data: input))
        }
    }
}
