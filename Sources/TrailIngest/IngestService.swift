import Foundation
import TrailCore
import TrailFormats
import TrailServer
import TrailStore

/// The routes of `trail serve`: OTLP/HTTP traces and logs, gateway access logs, identity events, health,
/// readiness and metrics. Parsing happens on the request's task; storing goes through the ``IngestPipeline``,
/// and a sender hears 200 only once its records are durable.
public final class IngestService: ServerRequestHandler, @unchecked Sendable {
    public let pipeline: IngestPipeline
    public let metrics: IngestMetrics
    public let options: ParseOptions
    /// Most records one request may carry (413 beyond).
    public var maxRecordsPerRequest: Int

    public init(pipeline: IngestPipeline, metrics: IngestMetrics, options: ParseOptions = .init(), maxRecordsPerRequest: Int = 100_000) {
        self.pipeline = pipeline
        self.metrics = metrics
        self.options = options
        self.maxRecordsPerRequest = maxRecordsPerRequest
    }

    public func handle(_ request: ServerRequest) async -> ServerResponse {
        let response = await route(request)
        metrics.countRequest(endpoint: Self.endpointLabel(request.path), status: response.status)
        return response
    }

    static func endpointLabel(_ path: String) -> String {
        ["/v1/traces", "/v1/logs", "/v1/access-logs", "/v1/identity-events", "/healthz", "/readyz", "/metrics"]
            .contains(path) ? path : "other"
    }

    private func route(_ request: ServerRequest) async -> ServerResponse {
        switch (request.method, request.path) {
        case ("GET", "/healthz"), ("HEAD", "/healthz"):
            return .text(200, "ok")
        case ("GET", "/readyz"), ("HEAD", "/readyz"):
            return pipeline.isRunning ? .text(200, "ready") : .text(503, "not ready: the store writer is not running")
        case ("GET", "/metrics"):
            metrics.setQueueDepth(pipeline.queueDepth)
            metrics.setUncorrelated(pipeline.uncorrelatedTraces)
            metrics.setStoreSize(pipeline.store.sizeOnDisk())
            return ServerResponse(
                status: 200, headers: [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                body: Array(metrics.render().utf8))
        case ("POST", "/v1/traces"):
            return await otlp(request, signal: .traces)
        case ("POST", "/v1/logs"):
            return await otlp(request, signal: .logs)
        case ("POST", "/v1/access-logs"):
            return await records(request, allowed: [.kong, .envoyJSON, .envoyText])
        case ("POST", "/v1/identity-events"):
            return await records(request, allowed: [.identityNDJSON, .spire, .pem, .crl])
        case (_, "/v1/traces"), (_, "/v1/logs"), (_, "/v1/access-logs"), (_, "/v1/identity-events"):
            return ServerResponse(status: 405, headers: [("allow", "POST"), ("content-type", "text/plain; charset=utf-8")],
                                  body: Array("use POST\n".utf8))
        case (_, "/healthz"), (_, "/readyz"), (_, "/metrics"):
            return ServerResponse(status: 405, headers: [("allow", "GET"), ("content-type", "text/plain; charset=utf-8")],
                                  body: Array("use GET\n".utf8))
        default:
            return .text(404, "no such endpoint: \(request.path)")
        }
    }

    // MARK: OTLP/HTTP

    private func otlp(_ request: ServerRequest, signal: OTLPSignal) async -> ServerResponse {
        let contentType = (request.header("content-type") ?? "").split(separator: ";").first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        } ?? ""
        let json: Bool
        switch contentType {
        case "application/x-protobuf": json = false
        case "application/json": json = true
        default:
            return otlpError(415, "unsupported Content-Type '\(contentType)': send application/x-protobuf or application/json", json: false)
        }
        // An empty request is a success (senders should not send them, receivers may drop them).
        if request.body.isEmpty {
            return otlpSuccess(signal: signal, rejected: 0, message: nil, json: json)
        }
        let results: [ParseResult]
        switch (signal, json) {
        case (.traces, false): results = OTLPProtobufParser().parse(request.body)
        case (.traces, true): results = OTLPJSONParser().parse(request.body)
        case (.logs, false): results = OTLPLogsProtobufParser().parse(request.body)
        case (.logs, true): results = OTLPLogsJSONParser().parse(request.body)
        }
        let format: InputFormat = signal == .logs ? (json ? .otlpLogsJSON : .otlpLogsProto) : (json ? .otlpJSON : .otlpProto)
        let source = "serve:" + request.sender.label
        // A body that does not decode at all is a permanent error: 400 with a google.rpc.Status.
        if !results.contains(where: { $0.record != nil }), let first = results.first?.rejection {
            metrics.countRecords(source: source, format: format.rawValue, received: results.count, stored: 0, rejected: results.count)
            _ = await pipeline.submit(results, source: source)  // keep the rejected body for the analyst
            return otlpError(400, first.reason, json: json)
        }
        let items = results.reduce(0) { $0 + ($1.record?.observations.count ?? 0) + ($1.record?.partialRejections.count ?? 0) }
        if items > maxRecordsPerRequest {
            return otlpError(413, "\(items) items in one request; the limit is \(maxRecordsPerRequest)", json: json)
        }
        switch await pipeline.submit(results, source: source) {
        case .stored(let counts):
            metrics.countRecords(source: source, format: format.rawValue, received: counts.records, stored: counts.stored + counts.duplicates,
                                 rejected: counts.rejected)
            let rejections = results.flatMap { $0.record?.partialRejections ?? [] }
            let message = rejections.isEmpty ? nil
                : "\(rejections.count) rejected: " + rejections.prefix(3).map { "\($0.location.detail ?? "") \($0.reason)" }.joined(separator: "; ")
            return otlpSuccess(signal: signal, rejected: Int64(rejections.count), message: message, json: json)
        case .overloaded(let seconds):
            var r = otlpError(503, "the ingest queue is full; retry later", json: json)
            if seconds <= 1 { r.status = 429 }
            r.headers.append(("retry-after", String(seconds)))
            return r
        case .failed(let reason):
            var r = otlpError(503, reason, json: json)
            r.headers.append(("retry-after", "5"))
            return r
        }
    }

    private func otlpSuccess(signal: OTLPSignal, rejected: Int64, message: String?, json: Bool) -> ServerResponse {
        ServerResponse(
            status: 200, headers: [("content-type", json ? "application/json" : "application/x-protobuf")],
            body: OTLPResponse.success(signal: signal, rejected: rejected, message: message, json: json))
    }

    private func otlpError(_ status: Int, _ message: String, json: Bool) -> ServerResponse {
        ServerResponse(
            status: status, headers: [("content-type", json ? "application/json" : "application/x-protobuf")],
            body: OTLPResponse.status(httpStatus: status, message: message, json: json))
    }

    // MARK: Access logs and identity events

    private func records(_ request: ServerRequest, allowed: [InputFormat]) async -> ServerResponse {
        let format: InputFormat
        if let named = request.query["format"] {
            guard let f = InputFormat(rawValue: named), allowed.contains(f) else {
                return jsonReply(400, error: "format '\(named)' is not accepted here; use one of \(allowed.map(\.rawValue).joined(separator: ", "))")
            }
            format = f
        } else {
            guard let detected = FormatRegistry.detect(request.body), allowed.contains(detected) else {
                return jsonReply(400, error: "cannot detect the format of the body; name it with ?format= (\(allowed.map(\.rawValue).joined(separator: ", ")))")
            }
            format = detected
        }
        var opts = options
        if let envoyFormat = request.query["envoy_format"] { opts.envoyFormat = envoyFormat }
        let results = FormatRegistry.parse(request.body, format: format, options: opts)
        if results.count > maxRecordsPerRequest {
            return jsonReply(413, error: "\(results.count) records in one request; the limit is \(maxRecordsPerRequest)")
        }
        let source = "serve:" + request.sender.label
        let rejections = results.compactMap(\.rejection) + results.flatMap { $0.record?.partialRejections ?? [] }
        switch await pipeline.submit(results, source: source) {
        case .stored(let counts):
            metrics.countRecords(source: source, format: format.rawValue, received: counts.records,
                                 stored: counts.stored + counts.duplicates, rejected: counts.rejected)
            let body = JSONValue.object([
                ("format", .string(format.rawValue)),
                ("records", .int(Int64(counts.records))),
                ("stored", .int(Int64(counts.stored))),
                ("duplicates", .int(Int64(counts.duplicates))),
                ("rejected", .int(Int64(counts.rejected))),
                ("rejections", .array(rejections.prefix(20).map { r in
                    .object([("line", .int(Int64(r.location.line))), ("detail", .from(r.location.detail)),
                             ("reason", .string(r.reason))])
                })),
            ])
            let allRejected = counts.records > 0 && results.allSatisfy { $0.record == nil }
            return ServerResponse(status: allRejected ? 400 : 200, headers: [("content-type", "application/json")],
                                  body: Array(body.serialized().utf8))
        case .overloaded(let seconds):
            var r = jsonReply(seconds <= 1 ? 429 : 503, error: "the ingest queue is full; retry later")
            r.headers.append(("retry-after", String(seconds)))
            return r
        case .failed(let reason):
            var r = jsonReply(503, error: reason)
            r.headers.append(("retry-after", "5"))
            return r
        }
    }

    private func jsonReply(_ status: Int, error: String) -> ServerResponse {
        ServerResponse(status: status, headers: [("content-type", "application/json")],
                       body: Array(JSONValue.object([("error", .string(error))]).serialized().utf8))
    }
}
