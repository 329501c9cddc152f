import TrailMesh

/// Partner mTLS: maps a client certificate the TLS layer has already verified to a consumer, by SPIFFE ID
/// first, then by subject. A verified certificate that maps to no consumer is refused with 403; an expired or
/// not yet valid one is refused with 401.
package struct CertificateAuthenticator: Sendable {
    private let consumers: [Consumer]

    package init(consumers: [Consumer]) { self.consumers = consumers }

    /// nil when the request has no client certificate.
    package func authenticate(_ request: AuthRequest) -> AuthOutcome? {
        guard let certificate = request.peerCertificate else { return nil }
        if let refusal = Self.refusal(certificate.validity) { return .refused(refusal) }
        if let caller = caller(for: certificate) { return .authenticated(caller) }
        return .refused(.forbidden("client certificate maps to no consumer", .mtls))
    }

    /// The consumer a certificate names, whatever its validity (an expired partner certificate still says who
    /// the partner is, which the log records with the refusal).
    package func caller(for certificate: PeerCertificateIdentity) -> AuthenticatedCaller? {
        for id in certificate.spiffeIDs {
            if let consumer = consumers.first(where: { $0.certificates.contains(.spiffeID(id)) }) {
                return AuthenticatedCaller(consumer: consumer.username, kind: .mtls, credentialID: id)
            }
        }
        if let subject = certificate.subject,
            let consumer = consumers.first(where: { $0.certificates.contains(.subject(subject)) })
        {
            return AuthenticatedCaller(consumer: consumer.username, kind: .mtls, credentialID: subject)
        }
        return nil
    }

    /// 401 for a certificate outside its validity window; nil for a valid one.
    package static func refusal(_ validity: ClientCertificateValidity) -> AuthRefusal? {
        switch validity {
        case .valid: nil
        case .expired: .unauthorized("client certificate has expired", .mtls)
        case .notYetValid: .unauthorized("client certificate is not yet valid", .mtls)
        }
    }
}
