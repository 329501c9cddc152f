import NIOSSL
import TrailCore
import X509

/// What a verified client certificate says about its holder.
enum PeerCertificateIdentity: Sendable, Equatable {
    /// No client certificate (or mTLS is not configured).
    case none
    /// A verified certificate with exactly one URI SAN holding a valid SPIFFE ID.
    case spiffe(SPIFFEID)
    /// A verified certificate without a usable SPIFFE ID; the reason says why.
    case unusable(String)

    /// Reads the SPIFFE ID from a certificate already verified by the TLS layer.
    init(verified certificate: NIOSSLCertificate) {
        do {
            let parsed = try Certificate(derEncoded: try certificate.toDERBytes())
            self = Self(parsed)
        } catch {
            self = .unusable("the client certificate cannot be parsed")
        }
    }

    init(_ certificate: Certificate) {
        let names: SubjectAlternativeNames?
        do {
            names = try certificate.extensions.subjectAlternativeNames
        } catch {
            self = .unusable("the client certificate's subject alternative names cannot be parsed")
            return
        }
        var uris: [String] = []
        for name in names ?? SubjectAlternativeNames([]) {
            if case .uniformResourceIdentifier(let uri) = name { uris.append(uri) }
        }
        guard uris.count == 1 else {
            self = .unusable(
                uris.isEmpty
                    ? "the client certificate has no URI SAN with a SPIFFE ID"
                    : "the client certificate has \(uris.count) URI SANs; a SPIFFE certificate has exactly one")
            return
        }
        guard let id = SPIFFEID.parse(uris[0]) else {
            self = .unusable("the client certificate's URI SAN is not a valid SPIFFE ID")
            return
        }
        // An X509-SVID's ID names a workload (it has a path) and its certificate is not a CA (the SPIFFE X509-SVID
        // standard, §4.1 and §5.2): a CA certificate of the trust domain, even one that chains, is no sender.
        guard id.isLeaf else {
            self = .unusable("the client certificate's SPIFFE ID \(id) names a trust domain, not a workload")
            return
        }
        if case .isCertificateAuthority? = try? certificate.extensions.basicConstraints {
            self = .unusable("the client certificate is a CA certificate, not an X509-SVID")
            return
        }
        self = .spiffe(id)
    }
}

/// Decides who may send: verified SPIFFE IDs against the allow list, bearer tokens against their hashes.
struct Authenticator: Sendable {
    var insecure: Bool
    var allowList: AllowList
    var tokens: [TokenEntry]

    enum Decision: Sendable {
        case allowed(SenderIdentity)
        case denied(ServerResponse)
    }

    func decide(peer: PeerCertificateIdentity, authorization: String?, address: String) -> Decision {
        if insecure { return .allowed(SenderIdentity(address: address)) }
        var tokenName: String?
        var tokenPresented = false
        var malformedAuthorization = false
        if let authorization {
            if let token = Self.bearerToken(authorization) {
                tokenPresented = true
                tokenName = matchToken(token)
            } else {
                malformedAuthorization = true
            }
        }
        if case .spiffe(let id) = peer, allowList.allows(id) {
            return .allowed(SenderIdentity(spiffeID: id.description, tokenName: tokenName, address: address))
        }
        if let tokenName { return .allowed(SenderIdentity(tokenName: tokenName, address: address)) }
        if tokenPresented { return .denied(Self.unauthorized("the bearer token is not valid", error: "invalid_token")) }
        switch peer {
        case .spiffe(let id):
            return .denied(.text(403, "\(id) is not allowed to send here"))
        case .unusable(let reason):
            return .denied(.text(403, reason))
        case .none:
            if malformedAuthorization {
                return .denied(Self.unauthorized("the Authorization header must be: Bearer <token>", error: "invalid_request"))
            }
            return .denied(Self.unauthorized("authentication required: present a client certificate or an Authorization: Bearer token", error: nil))
        }
    }

    /// The token of an `Authorization: Bearer <token>` header (scheme in any case).
    static func bearerToken(_ header: String) -> String? {
        let trimmed = header.drop { $0 == " " || $0 == "\t" }
        guard trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " else { return nil }
        let token = trimmed.dropFirst(7).trimmingCharactersSpaces()
        return token.isEmpty ? nil : token
    }

    /// The name of the token whose hash matches; every entry is compared, in constant time each.
    func matchToken(_ token: String) -> String? {
        let presented = TokenEntry.hash(token)
        var match: String?
        for entry in tokens {
            if Self.constantTimeEqual(entry.sha256, presented) && match == nil { match = entry.name }
        }
        return match
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    static func unauthorized(_ reason: String, error: String?) -> ServerResponse {
        var response = ServerResponse.text(401, reason)
        response.headers.append(("www-authenticate", error.map { "Bearer error=\"\($0)\"" } ?? "Bearer"))
        return response
    }
}

extension Substring {
    fileprivate func trimmingCharactersSpaces() -> String {
        var s = self[...]
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
        return String(s)
    }
}
