import Crypto

/// Kong's key-auth: an API key in a header or query parameter (names from ``KeyAuthSettings``), hashed with
/// SHA-256 and compared in constant time with every stored hash (no early exit, so timing says nothing about
/// which consumer or how many bytes matched).
package struct KeyAuthenticator: Sendable {
    private let settings: KeyAuthSettings
    private let credentials: [(consumer: String, digest: [UInt8])]

    package init(settings: KeyAuthSettings, consumers: [Consumer]) {
        self.settings = settings
        self.credentials = consumers.flatMap { c in c.keySHA256.map { (c.username, $0) } }
    }

    /// The presented key, if any (first configured name wins; headers before query).
    package func presentedKey(in request: AuthRequest) -> String? {
        for name in settings.keyNames {
            if settings.keyInHeader, let v = request.header(name) { return v }
            if settings.keyInQuery, let v = request.query.first(where: { $0.name == name })?.value { return v }
        }
        return nil
    }

    /// Authenticates a request that carries a key; nil when it carries none.
    package func authenticate(_ request: AuthRequest) -> AuthOutcome? {
        guard let key = presentedKey(in: request) else { return nil }
        guard !key.isEmpty else { return .refused(.unauthorized("empty API key", .keyAuth)) }
        let digest = Array(SHA256.hash(data: Array(key.utf8)))
        var match: String?
        for credential in credentials {
            if ConstantTime.equal(credential.digest, digest) && match == nil { match = credential.consumer }
        }
        guard let consumer = match else { return .refused(.unauthorized("invalid API key", .keyAuth)) }
        return .authenticated(AuthenticatedCaller(
            consumer: consumer, kind: .keyAuth, credentialID: "key-auth:" + Hex.encode(digest.prefix(4))))
    }
}

package enum ConstantTime {
    /// Equality whose running time depends only on the lengths.
    package static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
