/// Runs a route's authentication: the first of the route's methods whose credential the request carries decides
/// (a wrong credential is refused, never skipped for anonymous access); without any, the route's anonymous
/// consumer if it allows one, else 401.
package struct RouteAuthenticator: Sendable {
    private let keyAuth: KeyAuthenticator
    private let jwt: JWTAuthenticator
    private let mtls: CertificateAuthenticator

    package init(configuration: GatewayConfiguration) {
        keyAuth = KeyAuthenticator(settings: configuration.keyAuth, consumers: configuration.consumers)
        jwt = JWTAuthenticator(settings: configuration.jwt, consumers: configuration.consumers)
        mtls = CertificateAuthenticator(consumers: configuration.consumers)
    }

    /// The consumer a client certificate maps to, whatever its validity.
    package func certificateCaller(_ certificate: PeerCertificateIdentity) -> AuthenticatedCaller? {
        mtls.caller(for: certificate)
    }

    /// - Parameter now: seconds since the Unix epoch (for JWT times).
    package func authenticate(_ request: AuthRequest, auth: RouteAuth, now: Double) -> AuthOutcome {
        for method in auth.methods {
            let outcome: AuthOutcome?
            switch method {
            case .keyAuth: outcome = keyAuth.authenticate(request)
            case .jwt: outcome = jwt.authenticate(request, now: now)
            case .mtls: outcome = mtls.authenticate(request)
            case .anonymous: outcome = nil
            }
            if let outcome { return outcome }
        }
        if auth.allowAnonymous {
            return .authenticated(AuthenticatedCaller(consumer: auth.anonymousConsumer, kind: .anonymous, credentialID: "anonymous"))
        }
        let accepted = auth.methods.map(\.rawValue).joined(separator: ", ")
        return .refused(.unauthorized("no credentials; this route accepts \(accepted)", nil))
    }
}
