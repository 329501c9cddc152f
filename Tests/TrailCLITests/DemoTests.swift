import Foundation
import GRDB
import Testing
import TrailCore

/// `trail demo` end to end: the whole estate as real processes, a short run, then the store is checked against what
/// the demo played (its ground truth, which Trail never sees): every incident found as the right finding with the
/// right principal, workload identity and serial; ordinary traffic without findings; gateway chains without gaps;
/// and a summary that matches the store.
@Suite("trail demo end to end", .serialized)
struct DemoTests {
    @Test func everyIncidentIsFoundAndOrdinaryTrafficIsClean() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-demo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let db = dir.appendingPathComponent("demo.db").path
        let truthPath = dir.appendingPathComponent("truth.json").path
        let (status, out, err) = try MeshTests.run(CLI.binary.path, [
            "demo", "--duration", "24", "--rate", "8", "--db", db, "--dir", dir.appendingPathComponent("estate").path,
            "--ground-truth", truthPath,
        ], in: dir)
        #expect(status == 0, "\(out)\n\(err)")
        // Nothing left running: every component was a child of the demo and stopped with it.
        let (_, leftovers, _) = try MeshTests.run("/usr/bin/pgrep", ["-f", dir.path], in: dir)
        #expect(leftovers.isEmpty, "processes left running: \(leftovers)")

        let truth = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: truthPath))))
        let findingsText = try MeshTests.trail(["findings", "--db", db, "--format", "json"], in: dir)
        let findings = try #require(try JSONParser.parse(Array(findingsText.utf8)).array)
        var byTrace: [String: [JSONValue]] = [:]
        for f in findings { byTrace[f["trace_id"]?.string ?? "", default: []].append(f) }

        let incidents = try #require(truth["incidents"]?.array)
        #expect(incidents.count == 6)
        for incident in incidents {
            let name = incident["name"]?.string ?? "?"
            let kind = incident["kind"]?.string ?? "?"
            let traces = incident["trace_ids"]?.array?.compactMap(\.string) ?? []
            #expect(!traces.isEmpty, "\(name): the demo played no request")
            let found = traces.flatMap { byTrace[$0] ?? [] }.filter { $0["kind"]?.string == kind }
            #expect(!found.isEmpty, "\(name): no \(kind) finding on its \(traces.count) traces; findings: \(findingsText.prefix(3000))")
            for f in found {
                if let principal = incident["principal"]?.string { #expect(f["principal"]?.string == principal, "\(name): \(f)") }
                if let identity = incident["identity"]?.string { #expect(f["identity"]?.string == identity, "\(name): \(f)") }
                if let serial = incident["serial"]?.string { #expect(f["serial"]?.string == serial, "\(name): \(f)") }
            }
        }
        let normal = Set(truth["normal_trace_ids"]?.array?.compactMap(\.string) ?? [])
        #expect(normal.count > 100)
        let noisy = findings.filter { normal.contains($0["trace_id"]?.string ?? "") }
        #expect(noisy.isEmpty, "ordinary traffic raised findings: \(noisy.prefix(5))")

        let queue = try DatabaseQueue(path: db)
        let (gatewayChains, gaps, chains) = try queue.read { db in
            (try Int.fetchOne(db, sql: "SELECT count(*) FROM chain WHERE via_gateway = 1") ?? 0,
             try Int.fetchOne(db, sql: "SELECT count(*) FROM chain WHERE via_gateway = 1 AND gap_count > 0") ?? 0,
             try Int.fetchOne(db, sql: "SELECT count(*) FROM chain") ?? 0)
        }
        #expect(gatewayChains > 100)
        #expect(gaps == 0, "gateway chains with gaps")
        // The summary says what the store holds.
        #expect(out.contains("Trail stored \(chains) chains (0 with gaps)"), "\(out)")
        #expect(out.contains("\(findings.count) findings:"), "\(out)")
        try? FileManager.default.removeItem(at: dir)
    }
}
