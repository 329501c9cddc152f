import Foundation
import GRDB
import Testing
import TrailCore
import TrailServer
import TrailFormats
import TrailStore

@testable import TrailIngest

enum IngestFixtures {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            url = url.deletingLastPathComponent()
        }
        return url.appendingPathComponent("fixtures")
    }()

    static func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: root.appendingPathComponent(path))) }

    static func service(started: Bool = true) throws -> (IngestService, TrailStore) {
        let store = try TrailStore(path: ":memory:")
        let pipeline = IngestPipeline(store: store)
        if started { pipeline.start() }
        return (IngestService(pipeline: pipeline, metrics: IngestMetrics()), store)
    }

    static func post(_ path: String, _ body: [UInt8], contentType: String? = nil, query: [String: String] = [:]) -> ServerRequest {
        ServerRequest(
            method: "POST", path: path, query: query, headers: contentType.map { [("content-type", $0)] } ?? [],
            body: body, sender: SenderIdentity(spiffeID: "spiffe://shop.example/ns/obs/sa/collector", address: "127.0.0.1:5555"))
    }

    static func count(_ store: TrailStore, _ sql: String) throws -> Int {
        try store.read { db in try Int.fetchOne(db, sql: sql) ?? -1 }
    }
}

@Suite("Ingest service")
struct IngestServiceTests {
    @Test func otlpProtobufIsStoredBeforeTheAnswerAndAnsweredInProtobuf() async throws {
        let (service, store) = try IngestFixtures.service()
        let r = await service.handle(IngestFixtures.post("/v1/traces", try IngestFixtures.bytes("otlp/sdk-export.binpb"), contentType: "application/x-protobuf"))
        #expect(r.status == 200)
        #expect(r.headers.contains { $0.name == "content-type" && $0.value == "application/x-protobuf" })
        #expect(try IngestFixtures.count(store, "SELECT count(*) FROM observation") == 6)
        #expect(try IngestFixtures.count(store, "SELECT count(*) FROM raw_record WHERE source = 'serve:spiffe://shop.example/ns/obs/sa/collector'") == 1)
        service.pipeline.shutdown()
    }

    @Test func otlpJSONGetsAJSONAnswerAndBadSpansArePartialRejections() async throws {
        let (service, store) = try IngestFixtures.service()
        let r = await service.handle(IngestFixtures.post("/v1/traces", try IngestFixtures.bytes("otlp/bad_span_ids.json"), contentType: "application/json; charset=utf-8"))
        #expect(r.status == 200)
        #expect(r.headers.contains { $0.name == "content-type" && $0.value == "application/json" })
        #expect(try IngestFixtures.count(store, "SELECT count(*) FROM reject") == 5)
        #expect(try IngestFixtures.count(store, "SELECT count(*) FROM observation") == 2)
        service.pipeline.shutdown()
    }

    @Test func undecodableBodyIs400AndKeptAsAReject() async throws {
        let (service, store) = try IngestFixtures.service()
        let r = await service.handle(IngestFixtures.post("/v1/traces", try IngestFixtures.bytes("otlp/bad_truncated.binpb"), contentType: "application/x-protobuf"))
        #expect(r.status == 400)
        #expect(try IngestFixtures.count(store, "SELECT count(*) FROM reject") == 1)
        let wrongType = await service.handle(IngestFixtures.post("/v1/traces", [1, 2, 3], contentType: "text/plain"))
        #expect(wrongType.status == 415)
        let empty = await service.handle(IngestFixtures.post("/v1/traces", [], contentType: "application/x-protobuf"))
        #expect(empty.status == 200)
        service.pipeline.shutdown()
    }

    @Test func accessLogsAndIdentityEventsAreDetectedOrNamed() async throws {
        let (service, store) = try IngestFixtures.service()
        let kong = await service.handle(IngestFixtures.post("/v1/access-logs", try IngestFixtures.bytes("scenarios/shop/kong-batch.json")))
        #expect(kong.status == 200)
        let reply = try JSONParser.parse(kong.body)
        #expect(reply["format"]?.string == "kong")
        #expect(reply["stored"]?.int == 1)
        let text = await service.handle(IngestFixtures.post(
            "/v1/access-logs", try IngestFixtures.bytes("access-logs/istio_text.log"), query: ["format": "envoy-text"]))
        #expect(text.status == 200)
        let wrong = await service.handle(IngestFixtures.post("/v1/access-logs", Array("{}".utf8), query: ["format": "pem"]))
        #expect(wrong.status == 400)
        let pem = await service.handle(IngestFixtures.post("/v1/identity-events", try IngestFixtures.bytes("identity/svids.pem")))
        #expect(pem.status == 200)
        let crl = await service.handle(IngestFixtures.post("/v1/identity-events", try IngestFixtures.bytes("identity/crl.der")))
        #expect(crl.status == 200)
        #expect(try IngestFixtures.count(store, "SELECT count(*) FROM identity_event") == 10)
        let allBad = await service.handle(IngestFixtures.post("/v1/access-logs", Array("{\"start_time\":\"x\"}\n".utf8), query: ["format": "envoy-json"]))
        #expect(allBad.status == 400)
        service.pipeline.shutdown()
    }

    @Test func sameResultsAsFileIngest() async throws {
        let (service, served) = try IngestFixtures.service()
        let files = ["identity/svids.pem", "identity/crl.pem", "scenarios/shop/kong.ndjson", "scenarios/shop/kong-batch.json",
                     "scenarios/shop/istio-proxy.ndjson", "scenarios/shop/istio-proxy.log"]
        let endpoints = ["/v1/identity-events", "/v1/identity-events", "/v1/access-logs", "/v1/access-logs", "/v1/access-logs", "/v1/access-logs"]
        for (file, endpoint) in zip(files, endpoints) {
            _ = await service.handle(IngestFixtures.post(endpoint, try IngestFixtures.bytes(file)))
        }
        // OTLP/JSON one request per line, as a Collector would post them.
        for line in try IngestFixtures.bytes("scenarios/shop/otlp-traces.json").split(separator: 0x0A) {
            _ = await service.handle(IngestFixtures.post("/v1/traces", Array(line), contentType: "application/json"))
        }
        service.pipeline.shutdown()
        let fromFiles = try TrailStore(path: ":memory:")
        var dirty = DirtySet()
        for file in files + ["scenarios/shop/otlp-traces.json"] {
            let input = try IngestFixtures.bytes(file)
            let format = try #require(FormatRegistry.detect(input))
            let (_, d) = try fromFiles.ingest(FormatRegistry.parse(input, format: format), source: file)
            dirty.formUnion(d)
        }
        try fromFiles.correlate(dirty)
        let query = "SELECT trace_id || idx || caller || callee || cert_state || chain_path FROM hop ORDER BY 1"
        let a = try served.read { db in try String.fetchAll(db, sql: query) }
        let b = try fromFiles.read { db in try String.fetchAll(db, sql: query) }
        #expect(a == b)
        #expect(a.count >= 20)
    }

    @Test func notRunningWriterMeansNotReadyAndRetryLater() async throws {
        let (service, _) = try IngestFixtures.service(started: false)
        let ready = await service.handle(ServerRequest(method: "GET", path: "/readyz", sender: SenderIdentity(address: "x")))
        #expect(ready.status == 503)
        let r = await service.handle(IngestFixtures.post("/v1/traces", try IngestFixtures.bytes("otlp/sdk-export.binpb"), contentType: "application/x-protobuf"))
        #expect(r.status == 503)
        #expect(r.headers.contains { $0.name == "retry-after" })
        let health = await service.handle(ServerRequest(method: "GET", path: "/healthz", sender: SenderIdentity(address: "x")))
        #expect(health.status == 200)
        let wrongMethod = await service.handle(ServerRequest(method: "GET", path: "/v1/traces", sender: SenderIdentity(address: "x")))
        #expect(wrongMethod.status == 405)
        let missing = await service.handle(ServerRequest(method: "GET", path: "/nope", sender: SenderIdentity(address: "x")))
        #expect(missing.status == 404)
    }

    /// What a killed writer stored but never correlated is correlated when the next pipeline starts, and it says so.
    @Test func aStartCorrelatesWhatTheLastRunLeftUncorrelated() throws {
        let store = try TrailStore(path: ":memory:")
        let input = try IngestFixtures.bytes("scenarios/shop/istio-proxy.ndjson")
        _ = try store.ingest(FormatRegistry.parse(input, format: .envoyJSON), source: "before-the-crash")
        let left = try store.uncorrelatedChains()
        #expect(left.count >= 3)
        let lines = LockedLines()
        let pipeline = IngestPipeline(store: store, log: { lines.append($0) })
        pipeline.start()
        pipeline.shutdown()
        #expect(try store.uncorrelatedChains().isEmpty)
        #expect(try IngestFixtures.count(store, "SELECT count(*) FROM chain") == left.count)
        #expect(lines.all == ["trail serve: correlating \(left.count) traces stored but not correlated before the last stop"])
    }

    final class LockedLines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ line: String) { lock.withLock { lines.append(line) } }
        var all: [String] { lock.withLock { lines } }
    }

    @Test func fullQueueAnswers429WithRetryAfter() async throws {
        let store = try TrailStore(path: ":memory:")
        var config = IngestPipeline.Configuration()
        config.maxQueuedRecords = 1
        let pipeline = IngestPipeline(store: store, configuration: config)
        pipeline.start()
        let service = IngestService(pipeline: pipeline, metrics: IngestMetrics())
        let body = try IngestFixtures.bytes("scenarios/shop/istio-proxy.ndjson")
        // Many concurrent submissions against a one-record queue: some must be refused, none lost silently.
        let statuses = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<20 {
                group.addTask { await service.handle(IngestFixtures.post("/v1/access-logs", body)).status }
            }
            var out: [Int] = []
            for await s in group { out.append(s) }
            return out
        }
        pipeline.shutdown()
        #expect(statuses.allSatisfy { $0 == 200 || $0 == 429 })
        #expect(statuses.contains(200))
    }
}
