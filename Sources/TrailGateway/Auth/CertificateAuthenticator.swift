/// Partner mTLS: maps a client certificate the TLS layer has already verified to a consumer, by SPIFFE ID
/// first, then by subject. A verified certificate that maps to no consumer is refused with 403.
package struct CertificateAuthenticator: Sendable {
    private let consumers: [Consumer]

    package init(consumers: [Consumer]) { self.consumers = consumers }

    /// nil when the request has no client certificate.
    package func authenticate(_ request: AuthRequest) -> AuthOutcome? {
        guard let certificate = request.peerCertificate else { return nil }
        for id in certificate.spiffeIDs {
            if let consumer = consumers.first(where: { $0.certificates.contains(.spiffeID(id)) }) {
                return .authenticated(AuthenticatedCaller(consumer: consumer.username, kind: .mtls, credentialID: id))
            }
        }
        if let subject = certificate.subject,
            let consumer = consumers.first(where: { $0.certificates.contains(.subject(subject)) })
        {
            return .authenticated(AuthenticatedCaller(consumer: consumer.username, kind: .mtls, credentialID: subject))
        }
        return .refused(.forbidden("client certificate maps to no consumer", .mtls))
    }
}
