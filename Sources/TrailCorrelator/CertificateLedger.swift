import TrailCore

/// Everything known about certificates from identity events, to judge a presented certificate at the time
/// of a call. Built from the events alone, so it does not depend on the order they arrived in.
public struct CertificateLedger: Sendable {
    /// Issued / renewed / expired events by normalised serial.
    private var lifecycleBySerial: [String: [IdentityEvent]] = [:]
    /// Serial by fingerprint, learned from events that carry both.
    private var serialByFingerprint: [String: String] = [:]
    private var lifecycleByFingerprint: [String: [IdentityEvent]] = [:]
    /// Revocation events by serial.
    private var revocationsBySerial: [String: [IdentityEvent]] = [:]
    /// Revocations that name only a SPIFFE ID (all its certificates issued before the revocation).
    private var revocationsBySPIFFEID: [String: [IdentityEvent]] = [:]
    /// Trust domains for which some issuance is known: only there can a serial be called "unknown".
    private var trustDomainsWithIssuance: Set<String> = []

    public init(events: [IdentityEvent] = []) {
        for event in events { add(event) }
    }

    public mutating func add(_ event: IdentityEvent) {
        switch event.kind {
        case .revoked:
            if let serial = event.serial {
                revocationsBySerial[serial, default: []].append(event)
            } else if let id = event.spiffeID {
                revocationsBySPIFFEID[id, default: []].append(event)
            }
        case .issued, .renewed, .expired:
            if let serial = event.serial { lifecycleBySerial[serial, default: []].append(event) }
            if let fp = event.fingerprintSHA256 {
                lifecycleByFingerprint[fp, default: []].append(event)
                // Conflicting serials for one fingerprint: keep the smallest, whatever the arrival order.
                if let serial = event.serial, serialByFingerprint[fp].map({ serial < $0 }) ?? true {
                    serialByFingerprint[fp] = serial
                }
            }
            if event.kind != .expired, let id = event.spiffeID, let td = SPIFFETrustDomain.of(id) {
                trustDomainsWithIssuance.insert(td)
            }
        }
    }

    /// The serial for a fingerprint, when an event tied them together.
    public func serial(forFingerprint fingerprint: String) -> String? { serialByFingerprint[fingerprint] }

    /// The SPIFFE ID a serial (or fingerprint) was issued to, if any event says so. When events disagree the
    /// smallest ID is returned, so the answer never depends on event order.
    public func issuedIdentity(serial: String?, fingerprint: String?) -> String? {
        let events = lifecycle(serial: serial, fingerprint: fingerprint)
        return events.compactMap(\.spiffeID).min()
    }

    private func lifecycle(serial: String?, fingerprint: String?) -> [IdentityEvent] {
        var out: [IdentityEvent] = []
        if let serial { out += lifecycleBySerial[serial] ?? [] }
        if let fingerprint { out += lifecycleByFingerprint[fingerprint] ?? [] }
        return out
    }

    /// A judgement of one presented certificate.
    public struct Judgement: Sendable, Hashable {
        public var state: CertificateState
        /// The revocation or expiry behind the state, for the finding's detail.
        public var detail: String?
        public var issuedTo: String?
    }

    /// Judges a certificate presented at `time` by a caller claiming `spiffeID`.
    ///
    /// Precedence: revoked, then expired / not yet valid, then unknown, then valid.
    public func judge(
        serial: String?, fingerprint: String?, presentedNotBefore: Timestamp?, presentedNotAfter: Timestamp?,
        spiffeID: String?, at time: Timestamp
    ) -> Judgement {
        let serial = serial ?? fingerprint.flatMap { serialByFingerprint[$0] }
        let events = lifecycle(serial: serial, fingerprint: fingerprint)
        let issuedTo = events.compactMap(\.spiffeID).min()

        // Revocation by serial, at or before the call.
        if let serial {
            let revs = (revocationsBySerial[serial] ?? []).filter { $0.time <= time }
            if let first = revs.min(by: { ($0.time, $0.reason ?? "") < ($1.time, $1.reason ?? "") }) {
                let reason = first.reason.map { " (\($0))" } ?? ""
                return Judgement(
                    state: .revoked, detail: "serial \(serial) revoked at \(first.time)\(reason)", issuedTo: issuedTo)
            }
        }
        // Revocation of the whole identity: certificates issued before the revocation are revoked.
        let identity = issuedTo ?? spiffeID
        if let identity, let revs = revocationsBySPIFFEID[identity] {
            let notBefore = events.compactMap(\.notBefore).min() ?? presentedNotBefore
            for rev in revs.sorted(by: { ($0.time, $0.reason ?? "") < ($1.time, $1.reason ?? "") }) where rev.time <= time {
                if let notBefore, notBefore > rev.time { continue }
                let reason = rev.reason.map { " (\($0))" } ?? ""
                return Judgement(
                    state: .revoked, detail: "\(identity) revoked at \(rev.time)\(reason)", issuedTo: issuedTo)
            }
        }
        let notBefore = events.compactMap(\.notBefore).min() ?? presentedNotBefore
        let notAfter = events.compactMap(\.notAfter).max() ?? presentedNotAfter
        if let notAfter, time > notAfter {
            return Judgement(state: .expired, detail: "expired at \(notAfter)", issuedTo: issuedTo)
        }
        if let expiry = events.filter({ $0.kind == .expired }).map(\.time).min(), time >= expiry {
            return Judgement(state: .expired, detail: "expired at \(expiry)", issuedTo: issuedTo)
        }
        if let notBefore, time < notBefore {
            return Judgement(state: .notYetValid, detail: "not valid before \(notBefore)", issuedTo: issuedTo)
        }
        if !events.contains(where: { $0.kind == .issued || $0.kind == .renewed }) {
            guard serial != nil || fingerprint != nil else {
                return Judgement(state: .unlogged, detail: nil, issuedTo: nil)
            }
            return Judgement(state: .unknown, detail: "never seen issued", issuedTo: nil)
        }
        return Judgement(state: .valid, detail: nil, issuedTo: issuedTo)
    }

    /// True when issuance events exist for this trust domain, so an unseen serial there is suspicious
    /// rather than merely unlogged.
    public func knowsIssuance(forTrustDomainOf spiffeID: String?) -> Bool {
        guard let spiffeID, let td = SPIFFETrustDomain.of(spiffeID) else { return !trustDomainsWithIssuance.isEmpty }
        return trustDomainsWithIssuance.contains(td)
    }
}

/// Extracts the trust domain of a SPIFFE ID without full validation (for grouping only).
public enum SPIFFETrustDomain {
    public static func of(_ id: String) -> String? {
        guard id.utf8.count > 9, id.lowercased().hasPrefix("spiffe://") else { return nil }
        let rest = id.dropFirst(9)
        let td = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? rest
        return td.isEmpty ? nil : td.lowercased()
    }
}
