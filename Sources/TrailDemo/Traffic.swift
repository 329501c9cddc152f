import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import TrailCore
import TrailMesh

/// What the demo played: ground truth for its end-to-end test, never given to Trail.
public struct PlayedIncident: Sendable {
    public var name: String
    /// The finding kind Trail is expected to raise.
    public var kind: String
    public var principal: String?
    public var identity: String?
    public var serial: String?
    public var traceIDs: [String] = []

    var json: JSONValue {
        .object([
            ("name", .string(name)), ("kind", .string(kind)), ("principal", principal.map(JSONValue.string) ?? .null),
            ("identity", identity.map(JSONValue.string) ?? .null), ("serial", serial.map(JSONValue.string) ?? .null),
            ("trace_ids", .array(traceIDs.map(JSONValue.string))),
        ])
    }
}

public struct TrafficResult: Sendable {
    public var requests = 0
    public var byStatusClass: [String: Int] = [:]
    public var incidents: [PlayedIncident] = []
    /// Traces of ordinary traffic (gateway requests and scheduled jobs), none of which should raise a finding.
    public var normalTraceIDs: [String] = []

    public init() {}

    /// The ground truth as JSON (`trail demo --ground-truth FILE`).
    public var json: String {
        JSONValue.object([
            ("requests", .int(Int64(requests))), ("incidents", .array(incidents.map(\.json))),
            ("normal_trace_ids", .array(normalTraceIDs.map(JSONValue.string))),
        ]).serialized()
    }
}

/// Drives the estate: users with JWTs, an API-key integration and a partner with a client certificate call the
/// gateway at `rate` requests per second from their own loopback addresses; the scheduler runs its jobs; and at
/// set moments of the run the incidents are played. Every request carries a trace id chosen here.
public final class TrafficGenerator: @unchecked Sendable {
    let estate: Estate
    let duration: Double
    let rate: Double
    let group: any EventLoopGroup
    let progress: @Sendable (String) -> Void
    private let lock = NSLock()
    private var result = TrafficResult()
    /// The client for the sample services' control endpoints (plain HTTP on loopback).
    private let plain: HTTPSClient
    /// Requests sent and not answered yet (the run ends when they are).
    private var inFlight = 0

    public init(estate: Estate, duration: Double, rate: Double, group: any EventLoopGroup, progress: @escaping @Sendable (String) -> Void) {
        self.estate = estate
        self.duration = duration
        self.rate = rate
        self.group = group
        self.progress = progress
        plain = HTTPSClient(group: group, timeout: .seconds(10)) { nil }
    }

    enum Label: Sendable {
        case normal
        case incident(Int)
    }

    public func run() async throws -> TrafficResult {
        let edge = try client(certificate: nil)
        // The partner's certificate lives for half the run, and the partner keeps calling after it expires.
        let partnerTTL = max(4, Int(duration * 0.5))
        let issued = try estate.run([
            "ca", "issue", "--dir", estate.path("partners-ca"), "--spiffe-id", Estate.partnerSPIFFEID, "--ttl", String(partnerTTL),
            "--out", estate.path("partner"),
        ])
        let partner = try client(certificate: estate.path("partner"))
        let partnerSerial = Self.serial(in: issued)
        let tokens = try Estate.users.map { try estate.tokens.token(subject: $0) }
        let gateway = try HTTPSClient.Endpoint(url: estate.gatewayURL)

        var incidents = [
            PlayedIncident(name: "dry-run policy", kind: "dry-run-denied", principal: DemoTopology.spiffeID("scheduler"),
                           identity: DemoTopology.spiffeID("scheduler")),
            PlayedIncident(name: "edge bypass by a compromised workload", kind: "edge-bypass", principal: DemoTopology.spiffeID("inventory"),
                           identity: DemoTopology.spiffeID("inventory")),
            PlayedIncident(name: "plaintext hop during the PERMISSIVE rollout", kind: "plaintext-hop"),
            PlayedIncident(name: "partner certificate expired", kind: "expired-certificate", principal: Estate.partner, serial: partnerSerial),
            PlayedIncident(name: "stolen API key", kind: "credential-anomaly", principal: Estate.integration),
            PlayedIncident(name: "revoked workload certificate", kind: "revoked-certificate", principal: DemoTopology.spiffeID("scheduler"),
                           identity: DemoTopology.spiffeID("scheduler")),
        ]
        lock.withLock { result.incidents = incidents }

        let start = Date()
        // The certificate's own notAfter: issuing took time, so it comes before start + TTL.
        let partnerExpiry = Self.validUntil(in: issued) ?? start.addingTimeInterval(Double(partnerTTL))
        var nextPartner = 0.5, nextScheduler = 1.0, nextReport = 5.0
        var played = Set<Int>()
        var revokedAt: Double?
        while !Task.isCancelled {
            let t = Date().timeIntervalSince(start)
            if t >= duration { break }
            // Ordinary traffic through the gateway.
            let r = Double.random(in: 0..<1)
            if r < 0.6 {
                let user = Int.random(in: 0..<Estate.users.count)
                let (method, path): (HTTPMethod, String) = switch Double.random(in: 0..<1) {
                case ..<0.5: (.GET, "/shop/products/\(Int.random(in: 1...400))")
                case ..<0.75: (.POST, "/shop/checkout")
                default: (.GET, "/shop/orders/\(Int.random(in: 1000...9999))")
                }
                send(edge, gateway, method, path, from: "127.0.0.\(10 + user)", headers: [("authorization", "Bearer \(tokens[user])")], label: .normal)
            } else {
                send(edge, gateway, .GET, "/inventory/items/\(Int.random(in: 1...400))", from: "127.0.0.20",
                     headers: [("apikey", estate.apiKey)], label: .normal)
            }
            if t >= nextPartner {
                nextPartner += 1.5
                // No call within 2 s of the expiry, where the gateway's clock might judge it either way.
                let label: Label = Date() > partnerExpiry.addingTimeInterval(2) ? .incident(3) : .normal
                if Date() < partnerExpiry.addingTimeInterval(-2) || Date() > partnerExpiry.addingTimeInterval(2) {
                    send(partner, gateway, .POST, "/partner/orders", from: "127.0.0.30", headers: [("content-type", "application/json")],
                         body: "{\"sku\":\"A-\(Int.random(in: 1...99))\"}", label: label)
                }
            }
            if t >= nextScheduler {
                // The scheduler's jobs; once its certificate is revoked it keeps running them, more often.
                nextScheduler += revokedAt == nil ? 2 : 0.5
                let label: Label = revokedAt == nil ? .normal : .incident(5)
                control("scheduler", to: "orders", .POST, "/orders/reconcile", label: label)
                control("scheduler", to: "inventory", .POST, "/inventory/restock", label: label)
            }
            for (i, at) in [0.25, 0.35, 0.45, 0.6, 0.7].enumerated() where t >= at * duration && !played.contains(i) {
                played.insert(i)
                switch i {
                case 0:
                    progress("incident: scheduler writes to the ledger, which a dry-run policy would deny")
                    for _ in 0..<3 { control("scheduler", to: "ledger", .POST, "/ledger/entries/close", label: .incident(0)) }
                case 1:
                    progress("incident: compromised inventory workload calls payments directly")
                    for _ in 0..<3 { control("inventory", to: "payments", .POST, "/pay/charge", label: .incident(1)) }
                case 2:
                    progress("incident: a legacy job reads the ledger in plaintext (PERMISSIVE)")
                    let ledger = try HTTPSClient.Endpoint(url: (estate.inbound["ledger"] ?? "").replacingOccurrences(of: "https://", with: "http://"))
                    for _ in 0..<3 { send(edge, ledger, .GET, "/ledger/report", from: "127.0.0.40", headers: [("host", "ledger")], label: .incident(2)) }
                case 3:
                    progress("incident: the integration's API key is used from a new address for routes it never used")
                    for n in 0..<3 {
                        send(edge, gateway, .GET, "/shop/orders/\(7000 + n)/export", from: "127.0.0.66",
                             headers: [("apikey", estate.apiKey), ("user-agent", "python-requests/2.32.3")], label: .incident(4))
                    }
                default:
                    progress("incident: the CA revokes the scheduler's certificate (keyCompromise); the scheduler keeps calling")
                    let out = try estate.run(["ca", "revoke", "--dir", estate.path("ca"), "--spiffe-id", DemoTopology.spiffeID("scheduler"),
                                              "--reason", "keyCompromise"])
                    incidents[5].serial = Self.serial(in: out)
                    lock.withLock { result.incidents[5].serial = incidents[5].serial }
                    revokedAt = t
                }
            }
            if t >= nextReport {
                nextReport += 5
                let snapshot = lock.withLock { result }
                let classes = snapshot.byStatusClass.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                progress("\(Int(t)) s: \(snapshot.requests) requests (\(classes))")
                if let exited = estate.firstExited() { throw DemoError("\(exited) stopped unexpectedly; see its log in \(estate.directory)") }
            }
            try? await Task.sleep(for: .milliseconds(Int(1000 / rate)))
        }
        if Date() < partnerExpiry && !Task.isCancelled { progress("note: the run ended before the partner's certificate expired") }
        while lock.withLock({ inFlight }) > 0 { try? await Task.sleep(for: .milliseconds(50)) }
        return lock.withLock { result }
    }

    /// A gateway client trusting the estate's CA, presenting the certificate in `directory` when given.
    func client(certificate directory: String?) throws -> HTTPSClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(estate.path("ca/bundle.pem")))
        if let directory {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(directory + "/svid.pem").map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: directory + "/svid.key", format: .pem))
        }
        let context = try NIOSSLContext(configuration: tls)
        return HTTPSClient(group: group, timeout: .seconds(10)) { context }
    }

    func send(
        _ client: HTTPSClient, _ endpoint: HTTPSClient.Endpoint, _ method: HTTPMethod, _ path: String, from address: String,
        headers: [(String, String)], body: String = "", label: Label
    ) {
        let traceID = SampleService.randomHex(16)
        let traceparent = "00-\(traceID)-\(SampleService.randomHex(8))-01"
        record(traceID, label)
        lock.withLock { inFlight += 1 }
        Task {
            let status = (try? await client.request(
                method, endpoint, path: path, headers: headers + [("traceparent", traceparent)], body: Array(body.utf8), localAddress: address))?.status ?? 0
            self.count(status)
        }
    }

    /// Makes `service` call `target` on its own, in a new trace (its control endpoint).
    func control(_ service: String, to target: String, _ method: HTTPMethod, _ path: String, label: Label) {
        guard let port = estate.appPorts[service], let endpoint = try? HTTPSClient.Endpoint(url: "http://127.0.0.1:\(port)") else { return }
        let traceID = SampleService.randomHex(16)
        record(traceID, label)
        let headers = [
            ("x-demo-control", estate.controlToken), ("x-demo-service", target), ("x-demo-method", method.rawValue),
            ("x-demo-path", path), ("x-demo-trace-id", traceID),
        ]
        lock.withLock { inFlight += 1 }
        Task {
            let status = (try? await self.plain.request(.POST, endpoint, path: "/_demo/call", headers: headers))?.status ?? 0
            self.count(status)
        }
    }

    private func record(_ traceID: String, _ label: Label) {
        lock.withLock {
            switch label {
            case .normal: result.normalTraceIDs.append(traceID)
            case .incident(let i): result.incidents[i].traceIDs.append(traceID)
            }
        }
    }

    private func count(_ status: Int) {
        let key = status == 0 ? "failed" : "\(status / 100)xx"
        lock.withLock {
            inFlight -= 1
            result.requests += 1
            result.byStatusClass[key, default: 0] += 1
        }
    }

    /// The `valid until` time in `trail ca issue`'s answer.
    static func validUntil(in output: String) -> Date? {
        guard let range = output.range(of: "valid until ") else { return nil }
        let stamp = output[range.upperBound...].prefix { $0 != "," && $0 != " " && $0 != "\n" }
        return ISO8601DateFormatter().date(from: String(stamp))
    }

    /// The serial in `trail ca issue`/`revoke` output ("... serial 1a2b ...").
    static func serial(in output: String) -> String? {
        let words = output.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" })
        guard let i = words.firstIndex(of: "serial"), i + 1 < words.count else { return nil }
        return CertificateSerial.normalize(String(words[i + 1]))
    }
}
