import Foundation
import TrailMesh

/// `trail gateway`: the edge listener (HTTP or TLS, optional partner client certificates), the gateway policy
/// and its Kong log, and upstream connections into the mesh with the gateway's SVID.
package final class GatewayServer: Sendable {
    let configuration: GatewayConfiguration
    let file: String
    let host: String
    let port: Int
    let proxy: EdgeProxyServer
    let sink: KongLogSink
    let spans: GatewaySpanSink?

    /// - Parameter listen: overrides the file's `listen`.
    package init(
        configuration: GatewayConfiguration, file: String, listen: (host: String, port: Int)?, threads: Int,
        log: @escaping @Sendable (String) -> Void
    ) throws {
        self.configuration = configuration
        self.file = file
        let server = configuration.server
        host = listen?.host ?? server.listenHost
        port = listen?.port ?? server.listenPort
        proxy = try EdgeProxyServer(
            file: file, threads: threads,
            mesh: server.mesh.map {
                EdgeMeshIdentity(spiffeID: $0.spiffeID, bundlePath: $0.trustBundle, certificatePath: $0.certificate, keyPath: $0.key)
            }, log: log)
        var outbox: Outbox?
        if let ingest = server.telemetry.ingest, let directory = server.telemetry.bufferDirectory {
            outbox = try proxy.outbox(
                url: ingest, path: "/v1/access-logs?format=kong", contentType: "application/x-ndjson",
                tokenFile: server.telemetry.ingestTokenFile, caPath: server.telemetry.ingestCA, directory: directory,
                maxBytes: server.telemetry.bufferMaxBytes / 2, log: log)
        }
        sink = try KongLogSink(path: server.telemetry.accessLog, outbox: outbox, file: file)
        // Spans: to the spans file and, with ingest, to /v1/traces (buffered in buffer_dir/spans).
        var spanOutbox: Outbox?
        let serviceName = "trail-gateway"
        let spiffeID = server.mesh?.spiffeID
        if let ingest = server.telemetry.ingest, let directory = server.telemetry.bufferDirectory {
            spanOutbox = try proxy.outbox(
                url: ingest, path: "/v1/traces", contentType: "application/json", tokenFile: server.telemetry.ingestTokenFile,
                caPath: server.telemetry.ingestCA, directory: (directory as NSString).appendingPathComponent("spans"),
                maxBytes: server.telemetry.bufferMaxBytes / 2, log: log
            ) { lines in Array(GatewaySpan.exportRequest(spans: lines, serviceName: serviceName, spiffeID: spiffeID).utf8) }
        }
        if spanOutbox != nil || server.telemetry.spansFile != nil {
            spans = try GatewaySpanSink(
                path: server.telemetry.spansFile, outbox: spanOutbox, serviceName: serviceName, spiffeID: spiffeID, file: file)
        } else {
            spans = nil
        }
    }

    /// Loads the SVID, binds, starts delivery; returns the URL it listens on.
    package func start() async throws -> String {
        let server = configuration.server
        let policy = GatewayPolicy(configuration: configuration, sink: sink, spans: spans, scheme: server.tls == nil ? "http" : "https", listenPort: port)
        let url = try await proxy.start(
            host: host, port: port,
            tls: server.tls.map { EdgeTLSFiles(certificatePath: $0.certificate, keyPath: $0.key, clientCAPath: $0.clientCA) },
            policy: policy, localID: server.mesh?.spiffeID ?? "gateway")
        sink.start()
        spans?.start()
        return url
    }

    package func stop() async {
        await proxy.stop {
            await sink.stop()
            await spans?.stop()
        }
    }
}
