import Foundation
import NIOCore
import NIOSSL
import Synchronization

/// Where a sidecar's records go: the local access-log file (one Envoy JSON line each) and, when `telemetry.ingest`
/// is set, `trail serve` (`/v1/access-logs?format=envoy-json` and `/v1/traces`) through disk-buffered outboxes.
/// Senders authenticate with the workload's SVID (mTLS), or a bearer token from `telemetry.token_file`.
final class TelemetrySink: Sendable {
    let accessOutbox: Outbox?
    let spanOutbox: Outbox?
    let metrics = SidecarMetrics()
    private let file: Mutex<Int32>

    init(configuration: SidecarConfiguration, identity: WorkloadIdentity, group: any EventLoopGroup, log: @escaping @Sendable (String) -> Void) throws {
        var fd: Int32 = -1
        if let path = configuration.accessLogPath {
            fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
            guard fd >= 0 else { throw MeshError("\(configuration.file): telemetry.access_log: cannot open \(path): \(String(cString: strerror(errno)))") }
        }
        file = Mutex(fd)
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
        file.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    func record(_ record: MeshAccessRecord) {
        metrics.count(record)
        let line = record.envoyJSON()
        file.withLock { fd in
            guard fd >= 0 else { return }
            let bytes = Array((line + "\n").utf8)
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
        accessOutbox?.append(line)
        if let spanOutbox, let span = record.otlpSpan() { spanOutbox.append(span) }
    }
}
