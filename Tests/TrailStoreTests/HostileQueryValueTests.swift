import Foundation
import GRDB
import Testing
import TrailCore
@testable import TrailStore

/// What the CLI cannot pass (an argument ends at a NUL byte) tried against the store's query API directly: every
/// value that reaches SQL, with NUL bytes, quotes, comment markers, LIKE wildcards and 1 MB strings. Each call
/// answers (usually nothing) or throws a clean error, and the store stays as it was.
@Suite struct HostileQueryValueTests {
    static let values: [String] = [
        "a\u{0}' OR '1'='1", "\u{0}", "x\u{0}; DROP TABLE hop; --", "' OR 1=1 --", "%", "_", "%' OR '%'='", "\\", "*/ SELECT 1 /*",
        "1) UNION SELECT name, sql FROM sqlite_master --", "spiffe://shop.example/ns/shop/sa/web\u{0}admin",
        String(repeating: "'", count: 1 << 20), "\u{FFFF}\u{10FFFF}\u{D7FF}",
    ]

    static func state(_ store: TrailStore) throws -> [String] {
        try store.read { db in
            var out: [String] = []
            for table in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") {
                out.append("\(table) \(try Int.fetchOne(db, sql: "SELECT count(*) FROM \"\(table)\"") ?? -1)")
            }
            out += try String.fetchAll(db, sql: "SELECT coalesce(sql, name) FROM sqlite_master ORDER BY name")
            out += try String.fetchAll(db, sql: "PRAGMA integrity_check")
            return out
        }
    }

    @Test func hostileValuesThroughEveryQuery() throws {
        let store = try TrailStore(path: StoreFixture.tempPath())
        let (_, dirty) = try store.ingest(
            [StoreFixture.issued(serial: "1001"), StoreFixture.inbound(0, line: 1), StoreFixture.inbound(5, trace: "5bf92f3577b34da6a3ce929d0e0e4736", line: 2)],
            source: "x")
        try store.correlate(dirty)
        let before = try Self.state(store)
        #expect(before.last == "ok")
        let queries = try NamedQuery.loadAll(directory: repositoryQueries)
        var answered = 0
        for value in Self.values {
            // Nothing matches a hostile value: an injection that worked would return rows.
            #expect(try store.chain(traceID: TrailStore.normalizeTraceArgument(value)) == nil)
            #expect(try store.whoAccessed(ResourceMatcher.parse(value), window: TimeWindow()).isEmpty, "\(value.prefix(40))")
            #expect(try store.whoAccessed(ResourceMatcher.parse("POST /" + value + "*"), window: TimeWindow()).isEmpty)
            #expect(try store.activity(principal: value, window: TimeWindow()).isEmpty, "\(value.prefix(40))")
            #expect(try store.findings(kinds: [value], window: TimeWindow(), traceID: value).isEmpty)
            for q in queries {
                for p in q.parameters where p.kind == .text {
                    var given: [String: String] = [p.name: value]
                    for other in q.parameters where other.name != p.name && other.defaultValue == nil {
                        given[other.name] = other.kind == .time ? "2026-01-01T00:00:00Z" : "x"
                    }
                    let result = try store.run(q, arguments: try q.arguments(given, now: .now))
                    // Prefixes are compared with substr, not LIKE: `%` and `_` are characters, not wildcards.
                    #expect(result.rows.isEmpty, "\(q.name) \(p.name)=\(value.prefix(40)): \(result.rows.prefix(2))")
                    answered += 1
                }
            }
        }
        for id: Int64 in [0, -1, .min, .max] { #expect(try store.evidence(id: id) == nil) }
        #expect(answered > 50)
        #expect(try Self.state(store) == before)
    }
}

let repositoryQueries: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.appendingPathComponent("queries").path }
    }
    return "queries"
}()

extension HostileQueryValueTests {
    /// A NUL inside a telemetry string (a JSON `\u0000`) must not cut the value short in the store: GRDB reads
    /// text up to the first NUL, so `/health\0/../admin` would be shown as `/health`. It is stored as U+FFFD.
    @Test func aNULInTelemetryDoesNotHideWhatFollowsIt() throws {
        let store = try TrailStore(path: StoreFixture.tempPath())
        let o = Observation(kind: .inbound, format: "envoy-json", traceID: StoreFixture.trace, start: StoreFixture.t(0), method: "GET",
                            path: "/health\u{0}/../admin", status: 200, caller: Endpoint(spiffeID: StoreFixture.web),
                            callee: Endpoint(spiffeID: StoreFixture.orders, service: "orders"), transport: .mtls,
                            userAgent: "curl\u{0}HIDDEN")
        let record = ParsedRecord(format: .envoyJSON, location: RecordLocation(line: 1), raw: Array("raw".utf8), observations: [o])
        let (_, dirty) = try store.ingest([.record(record)], source: "x")
        try store.correlate(dirty)
        let hop = try #require(try store.chain(traceID: StoreFixture.trace)?.hops.first)
        #expect(hop.path == "/health\u{FFFD}/../admin")
        #expect(hop.userAgent == "curl\u{FFFD}HIDDEN")
        // Looked up with the NUL, it is found; the part before the NUL alone is another path.
        #expect(try !store.whoAccessed(ResourceMatcher.parse("/health\u{0}/../admin"), window: TimeWindow()).isEmpty)
        #expect(try store.whoAccessed(ResourceMatcher.parse("/health"), window: TimeWindow()).isEmpty)
    }
}
