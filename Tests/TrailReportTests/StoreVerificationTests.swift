import Foundation
import GRDB
import Testing
import TrailCompression
import TrailCore
@testable import TrailReport
import TrailStore

/// `trail verify --db` against a store in which one byte of one raw record was changed after the report was made.
@Suite("verify against the store", .serialized)
struct StoreVerificationTests {
    static let inputs = [
        "fixtures/identity/svids.pem", "fixtures/identity/crl.pem", "fixtures/scenarios/shop/kong.ndjson",
        "fixtures/scenarios/shop/kong-batch.json", "fixtures/scenarios/shop/istio-proxy.ndjson",
        "fixtures/scenarios/shop/istio-proxy.log", "fixtures/scenarios/shop/otlp-traces.json",
    ]

    @Test func aChangedByteInTheStoreIsDetected() throws {
        let dir = TrailBinary.root.appendingPathComponent(".build/trail-report-tests")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let db = dir.appendingPathComponent("tamper.db").path
        for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + s) }
        let ingest = try TrailBinary.run(["ingest", "--db", db, "--allow-entry-point", "spiffe://shop.example/ns/shop/sa/scheduler"] + Self.inputs)
        #expect(ingest.status == 2, "\(ingest.stderr)")

        // Build the report in-process, as the CLI does.
        let report: IncidentReport
        do {
            let store = try TrailStore(path: db, readOnly: true)
            report = try ReportBuilder(store: store).build(ReportRequest(
                scope: .trace("f6dc38fe3cbb05f687b9ceb427a3681d"), window: TimeWindow(), storePath: db))
        }
        let json = dir.appendingPathComponent("tamper.json")
        try Data(JSONReportRenderer().render(report).utf8).write(to: json)
        #expect(try TrailBinary.run(["verify", json.path, "--db", db]).status == 0)

        // Flip one bit of the revoked hop's Envoy record inside its zstd block.
        let target = try #require(report.evidence.records.first { $0.format == "envoy-json" })
        let queue = try DatabaseQueue(path: db)
        try queue.write { d in
            let r = try #require(try Row.fetchOne(d, sql: "SELECT block_id, offset FROM raw_record WHERE id = ?", arguments: [target.id]))
            let blockID: Int64 = r["block_id"], offset: Int = r["offset"]
            let data = try #require(try Data.fetchOne(d, sql: "SELECT data FROM raw_block WHERE id = ?", arguments: [blockID]))
            var block = try Zstd.decompress(Array(data))
            block[offset + 10] ^= 0x01
            try d.execute(sql: "UPDATE raw_block SET data = ? WHERE id = ?", arguments: [Data(Zstd.compress(block)), blockID])
        }
        try queue.close()

        let store = try TrailStore(path: db, readOnly: true)
        let claimed = try ClaimedEvidence.parse(Array(try Data(contentsOf: json)), name: "tamper.json")
        let summary = EvidenceVerifier.verify(claimed) { try store.evidence(id: $0.id)?.bytes }
        #expect(summary.problems.map(\.id) == [target.id])

        let verify = try TrailBinary.run(["verify", json.path, "--db", db])
        #expect(verify.status == 2)
        #expect(verify.stdout.contains("record \(target.id) (\(target.source):\(target.line)) changed"))
        #expect(verify.stderr.contains("1 of \(report.evidence.records.count) records changed or missing"))
        // The report's own copy is still intact, and a new report refuses to rest on the altered record.
        #expect(try TrailBinary.run(["verify", json.path]).status == 0)
        let again = try TrailBinary.run(["report", "--trace", "f6dc38fe3cbb05f687b9ceb427a3681d", "--db", db])
        #expect(again.status == 1 && again.stderr.contains("no longer matches the SHA-256 recorded when it was ingested"))
    }
}
