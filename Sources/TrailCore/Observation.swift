/// Which side of a request an observation was recorded on.
///
/// One request from a caller to a callee can be seen up to five times: by the edge gateway, by the
/// caller's sidecar (outbound), by the callee's sidecar (inbound), by the caller's client span and by the
/// callee's server span. The correlator merges all of them into one ``Hop``.
public enum ObservationKind: String, Sendable, Hashable, Codable, CaseIterable {
    /// An edge gateway's access log record (Kong, `trail gateway`): an external caller reaching an upstream.
    case gateway
    /// A sidecar's inbound access log line: the downstream peer called this workload.
    case inbound
    /// A sidecar's outbound access log line: this workload called the upstream peer.
    case outbound
    /// A SERVER span: the callee's view.
    case serverSpan = "server-span"
    /// A CLIENT span: the caller's view.
    case clientSpan = "client-span"
}

/// How an edge caller proved who it is.
public enum PrincipalType: String, Sendable, Hashable, Codable, CaseIterable {
    case consumer
    case apiKey = "api-key"
    case jwt
    case clientCertificate = "client-certificate"
    case workload
    case anonymous
}

/// The transport security of one hop.
public enum Transport: String, Sendable, Hashable, Codable {
    /// Mutual TLS: both sides presented certificates.
    case mtls
    /// Server-authenticated TLS only.
    case tls
    /// No TLS at all.
    case plaintext
}

/// One end of a request, as far as one observation knows it.
public struct Endpoint: Sendable, Hashable, Codable {
    /// SPIFFE ID (`spiffe://td/path`), when the observation carries one.
    public var spiffeID: String?
    /// Service name (OTLP `service.name`, Kong service, Istio cluster host), when known.
    public var service: String?
    /// IP address (no port) when known.
    public var address: String?
    /// Port when known.
    public var port: Int?

    public init(spiffeID: String? = nil, service: String? = nil, address: String? = nil, port: Int? = nil) {
        self.spiffeID = spiffeID
        self.service = service
        self.address = address
        self.port = port
    }

    public var isEmpty: Bool { spiffeID == nil && service == nil && address == nil }
}

/// The certificate a caller presented, as an observation saw it.
public struct PresentedCertificate: Sendable, Hashable, Codable {
    /// Normalised serial (see ``CertificateSerial``).
    public var serial: String?
    /// Normalised SHA-256 fingerprint of the DER certificate (lowercase hex, no colons).
    public var fingerprintSHA256: String?
    public var notBefore: Timestamp?
    public var notAfter: Timestamp?
    /// URI SANs of the certificate, in the order the source listed them.
    public var uriSANs: [String]
    public var subject: String?

    public init(
        serial: String? = nil, fingerprintSHA256: String? = nil, notBefore: Timestamp? = nil,
        notAfter: Timestamp? = nil, uriSANs: [String] = [], subject: String? = nil
    ) {
        self.serial = serial.flatMap(CertificateSerial.normalize)
        self.fingerprintSHA256 = fingerprintSHA256.flatMap(Fingerprint.normalize)
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.uriSANs = uriSANs
        self.subject = subject
    }

    public var isEmpty: Bool {
        serial == nil && fingerprintSHA256 == nil && notBefore == nil && notAfter == nil && uriSANs.isEmpty
    }
}

/// Who the external caller was at the edge, and how it proved it.
public struct Principal: Sendable, Hashable, Codable {
    /// A display name: consumer username, JWT subject, certificate subject or SPIFFE ID.
    public var name: String
    public var type: PrincipalType
    /// The credential used, when known (API key id, JWT issuer, certificate serial).
    public var credential: String?

    public init(name: String, type: PrincipalType, credential: String? = nil) {
        self.name = name
        self.type = type
        self.credential = credential
    }
}

/// An authorization decision recorded by a proxy.
public enum PolicyDecision: String, Sendable, Hashable, Codable {
    case allow
    case deny
    /// A dry-run (shadow) policy would have denied this request; it was let through.
    case dryRunDeny = "dry-run-deny"
}

/// One record from one source about one request: a gateway log line, an inbound or outbound sidecar line,
/// a client or server span. Plain value, produced by the parsers in `TrailFormats`.
public struct Observation: Sendable, Hashable, Codable {
    public var kind: ObservationKind
    /// The input format it was read from (``InputFormat`` raw value).
    public var format: String
    /// 32 lowercase hex characters (64-bit ids left-padded).
    public var traceID: String?
    /// 16 lowercase hex: the span this observation is (spans), or the span id its traceparent carried (logs).
    public var spanID: String?
    /// 16 lowercase hex: the parent span (spans), or nil.
    public var parentSpanID: String?
    /// `x-request-id`, Kong `request.id`, Envoy `guid:x-request-id`.
    public var requestID: String?
    public var start: Timestamp
    public var durationNanos: Int64?
    public var method: String?
    /// Path without the query string.
    public var path: String?
    /// Host / :authority of the request.
    public var authority: String?
    /// The span name or RPC/GraphQL operation, when it says more than method and path.
    public var operation: String?
    public var status: Int?
    public var caller: Endpoint
    public var callee: Endpoint
    /// Known transport, nil when the observation does not say.
    public var transport: Transport?
    public var tlsVersion: String?
    /// The certificate the caller presented (inbound sidecar, edge mTLS), when logged.
    public var callerCertificate: PresentedCertificate?
    /// The immediate caller's URI from `x-forwarded-client-cert`, when present.
    public var xfccURI: String?
    /// The edge principal (gateway records only).
    public var principal: Principal?
    public var userAgent: String?
    public var policy: PolicyDecision?
    /// Envoy response flags (`UF,URX`), Kong `source`.
    public var responseFlags: String?
    /// Route name (Kong route, Envoy route_name).
    public var route: String?

    public init(
        kind: ObservationKind, format: String, traceID: String? = nil, spanID: String? = nil,
        parentSpanID: String? = nil, requestID: String? = nil, start: Timestamp, durationNanos: Int64? = nil,
        method: String? = nil, path: String? = nil, authority: String? = nil, operation: String? = nil,
        status: Int? = nil, caller: Endpoint = Endpoint(), callee: Endpoint = Endpoint(), transport: Transport? = nil,
        tlsVersion: String? = nil, callerCertificate: PresentedCertificate? = nil, xfccURI: String? = nil,
        principal: Principal? = nil, userAgent: String? = nil, policy: PolicyDecision? = nil,
        responseFlags: String? = nil, route: String? = nil
    ) {
        self.kind = kind
        self.format = format
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.requestID = requestID
        self.start = start
        self.durationNanos = durationNanos
        self.method = method
        self.path = path
        self.authority = authority
        self.operation = operation
        self.status = status
        self.caller = caller
        self.callee = callee
        self.transport = transport
        self.tlsVersion = tlsVersion
        self.callerCertificate = callerCertificate
        self.xfccURI = xfccURI
        self.principal = principal
        self.userAgent = userAgent
        self.policy = policy
        self.responseFlags = responseFlags
        self.route = route
    }
}
