/// The state of a caller's certificate at the time of a call, judged against the identity events.
public enum CertificateState: String, Sendable, Hashable, Codable, CaseIterable {
    case valid
    case expired
    case notYetValid = "not-yet-valid"
    /// Revoked before the call.
    case revoked
    /// The serial (or fingerprint) was never seen issued.
    case unknown
    /// Plaintext: no certificate at all.
    case none
    /// The hop used TLS but no observation logged which certificate the caller presented.
    case unlogged
}

/// The stable kinds of findings. The raw values are a contract with users and scripts.
public enum FindingKind: String, Sendable, Hashable, Codable, CaseIterable {
    case revokedCertificate = "revoked-certificate"
    case expiredCertificate = "expired-certificate"
    case unknownCertificate = "unknown-certificate"
    case identityMismatch = "identity-mismatch"
    case plaintextHop = "plaintext-hop"
    case edgeBypass = "edge-bypass"
    case unauthenticatedEdge = "unauthenticated-edge"
    case policyDenied = "policy-denied"
    /// A dry-run (shadow) policy would have denied a call that was allowed.
    case dryRunDenied = "dry-run-denied"
    /// An external credential used from a client address and for a route its principal had never used before.
    case credentialAnomaly = "credential-anomaly"

    /// Default severity of the kind.
    public var severity: Severity {
        switch self {
        case .revokedCertificate, .identityMismatch, .edgeBypass, .credentialAnomaly: return .high
        case .expiredCertificate: return .high
        case .unknownCertificate, .plaintextHop, .unauthenticatedEdge: return .medium
        case .policyDenied: return .medium
        case .dryRunDenied: return .low
        }
    }

    /// Why an analyst should care, in one sentence (used by reports and `trail findings`).
    public var explanation: String {
        switch self {
        case .revokedCertificate: return "A workload kept calling with a certificate its CA had already revoked."
        case .expiredCertificate: return "A workload called with a certificate outside its validity period."
        case .unknownCertificate: return "A certificate that no known CA event ever issued was presented."
        case .identityMismatch: return "The identity presented does not match the identity the certificate was issued to."
        case .plaintextHop: return "A service-to-service call travelled without TLS; its caller is unauthenticated."
        case .edgeBypass: return "A workload reached a service that is otherwise reached only through the gateway."
        case .unauthenticatedEdge: return "An external request without any principal reached an internal workload."
        case .policyDenied: return "An authorization policy denied the call: evidence of an attempt."
        case .dryRunDenied: return "A dry-run policy would deny a call that is currently allowed."
        case .credentialAnomaly:
            return "An external credential was used from a client address and for a route its principal had never used before: what a stolen credential looks like."
        }
    }
}

public enum Severity: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case info, low, medium, high, critical

    var rank: Int {
        switch self {
        case .info: return 0
        case .low: return 1
        case .medium: return 2
        case .high: return 3
        case .critical: return 4
        }
    }

    public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
}

/// How a chain began.
public struct ChainOrigin: Sendable, Hashable, Codable {
    /// Edge principal, or the first internal workload's identity.
    public var principal: String
    public var principalType: PrincipalType
    public var clientIP: String?
    /// True when the trace entered through a gateway.
    public var viaGateway: Bool
    /// The credential the edge principal used, when logged.
    public var credential: String?

    public init(principal: String, principalType: PrincipalType, clientIP: String?, viaGateway: Bool, credential: String? = nil) {
        self.principal = principal
        self.principalType = principalType
        self.clientIP = clientIP
        self.viaGateway = viaGateway
        self.credential = credential
    }
}

/// One request from a caller to a callee, merged from every observation of it.
public struct Hop: Sendable, Hashable, Codable {
    /// Position in the chain: hops are numbered in tree order (parents before children, siblings by time).
    public var index: Int
    /// Index of the parent hop, nil for a root.
    public var parent: Int?
    /// Display identity of the caller: SPIFFE ID, else service name, else address.
    public var caller: String
    public var callerSPIFFEID: String?
    public var callerService: String?
    public var callerAddress: String?
    public var callee: String
    public var calleeSPIFFEID: String?
    public var calleeService: String?
    public var calleeAddress: String?
    public var method: String?
    public var path: String?
    public var operation: String?
    public var authority: String?
    public var status: Int?
    public var start: Timestamp
    public var durationNanos: Int64?
    public var transport: Transport?
    public var tlsVersion: String?
    public var serial: String?
    public var fingerprintSHA256: String?
    public var certificateState: CertificateState
    public var policy: PolicyDecision?
    public var requestID: String?
    public var userAgent: String?
    /// The edge principal, on the hop a gateway observed.
    public var principal: Principal?
    /// Which kinds of observation saw this hop.
    public var observedBy: [ObservationKind]
    /// Store ids of the observations merged into this hop (ascending).
    public var observationIDs: [Int64]
    /// Store ids of the raw records behind those observations (ascending, unique).
    public var rawRecordIDs: [Int64]
    /// Identities from the chain's entry point to this hop's callee, in order.
    public var chainPath: [String]

    public init(
        index: Int, parent: Int?, caller: String, callerSPIFFEID: String?, callerService: String?,
        callerAddress: String?, callee: String, calleeSPIFFEID: String?, calleeService: String?,
        calleeAddress: String?, method: String?, path: String?, operation: String?, authority: String?,
        status: Int?, start: Timestamp, durationNanos: Int64?, transport: Transport?, tlsVersion: String?,
        serial: String?, fingerprintSHA256: String?, certificateState: CertificateState, policy: PolicyDecision?,
        requestID: String?, userAgent: String?, principal: Principal?, observedBy: [ObservationKind],
        observationIDs: [Int64], rawRecordIDs: [Int64], chainPath: [String]
    ) {
        self.index = index
        self.parent = parent
        self.caller = caller
        self.callerSPIFFEID = callerSPIFFEID
        self.callerService = callerService
        self.callerAddress = callerAddress
        self.callee = callee
        self.calleeSPIFFEID = calleeSPIFFEID
        self.calleeService = calleeService
        self.calleeAddress = calleeAddress
        self.method = method
        self.path = path
        self.operation = operation
        self.authority = authority
        self.status = status
        self.start = start
        self.durationNanos = durationNanos
        self.transport = transport
        self.tlsVersion = tlsVersion
        self.serial = serial
        self.fingerprintSHA256 = fingerprintSHA256
        self.certificateState = certificateState
        self.policy = policy
        self.requestID = requestID
        self.userAgent = userAgent
        self.principal = principal
        self.observedBy = observedBy
        self.observationIDs = observationIDs
        self.rawRecordIDs = rawRecordIDs
        self.chainPath = chainPath
    }
}

/// A missing link in a chain: recorded, never guessed.
public struct Gap: Sendable, Hashable, Codable {
    /// The hop after the gap.
    public var beforeHop: Int
    public var detail: String

    public init(beforeHop: Int, detail: String) {
        self.beforeHop = beforeHop
        self.detail = detail
    }
}

/// Something an analyst must look at.
public struct Finding: Sendable, Hashable, Codable {
    public var kind: FindingKind
    public var severity: Severity
    public var traceID: String
    /// The hop the finding is about.
    public var hopIndex: Int?
    /// The chain's origin principal.
    public var principal: String?
    /// The workload identity concerned (usually the caller).
    public var identity: String?
    public var serial: String?
    public var time: Timestamp
    public var detail: String
    /// Raw records that prove it (ascending, unique).
    public var rawRecordIDs: [Int64]

    public init(
        kind: FindingKind, severity: Severity? = nil, traceID: String, hopIndex: Int?, principal: String?,
        identity: String?, serial: String?, time: Timestamp, detail: String, rawRecordIDs: [Int64]
    ) {
        self.kind = kind
        self.severity = severity ?? kind.severity
        self.traceID = traceID
        self.hopIndex = hopIndex
        self.principal = principal
        self.identity = identity
        self.serial = serial
        self.time = time
        self.detail = detail
        self.rawRecordIDs = rawRecordIDs
    }
}

/// The tree of hops of one trace, rooted at its origin.
public struct Chain: Sendable, Hashable, Codable {
    public var traceID: String
    public var origin: ChainOrigin
    public var hops: [Hop]
    public var gaps: [Gap]
    public var findings: [Finding]

    public init(traceID: String, origin: ChainOrigin, hops: [Hop], gaps: [Gap], findings: [Finding]) {
        self.traceID = traceID
        self.origin = origin
        self.hops = hops
        self.gaps = gaps
        self.findings = findings
    }

    public var start: Timestamp { hops.map(\.start).min() ?? Timestamp(nanoseconds: 0) }
    public var end: Timestamp {
        hops.map { $0.start.adding(nanoseconds: $0.durationNanos ?? 0) }.max() ?? Timestamp(nanoseconds: 0)
    }
}
