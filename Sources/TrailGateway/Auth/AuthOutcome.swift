import TrailMesh

/// What an authenticator decided. Reasons are fixed phrases: they never contain a credential, a token or any
/// part of one, so they are safe to log and to return to the client.
package enum AuthOutcome: Sendable, Equatable {
    case authenticated(AuthenticatedCaller)
    case refused(AuthRefusal)

    package var caller: AuthenticatedCaller? {
        if case .authenticated(let c) = self { return c }
        return nil
    }

    package var refusal: AuthRefusal? {
        if case .refused(let r) = self { return r }
        return nil
    }
}

/// A caller the gateway knows: the consumer and how it proved who it is.
package struct AuthenticatedCaller: Sendable, Equatable {
    package var consumer: String
    package var kind: CredentialKind
    /// A non-secret name for the credential used (Kong's `authenticated_entity.id`): for key-auth the first 8
    /// hex digits of the key's SHA-256, for a JWT `issuer#subject`, for mTLS the SPIFFE ID or subject.
    package var credentialID: String

    package init(consumer: String, kind: CredentialKind, credentialID: String) {
        self.consumer = consumer
        self.kind = kind
        self.credentialID = credentialID
    }
}

/// A refusal: 401 when no valid credential was presented, 403 when the caller is known but not allowed.
package struct AuthRefusal: Error, Sendable, Equatable {
    package var status: Int
    package var reason: String
    /// The kind of credential that was presented and refused; nil when none was presented.
    package var kind: CredentialKind?

    package init(status: Int, reason: String, kind: CredentialKind?) {
        self.status = status
        self.reason = reason
        self.kind = kind
    }

    static func unauthorized(_ reason: String, _ kind: CredentialKind?) -> AuthRefusal {
        AuthRefusal(status: 401, reason: reason, kind: kind)
    }

    static func forbidden(_ reason: String, _ kind: CredentialKind?) -> AuthRefusal {
        AuthRefusal(status: 403, reason: reason, kind: kind)
    }
}

/// The parts of a request that authentication reads.
package struct AuthRequest: Sendable {
    /// Header names lowercase, in arrival order.
    package var headers: [(name: String, value: String)]
    package var query: [(name: String, value: String)]
    /// The client certificate, already verified against the partner trust bundle by the TLS layer; nil without one.
    package var peerCertificate: PeerCertificateIdentity?

    package init(
        headers: [(name: String, value: String)] = [], query: [(name: String, value: String)] = [],
        peerCertificate: PeerCertificateIdentity? = nil
    ) {
        self.headers = headers
        self.query = query
        self.peerCertificate = peerCertificate
    }

    func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
}

/// The identity of a client certificate whose chain the TLS layer verified against the partner bundle.
package struct PeerCertificateIdentity: Sendable, Equatable {
    /// URI SANs that are SPIFFE IDs.
    package var spiffeIDs: [String]
    /// The subject distinguished name, RFC 4514 form (e.g. `CN=partner-a,O=Partner A`).
    package var subject: String?
    /// The leaf's validity window at the time of the request: an expired or not yet valid certificate is
    /// refused with 401 whatever the route (it still names its consumer in the log).
    package var validity: ClientCertificateValidity

    package init(spiffeIDs: [String] = [], subject: String? = nil, validity: ClientCertificateValidity = .valid) {
        self.spiffeIDs = spiffeIDs
        self.subject = subject
        self.validity = validity
    }
}
