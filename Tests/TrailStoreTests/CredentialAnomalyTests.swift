import Foundation
import GRDB
import Testing
import TrailCore
import TrailFormats
@testable import TrailStore

/// Kong access-log lines for `credential-anomaly` scenarios: one gateway-entered chain per line.
enum KongScenario {
    static let base = Timestamp.utc(year: 2026, month: 5, day: 4, hour: 10)

    struct Request {
        var n: Int
        var seconds: Int64
        var consumer: String?
        var ip: String
        var method = "GET"
        var path: String

        var trace: String { String(format: "%032x", 0xA000 + n) }

        /// One Kong http-log record; `consumer: nil` is an anonymous request.
        var line: String {
            let ms = base.adding(nanoseconds: seconds * 1_000_000_000).nanoseconds / 1_000_000
            let who = consumer.map {
                #","consumer":{"username":"\#($0)"},"authenticated_entity":{"id":"cred-\#($0)"},"credential_type":"key-auth""#
            } ?? ""
            return #"{"started_at":\#(ms),"client_ip":"\#(ip)","request":{"method":"\#(method)","uri":"\#(path)","#
                + #""headers":{"traceparent":"00-\#(trace)-\#(String(format: "%016x", 0xB000 + n))-01"}},"#
                + #""response":{"status":200},"latencies":{"request":5},"service":{"name":"api"}\#(who)}"#
        }
    }

    /// `count` requests of `consumer` from 127.0.0.1 on `GET /inventory/items/<n>`, one a second from 0 s.
    static func history(_ count: Int, consumer: String? = "integration-bot", from n: Int = 0) -> [Request] {
        (0..<count).map { i in
            Request(n: n + i, seconds: Int64(i), consumer: consumer, ip: "127.0.0.1", path: "/inventory/items/\(100 + i)?fields=all")
        }
    }

    /// A store with the given baseline, fed `batches` in order, each batch ingested and correlated on its own.
    static func store(baseline: Int, batches: [[Request]]) throws -> TrailStore {
        let store = try TrailStore(path: ":memory:")
        try store.setCredentialAnomalyBaseline(baseline)
        for (i, batch) in batches.enumerated() {
            let bytes = Array(batch.map { $0.line + "\n" }.joined().utf8)
            let results = FormatRegistry.parse(bytes, format: .kong)
            let (counts, dirty) = try store.ingest(results, source: "kong-\(i).ndjson")
            #expect(counts.rejected == 0)
            try store.correlate(dirty)
        }
        return store
    }

    static func anomalies(_ store: TrailStore) throws -> [FindingRow] {
        try store.findings(kinds: [FindingKind.credentialAnomaly.rawValue], window: TimeWindow())
    }
}

@Suite("credential-anomaly")
struct CredentialAnomalyTests {
    typealias R = KongScenario.Request

    @Test func newAddressOnANewRouteIsFlaggedOnce() throws {
        let stolen = R(n: 50, seconds: 100, consumer: "integration-bot", ip: "127.0.0.66", method: "POST", path: "/payments/refund")
        // The thief again: the address is no longer new, so only the first use is flagged.
        let again = R(n: 51, seconds: 101, consumer: "integration-bot", ip: "127.0.0.66", method: "POST", path: "/payments/refund")
        let store = try KongScenario.store(baseline: 5, batches: [KongScenario.history(6) + [stolen, again]])
        let findings = try KongScenario.anomalies(store)
        try #require(findings.count == 1)
        let f = findings[0]
        #expect(f.kind == "credential-anomaly")
        #expect(f.severity == "high")
        #expect(f.traceID == stolen.trace)
        #expect(f.hopIndex == 0)
        #expect(f.principal == "integration-bot")
        #expect(f.identity == "cred-integration-bot")
        #expect(f.detail == "integration-bot used its credential from 127.0.0.66, never seen in its 6 earlier requests "
                + "(usual: 127.0.0.1), for POST /payments/refund, a route it never used")
        #expect(f.time == KongScenario.base.adding(nanoseconds: 100_000_000_000))
        // The evidence is the gateway's record of that request.
        let rawID = try #require(f.rawIDs.first)
        #expect(f.rawIDs.count == 1)
        let evidence = try #require(try store.evidence(id: rawID))
        #expect(String(decoding: evidence.bytes, as: UTF8.self) == stolen.line)
        // The chain carries it too.
        #expect(try store.chain(traceID: stolen.trace)?.findings.map(\.kind) == [.credentialAnomaly])
    }

    @Test func usualAddressesAreListedMostUsedFirst() throws {
        var history = KongScenario.history(6)
        history[1].ip = "127.0.0.2"
        history[4].ip = "127.0.0.3"
        history[5].ip = "127.0.0.3"
        history.append(R(n: 20, seconds: 20, consumer: "integration-bot", ip: "127.0.0.4", path: "/inventory/items/7"))
        let stolen = R(n: 50, seconds: 100, consumer: "integration-bot", ip: "127.0.0.66", method: "DELETE",
                       path: "/inventory/items/550e8400-e29b-41d4-a716-446655440000/stock")
        let store = try KongScenario.store(baseline: 5, batches: [history + [stolen]])
        let findings = try KongScenario.anomalies(store)
        #expect(findings.map(\.detail) == [
            "integration-bot used its credential from 127.0.0.66, never seen in its 7 earlier requests "
                + "(usual: 127.0.0.1, 127.0.0.3, 127.0.0.2), for DELETE /inventory/items/{id}/stock, a route it never used",
        ])
    }

    @Test func newAddressOnAUsualRouteIsNotFlagged() throws {
        let laptop = R(n: 50, seconds: 100, consumer: "integration-bot", ip: "127.0.0.66", path: "/inventory/items/999")
        let store = try KongScenario.store(baseline: 5, batches: [KongScenario.history(6) + [laptop]])
        #expect(try KongScenario.anomalies(store).isEmpty)
    }

    @Test func usualAddressOnANewRouteIsNotFlagged() throws {
        let newRoute = R(n: 50, seconds: 100, consumer: "integration-bot", ip: "127.0.0.1", method: "POST", path: "/payments/refund")
        let store = try KongScenario.store(baseline: 5, batches: [KongScenario.history(6) + [newRoute]])
        #expect(try KongScenario.anomalies(store).isEmpty)
    }

    @Test func belowTheBaselineNothingIsFlagged() throws {
        let stolen = R(n: 50, seconds: 100, consumer: "integration-bot", ip: "127.0.0.66", method: "POST", path: "/payments/refund")
        let below = try KongScenario.store(baseline: 5, batches: [KongScenario.history(4) + [stolen]])
        #expect(try KongScenario.anomalies(below).isEmpty)
        // Exactly the baseline is enough.
        let at = try KongScenario.store(baseline: 5, batches: [KongScenario.history(5) + [stolen]])
        #expect(try KongScenario.anomalies(at).map(\.traceID) == [stolen.trace])
        // Another consumer's history does not count towards this one's baseline.
        let others = try KongScenario.store(
            baseline: 5, batches: [KongScenario.history(4) + KongScenario.history(10, consumer: "web-shop", from: 20) + [stolen]])
        #expect(try KongScenario.anomalies(others).isEmpty)
    }

    @Test func theDefaultBaselineIsTwenty() throws {
        #expect(TrailStore.defaultCredentialAnomalyBaseline == 20)
        #expect(try TrailStore(path: ":memory:").credentialAnomalyBaseline() == 20)
        let stolen = R(n: 50, seconds: 100, consumer: "integration-bot", ip: "127.0.0.66", method: "POST", path: "/payments/refund")
        for (count, expected) in [(19, 0), (20, 1)] {
            let store = try TrailStore(path: ":memory:")
            let bytes = Array((KongScenario.history(count) + [stolen]).map { $0.line + "\n" }.joined().utf8)
            let (_, dirty) = try store.ingest(FormatRegistry.parse(bytes, format: .kong), source: "kong.ndjson")
            try store.correlate(dirty)
            #expect(try KongScenario.anomalies(store).count == expected, "\(count) earlier requests")
        }
    }

    @Test func ingestionOrderDoesNotChangeTheFindings() throws {
        var requests = KongScenario.history(8)
        requests += [
            R(n: 50, seconds: 100, consumer: "integration-bot", ip: "127.0.0.66", method: "POST", path: "/payments/refund"),
            R(n: 51, seconds: 101, consumer: "integration-bot", ip: "127.0.0.66", method: "POST", path: "/payments/refund"),
            R(n: 52, seconds: 102, consumer: "integration-bot", ip: "127.0.0.77", method: "GET", path: "/admin/users"),
            R(n: 53, seconds: 103, consumer: "integration-bot", ip: "127.0.0.1", method: "GET", path: "/orders/17"),
        ]
        // Two requests in the same second: (start, trace id) orders them, so the second one (new address, but the
        // route the first just used) is not flagged.
        requests.append(R(n: 54, seconds: 103, consumer: "integration-bot", ip: "127.0.0.88", method: "GET", path: "/orders/18"))
        func snapshot(_ store: TrailStore) throws -> [String] {
            try KongScenario.anomalies(store).map { "\($0.id)|\($0.traceID)|\($0.principal ?? "")|\($0.detail)" }
        }
        let forward = try snapshot(try KongScenario.store(baseline: 5, batches: [requests]))
        #expect(forward.count == 2)
        let reversed = try snapshot(try KongScenario.store(baseline: 5, batches: requests.reversed().map { [$0] }))
        #expect(reversed == forward)
        var rng = SystemRandomNumberGenerator()
        let shuffled = try snapshot(try KongScenario.store(baseline: 5, batches: requests.shuffled(using: &rng).map { [$0] }))
        #expect(shuffled == forward)
    }

    @Test func anonymousChainsAreNeverFlagged() throws {
        let history = KongScenario.history(10, consumer: nil)
        let strangers = (0..<5).map { i in
            R(n: 50 + i, seconds: 100 + Int64(i), consumer: nil, ip: "198.51.100.\(i + 1)", method: "POST", path: "/route-\(i)x")
        }
        let store = try KongScenario.store(baseline: 5, batches: [history + strangers])
        let origins = try store.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT origin_type FROM chain") }
        #expect(origins == ["anonymous"])
        #expect(try KongScenario.anomalies(store).isEmpty)
    }

    @Test func theScanReadsOnlyTheIndexInOrder() throws {
        let store = try TrailStore(path: ":memory:")
        let plan = try store.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + TrailStore.credentialScanSQL).map { $0["detail"] as String }
        }
        #expect(plan == ["SCAN c USING COVERING INDEX chain_gateway_principal"])
    }

    @Test func migratingAnOlderStoreFillsInTheEdgeRequest() throws {
        let db = try DatabaseQueue()
        try Schema.migrator.migrate(db, upTo: "0001_initial")
        try db.write { db in
            try db.execute(sql: """
                INSERT INTO access_key(id, principal, principal_type, chain_path) VALUES (1, 'bot', 'api-key', '[]');
                INSERT INTO chain(trace_id, origin_principal, origin_type, via_gateway, start, end, hop_count, gap_count)
                    VALUES ('t1', 'bot', 'api-key', 1, 0, 0, 2, 0);
                INSERT INTO hop(trace_id, idx, caller, callee, method, path, start, cert_state, observed_by,
                                observation_ids, raw_ids, chain_path, access_key)
                    VALUES ('t1', 0, 'c', 'gw', 'POST', '/payments/refund', 0, 'none', '[]', '[]', '[]', '[]', 1),
                           ('t1', 1, 'gw', 'pay', 'GET', '/internal', 0, 'none', '[]', '[]', '[]', '[]', 1);
                """)
        }
        try Schema.migrator.migrate(db)
        let edge = try db.read { db in try Row.fetchOne(db, sql: "SELECT edge_method, edge_path FROM chain") }
        #expect(edge?["edge_method"] == "POST")
        #expect(edge?["edge_path"] == "/payments/refund")
    }

    @Test func routeTemplates() {
        let cases: [(String?, String?, String)] = [
            ("get", "/inventory/items/42?fields=all", "GET /inventory/items/{id}"),
            ("GET", "/inventory/items", "GET /inventory/items"),
            ("POST", "/payments/refund#x", "POST /payments/refund"),
            ("GET", "/users/550e8400-e29b-41d4-a716-446655440000/keys", "GET /users/{id}/keys"),
            ("GET", "/blobs/deadbeefcafebabedeadbeefcafebabe", "GET /blobs/{id}"),
            ("GET", "/blobs/deadbeef", "GET /blobs/deadbeef"),
            ("GET", "/api/v2/orders/ab12", "GET /api/{id}/orders/{id}"),
            ("GET", "/", "GET /"),
            (nil, nil, "- -"),
        ]
        for (method, path, expected) in cases {
            #expect(TrailStore.routeTemplate(method: method, path: path) == expected)
        }
    }
}
