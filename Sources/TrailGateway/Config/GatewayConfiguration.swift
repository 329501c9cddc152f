import Foundation

/// The validated gateway configuration: consumers and their credentials, JWT issuers, and routes shaped like
/// Kubernetes Gateway API HTTPRoutes, each with its authentication, ACL and rate limits. Built only by
/// ``GatewayConfiguration/load(file:)`` or ``GatewayConfiguration/parse(yaml:file:)``, which validate everything,
/// so a value of this type never holds a dangling reference or an unparsable pattern.
package struct GatewayConfiguration: Sendable {
    package var keyAuth: KeyAuthSettings
    package var jwt: JWTSettings
    package var consumers: [Consumer]
    package var routes: [Route]
    /// Where `trail gateway` listens, edge TLS, its own SVID and telemetry; all optional for the library.
    package var server = GatewayServerSettings()
    /// The separate credentials file the consumers' credentials were (partly) read from, if any.
    package var credentialsFile: String?

    package func consumer(named username: String) -> Consumer? { consumers.first { $0.username == username } }
}

/// Where key-auth looks for an API key (Kong's `key_names`, `key_in_header`, `key_in_query`).
package struct KeyAuthSettings: Sendable, Equatable {
    /// Header and query-parameter names, lowercase; default `["apikey"]`.
    package var keyNames: [String] = ["apikey"]
    package var keyInHeader = true
    package var keyInQuery = true
}

/// JWT validation settings shared by all issuers.
package struct JWTSettings: Sendable {
    /// Tolerated clock difference for `exp` and `nbf`, in seconds (default 60).
    package var clockSkewSeconds: Int = 60
    package var issuers: [JWTIssuer] = []
}

/// A trusted token issuer: tokens must carry this `iss`, one of `audiences` in `aud`, and a signature by a key of
/// its JWKS file with one of `algorithms`.
package struct JWTIssuer: Sendable {
    package var issuer: String
    package var audiences: [String]
    package var algorithms: [JWTAlgorithm]
    package var keys: JWKSet
    /// The claim naming the consumer (default `sub`); its value must be listed under a consumer's `jwt` credentials.
    package var consumerClaim: String
}

/// A Kong consumer: a username, optional id and custom_id, ACL groups and its credentials.
package struct Consumer: Sendable, Equatable {
    package var username: String
    /// Stable identifier written to the log (`consumer.id`); defaults to the username.
    package var id: String
    package var customID: String?
    package var groups: [String]
    /// Lowercase hex SHA-256 digests of the consumer's API keys; the keys themselves are never stored.
    package var keySHA256: [[UInt8]]
    /// `(issuer, subject)` pairs that identify this consumer in JWTs.
    package var jwtSubjects: [JWTSubject]
    /// Partner client certificates that identify this consumer.
    package var certificates: [CertificateMatch]
    /// A limit on this consumer's requests across all routes.
    package var rateLimit: RateLimitRule?
}

package struct JWTSubject: Sendable, Equatable {
    package var issuer: String
    package var subject: String
}

/// A partner certificate, identified by its SPIFFE ID (URI SAN) or its subject distinguished name.
package enum CertificateMatch: Sendable, Equatable {
    case spiffeID(String)
    case subject(String)
}

/// A gateway route: one HTTPRoute (hostnames and rules) plus the Kong-style plugins that guard it.
package struct Route: Sendable {
    package var name: String
    /// Exact (`api.example.com`) or wildcard (`*.example.com`) hostnames, lowercase; empty matches every host.
    package var hostnames: [String]
    package var rules: [RouteRule]
    package var auth: RouteAuth
    package var acl: ACLRule?
    package var rateLimits: RouteRateLimits
    /// `websocket: true`: WebSocket upgrades are passed to the backend (after authentication); without it an
    /// upgrade request is refused with 403.
    package var websocket = false
    /// `graphql: true`: the log records each request's GraphQL operation type and name (from a bounded prefix
    /// of the body, or the `query` parameter of a GET); for the record only, never for a decision.
    package var graphql = false
}

/// One HTTPRoute rule: any of its matches selects it; it then sends to one of its weighted backends.
package struct RouteRule: Sendable {
    /// Never empty: a rule without `matches` gets a single `PathPrefix /` match, as in Gateway API.
    package var matches: [RouteMatch]
    package var backendRefs: [BackendRef]
    package var timeouts: RouteTimeouts
    /// Extra attempts after a failed one (0: no retry).
    package var retryAttempts: Int
}

/// An HTTPRouteMatch: every condition must hold.
package struct RouteMatch: Sendable {
    package var path: PathMatch
    /// Uppercase HTTP method, or nil for any method.
    package var method: String?
    package var headers: [ValueMatch]
    package var queryParams: [ValueMatch]
}

package enum PathMatch: Sendable {
    case exact(String)
    /// Element-wise prefix: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`. Stored without a trailing `/`.
    case prefix(String)
    case regularExpression(PatternMatcher)
}

/// A header or query-parameter condition. Header names are compared case-insensitively (stored lowercase),
/// query-parameter names exactly.
package struct ValueMatch: Sendable {
    package var name: String
    package var value: ValueCondition
}

package enum ValueCondition: Sendable {
    case exact(String)
    case regularExpression(PatternMatcher)
}

/// A compiled regular expression that must match the whole value.
package struct PatternMatcher: @unchecked Sendable {
    // `Regex<AnyRegexOutput>` is an immutable value that is only read after creation.
    private let regex: Regex<AnyRegexOutput>
    package let pattern: String

    package init(_ pattern: String) throws {
        self.regex = try Regex(pattern)
        self.pattern = pattern
    }

    package func matches(_ value: String) -> Bool { (try? regex.wholeMatch(in: value)) != nil }
}

/// A weighted upstream (Gateway API `backendRefs`). `host` defaults to `name`.
package struct BackendRef: Sendable, Equatable {
    package var name: String
    package var host: String
    package var port: Int
    package var weight: Int
    /// Non-nil: the upstream connection is mTLS with the gateway's SVID and the backend must present this ID.
    package var spiffeID: String? = nil
    /// `protocol`: `http` (HTTP/1.1, the default) or `grpc` (HTTP/2 end to end, trailers kept: h2c to a plain
    /// backend, h2 by ALPN over mTLS when `spiffe_id` is set).
    package var grpc: Bool = false
}

/// `listen`, `tls`, `mesh` and `telemetry`: what the `trail gateway` server needs besides routing.
package struct GatewayServerSettings: Sendable {
    package var listenHost = "127.0.0.1"
    package var listenPort = 8000
    package var tls: EdgeTLS?
    package var mesh: MeshIdentity?
    package var telemetry = GatewayTelemetry()
    /// Trust the caller's trace context, or restart the trace at the edge.
    package var incomingTrace = TraceContext.IncomingPolicy.trust

    package init() {}
}

/// Edge TLS: the gateway's server certificate, and optionally the partner CA bundle for client certificates.
package struct EdgeTLS: Sendable, Equatable {
    package var certificate: String
    package var key: String
    package var clientCA: String?
}

/// The gateway's own SVID (files from `trail ca issue`) and the mesh trust bundle.
package struct MeshIdentity: Sendable, Equatable {
    package var spiffeID: String
    package var trustBundle: String
    package var certificate: String
    package var key: String
}

package struct GatewayTelemetry: Sendable, Equatable {
    /// Kong-schema NDJSON access log.
    package var accessLog: String?
    /// `trail serve` URL for `/v1/access-logs?format=kong`.
    package var ingest: String?
    package var ingestTokenFile: String?
    package var ingestCA: String?
    package var bufferDirectory: String?
    /// Spool bound for `bufferDirectory`, shared evenly by the access-log and span spools; past it the oldest
    /// batches are dropped and counted.
    package var bufferMaxBytes = 512 << 20
    /// OTLP/JSON spans (one export request per line), besides `/v1/traces` of `ingest`.
    package var spansFile: String?
}

/// Gateway API `timeouts`, in seconds.
package struct RouteTimeouts: Sendable, Equatable {
    package var request: Double?
    package var backendRequest: Double?
}

/// Kong's credential kinds (plugin names), as written to the log's `credential_type`.
package enum CredentialKind: String, Sendable, Hashable, CaseIterable {
    case keyAuth = "key-auth"
    case jwt
    case mtls
    case anonymous
}

/// Which credentials a route accepts, tried in this order; `anonymous` lets callers without credentials through
/// as the consumer `anonymousConsumer` (default `anonymous`).
package struct RouteAuth: Sendable, Equatable {
    package var methods: [CredentialKind]
    package var allowAnonymous: Bool
    package var anonymousConsumer: String
}

/// Kong's acl plugin: a consumer is refused when it or one of its groups is denied, or when an allow list exists
/// and neither it nor any of its groups is on it.
package struct ACLRule: Sendable, Equatable {
    package var allowConsumers: [String]
    package var allowGroups: [String]
    package var denyConsumers: [String]
    package var denyGroups: [String]
}

/// A fixed-window limit: at most `limit` requests per `windowSeconds`.
package struct RateLimitRule: Sendable, Equatable {
    package var limit: Int
    package var windowSeconds: Int
}

package struct RouteRateLimits: Sendable, Equatable {
    /// For each consumer on this route.
    package var perConsumer: RateLimitRule?
    /// For the route as a whole.
    package var total: RateLimitRule?
}
