import TrailCore

/// An observation as the store holds it: with its row id and the id of the raw record it came from.
public struct StoredObservation: Sendable, Hashable {
    public var id: Int64
    public var rawRecordID: Int64
    public var observation: Observation

    public init(id: Int64, rawRecordID: Int64, observation: Observation) {
        self.id = id
        self.rawRecordID = rawRecordID
        self.observation = observation
    }
}

/// Settings of the correlator.
public struct CorrelatorConfiguration: Sendable, Hashable {
    /// How far apart two observations of the same request may be in time (clock skew between hosts).
    public var clockSkewNanos: Int64

    public init(clockSkewNanos: Int64 = 2_000_000_000) {
        self.clockSkewNanos = clockSkewNanos
    }
}

/// Joins the observations of one trace into a chain of hops, judges each hop's certificate, and finds what is
/// wrong inside the chain. Cross-chain findings (`edge-bypass`, `credential-anomaly`) are the store's job.
///
/// Deterministic: observations are put in a canonical order derived from their content alone, so the same
/// records in any ingestion order give the same chain.
public struct Correlator: Sendable {
    public var configuration: CorrelatorConfiguration
    public var ledger: CertificateLedger
    public var directory: ServiceDirectory

    public init(configuration: CorrelatorConfiguration = .init(), ledger: CertificateLedger, directory: ServiceDirectory) {
        self.configuration = configuration
        self.ledger = ledger
        self.directory = directory
    }

    // MARK: Hop assembly

    /// A hop while it is being assembled: at most one observation of each kind, plus exact duplicates.
    struct Assembly {
        var wireKey: String?
        /// A gateway's logged traceparent may be the client's or the gateway's own: it never vetoes a join.
        var wireKeyFromGateway = false
        var slots: [ObservationKind: Int] = [:]
        var members: [Int] = []
    }

    /// A chain plus the service ↔ SPIFFE ID pairs its merged hops proved.
    public struct Correlation: Sendable, Hashable {
        public var chain: Chain
        /// Pairs learned from hops where a service name and a verified identity describe the same endpoint:
        /// a caller's span or outbound line joined with the callee sidecar's verified peer certificate (only
        /// when that certificate was issued to that identity), or a callee's span joined with its sidecar's own
        /// identity.
        public var learnedIdentities: [ServiceIdentityPair]
    }

    public func correlate(traceID: String, observations input: [StoredObservation]) -> Chain {
        run(traceID: traceID, observations: input).chain
    }

    public func run(traceID: String, observations input: [StoredObservation]) -> Correlation {
        let observations = input.map { ($0, Self.canonicalKey($0.observation)) }.sorted { a, b in
            if a.0.observation.start != b.0.observation.start { return a.0.observation.start < b.0.observation.start }
            if a.1 != b.1 { return a.1 < b.1 }
            return a.0.id < b.0.id
        }.map(\.0)
        var assemblies: [Assembly] = []

        func place(_ i: Int, into h: Int) {
            let kind = observations[i].observation.kind
            if assemblies[h].slots[kind] == nil { assemblies[h].slots[kind] = i }
            assemblies[h].members.append(i)
        }

        // Pass 1: spans. A client span and the server span whose parent it is are the same hop.
        for (i, stored) in observations.enumerated() where stored.observation.kind == .clientSpan {
            if let h = duplicateTarget(of: i, observations, assemblies) {
                place(i, into: h)
                continue
            }
            assemblies.append(Assembly(wireKey: stored.observation.spanID))
            place(i, into: assemblies.count - 1)
        }
        for (i, stored) in observations.enumerated() where stored.observation.kind == .serverSpan {
            if let h = duplicateTarget(of: i, observations, assemblies) {
                place(i, into: h)
                continue
            }
            let parent = stored.observation.parentSpanID
            if let parent, let h = assemblies.firstIndex(where: { $0.wireKey == parent && $0.slots[.serverSpan] == nil }) {
                place(i, into: h)
            } else {
                assemblies.append(Assembly(wireKey: parent))
                place(i, into: assemblies.count - 1)
            }
        }
        // Pass 2: access logs join the best compatible hop, or start their own.
        for (i, stored) in observations.enumerated()
        where [.gateway, .outbound, .inbound].contains(stored.observation.kind) {
            if let h = duplicateTarget(of: i, observations, assemblies) ?? proxyTwinTarget(of: i, observations, assemblies) {
                place(i, into: h)
                continue
            }
            var best: (score: Int64, index: Int)?
            for (h, assembly) in assemblies.enumerated() where assembly.slots[stored.observation.kind] == nil {
                guard let score = compatibility(stored.observation, assembly, wireKey: assembly.wireKey, observations)
                else { continue }
                if best == nil || score > best!.score { best = (score, h) }
            }
            if let best {
                place(i, into: best.index)
                if let parent = stored.observation.parentSpanID,
                    assemblies[best.index].wireKey == nil
                        || (assemblies[best.index].wireKeyFromGateway && stored.observation.kind != .gateway)
                {
                    assemblies[best.index].wireKey = parent
                    assemblies[best.index].wireKeyFromGateway = stored.observation.kind == .gateway
                }
            } else {
                assemblies.append(Assembly(
                    wireKey: stored.observation.parentSpanID, wireKeyFromGateway: stored.observation.kind == .gateway))
                place(i, into: assemblies.count - 1)
            }
        }

        var drafts = assemblies.map { merge($0, observations) }
        let parents = linkParents(&drafts, assemblies, observations)
        let chain = assemble(traceID: traceID, drafts: drafts, parents: parents)
        var learned = Set<ServiceIdentityPair>()
        for d in drafts { learned.formUnion(learnedPairs(d)) }
        return Correlation(chain: chain, learnedIdentities: learned.sorted())
    }

    private func learnedPairs(_ d: Draft) -> [ServiceIdentityPair] {
        var out: [ServiceIdentityPair] = []
        if let inbound = d.byKind[.inbound] {
            // Caller: the service that sent it (span, outbound line) and the certificate the callee verified.
            if let peer = inbound.caller.spiffeID, let cert = d.certificate,
                ledger.issuedIdentity(serial: cert.serial, fingerprint: cert.fingerprintSHA256) == peer,
                let service = first(d.byKind, [.clientSpan, .outbound]) { $0.caller.spiffeID == nil ? $0.caller.service : nil }
            {
                out.append(ServiceIdentityPair(service: service, spiffeID: peer))
            }
            // Callee: its own span's service and its sidecar's own identity.
            if let own = inbound.callee.spiffeID, let service = d.byKind[.serverSpan]?.callee.service {
                out.append(ServiceIdentityPair(service: service, spiffeID: own))
            }
        }
        if let outbound = d.byKind[.outbound], let peer = outbound.callee.spiffeID,
            let service = d.byKind[.clientSpan]?.callee.service ?? d.byKind[.serverSpan]?.callee.service
        {
            out.append(ServiceIdentityPair(service: service, spiffeID: peer))
        }
        return out
    }

    /// An exact duplicate (same content, another raw record) joins the hop of its twin.
    private func duplicateTarget(of i: Int, _ observations: [StoredObservation], _ assemblies: [Assembly]) -> Int? {
        let o = observations[i].observation
        for (h, a) in assemblies.enumerated() {
            if let j = a.slots[o.kind], observations[j].observation == o { return h }
        }
        return nil
    }

    /// The same request as a proxy reported it twice, in two formats (its access-log line and its own span):
    /// same kind, same wire parent, same request line, status and identities, started within 2 ms. The gateway's
    /// Kong line and its span are twins the same way; a trace that starts at the gateway has no wire parent, so
    /// there the request id must be the same instead.
    private func proxyTwinTarget(of i: Int, _ observations: [StoredObservation], _ assemblies: [Assembly]) -> Int? {
        let o = observations[i].observation
        let parent: String?
        switch o.kind {
        case .inbound, .outbound:
            guard let p = o.parentSpanID else { return nil }
            parent = p
        case .gateway:
            guard o.requestID != nil else { return nil }
            parent = o.parentSpanID
        default: return nil
        }
        for (h, a) in assemblies.enumerated() {
            guard let j = a.slots[o.kind] else { continue }
            let t = observations[j].observation
            if o.kind == .gateway, t.requestID != o.requestID { continue }
            let (gap, overflow) = t.start.nanoseconds.subtractingReportingOverflow(o.start.nanoseconds)
            if t.format != o.format, t.parentSpanID == parent, t.method == o.method, t.path == o.path, t.status == o.status,
                identity(t.caller) == identity(o.caller), identity(t.callee) == identity(o.callee),
                !overflow, gap.magnitude <= 2_000_000
            {
                return h
            }
        }
        return nil
    }

    /// A total order on observation content, independent of store ids.
    static func canonicalKey(_ o: Observation) -> String {
        let kindOrder: [ObservationKind: String] = [
            .clientSpan: "0", .serverSpan: "1", .gateway: "2", .outbound: "3", .inbound: "4",
        ]
        let c = o.callerCertificate
        let parts: [String?] = [
            kindOrder[o.kind], o.spanID, o.parentSpanID, o.method, o.path, o.caller.spiffeID, o.caller.service,
            o.caller.address, o.caller.port.map(String.init), o.callee.spiffeID, o.callee.service, o.callee.address,
            o.callee.port.map(String.init), o.status.map(String.init), o.requestID, o.durationNanos.map(String.init),
            c?.serial, c?.fingerprintSHA256, c?.notBefore.map { String($0.nanoseconds) },
            c?.notAfter.map { String($0.nanoseconds) }, c?.uriSANs.joined(separator: ","), c?.subject, o.format,
            o.traceID, o.authority, o.operation, o.transport?.rawValue, o.tlsVersion, o.xfccURI, o.principal?.name,
            o.principal?.type.rawValue, o.principal?.credential, o.userAgent, o.policy?.rawValue, o.responseFlags,
            o.route,
        ]
        return parts.map { $0 ?? "" }.joined(separator: "\u{1F}")
    }

    /// The identity of an endpoint: its SPIFFE ID, else the one learned for its service.
    func identity(_ e: Endpoint) -> String? {
        e.spiffeID ?? e.service.flatMap(directory.spiffeID(forService:))
    }

    /// A score for joining an observation to a hop, or nil when they cannot be the same request.
    private func compatibility(
        _ o: Observation, _ a: Assembly, wireKey: String?, _ observations: [StoredObservation]
    ) -> Int64? {
        var score: Int64 = 0
        var sameWire = false
        let members = a.members.map { observations[$0].observation }
        guard let anchor = members.first else { return nil }
        let skew = configuration.clockSkewNanos
        let (difference, overflow) = o.start.nanoseconds.subtractingReportingOverflow(anchor.start.nanoseconds)
        guard !overflow, difference.magnitude <= UInt64(skew) else { return nil }
        let delta = Int64(difference.magnitude)
        if let parent = o.parentSpanID, let wireKey {
            if parent == wireKey {
                score += 1_000_000
                sameWire = true
            } else if o.kind != .gateway && !a.wireKeyFromGateway {
                // Both carry the caller's span id and they differ: different requests.
                return nil
            }
        }
        for m in members {
            if let x = o.method, let y = m.method, x.uppercased() != y.uppercased() { return nil }
            if o.kind != .gateway, m.kind != .gateway, let x = o.path, let y = m.path, x != y { return nil }
            if let x = o.requestID, let y = m.requestID, x == y { score += 1000 }
            // The callee of a gateway record is the upstream service; compare where both name it.
            if let x = identity(o.callee), let y = identity(m.callee) {
                if x == y { score += 500 } else { return nil }
            } else if let x = o.callee.service, let y = m.callee.service {
                if Self.sameService(x, y) {
                    score += 300
                } else if o.kind != .gateway && m.kind != .gateway && !sameWire {
                    return nil
                }
            }
            // Both carry the same caller span id: the same request even if the identities disagree (that
            // disagreement is itself a finding).
            if o.kind != .gateway, m.kind != .gateway, let x = identity(o.caller), let y = identity(m.caller) {
                if x == y { score += 500 } else if !sameWire { return nil }
            }
            if let x = o.status, let y = m.status, x == y { score += 50 }
            if let x = o.callee.address, let y = m.callee.address, x == y { score += 20 }
        }
        // Closer in time is better (scaled to milliseconds).
        return score - delta / 1_000_000
    }

    // MARK: Merging

    /// What one hop says once its observations are merged.
    struct Draft {
        var members: [StoredObservation]
        var byKind: [ObservationKind: Observation]
        var callerSPIFFEID: String?
        var callerService: String?
        var callerAddress: String?
        var calleeSPIFFEID: String?
        var calleeService: String?
        var calleeAddress: String?
        var start: Timestamp
        var end: Timestamp
        var hop: Hop
        var certificate: PresentedCertificate?
        /// The certificate is the edge client's (a partner's, from the gateway record): no internal observation
        /// logged one. Partner certificates come from the partner's CA, not the mesh's, so "never seen issued"
        /// says nothing about them and the X509-SVID shape is not required.
        var certificateFromEdge = false
        var xfccURI: String?

        var caller: String { callerSPIFFEID ?? callerService ?? callerAddress ?? "unknown" }
        var callee: String { calleeSPIFFEID ?? calleeService ?? calleeAddress ?? "unknown" }
    }

    private func first<T>(_ byKind: [ObservationKind: Observation], _ order: [ObservationKind], _ f: (Observation) -> T?) -> T? {
        for kind in order { if let o = byKind[kind], let v = f(o) { return v } }
        return nil
    }

    private func merge(_ a: Assembly, _ observations: [StoredObservation]) -> Draft {
        var byKind: [ObservationKind: Observation] = [:]
        for (kind, i) in a.slots { byKind[kind] = observations[i].observation }
        let members = a.members.map { observations[$0] }
        let calleeSide: [ObservationKind] = [.inbound, .serverSpan, .outbound, .clientSpan, .gateway]
        let callerSide: [ObservationKind] = [.gateway, .clientSpan, .outbound, .serverSpan, .inbound]
        let internalSide: [ObservationKind] = [.inbound, .outbound, .serverSpan, .clientSpan]

        // Who called: the peer certificate verified by the callee's sidecar is the strongest evidence.
        var callerSPIFFEID = first(byKind, [.inbound, .outbound, .serverSpan, .clientSpan]) { $0.caller.spiffeID }
        let callerService = first(byKind, [.clientSpan, .serverSpan, .outbound, .inbound]) { $0.caller.service }
        if callerSPIFFEID == nil, let s = callerService { callerSPIFFEID = directory.spiffeID(forService: s) }
        var callerAddress = first(byKind, [.inbound, .serverSpan, .outbound, .clientSpan]) { $0.caller.address }
        var calleeSPIFFEID = first(byKind, [.inbound, .outbound, .serverSpan, .clientSpan, .gateway]) { $0.callee.spiffeID }
        let calleeService = first(byKind, [.serverSpan, .inbound, .outbound, .clientSpan, .gateway]) { $0.callee.service }
        if calleeSPIFFEID == nil, let s = calleeService { calleeSPIFFEID = directory.spiffeID(forService: s) }
        let calleeAddress = first(byKind, [.inbound, .outbound, .clientSpan, .gateway, .serverSpan]) { $0.callee.address }

        let gateway = byKind[.gateway]
        var callerServiceFinal = callerService
        if gateway != nil, callerSPIFFEID == nil, callerServiceFinal == nil {
            // A gateway record names the external client, not the gateway itself.
            callerServiceFinal = gateway?.format == InputFormat.kong.rawValue ? "kong" : "gateway"
            callerAddress = nil
        }

        let start = first(byKind, [.gateway, .clientSpan, .outbound, .inbound, .serverSpan]) { $0.start }
            ?? members[0].observation.start
        let duration = first(byKind, callerSide) { $0.durationNanos }
        let end = members.map { $0.observation.start.adding(nanoseconds: $0.observation.durationNanos ?? 0) }.max() ?? start

        // Transport of the internal leg: the weakest any internal observation reports.
        let transports = internalSide.compactMap { byKind[$0]?.transport }
        let transport: Transport? =
            transports.contains(.plaintext) ? .plaintext
            : transports.contains(.mtls) ? .mtls : transports.contains(.tls) ? .tls : nil

        var certificate = first(byKind, [.inbound, .serverSpan, .outbound]) { o -> PresentedCertificate? in
            guard let c = o.callerCertificate, !c.isEmpty else { return nil }
            return c
        }
        var certificateFromEdge = false
        if certificate == nil, let c = gateway?.callerCertificate, !c.isEmpty {
            certificate = c
            certificateFromEdge = true
        }
        let policies = members.compactMap(\.observation.policy)
        let policy: PolicyDecision? =
            policies.contains(.deny) ? .deny : policies.contains(.dryRunDeny) ? .dryRunDeny : policies.first
        let principal = first(byKind, [.gateway, .serverSpan]) { $0.principal }

        var observedBy = Array(Set(members.map(\.observation.kind)))
        observedBy.sort { ObservationKind.allCases.firstIndex(of: $0)! < ObservationKind.allCases.firstIndex(of: $1)! }

        let draftHop = Hop(
            index: 0, parent: nil, caller: "", callerSPIFFEID: callerSPIFFEID, callerService: callerServiceFinal,
            callerAddress: callerAddress, callee: "", calleeSPIFFEID: calleeSPIFFEID, calleeService: calleeService,
            calleeAddress: calleeAddress,
            method: first(byKind, calleeSide) { $0.method }.map { $0.uppercased() },
            path: first(byKind, calleeSide) { $0.path },
            operation: first(byKind, [.serverSpan, .clientSpan, .gateway]) { $0.operation },
            authority: first(byKind, calleeSide) { $0.authority },
            status: first(byKind, [.inbound, .serverSpan, .outbound, .clientSpan, .gateway]) { $0.status },
            start: start, durationNanos: duration, transport: transport,
            tlsVersion: first(byKind, [.inbound, .outbound]) { $0.tlsVersion },
            serial: certificate?.serial ?? certificate?.fingerprintSHA256.flatMap(ledger.serial(forFingerprint:)),
            fingerprintSHA256: certificate?.fingerprintSHA256, certificateState: .unlogged, policy: policy,
            requestID: first(byKind, [.gateway, .inbound, .outbound, .serverSpan, .clientSpan]) { $0.requestID },
            userAgent: first(byKind, [.gateway, .inbound, .outbound, .serverSpan, .clientSpan]) { $0.userAgent },
            principal: principal, observedBy: observedBy,
            observationIDs: members.map(\.id).sorted(),
            rawRecordIDs: Array(Set(members.map(\.rawRecordID))).sorted(), chainPath: [])
        return Draft(
            members: members, byKind: byKind, callerSPIFFEID: callerSPIFFEID, callerService: callerServiceFinal,
            callerAddress: callerAddress, calleeSPIFFEID: calleeSPIFFEID, calleeService: calleeService,
            calleeAddress: calleeAddress, start: start, end: max(end, start.adding(nanoseconds: duration ?? 0)),
            hop: draftHop, certificate: certificate, certificateFromEdge: certificateFromEdge,
            xfccURI: byKind[.inbound]?.xfccURI)
    }

    // MARK: Tree

    /// For each draft, the draft that called it: its client span's parent span is the callee's server span,
    /// else the latest hop into the caller that was open when this hop started.
    private func linkParents(_ drafts: inout [Draft], _ assemblies: [Assembly], _ observations: [StoredObservation]) -> [Int?] {
        let skew = configuration.clockSkewNanos
        var parents = [Int?](repeating: nil, count: drafts.count)
        var serverSpanOwner: [String: Int] = [:]
        for (d, draft) in drafts.enumerated() {
            for m in draft.members where m.observation.kind == .serverSpan {
                if let s = m.observation.spanID, serverSpanOwner[s] == nil { serverSpanOwner[s] = d }
            }
        }
        for (d, draft) in drafts.enumerated() {
            if let client = draft.byKind[.clientSpan], let p = client.parentSpanID, let owner = serverSpanOwner[p], owner != d {
                parents[d] = owner
                continue
            }
            // Gateway hops start chains.
            if draft.byKind[.gateway] != nil { continue }
            var best: Int?
            for (c, candidate) in drafts.enumerated() where c != d {
                guard sameWorkload(candidate, calleeOf: true, draft) else { continue }
                guard candidate.start.nanoseconds <= draft.start.nanoseconds.addingSaturating(skew),
                    draft.start.nanoseconds <= candidate.end.nanoseconds.addingSaturating(skew)
                else { continue }
                // Never point at a hop that starts later (prevents cycles between equal-time hops too).
                if candidate.start > draft.start || (candidate.start == draft.start && c > d) { continue }
                if let b = best {
                    if candidate.start > drafts[b].start { best = c }
                } else {
                    best = c
                }
            }
            parents[d] = best
        }
        // Break any cycle defensively (cannot happen with the ordering rule above, but input is hostile).
        for d in parents.indices {
            var seen: Set<Int> = [d]
            var p = parents[d]
            while let q = p {
                if seen.contains(q) {
                    parents[d] = nil
                    break
                }
                seen.insert(q)
                p = parents[q]
            }
        }
        return parents
    }

    /// Service names as different sources write them: `inventory`, `inventory.shop`,
    /// `inventory.shop.svc.cluster.local` and `inventory:8443` all name the same Kubernetes service.
    static func sameService(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        func base(_ s: String) -> Substring {
            let host = s.split(separator: ":", maxSplits: 1).first ?? Substring(s)
            return host.split(separator: ".", maxSplits: 1).first ?? host
        }
        return base(a) == base(b)
    }

    /// True if `upstream`'s callee is `downstream`'s caller.
    private func sameWorkload(_ upstream: Draft, calleeOf: Bool, _ downstream: Draft) -> Bool {
        if let a = upstream.calleeSPIFFEID, let b = downstream.callerSPIFFEID { return a == b }
        if let a = upstream.calleeService, let b = downstream.callerService { return Self.sameService(a, b) }
        if let a = upstream.calleeSPIFFEID, let b = downstream.callerService { return directory.spiffeID(forService: b) == a }
        if let a = upstream.calleeService, let b = downstream.callerSPIFFEID { return directory.spiffeID(forService: a) == b }
        return false
    }

    // MARK: Chain and findings

    private func assemble(traceID: String, drafts: [Draft], parents: [Int?]) -> Chain {
        // Order: roots by start, then depth-first, children by start.
        var children = [[Int]](repeating: [], count: drafts.count)
        var roots: [Int] = []
        for d in drafts.indices {
            if let p = parents[d] { children[p].append(d) } else { roots.append(d) }
        }
        let byStart: (Int, Int) -> Bool = { a, b in
            drafts[a].start != drafts[b].start ? drafts[a].start < drafts[b].start : a < b
        }
        roots.sort(by: byStart)
        // A gateway root is the origin when there is one.
        if let g = roots.firstIndex(where: { drafts[$0].byKind[.gateway] != nil }), g != 0,
            drafts[roots[g]].start.nanoseconds <= drafts[roots[0]].start.nanoseconds.addingSaturating(configuration.clockSkewNanos)
        {
            roots.insert(roots.remove(at: g), at: 0)
        }
        var order: [Int] = []
        var newIndex = [Int](repeating: 0, count: drafts.count)
        func visit(_ d: Int) {
            newIndex[d] = order.count
            order.append(d)
            for c in children[d].sorted(by: byStart) { visit(c) }
        }
        for r in roots { visit(r) }

        var hops: [Hop] = []
        var pathOf = [[String]](repeating: [], count: drafts.count)
        for d in order {
            var hop = drafts[d].hop
            hop.index = newIndex[d]
            hop.parent = parents[d].map { newIndex[$0] }
            hop.caller = drafts[d].caller
            hop.callee = drafts[d].callee
            pathOf[d] = (parents[d].map { pathOf[$0] } ?? [hop.caller]) + [hop.callee]
            hop.chainPath = pathOf[d]
            hops.append(hop)
        }

        let origin: ChainOrigin
        if let r = roots.first {
            let root = drafts[r]
            if let gw = root.byKind[.gateway] {
                let p = gw.principal ?? Principal(name: "anonymous", type: .anonymous)
                origin = ChainOrigin(
                    principal: p.name, principalType: p.type, clientIP: gw.caller.address, viaGateway: true,
                    credential: p.credential)
            } else if let p = root.hop.principal {
                origin = ChainOrigin(
                    principal: p.name, principalType: p.type, clientIP: root.callerAddress, viaGateway: false,
                    credential: p.credential)
            } else if root.callerSPIFFEID == nil && root.callerService == nil {
                // Only an address: a caller outside the mesh that nobody authenticated.
                origin = ChainOrigin(
                    principal: "anonymous", principalType: .anonymous, clientIP: root.callerAddress, viaGateway: false)
            } else {
                origin = ChainOrigin(
                    principal: root.caller, principalType: .workload, clientIP: root.callerAddress, viaGateway: false)
            }
        } else {
            origin = ChainOrigin(principal: "unknown", principalType: .anonymous, clientIP: nil, viaGateway: false)
        }

        var gaps: [Gap] = []
        for r in roots.dropFirst() {
            let hop = hops[newIndex[r]]
            gaps.append(Gap(
                beforeHop: hop.index,
                detail: "no observed call into \(hop.caller) leads to its call to \(hop.callee) at \(hop.start)"))
        }

        var findings: [Finding] = []
        for d in order {
            let i = newIndex[d]
            let judgement = judgeCertificate(&hops[i], drafts[d])
            findings += hopFindings(hops[i], drafts[d], judgement, traceID: traceID, origin: origin)
        }
        return Chain(traceID: traceID, origin: origin, hops: hops, gaps: gaps, findings: findings)
    }

    /// Sets the hop's certificate state; returns the ledger's judgement when a certificate was judged.
    private func judgeCertificate(_ hop: inout Hop, _ draft: Draft) -> CertificateLedger.Judgement? {
        if hop.transport == .plaintext {
            hop.certificateState = .none
            return nil
        }
        let cert = draft.certificate
        guard hop.serial != nil || hop.fingerprintSHA256 != nil || cert?.notAfter != nil else {
            hop.certificateState = .unlogged
            return nil
        }
        let judgement = ledger.judge(
            serial: hop.serial, fingerprint: hop.fingerprintSHA256, presentedNotBefore: cert?.notBefore,
            presentedNotAfter: cert?.notAfter, spiffeID: hop.callerSPIFFEID, at: hop.start)
        hop.certificateState = draft.certificateFromEdge && judgement.state == .unknown ? .valid : judgement.state
        return judgement
    }

    private func hopFindings(
        _ hop: Hop, _ draft: Draft, _ judgement: CertificateLedger.Judgement?, traceID: String, origin: ChainOrigin
    ) -> [Finding] {
        var out: [Finding] = []
        func add(_ kind: FindingKind, _ detail: String, identity: String? = nil, severity: Severity? = nil) {
            out.append(Finding(
                kind: kind, severity: severity, traceID: traceID, hopIndex: hop.index, principal: origin.principal,
                identity: identity ?? hop.callerSPIFFEID ?? hop.caller, serial: hop.serial, time: hop.start,
                detail: detail, rawRecordIDs: hop.rawRecordIDs))
        }
        let call = "\(hop.caller) → \(hop.callee)\(hop.method.map { " \($0)" } ?? "")\(hop.path.map { " \($0)" } ?? "")"
        let cert = draft.certificate
        // An edge client's certificate names the partner itself, not the hop's caller (the gateway).
        let certificateIdentity = draft.certificateFromEdge ? cert?.uriSANs.first ?? cert?.subject : nil
        switch hop.certificateState {
        case .revoked:
            add(.revokedCertificate, "\(call) presented \(judgement?.detail ?? "a revoked certificate")", identity: certificateIdentity)
        case .expired, .notYetValid:
            add(.expiredCertificate, "\(call) presented a certificate \(judgement?.detail ?? hop.certificateState.rawValue)",
                identity: certificateIdentity)
        case .unknown:
            if ledger.knowsIssuance(forTrustDomainOf: hop.callerSPIFFEID) {
                add(.unknownCertificate,
                    "\(call) presented certificate \(hop.serial ?? hop.fingerprintSHA256 ?? "?") that no CA event issued")
            }
        case .valid, .none, .unlogged:
            break
        }
        // Identity mismatches.
        if let claimed = hop.callerSPIFFEID,
            let issuedTo = ledger.issuedIdentity(serial: hop.serial, fingerprint: hop.fingerprintSHA256),
            issuedTo != claimed
        {
            add(.identityMismatch, "\(call): serial \(hop.serial ?? "?") was issued to \(issuedTo) but presented as \(claimed)")
        }
        if !draft.certificateFromEdge, let sans = cert?.uriSANs, sans.count > 1 {
            add(.identityMismatch, "\(call): the caller's certificate has \(sans.count) URI SANs (\(sans.joined(separator: ", "))); an X509-SVID has exactly one")
        }
        if let xfcc = draft.xfccURI, let peer = draft.byKind[.inbound]?.caller.spiffeID, xfcc != peer {
            add(.identityMismatch, "\(call): peer certificate says \(peer) but x-forwarded-client-cert says \(xfcc)")
        }
        if hop.transport == .plaintext {
            add(.plaintextHop, "\(call) travelled in plaintext; the caller's identity is unverified")
        }
        if let gw = draft.byKind[.gateway] {
            let anonymous = gw.principal == nil || gw.principal?.type == .anonymous
            let reached = (hop.status.map { $0 < 400 } ?? true) || draft.byKind.count > 1
            if anonymous && reached {
                add(.unauthenticatedEdge,
                    "request from \(gw.caller.address ?? "an unknown address") without a principal reached \(hop.callee)\(hop.path.map { " \($0)" } ?? "")",
                    identity: hop.calleeSPIFFEID ?? hop.callee)
            }
        }
        switch hop.policy {
        case .deny?: add(.policyDenied, "\(call) was denied by policy (status \(hop.status.map(String.init) ?? "?"))")
        case .dryRunDeny?: add(.dryRunDenied, "\(call) was allowed, but a dry-run policy would deny it")
        default: break
        }
        return out
    }
}
