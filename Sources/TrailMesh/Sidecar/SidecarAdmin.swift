import Foundation
import TrailCore
import TrailServer

/// Counters of one sidecar, as Prometheus text: requests by direction and status class, refusals by cause,
/// delivery to `trail serve`, and the SVID's remaining lifetime.
final class SidecarMetrics: Sendable {
    private struct State {
        var requests: [String: Int] = [:]
        var refusals: [String: Int] = [:]
    }

    private let state = Locked(State())

    func count(_ record: MeshAccessRecord) {
        let statusClass = record.status == 0 ? "none" : "\(record.status / 100)xx"
        state.withLock { s in
            s.requests["direction=\"\(record.direction.rawValue)\",code=\"\(statusClass)\"", default: 0] += 1
            if record.refusal != nil {
                s.refusals["direction=\"\(record.direction.rawValue)\",cause=\"\(Self.cause(record))\"", default: 0] += 1
            }
        }
    }

    /// A short, bounded label for why a request was refused.
    static func cause(_ record: MeshAccessRecord) -> String {
        if record.method == "-" { return "handshake" }
        if record.policy == "deny" { return "policy" }
        if record.responseFlags == "NR" { return "no_route" }
        if record.responseCodeDetails == "peer_certificate_rejected" { return "certificate" }
        return "upstream"
    }

    func render(identity: WorkloadIdentity, accessLogs: Outbox.Counters?, spans: Outbox.Counters?) -> String {
        var out = ""
        let (requests, refusals) = state.withLock { ($0.requests, $0.refusals) }
        out += "# HELP trail_sidecar_requests_total Requests seen, refused ones included.\n# TYPE trail_sidecar_requests_total counter\n"
        for (labels, n) in requests.sorted(by: { $0.key < $1.key }) { out += "trail_sidecar_requests_total{\(labels)} \(n)\n" }
        out += "# HELP trail_sidecar_refusals_total Requests and handshakes refused, by cause.\n# TYPE trail_sidecar_refusals_total counter\n"
        for (labels, n) in refusals.sorted(by: { $0.key < $1.key }) { out += "trail_sidecar_refusals_total{\(labels)} \(n)\n" }
        let current = identity.current
        out += "# HELP trail_sidecar_svid_expiry_seconds Seconds until the current SVID expires.\n# TYPE trail_sidecar_svid_expiry_seconds gauge\n"
        out += "trail_sidecar_svid_expiry_seconds \(Int(current.notAfter.timeIntervalSinceNow))\n"
        out += "# HELP trail_sidecar_crl_revoked_certificates Certificates the current CRL revokes.\n# TYPE trail_sidecar_crl_revoked_certificates gauge\n"
        out += "trail_sidecar_crl_revoked_certificates \(current.trust.revokedSerials.count)\n"
        out += "# HELP trail_sidecar_delivered_records_total Records delivered to trail serve, dropped past the spool bound, or refused by it.\n# TYPE trail_sidecar_delivered_records_total counter\n"
        for (stream, counters) in [("access_logs", accessLogs), ("spans", spans)] {
            guard let c = counters else { continue }
            out += "trail_sidecar_delivered_records_total{stream=\"\(stream)\",outcome=\"sent\"} \(c.sent)\n"
            out += "trail_sidecar_delivered_records_total{stream=\"\(stream)\",outcome=\"dropped\"} \(c.dropped)\n"
            out += "trail_sidecar_delivered_records_total{stream=\"\(stream)\",outcome=\"rejected\"} \(c.rejected)\n"
        }
        return out
    }
}

/// The sidecar's admin endpoint (plain HTTP, meant for loopback, as Envoy's admin port): `GET /healthz` (200 while
/// the SVID is valid, 503 after it expired) and `GET /metrics` (Prometheus text).
struct SidecarAdmin: ServerRequestHandler {
    let identity: WorkloadIdentity
    let metrics: SidecarMetrics
    let telemetry: TelemetrySink

    func handle(_ request: ServerRequest) async -> ServerResponse {
        switch (request.method, request.path) {
        case ("GET", "/healthz"):
            let left = identity.current.notAfter.timeIntervalSinceNow
            return left > 0 ? .text(200, "ok: SVID \(identity.current.serial) valid for \(Int(left)) s") : .text(503, "the SVID expired")
        case ("GET", "/metrics"):
            let text = metrics.render(identity: identity, accessLogs: telemetry.accessOutbox?.snapshot, spans: telemetry.spanOutbox?.snapshot)
            return ServerResponse(status: 200, headers: [("content-type", "text/plain; version=0.0.4")], body: Array(text.utf8))
        default:
            return .text(404, "admin endpoints: GET /healthz, GET /metrics")
        }
    }
}
