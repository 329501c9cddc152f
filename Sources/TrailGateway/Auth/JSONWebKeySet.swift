import Crypto
import Foundation
import TrailCore
import _CryptoExtras

/// The JWS algorithms the gateway accepts. `none` and every other algorithm are refused.
package enum JWTAlgorithm: String, Sendable, CaseIterable {
    case hs256 = "HS256"
    case rs256 = "RS256"
    case es256 = "ES256"
}

/// One verification key from a JWKS file. The key type fixes the one algorithm it can verify, so a token can
/// never make the gateway use an RSA public key as an HMAC secret (algorithm confusion).
package struct JSONWebKey: Sendable {
    package enum Material: Sendable {
        case hmac(SymmetricKey)
        case rsa(_RSA.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
    }

    package var keyID: String?
    package var material: Material

    /// The only algorithm this key verifies.
    package var algorithm: JWTAlgorithm {
        switch material {
        case .hmac: return .hs256
        case .rsa: return .rs256
        case .p256: return .es256
        }
    }
}

/// A JSON Web Key Set (RFC 7517) holding `oct` (HS256), `RSA` (RS256, at least 2048 bits) and `EC` P-256
/// (ES256) keys. Keys with `use` other than `sig`, or an `alg` that disagrees with their type, are errors.
package struct JWKSet: Sendable {
    package var keys: [JSONWebKey]

    package init(keys: [JSONWebKey]) { self.keys = keys }

    package struct LoadError: Error, CustomStringConvertible {
        package var description: String
    }

    package static func load(file: String) throws -> JWKSet {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw LoadError(description: "cannot read the JWKS file \(file)")
        }
        do {
            return try parse(Array(data))
        } catch let e as LoadError {
            throw LoadError(description: "JWKS file \(file): \(e.description)")
        }
    }

    package static func parse(_ bytes: [UInt8]) throws -> JWKSet {
        let root: JSONValue
        do { root = try JSONParser.parse(bytes) } catch { throw LoadError(description: "not JSON: \(error)") }
        guard let list = root["keys"]?.array else { throw LoadError(description: "expected an object with a 'keys' list") }
        var keys: [JSONWebKey] = []
        for (index, jwk) in list.enumerated() {
            do {
                keys.append(try key(jwk))
            } catch let e as LoadError {
                throw LoadError(description: "keys[\(index)]: \(e.description)")
            }
        }
        guard !keys.isEmpty else { throw LoadError(description: "the key set is empty") }
        return JWKSet(keys: keys)
    }

    private static func key(_ jwk: JSONValue) throws -> JSONWebKey {
        func member(_ name: String) throws -> [UInt8] {
            guard let text = jwk[name]?.string, let bytes = Base64URL.decode(text) else {
                throw LoadError(description: "missing or invalid base64url member '\(name)'")
            }
            return bytes
        }
        if let use = jwk["use"]?.string, use != "sig" { throw LoadError(description: "use '\(use)' is not sig") }
        let material: JSONWebKey.Material
        switch jwk["kty"]?.string {
        case "oct":
            let secret = try member("k")
            guard secret.count >= 32 else { throw LoadError(description: "an HS256 secret needs at least 32 bytes") }
            material = .hmac(SymmetricKey(data: secret))
        case "RSA":
            do {
                let key = try _RSA.Signing.PublicKey(n: try member("n"), e: try member("e"))
                guard key.keySizeInBits >= 2048 else { throw LoadError(description: "RSA keys need at least 2048 bits") }
                material = .rsa(key)
            } catch let e as LoadError { throw e } catch {
                throw LoadError(description: "not a usable RSA public key (\(error))")
            }
        case "EC":
            guard jwk["crv"]?.string == "P-256" else { throw LoadError(description: "only EC keys on crv P-256 are supported") }
            let x = try member("x"), y = try member("y")
            guard x.count == 32, y.count == 32 else { throw LoadError(description: "P-256 x and y are 32 bytes each") }
            do {
                material = .p256(try P256.Signing.PublicKey(rawRepresentation: x + y))
            } catch {
                throw LoadError(description: "not a point on P-256")
            }
        case let other?: throw LoadError(description: "kty '\(other)' is not supported; use oct, RSA or EC")
        case nil: throw LoadError(description: "missing kty")
        }
        let key = JSONWebKey(keyID: jwk["kid"]?.string, material: material)
        if let alg = jwk["alg"]?.string, alg != key.algorithm.rawValue {
            throw LoadError(description: "alg '\(alg)' does not fit the key type (expected \(key.algorithm.rawValue))")
        }
        return key
    }
}

/// Base64url without padding (RFC 7515 §2). Input must use the URL alphabet (`+` and `/` are refused, so one
/// token has one spelling); trailing padding is tolerated.
package enum Base64URL {
    package static func decode(_ text: some StringProtocol) -> [UInt8]? {
        guard !text.contains("+"), !text.contains("/") else { return nil }
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.hasSuffix("=") { s.removeLast() }
        guard !s.contains("=") else { return nil }
        switch s.count % 4 {
        case 2: s += "=="
        case 3: s += "="
        case 1: return nil
        default: break
        }
        return Data(base64Encoded: s).map(Array.init)
    }

    package static func encode(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
