import Testing
import TrailCore
@testable import TrailCorrelator

/// Builders for compact, readable scenarios.
enum Scenario {
    static let td = "spiffe://shop.example/ns/shop/sa/"
    static func id(_ name: String) -> String { td + name }
    static let trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    static func t(_ ms: Int64) -> Timestamp { Timestamp.utc(year: 2026, month: 5, day: 4, hour: 10).adding(nanoseconds: ms * 1_000_000) }

    static func gateway(_ ms: Int64, principal: Principal?, ip: String, to service: String, path: String, status: Int = 200, wire: String? = nil) -> Observation {
        Observation(kind: .gateway, format: "kong", traceID: trace, parentSpanID: wire, requestID: "req-\(ms)",
                    start: t(ms), durationNanos: 50_000_000, method: "GET", path: path, status: status,
                    caller: Endpoint(address: ip), callee: Endpoint(service: service), principal: principal)
    }

    static func inbound(_ ms: Int64, from caller: String, to callee: String, method: String = "GET", path: String,
                        serial: String? = nil, status: Int = 200, plaintext: Bool = false, wire: String? = nil,
                        policy: PolicyDecision? = nil, sans: [String]? = nil, xfcc: String? = nil) -> Observation {
        Observation(
            kind: .inbound, format: "envoy-json", traceID: trace, parentSpanID: wire, start: t(ms),
            durationNanos: 30_000_000, method: method, path: path, status: status,
            caller: Endpoint(spiffeID: plaintext ? nil : id(caller)), callee: Endpoint(spiffeID: id(callee), service: callee),
            transport: plaintext ? .plaintext : .mtls,
            callerCertificate: serial.map { PresentedCertificate(serial: $0, uriSANs: sans ?? [id(caller)]) },
            xfccURI: xfcc, policy: policy)
    }

    static func clientSpan(_ ms: Int64, service: String, to peer: String, span: String, parent: String?, path: String) -> Observation {
        Observation(kind: .clientSpan, format: "otlp-json", traceID: trace, spanID: span, parentSpanID: parent,
                    start: t(ms), durationNanos: 20_000_000, method: "POST", path: path, status: 200,
                    caller: Endpoint(service: service), callee: Endpoint(service: peer))
    }

    static func serverSpan(_ ms: Int64, service: String, span: String, parent: String?, path: String) -> Observation {
        Observation(kind: .serverSpan, format: "otlp-json", traceID: trace, spanID: span, parentSpanID: parent,
                    start: t(ms), durationNanos: 18_000_000, method: "POST", path: path, status: 200,
                    callee: Endpoint(service: service))
    }

    static func ledger() -> CertificateLedger {
        var events: [IdentityEvent] = []
        for (name, serial) in [("gateway", "1007"), ("web", "1001"), ("orders", "1002"), ("payments", "1003"), ("inventory", "1005")] {
            events.append(IdentityEvent(kind: .issued, spiffeID: id(name), serial: serial,
                                        notBefore: Timestamp.utc(year: 2026, month: 5, day: 4, hour: 9),
                                        notAfter: Timestamp.utc(year: 2026, month: 5, day: 4, hour: 21),
                                        time: Timestamp.utc(year: 2026, month: 5, day: 4, hour: 9), format: "identity-ndjson"))
        }
        events.append(IdentityEvent(kind: .issued, spiffeID: id("inventory"), serial: "1015",
                                    notBefore: Timestamp.utc(year: 2026, month: 5, day: 3, hour: 9),
                                    notAfter: Timestamp.utc(year: 2026, month: 5, day: 3, hour: 21),
                                    time: Timestamp.utc(year: 2026, month: 5, day: 3, hour: 9), format: "pem"))
        events.append(IdentityEvent(kind: .revoked, serial: "10:02", time: t(5 * 60_000), reason: "keyCompromise", format: "crl"))
        return CertificateLedger(events: events)
    }

    static func correlate(_ observations: [Observation], ledger: CertificateLedger = ledger(),
                          directory: ServiceDirectory = ServiceDirectory()) -> Chain {
        let stored = observations.enumerated().map { StoredObservation(id: Int64($0.offset + 1), rawRecordID: Int64($0.offset + 1), observation: $0.element) }
        return Correlator(ledger: ledger, directory: directory).correlate(traceID: trace, observations: stored)
    }

    static func correlateShuffled(_ observations: [Observation], seed: UInt64) -> Chain {
        var rng = SplitMix(seed: seed)
        var stored = observations.enumerated().map { StoredObservation(id: Int64($0.offset + 1), rawRecordID: Int64($0.offset + 1), observation: $0.element) }
        stored.shuffle(using: &rng)
        return Correlator(ledger: ledger(), directory: ServiceDirectory()).correlate(traceID: trace, observations: stored)
    }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Correlator")
struct CorrelatorTests {
    let alice = Principal(name: "alice", type: .jwt, credential: "cred-1")

    /// gateway → web → orders → payments, every hop seen by an inbound line; web → orders also by spans.
    var checkout: [Observation] {
        [
            Scenario.gateway(0, principal: alice, ip: "203.0.113.9", to: "web", path: "/shop/checkout"),
            Scenario.inbound(2, from: "gateway", to: "web", path: "/shop/checkout", serial: "1007"),
            Scenario.clientSpan(5, service: "web", to: "orders", span: "00000000000000a1", parent: nil, path: "/orders"),
            Scenario.serverSpan(6, service: "orders", span: "00000000000000b1", parent: "00000000000000a1", path: "/orders"),
            Scenario.inbound(6, from: "web", to: "orders", method: "POST", path: "/orders", serial: "1001", wire: "00000000000000a1"),
            Scenario.inbound(9, from: "orders", to: "payments", method: "POST", path: "/payments/charge", serial: "1002"),
        ]
    }

    @Test func joinsObservationsOfOneRequestIntoOneHop() throws {
        let chain = Scenario.correlate(checkout)
        #expect(chain.hops.count == 3)
        #expect(chain.gaps.isEmpty)
        #expect(chain.origin == ChainOrigin(principal: "alice", principalType: .jwt, clientIP: "203.0.113.9", viaGateway: true, credential: "cred-1"))
        let web = try #require(chain.hops.first)
        #expect(web.caller == Scenario.id("gateway"))
        #expect(web.callee == Scenario.id("web"))
        #expect(Set(web.observedBy) == [.gateway, .inbound])
        #expect(web.parent == nil)
        let orders = chain.hops[1]
        #expect(orders.caller == Scenario.id("web"))
        #expect(orders.callee == Scenario.id("orders"))
        #expect(Set(orders.observedBy) == [.clientSpan, .serverSpan, .inbound])
        #expect(orders.parent == 0)
        #expect(orders.certificateState == .valid)
        #expect(chain.hops[2].parent == 1)
        #expect(chain.hops[2].chainPath == [Scenario.id("gateway"), Scenario.id("web"), Scenario.id("orders"), Scenario.id("payments")])
        #expect(chain.findings.isEmpty)
    }

    @Test(arguments: [1, 2, 3, 42, 1000, 31337] as [UInt64])
    func anyInputOrderGivesTheSameChain(seed: UInt64) {
        let reference = Scenario.correlate(checkout)
        #expect(Scenario.correlateShuffled(checkout, seed: seed) == reference)
    }

    @Test func revokedCertificateUsedAfterRevocationIsFound() throws {
        var obs = checkout
        // Shift the whole chain to 10:10, after the 10:05 revocation of 1002.
        obs = obs.map { var o = $0; o.start = o.start.adding(nanoseconds: 600_000_000_000); return o }
        let chain = Scenario.correlate(obs)
        let payments = try #require(chain.hops.last)
        #expect(payments.certificateState == .revoked)
        let f = try #require(chain.findings.first { $0.kind == .revokedCertificate })
        #expect(f.hopIndex == payments.index)
        #expect(f.serial == "1002")
        #expect(f.principal == "alice")
        #expect(f.severity == .high)
        #expect(f.detail.contains("keyCompromise"))
    }

    @Test func revocationAfterTheCallIsNotAFinding() {
        // The original chain is at 10:00; the revocation at 10:05 comes later.
        #expect(Scenario.correlate(checkout).findings.allSatisfy { $0.kind != .revokedCertificate })
    }

    @Test func expiredAndUnknownCertificates() {
        let expired = Scenario.correlate([Scenario.inbound(0, from: "inventory", to: "orders", path: "/orders/pending", serial: "1015")])
        #expect(expired.hops[0].certificateState == .expired)
        #expect(expired.findings.map(\.kind) == [.expiredCertificate])
        let unknown = Scenario.correlate([Scenario.inbound(0, from: "web", to: "orders", path: "/orders", serial: "dead")])
        #expect(unknown.hops[0].certificateState == .unknown)
        #expect(unknown.findings.map(\.kind) == [.unknownCertificate])
    }

    @Test func unknownSerialIsNotSuspiciousWithoutAnyIssuanceData() {
        let chain = Scenario.correlate([Scenario.inbound(0, from: "web", to: "orders", path: "/orders", serial: "beef")],
                                       ledger: CertificateLedger())
        #expect(chain.hops[0].certificateState == .unknown)
        #expect(chain.findings.isEmpty)
    }

    @Test func identityMismatchWhenSerialBelongsToAnotherIdentity() {
        let chain = Scenario.correlate([Scenario.inbound(0, from: "payments", to: "orders", path: "/orders", serial: "1001")])
        #expect(chain.findings.map(\.kind) == [.identityMismatch])
        #expect(chain.findings[0].detail.contains(Scenario.id("web")))
    }

    @Test func identityMismatchWhenXFCCDisagreesOrSeveralURISANs() {
        let xfcc = Scenario.correlate([Scenario.inbound(0, from: "web", to: "orders", path: "/o", serial: "1001", xfcc: Scenario.id("payments"))])
        #expect(xfcc.findings.map(\.kind) == [.identityMismatch])
        let sans = Scenario.correlate([Scenario.inbound(0, from: "web", to: "orders", path: "/o", serial: "1001",
                                                        sans: [Scenario.id("web"), Scenario.id("payments")])])
        #expect(sans.findings.map(\.kind) == [.identityMismatch])
    }

    @Test func plaintextHopHasNoCertificateAndIsFound() {
        let chain = Scenario.correlate([Scenario.inbound(0, from: "scheduler", to: "inventory", method: "POST", path: "/inventory/reconcile", plaintext: true)])
        #expect(chain.hops[0].certificateState == CertificateState.none)
        #expect(chain.hops[0].transport == .plaintext)
        #expect(chain.findings.map(\.kind) == [.plaintextHop])
        #expect(chain.origin.viaGateway == false)
    }

    @Test func anonymousEdgeRequestReachingAWorkload() {
        let chain = Scenario.correlate([
            Scenario.gateway(0, principal: nil, ip: "192.0.2.66", to: "web", path: "/shop/products"),
            Scenario.inbound(2, from: "gateway", to: "web", path: "/shop/products", serial: "1007"),
        ])
        #expect(chain.origin.principalType == .anonymous)
        #expect(chain.findings.map(\.kind) == [.unauthenticatedEdge])
    }

    @Test func anonymousRequestRejectedAtTheEdgeIsNotAFinding() {
        let chain = Scenario.correlate([Scenario.gateway(0, principal: nil, ip: "192.0.2.66", to: "web", path: "/admin", status: 401)])
        #expect(chain.findings.isEmpty)
    }

    /// A partner refused at the edge for its expired client certificate: the gateway record alone carries the
    /// certificate, and the finding names the partner consumer and the certificate's serial.
    @Test func expiredPartnerCertificateAtTheEdgeIsAFinding() throws {
        var refused = Scenario.gateway(0, principal: Principal(name: "acme", type: .clientCertificate), ip: "198.51.100.7",
                                       to: "catalog", path: "/items", status: 401)
        refused.transport = .mtls
        refused.callerCertificate = PresentedCertificate(
            serial: "5A:F0", notBefore: Timestamp.utc(year: 2025, month: 1, day: 1, hour: 0),
            notAfter: Timestamp.utc(year: 2025, month: 2, day: 1, hour: 0), uriSANs: ["spiffe://partners.example/acme"])
        let chain = Scenario.correlate([refused])
        #expect(chain.hops[0].certificateState == .expired)
        #expect(chain.hops[0].serial == "5af0")
        #expect(chain.findings.map(\.kind) == [.expiredCertificate])
        let finding = try #require(chain.findings.first)
        #expect(finding.principal == "acme")
        #expect(finding.serial == "5af0")
        #expect(finding.identity == "spiffe://partners.example/acme")

        // A valid partner certificate the mesh CA never issued is not "unknown": partners have their own CA.
        var valid = refused
        valid.status = 200
        valid.callerCertificate?.notAfter = Timestamp.utc(year: 2027, month: 1, day: 1, hour: 0)
        valid.callerCertificate?.uriSANs += ["spiffe://partners.example/acme-2"]
        let ok = Scenario.correlate([valid])
        #expect(ok.hops[0].certificateState == .valid)
        #expect(ok.findings.isEmpty)
    }

    @Test func policyDecisions() {
        let denied = Scenario.correlate([Scenario.inbound(0, from: "web", to: "ledger", method: "POST", path: "/ledger/entries", serial: "1001", status: 403, policy: .deny)])
        #expect(denied.findings.map(\.kind) == [.policyDenied])
        let dry = Scenario.correlate([Scenario.inbound(0, from: "web", to: "ledger", method: "POST", path: "/ledger/entries", serial: "1001", policy: .dryRunDeny)])
        #expect(dry.findings.map(\.kind) == [.dryRunDenied])
    }

    @Test func missingLinkIsAGapNotAGuess() {
        // gateway → web, then orders → payments with no observed web → orders hop.
        let chain = Scenario.correlate([
            Scenario.gateway(0, principal: alice, ip: "203.0.113.9", to: "web", path: "/shop/checkout"),
            Scenario.inbound(2, from: "gateway", to: "web", path: "/shop/checkout", serial: "1007"),
            Scenario.inbound(9, from: "orders", to: "payments", method: "POST", path: "/payments/charge", serial: "1002"),
        ])
        #expect(chain.hops.count == 2)
        #expect(chain.gaps.count == 1)
        #expect(chain.gaps[0].beforeHop == 1)
        #expect(chain.hops[1].parent == nil)
        #expect(chain.origin.principal == "alice")
    }

    @Test func serviceNamesResolveThroughLearnedIdentities() {
        var directory = ServiceDirectory()
        directory.learn(service: "orders", spiffeID: Scenario.id("orders"))
        let chain = Scenario.correlate([
            Scenario.clientSpan(0, service: "web", to: "orders", span: "00000000000000a1", parent: nil, path: "/orders"),
        ], directory: directory)
        #expect(chain.hops[0].callee == Scenario.id("orders"))
        #expect(chain.hops[0].caller == "web")
    }

    @Test func ambiguousServiceIsNotMapped() {
        var directory = ServiceDirectory()
        directory.learn(service: "orders", spiffeID: Scenario.id("orders"))
        directory.learn(service: "orders", spiffeID: Scenario.id("orders-canary"))
        #expect(directory.spiffeID(forService: "orders") == nil)
    }

    @Test func observationsTooFarApartInTimeStaySeparate() {
        let chain = Scenario.correlate([
            Scenario.inbound(0, from: "web", to: "orders", method: "POST", path: "/orders", serial: "1001"),
            Scenario.inbound(5000, from: "web", to: "orders", method: "POST", path: "/orders", serial: "1001"),
        ])
        #expect(chain.hops.count == 2)
    }
}

@Suite("Certificate ledger")
struct CertificateLedgerTests {
    @Test func revocationBySPIFFEIDCoversCertificatesIssuedBefore() {
        let nb = Timestamp.utc(year: 2026, month: 5, day: 4, hour: 9)
        var ledger = CertificateLedger(events: [
            IdentityEvent(kind: .issued, spiffeID: Scenario.id("web"), serial: "1001", notBefore: nb,
                          notAfter: nb.adding(nanoseconds: 3600_000_000_000 * 12), time: nb, format: "pem"),
        ])
        ledger.add(IdentityEvent(kind: .revoked, spiffeID: Scenario.id("web"), time: Scenario.t(0), reason: "BanAgent", format: "spire"))
        #expect(ledger.judge(serial: "1001", fingerprint: nil, presentedNotBefore: nil, presentedNotAfter: nil,
                             spiffeID: Scenario.id("web"), at: Scenario.t(1)).state == .revoked)
        #expect(ledger.judge(serial: "1001", fingerprint: nil, presentedNotBefore: nil, presentedNotAfter: nil,
                             spiffeID: Scenario.id("web"), at: Scenario.t(-1)).state == .valid)
    }

    @Test func serialsCompareWithoutColonsCaseOrLeadingZeros() {
        let ledger = Scenario.ledger()
        for form in ["1002", "10:02", "00:10:02", "001002"] {
            #expect(ledger.judge(serial: CertificateSerial.normalize(form), fingerprint: nil, presentedNotBefore: nil,
                                 presentedNotAfter: nil, spiffeID: nil, at: Scenario.t(600_000)).state == .revoked)
        }
    }

    @Test func fingerprintFindsTheSerial() {
        let fp = String(repeating: "ab", count: 32)
        let ledger = CertificateLedger(events: [
            IdentityEvent(kind: .issued, spiffeID: Scenario.id("web"), serial: "77", fingerprintSHA256: fp.uppercased(),
                          notBefore: Scenario.t(-1000), notAfter: Scenario.t(1000), time: Scenario.t(-1000), format: "pem"),
        ])
        #expect(ledger.serial(forFingerprint: fp) == "77")
        #expect(ledger.judge(serial: nil, fingerprint: fp, presentedNotBefore: nil, presentedNotAfter: nil,
                             spiffeID: nil, at: Scenario.t(0)).state == .valid)
        #expect(ledger.judge(serial: nil, fingerprint: fp, presentedNotBefore: nil, presentedNotAfter: nil,
                             spiffeID: nil, at: Scenario.t(2000)).state == .expired)
    }
}

@Suite("Correlator on hostile input")
struct CorrelatorHostileTests {
    @Test func extremeTimestampsDoNotTrap() {
        var far = Scenario.inbound(0, from: "web", to: "orders", path: "/orders", serial: "1001")
        far.start = Timestamp(nanoseconds: Int64.max - 5)
        var early = Scenario.inbound(0, from: "orders", to: "payments", path: "/payments", serial: "1002")
        early.start = Timestamp(nanoseconds: Int64.min + 5)
        early.durationNanos = Int64.max
        let chain = Scenario.correlate([far, early])
        #expect(chain.hops.count == 2)
    }

    @Test func conflictingFingerprintSerialsResolveTheSameInAnyOrder() {
        let fp = String(repeating: "cd", count: 32)
        let a = IdentityEvent(kind: .issued, spiffeID: Scenario.id("web"), serial: "a1", fingerprintSHA256: fp,
                              time: Scenario.t(0), format: "pem")
        let b = IdentityEvent(kind: .issued, spiffeID: Scenario.id("web"), serial: "0b", fingerprintSHA256: fp,
                              time: Scenario.t(0), format: "pem")
        #expect(CertificateLedger(events: [a, b]).serial(forFingerprint: fp) == CertificateLedger(events: [b, a]).serial(forFingerprint: fp))
    }

    @Test func differentPrincipalsAtTheSameInstantAreOrderedByContent() {
        let alice = Scenario.gateway(0, principal: Principal(name: "alice", type: .jwt), ip: "203.0.113.9", to: "web", path: "/a")
        let bob = Scenario.gateway(0, principal: Principal(name: "bob", type: .jwt), ip: "203.0.113.9", to: "web", path: "/a")
        #expect(Scenario.correlate([alice, bob]) == Scenario.correlate([bob, alice]).renumbered(like: Scenario.correlate([alice, bob])))
    }
}

extension Chain {
    /// The same chain with observation and raw ids taken from another (ids depend on input positions).
    func renumbered(like other: Chain) -> Chain {
        var c = self
        for i in c.hops.indices where i < other.hops.count {
            c.hops[i].observationIDs = other.hops[i].observationIDs
            c.hops[i].rawRecordIDs = other.hops[i].rawRecordIDs
        }
        for i in c.findings.indices where i < other.findings.count { c.findings[i].rawRecordIDs = other.findings[i].rawRecordIDs }
        return c
    }
}

/// Trail's gateway writes each request twice, as a Kong line and as an OTLP span read as the same gateway
/// observation: the two are one edge hop, whether the trace came from the caller or started at the gateway.
@Suite struct GatewayTwinTests {
    static func twin(_ line: Observation, spanStartOffsetNanos: Int64 = 400_000) -> Observation {
        var span = line
        span.format = "otlp-json"
        span.start = line.start.adding(nanoseconds: spanStartOffsetNanos)
        span.route = "payments"
        return span
    }

    @Test(arguments: [nil, "00f067aa0ba902b7"])
    func kongLineAndSpanAreOneEdgeHop(_ wire: String?) {
        let alice = Principal(name: "alice", type: .apiKey, credential: "0572c17e")
        let line = Scenario.gateway(0, principal: alice, ip: "203.0.113.9", to: "payments", path: "/pay", wire: wire)
        let inbound = Scenario.inbound(3, from: "gateway", to: "payments", path: "/pay", serial: "1007", wire: "aaaaaaaaaaaaaaaa")
        for order in [[line, Self.twin(line), inbound], [Self.twin(line), inbound, line]] {
            // One hop: the gateway's line, its span and the callee sidecar's inbound line of the same call.
            let chain = Scenario.correlate(order)
            #expect(chain.hops.count == 1, "\(chain.hops)")
            #expect(chain.hops.first?.observedBy == [.gateway, .inbound] || chain.hops.first?.observedBy == [.inbound, .gateway])
            #expect(chain.origin.principal == "alice" && chain.origin.viaGateway)
            #expect(chain.hops.first?.observationIDs.count == 3)
        }
    }

    @Test func twoRequestsWithDifferentIDsStayTwoHops() {
        let line = Scenario.gateway(0, principal: nil, ip: "203.0.113.9", to: "payments", path: "/pay")
        var other = Self.twin(line)
        other.requestID = "req-other"
        #expect(Scenario.correlate([line, other]).hops.count == 2)
        // A span more than 2 ms apart is not the line's twin.
        #expect(Scenario.correlate([line, Self.twin(line, spanStartOffsetNanos: 5_000_000)]).hops.count == 2)
    }
}
