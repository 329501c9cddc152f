/// A request as the edge sees it, before any decision.
package struct EdgeRequest: Sendable {
    package var route: RouteRequest
    package var auth: AuthRequest

    package init(route: RouteRequest, auth: AuthRequest) {
        self.route = route
        self.auth = auth
    }
}

/// What the gateway does with a request.
package enum EdgeDecision: Sendable {
    /// Send it upstream; add `headers` (rate-limit headers) to the response.
    case forward(EdgeForward)
    /// Answer it at the edge with `status`; the values also fill the access-log record.
    case respond(EdgeResponse)
}

package struct EdgeForward: Sendable {
    package var selection: RouteSelection
    package var caller: AuthenticatedCaller
    package var headers: [(name: String, value: String)]
}

package struct EdgeResponse: Sendable {
    /// 404 (no route), 401 or 403 (authentication), 403 (acl), 429 (rate limit).
    package var status: Int
    /// A fixed phrase without credentials, for the log's `refusal_reason` and the response body.
    package var reason: String
    package var headers: [(name: String, value: String)]
    package var routeName: String?
    package var caller: AuthenticatedCaller?
    package var credentialKind: CredentialKind?
}

/// The gateway's per-request decision, in Kong's plugin order: route, authentication, acl, rate limiting.
/// Pure apart from the rate-limit counters it owns; time and randomness come from the caller.
package struct RequestEvaluator: Sendable {
    private let configuration: GatewayConfiguration
    private let router: Router
    private let authenticator: RouteAuthenticator
    private var limiter = RateLimiter()

    package init(configuration: GatewayConfiguration) {
        self.configuration = configuration
        self.router = Router(routes: configuration.routes)
        self.authenticator = RouteAuthenticator(configuration: configuration)
    }

    /// - Parameters:
    ///   - now: seconds since the Unix epoch (JWT times, rate-limit windows).
    ///   - random: a value in `0..<1` for the weighted backend choice.
    package mutating func evaluate(_ request: EdgeRequest, now: Double, random: Double) -> EdgeDecision {
        let selected = router.route(request.route, random: random)
        // A partner certificate out of its validity window is refused on every route, before any upstream, like
        // Kong's mtls-auth after `ssl_verify_client optional_no_ca`; the consumer it names goes into the log.
        if let certificate = request.auth.peerCertificate, let refusal = CertificateAuthenticator.refusal(certificate.validity) {
            return .respond(EdgeResponse(
                status: refusal.status, reason: refusal.reason, headers: [], routeName: selected?.route.name,
                caller: authenticator.certificateCaller(certificate), credentialKind: .mtls))
        }
        guard let selection = selected else {
            return .respond(EdgeResponse(status: 404, reason: "no route matches the request", headers: []))
        }
        let route = selection.route
        let caller: AuthenticatedCaller
        switch authenticator.authenticate(request.auth, auth: route.auth, now: now) {
        case .refused(let refusal):
            return .respond(EdgeResponse(
                status: refusal.status, reason: refusal.reason, headers: [], routeName: route.name,
                credentialKind: refusal.kind))
        case .authenticated(let c): caller = c
        }
        let consumer = configuration.consumer(named: caller.consumer)
        if case .deny(let reason) = AccessControl.decide(route.acl, consumer: caller.consumer, groups: consumer?.groups ?? []) {
            return .respond(EdgeResponse(
                status: 403, reason: reason, headers: [], routeName: route.name, caller: caller, credentialKind: caller.kind))
        }
        let limits = RateLimiter.limits(route: route, consumer: caller.consumer, consumerLimit: consumer?.rateLimit)
        let decision = limiter.check(limits, now: now)
        guard decision.allowed else {
            return .respond(EdgeResponse(
                status: 429, reason: "rate limit exceeded", headers: decision.headers, routeName: route.name, caller: caller,
                credentialKind: caller.kind))
        }
        return .forward(EdgeForward(selection: selection, caller: caller, headers: decision.headers))
    }
}
