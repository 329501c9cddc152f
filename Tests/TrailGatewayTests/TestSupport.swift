import Crypto
import Foundation
import TrailCore
import _CryptoExtras

@testable import TrailGateway

/// Keys made with swift-crypto for the tests, and a JWKS file holding their public halves.
struct TestKeys: Sendable {
    let rsa: _RSA.Signing.PrivateKey
    let p256: P256.Signing.PrivateKey
    let hmacSecret: [UInt8]

    static let shared: TestKeys = {
        // RSA key generation is slow; make one for the whole test run.
        TestKeys(
            rsa: try! _RSA.Signing.PrivateKey(keySize: .bits2048), p256: P256.Signing.PrivateKey(),
            hmacSecret: Array(SHA256.hash(data: Array("trail-test-hmac-secret".utf8))))
    }()

    var jwksJSON: String {
        let primitives = try! rsa.publicKey.getKeyPrimitives()
        let raw = Array(p256.publicKey.rawRepresentation)
        return """
            {"keys":[
              {"kty":"RSA","kid":"rsa-1","use":"sig","alg":"RS256","n":"\(Base64URL.encode(primitives.modulus))","e":"\(Base64URL.encode(primitives.publicExponent))"},
              {"kty":"EC","kid":"ec-1","crv":"P-256","x":"\(Base64URL.encode(raw[0..<32]))","y":"\(Base64URL.encode(raw[32..<64]))"},
              {"kty":"oct","kid":"hs-1","k":"\(Base64URL.encode(hmacSecret))"}
            ]}
            """
    }

    /// A JWKS with only the RSA key (for the HS256-against-RSA confusion case).
    var rsaOnlyJWKS: String {
        let primitives = try! rsa.publicKey.getKeyPrimitives()
        return """
            {"keys":[{"kty":"RSA","kid":"rsa-1","n":"\(Base64URL.encode(primitives.modulus))","e":"\(Base64URL.encode(primitives.publicExponent))"}]}
            """
    }
}

/// Builds compact JWS tokens.
enum TokenMaker {
    static func segment(_ json: String) -> String { Base64URL.encode(Array(json.utf8)) }

    static func claims(
        iss: String = "https://idp.example.com", aud: String = "trail-gateway", sub: String = "alice",
        exp: Int? = 1_900_000_000, nbf: Int? = nil
    ) -> String {
        var parts = ["\"iss\":\"\(iss)\"", "\"aud\":\"\(aud)\"", "\"sub\":\"\(sub)\""]
        if let exp { parts.append("\"exp\":\(exp)") }
        if let nbf { parts.append("\"nbf\":\(nbf)") }
        return "{" + parts.joined(separator: ",") + "}"
    }

    static func sign(alg: String, kid: String?, claims: String, keys: TestKeys = .shared, signWith: String? = nil) -> String {
        var header = "{\"alg\":\"\(alg)\",\"typ\":\"JWT\""
        if let kid { header += ",\"kid\":\"\(kid)\"" }
        header += "}"
        let input = segment(header) + "." + segment(claims)
        let bytes = Array(input.utf8)
        let signature: [UInt8]
        switch signWith ?? alg {
        case "HS256": signature = Array(HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: keys.hmacSecret)))
        case "RS256":
            signature = Array(try! keys.rsa.signature(for: SHA256.hash(data: bytes), padding: .insecurePKCS1v1_5).rawRepresentation)
        case "ES256": signature = Array(try! keys.p256.signature(for: SHA256.hash(data: bytes)).rawRepresentation)
        case "HS256-with-RSA-public-key":
            // The classic confusion attack: the RSA public key's bytes used as an HMAC secret.
            let secret = SymmetricKey(data: Array(keys.rsa.publicKey.derRepresentation))
            signature = Array(HMAC<SHA256>.authenticationCode(for: bytes, using: secret))
        default: signature = []
        }
        return input + "." + Base64URL.encode(signature)
    }
}

/// A temporary folder with files, removed by the caller with `remove()`.
struct TempFolder {
    let path: String

    init(files: [String: String]) throws {
        path = NSTemporaryDirectory() + "trail-gateway-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: path + "/" + name, atomically: true, encoding: .utf8) }
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// The repository's root, found from this file's path.
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
    }
    return "."
}()

func sha256Hex(_ text: String) -> String { Hex.encode(SHA256.hash(data: Array(text.utf8))) }
