import Foundation
import GRDB
import Testing
import TrailCore
@testable import TrailStore

enum StoreFixture {
    static let trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    static func t(_ s: Int64) -> Timestamp { Timestamp.utc(year: 2026, month: 5, day: 4, hour: 10).adding(nanoseconds: s * 1_000_000_000) }
    static let web = "spiffe://shop.example/ns/shop/sa/web"
    static let orders = "spiffe://shop.example/ns/shop/sa/orders"

    static func inbound(_ s: Int64, trace: String = trace, serial: String = "1001", line: Int) -> ParseResult {
        let o = Observation(kind: .inbound, format: "envoy-json", traceID: trace, start: t(s), method: "POST", path: "/orders",
                            status: 201, caller: Endpoint(spiffeID: web), callee: Endpoint(spiffeID: orders, service: "orders"),
                            transport: .mtls, callerCertificate: PresentedCertificate(serial: serial, uriSANs: [web]))
        let raw = Array("{\"line\":\(line),\"trace\":\"\(trace)\",\"serial\":\"\(serial)\"}".utf8)
        return .record(ParsedRecord(format: .envoyJSON, location: RecordLocation(line: line), raw: raw, observations: [o]))
    }

    static func issued(serial: String, spiffeID: String = web) -> ParseResult {
        let e = IdentityEvent(kind: .issued, spiffeID: spiffeID, serial: serial, notBefore: t(-3600), notAfter: t(3600),
                              time: t(-3600), format: "identity-ndjson")
        return .record(ParsedRecord(format: .identityNDJSON, location: RecordLocation(line: 1),
                                    raw: Array("{\"event\":\"issued\",\"serial\":\"\(serial)\"}".utf8), identityEvents: [e]))
    }

    static func revoked(serial: String, at s: Int64) -> ParseResult {
        let e = IdentityEvent(kind: .revoked, serial: serial, time: t(s), reason: "keyCompromise", format: "crl")
        return .record(ParsedRecord(format: .crl, location: RecordLocation(line: 1),
                                    raw: Array("revoked \(serial) at \(s)".utf8), identityEvents: [e]))
    }

    static func tempPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("trail-test-\(UUID().uuidString).db").path
    }
}

@Suite("Store")
struct StoreTests {
    @Test func migrationIDsArePinned() throws {
        let store = try TrailStore(path: ":memory:")
        let applied = try store.read { db in try Schema.migrator.appliedIdentifiers(db) }
        #expect(applied == Set(Schema.migrationIDs))
        #expect(Schema.migrationIDs == ["0001_initial", "0002_chain_edge_request"])
    }

    @Test func reingestingTheSameRecordsAddsNothing() throws {
        let store = try TrailStore(path: ":memory:")
        let input = [StoreFixture.inbound(0, line: 1), StoreFixture.inbound(1, line: 2)]
        let (first, _) = try store.ingest(input, source: "a.ndjson")
        #expect(first.stored == 2)
        #expect(first.observations == 2)
        let (second, dirty) = try store.ingest(input, source: "a.ndjson")
        #expect(second.stored == 0)
        #expect(second.duplicates == 2)
        #expect(dirty.traceIDs.isEmpty)
        let count = try store.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM observation") }
        #expect(count == 2)
    }

    @Test func evidenceReturnsTheOriginalBytes() throws {
        let store = try TrailStore(path: ":memory:")
        let input = [StoreFixture.inbound(0, line: 7), StoreFixture.inbound(1, line: 8)]
        _ = try store.ingest(input, source: "b.ndjson")
        for (n, r) in input.enumerated() {
            guard case .record(let rec) = r else { continue }
            let e = try #require(try store.evidence(id: Int64(n + 1)))
            #expect(e.bytes == rec.raw)
            #expect(e.line == rec.location.line)
            #expect(e.source == "b.ndjson")
            #expect(e.sha256 == TrailStore.digest(rec.raw).1)
        }
        #expect(try store.evidence(id: 99) == nil)
    }

    @Test func rejectsKeepSourceLineAndReasonAndTheGoodRecordsBeside() throws {
        let store = try TrailStore(path: ":memory:")
        let bad = Rejection(format: .envoyJSON, location: RecordLocation(line: 2), raw: Array("{oops".utf8), reason: "invalid JSON at byte 1")
        let (counts, _) = try store.ingest([StoreFixture.inbound(0, line: 1), .rejected(bad), StoreFixture.inbound(1, line: 3)], source: "c.ndjson")
        #expect(counts.stored == 2)
        #expect(counts.rejected == 1)
        let rejects = try store.rejects()
        #expect(rejects.count == 1)
        #expect(rejects[0].source == "c.ndjson")
        #expect(rejects[0].line == 2)
        #expect(rejects[0].reason == "invalid JSON at byte 1")
    }

    @Test func lateRevocationRejudgesStoredHops() throws {
        let store = try TrailStore(path: ":memory:")
        let (_, d1) = try store.ingest([StoreFixture.issued(serial: "1001"), StoreFixture.inbound(600, line: 1)], source: "x")
        try store.correlate(d1)
        #expect(try store.chain(traceID: StoreFixture.trace)?.hops.first?.certificateState == .valid)
        // The CRL arrives later: the stored hop must now be judged revoked.
        let (_, d2) = try store.ingest([StoreFixture.revoked(serial: "1001", at: 300)], source: "crl.pem")
        try store.correlate(d2)
        let chain = try #require(try store.chain(traceID: StoreFixture.trace))
        #expect(chain.hops.first?.certificateState == .revoked)
        #expect(chain.findings.map(\.kind) == [.revokedCertificate])
        let findings = try store.findings(kinds: ["revoked-certificate"], window: TimeWindow())
        #expect(findings.count == 1)
        #expect(findings[0].rawIDs == [2])
    }

    @Test func ingestionOrderDoesNotChangeDerivedData() throws {
        let inputs: [[ParseResult]] = [
            [StoreFixture.issued(serial: "1001")],
            [StoreFixture.inbound(600, line: 1)],
            [StoreFixture.revoked(serial: "1001", at: 300)],
            [StoreFixture.inbound(0, trace: "00000000000000000000000000000abc", line: 2)],
        ]
        func snapshot(_ order: [Int]) throws -> [String] {
            let store = try TrailStore(path: ":memory:")
            for i in order {
                let (_, d) = try store.ingest(inputs[i], source: "s")
                try store.correlate(d)
            }
            return try store.read { db in
                try String.fetchAll(db, sql: """
                    SELECT trace_id || '|' || idx || '|' || caller || '|' || callee || '|' || cert_state || '|' || chain_path FROM hop
                    UNION ALL SELECT kind || '|' || trace_id || '|' || detail FROM finding
                    ORDER BY 1
                    """)
            }
        }
        let reference = try snapshot([0, 1, 2, 3])
        #expect(reference.count == 3)
        for order in [[3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]] {
            #expect(try snapshot(order) == reference)
        }
    }

    @Test func storeOnDiskUsesWALAndReopensReadOnly() throws {
        let path = StoreFixture.tempPath()
        defer { for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + s) } }
        let store = try TrailStore(path: path)
        _ = try store.ingest([StoreFixture.inbound(0, line: 1)], source: "x")
        let mode = try store.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        let reader = try TrailStore(path: path, readOnly: true)
        #expect(try reader.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM raw_record") } == 1)
        #expect(throws: StoreError.self) { try TrailStore(path: path + ".missing", readOnly: true) }
    }
}

@Suite("Named queries")
struct NamedQueryTests {
    @Test func headerParsesDescriptionAndTypedParameters() throws {
        let q = try NamedQuery.parse(name: "x", file: "x.sql", text: """
            -- description: Things
            -- param: since time = 1970-01-01T00:00:00Z  Lower bound
            -- param: who text  The principal
            SELECT :who AS who, :since AS since
            """)
        #expect(q.description == "Things")
        #expect(q.parameters.map(\.name) == ["since", "who"])
        #expect(q.parameters[0].kind == .time)
        #expect(q.parameters[0].defaultValue == "1970-01-01T00:00:00Z")
        #expect(q.parameters[1].defaultValue == nil)
        #expect(q.parameters[1].description == "The principal")
        #expect(throws: NamedQuery.Error.self) { try q.arguments([:], now: .now) }
        #expect(throws: NamedQuery.Error.self) { try q.arguments(["who": "a", "nope": "1"], now: .now) }
    }

    @Test func parametersAreBoundNeverSpliced() throws {
        let store = try TrailStore(path: ":memory:")
        let q = try NamedQuery.parse(name: "x", file: "x.sql", text: "-- description: d\n-- param: who text\nSELECT :who AS who")
        let hostile = "x'); DROP TABLE hop; --"
        let r = try store.run(q, arguments: try q.arguments(["who": hostile], now: .now))
        #expect(r.rows == [[.string(hostile)]])
        #expect(try store.read { db in try db.tableExists("hop") })
    }

    @Test func writingStatementsAreRefused() throws {
        let store = try TrailStore(path: ":memory:")
        for sql in ["DELETE FROM hop", "SELECT 1; DELETE FROM hop", "INSERT INTO setting VALUES ('a','b')"] {
            let q = try NamedQuery.parse(name: "w", file: "w.sql", text: "-- description: w\n" + sql)
            #expect(throws: (any Error).self) { try store.run(q, arguments: [:]) }
        }
    }

    @Test func everyShippedQueryParsesAndRuns() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("queries").path
        let queries = try NamedQuery.loadAll(directory: dir)
        #expect(queries.count >= 10)
        let store = try TrailStore(path: ":memory:")
        let (_, d) = try store.ingest([StoreFixture.issued(serial: "1001"), StoreFixture.inbound(0, line: 1)], source: "x")
        try store.correlate(d)
        for q in queries {
            var params: [String: String] = [:]
            for p in q.parameters where p.defaultValue == nil {
                switch p.kind {
                case .text: params[p.name] = p.name == "trace_id" ? StoreFixture.trace : StoreFixture.web
                case .int: params[p.name] = "1"
                case .time: params[p.name] = "2026-01-01T00:00:00Z"
                }
            }
            if q.parameters.contains(where: { $0.name == "kind" }) { params["kind"] = "plaintext-hop" }
            if q.parameters.contains(where: { $0.name == "path_prefix" }) { params["path_prefix"] = "/orders" }
            let result = try store.run(q, arguments: try q.arguments(params, now: .now))
            #expect(!result.columns.isEmpty, "\(q.name)")
        }
    }

    @Test func timeArguments() {
        let now = Timestamp.utc(year: 2026, month: 5, day: 4, hour: 12)
        #expect(TimeArgument.parse("2h", now: now) == Timestamp.utc(year: 2026, month: 5, day: 4, hour: 10))
        #expect(TimeArgument.parse("2026-05-04T10:00:00Z", now: now) == Timestamp.utc(year: 2026, month: 5, day: 4, hour: 10))
        #expect(TimeArgument.parse("2026-05-04", now: now) == Timestamp.utc(year: 2026, month: 5, day: 4))
        #expect(TimeArgument.parse("soon", now: now) == nil)
    }
}

@Suite("Store order independence with learned identities")
struct LearnedIdentityOrderTests {
    /// A service seen with two identities is ambiguous whatever order they arrive in.
    @Test func ambiguousServiceGivesTheSameChainInAnyOrder() throws {
        func pair(_ trace: String, _ spiffe: String, line: Int) -> ParseResult {
            let o = Observation(kind: .inbound, format: "envoy-json", traceID: trace, start: StoreFixture.t(0),
                                method: "GET", path: "/x", caller: Endpoint(spiffeID: StoreFixture.web),
                                callee: Endpoint(spiffeID: spiffe, service: "orders"))
            return .record(ParsedRecord(format: .envoyJSON, location: RecordLocation(line: line), raw: Array("\(trace)\(spiffe)".utf8), observations: [o]))
        }
        let clientOnly: ParseResult = {
            let o = Observation(kind: .clientSpan, format: "otlp-json", traceID: "000000000000000000000000000000cc",
                                spanID: "00000000000000c1", start: StoreFixture.t(10), method: "GET", path: "/y",
                                caller: Endpoint(service: "web"), callee: Endpoint(service: "orders"))
            return .record(ParsedRecord(format: .otlpJSON, location: RecordLocation(line: 1), raw: Array("client".utf8), observations: [o]))
        }()
        let a = pair("000000000000000000000000000000aa", "spiffe://shop.example/ns/shop/sa/orders", line: 1)
        let b = pair("000000000000000000000000000000bb", "spiffe://shop.example/ns/shop/sa/orders-v2", line: 2)
        func callee(_ order: [ParseResult]) throws -> String? {
            let store = try TrailStore(path: ":memory:")
            for r in order {
                let (_, d) = try store.ingest([r], source: "x")
                try store.correlate(d)
            }
            return try store.chain(traceID: "000000000000000000000000000000cc")?.hops.first?.callee
        }
        let reference = try callee([a, b, clientOnly])
        #expect(reference == "orders")
        #expect(try callee([a, clientOnly, b]) == reference)
        #expect(try callee([clientOnly, b, a]) == reference)
    }
}
