import Foundation
import TrailCore
import TrailFormats
import TrailGateway
import TrailMesh
import TrailStore

/// One fuzz target: a name and the entry point that outside input of that kind reaches in Trail.
/// Every target must return normally for every input: parsers report bad input as values or thrown errors.
struct FuzzTarget: Sendable {
    var name: String
    /// What input it reads and where that input comes from (`TrailFuzz --list`).
    var summary: String
    var run: @Sendable ([UInt8]) -> Void
}

enum FuzzTargets {
    static let all: [FuzzTarget] = [
        format("otlp-protobuf", .otlpProto, "OTLP/HTTP protobuf ExportTraceServiceRequest (trail serve /v1/traces)"),
        format("otlp-json", .otlpJSON, "OTLP/HTTP JSON traces and collector file exports"),
        format("otlp-logs", .otlpLogsProto, "OTLP/HTTP protobuf ExportLogsServiceRequest (trail serve /v1/logs)"),
        format("otlp-logs-json", .otlpLogsJSON, "OTLP/HTTP JSON logs"),
        format("kong", .kong, "Kong http-log / file-log records"),
        format("envoy-json", .envoyJSON, "Envoy / Istio JSON access logs"),
        FuzzTarget(name: "envoy-text", summary: "Envoy text access log; the first line is the format string (?envoy_format=)") { bytes in
            // Split at the first newline: format string, then log lines. The format string is outside input too
            // (`trail serve` takes it from the query string).
            if let nl = bytes.firstIndex(of: 0x0A) {
                let format = String(decoding: bytes[..<nl], as: UTF8.self)
                let lines = Array(bytes[(nl + 1)...])
                consume(FormatRegistry.parse(lines, format: .envoyText, options: ParseOptions(envoyFormat: format)))
            }
            // The default (Istio) format on the whole input as well.
            consume(FormatRegistry.parse(bytes, format: .envoyText))
        },
        format("spire", .spire, "SPIRE server/agent logs (text and JSON)"),
        format("pem-certificate", .pem, "PEM certificates (SVIDs, bundles)"),
        format("crl", .crl, "CRLs, PEM or DER"),
        format("identity-ndjson", .identityNDJSON, "identity-event NDJSON"),
        FuzzTarget(name: "detect", summary: "format detection followed by the detected parser (trail ingest, /v1/ingest)") { bytes in
            guard let format = FormatRegistry.detect(bytes) else { return }
            _ = FormatRegistry.isLineOriented(format, bytes)
            consume(FormatRegistry.parse(bytes, format: format))
        },
        FuzzTarget(name: "xfcc", summary: "x-forwarded-client-cert header values") { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            if case .success(let elements) = XFCC.parse(text) {
                // What we format must parse again to the same elements. An element of unknown keys only is kept
                // (it is a hop, and `.last` must stay the last hop) but has nothing to write.
                let known = elements.filter { $0 != XFCCElement() }
                let again = XFCC.parse(XFCC.format(known))
                guard case .success(let reparsed) = again, reparsed == known else {
                    fatalError("XFCC round trip changed \(elements) into \(again)")
                }
            }
            _ = XFCC.percentDecode(text)
        },
        FuzzTarget(name: "traceparent", summary: "W3C traceparent header") { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            if case .success(let tp) = W3CTraceParent.parse(text) {
                // Always written as version 00 (a higher version's extra fields are dropped), ids and flags kept.
                guard case .success(let again) = W3CTraceParent.parse(tp.format()), again.version == 0,
                    again.traceID == tp.traceID, again.parentID == tp.parentID, again.flags == tp.flags
                else { fatalError("traceparent round trip changed \(tp)") }
            }
            _ = TrailGateway.TraceContext.w3c(text)
        },
        FuzzTarget(name: "tracestate", summary: "W3C tracestate header (one value, or one field a line)") { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            _ = TraceState.parse(text)
            _ = TraceState.parse(text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
        },
        FuzzTarget(name: "b3", summary: "B3 single and multi headers, uber-trace-id, Datadog ids; multi: one header a line") { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            _ = B3Context.parseSingle(text)
            _ = UberTraceID.parse(text)
            _ = TraceIDs.datadogTraceID(decimal: text)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            func line(_ i: Int) -> String? { i < lines.count ? lines[i] : nil }
            _ = B3Context.parseMulti(traceID: line(0), spanID: line(1), parentSpanID: line(2), sampled: line(3), flags: line(4))
            // The gateway's extractor over the same values as headers.
            let names = ["traceparent", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags"]
            let headers = zip(names, lines).map { (name: $0.0, value: $0.1) }
            _ = TrailGateway.TraceContext.extract(headers: headers)
        },
        FuzzTarget(name: "sidecar-yaml", summary: "trail sidecar --config YAML") { bytes in
            _ = try? SidecarConfiguration.load(text: String(decoding: bytes, as: UTF8.self), file: scratchConfigPath("sidecar.yaml"))
        },
        FuzzTarget(name: "policy-yaml", summary: "AuthorizationPolicy YAML documents") { bytes in
            if let policies = try? AuthorizationPolicy.load(text: String(decoding: bytes, as: UTF8.self), file: "policy.yaml") {
                _ = PolicyEngine(policies: policies).decide(
                    AuthorizationRequest(principal: "spiffe://shop.example/ns/shop/sa/web", method: "GET", path: "/api/orders"))
            }
        },
        FuzzTarget(name: "gateway-yaml", summary: "trail gateway --config YAML") { bytes in
            _ = try? GatewayConfiguration.parse(yaml: String(decoding: bytes, as: UTF8.self), file: scratchConfigPath("gateway.yaml"))
        },
        FuzzTarget(name: "query-header", summary: "named query file (queries/NAME.sql) header") { bytes in
            _ = try? NamedQuery.parse(name: "fuzz", file: "fuzz.sql", text: String(decoding: bytes, as: UTF8.self))
        },
    ]

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    private static func format(_ name: String, _ format: InputFormat, _ summary: String) -> FuzzTarget {
        FuzzTarget(name: name, summary: summary) { bytes in consume(FormatRegistry.parse(bytes, format: format)) }
    }

    /// Touches what the parsers produced, so lazily built values are built too.
    static func consume(_ results: [ParseResult]) {
        var n = 0
        for r in results {
            switch r {
            case .record(let record): n &+= record.observations.count &+ record.identityEvents.count &+ record.partialRejections.count
            case .rejected(let rejection): n &+= rejection.reason.utf8.count
            }
        }
        _ = n
    }

    /// Config files name other files relative to their own folder; a folder that does not exist keeps the fuzzer
    /// from reading anything real through a relative path.
    static func scratchConfigPath(_ name: String) -> String { "/nonexistent-trail-fuzz/\(name)" }
}
