import Foundation
import NIOCore
import NIOSSL
import TrailCore

/// Where a sidecar's records go: the local access-log file (one Envoy JSON line each) and, when `telemetry.ingest`
/// is set, `trail serve` (`/v1/access-logs?format=envoy-json` and `/v1/traces`) through disk-buffered outboxes.
/// Senders authenticate with the workload's SVID (mTLS), or a bearer token from `telemetry.token_file`.
final class TelemetrySink: Sendable {
    let accessOutbox: Outbox?
    let spanOutbox: Outbox?
    let metrics = SidecarMetrics()
    private let file: LineFile?

    init(configuration: SidecarConfiguration, identity: WorkloadIdentity, group: any EventLoopGroup, log: @escaping @Sendable (String) -> Void) throws {
        file = try configuration.accessLogPath.map { try LineFile(path: $0, setting: "\(configuration.file): telemetry.access_log") }
        guard let ingest = configuration.ingestURL else {
            accessOutbox = nil
            spanOutbox = nil
            return
        }
        let delivery = try TrailServeDelivery(
            url: ingest, tokenFile: configuration.ingestTokenFile, rootsPath: configuration.ingestCA ?? configuration.bundlePath,
            identity: identity, group: group)
        let flush = Duration.milliseconds(configuration.flushMilliseconds)
        let perOutbox = configuration.bufferMaxBytes / 2
        accessOutbox = try delivery.outbox(
            directory: (configuration.bufferDirectory as NSString).appendingPathComponent("access-logs"),
            path: "/v1/access-logs?format=envoy-json", contentType: "application/x-ndjson", maxBytes: perOutbox,
            flushInterval: flush, log: log)
        let service = configuration.service
        let spiffeID = configuration.spiffeID
        spanOutbox = try delivery.outbox(
            directory: (configuration.bufferDirectory as NSString).appendingPathComponent("spans"), path: "/v1/traces",
            contentType: "application/json", maxBytes: perOutbox, flushInterval: flush, log: log
        ) { lines in MeshAccessRecord.otlpRequest(spans: lines, service: service, spiffeID: spiffeID) }
    }

    func start() {
        accessOutbox?.start()
        spanOutbox?.start()
    }

    func stop() async {
        await accessOutbox?.stop()
        await spanOutbox?.stop()
        file?.close()
    }

    func record(_ record: MeshAccessRecord) {
        metrics.count(record)
        let line = record.envoyJSON()
        file?.append(line)
        accessOutbox?.append(line)
        if let spanOutbox, let span = record.otlpSpan() { spanOutbox.append(span) }
    }
}
