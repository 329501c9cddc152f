import Foundation
import Testing
import TrailCore

/// Runs the real `trail` binary, as a user would.
enum CLI {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            url = url.deletingLastPathComponent()
        }
        return url
    }()

    static let binary: URL = {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("trail")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        return root.appendingPathComponent(".build/debug/trail")
    }()

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var json: JSONValue? { try? JSONParser.parse(Array(stdout.utf8)) }
    }

    @discardableResult
    static func run(_ arguments: [String], stdin: [UInt8]? = nil, environment: [String: String] = [:]) throws -> Result {
        let p = Process()
        p.executableURL = binary
        p.arguments = arguments
        p.currentDirectoryURL = root
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "TRAIL_DB")
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(Data(stdin)) }
        try inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    static func tempDB() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("trail-cli-\(UUID().uuidString).db").path
    }
}

/// The shop scenario: every format, every finding kind but dry-run, in any ingestion order.
enum Shop {
    static let dir = "fixtures/scenarios/shop"
    static let entryPoint = "spiffe://shop.example/ns/shop/sa/scheduler"
    static let inputs = [
        "fixtures/identity/svids.pem", "fixtures/identity/crl.pem",
        "\(dir)/kong.ndjson", "\(dir)/kong-batch.json", "\(dir)/istio-proxy.ndjson", "\(dir)/istio-proxy.log",
        "\(dir)/otlp-traces.json",
    ]
    static let traces = [
        "a01171eeb6331bee0b4e1b01bd57d392", "6dc74eb327d05d511de3fc23daf92a4a", "f6dc38fe3cbb05f687b9ceb427a3681d",
        "ecfcfa3dfc0da48c3e48795adf45732d", "d86928bbde3493f1434512cb9dc9f2d6", "50bb7a650b9ac4e4225a301c690895b2",
        "bd286ba6c1e0eb4f2e185561333d1bbf", "37ba87cc1d83084c4a252a28f13abd51", "917dfd92391a441047a2b3c9b3d18f49",
    ]

    /// Evidence and observation ids depend on ingestion order; everything else must not.
    static func stripIDs(_ v: JSONValue) -> JSONValue {
        switch v {
        case .object(let members):
            return .object(members.filter { $0.0 != "evidence" }.map { ($0.0, stripIDs($0.1)) })
        case .array(let values):
            return .array(values.map(stripIDs))
        default:
            return v
        }
    }

    /// Ingests the inputs in the given groups (one `trail ingest` per group) and returns the chains and findings.
    static func snapshot(groups: [[String]]) throws -> (JSONValue, JSONValue, [CLI.Result]) {
        let db = CLI.tempDB()
        defer { for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + s) } }
        var results: [CLI.Result] = []
        for group in groups {
            results.append(try CLI.run(["ingest", "--db", db, "--allow-entry-point", entryPoint] + group))
        }
        var chains: [JSONValue] = []
        for t in traces {
            let r = try CLI.run(["chain", t, "--db", db, "--format", "json"])
            chains.append(r.json.map(stripIDs) ?? .string("missing chain \(t): \(r.stderr)"))
        }
        let findings = try CLI.run(["findings", "--db", db, "--format", "json"]).json.map(stripIDs) ?? .null
        return (.array(chains), findings, results)
    }
}

@Suite("trail CLI", .serialized)
struct CLITests {
    @Test func shopScenarioGivesTheExpectedChainsAndFindings() throws {
        let (chains, findings, results) = try Shop.snapshot(groups: [Shop.inputs])
        let ingest = try #require(results.first)
        #expect(ingest.status == 2, "two records in the scenario are malformed")
        #expect(ingest.stdout.contains("kong.ndjson:3: missing started_at"))
        #expect(ingest.stdout.contains("istio-proxy.ndjson:13: invalid JSON"))
        let golden = CLI.root.appendingPathComponent("\(Shop.dir)/expected-chains.json")
        let goldenFindings = CLI.root.appendingPathComponent("\(Shop.dir)/expected-findings.json")
        if ProcessInfo.processInfo.environment["TRAIL_UPDATE_GOLDENS"] == "1" {
            try Data((chains.serialized(pretty: true) + "\n").utf8).write(to: golden)
            try Data((findings.serialized(pretty: true) + "\n").utf8).write(to: goldenFindings)
        }
        let expected = try JSONParser.parse(Array(try Data(contentsOf: golden)))
        let expectedFindings = try JSONParser.parse(Array(try Data(contentsOf: goldenFindings)))
        expectSame(chains, expected, "expected-chains.json")
        expectSame(findings, expectedFindings, "expected-findings.json")
        let kinds = Set(findings.array?.compactMap { $0["kind"]?.string } ?? [])
        #expect(kinds == ["revoked-certificate", "plaintext-hop", "edge-bypass", "unauthenticated-edge", "policy-denied",
                          "expired-certificate", "identity-mismatch"])
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func ingestionOrderDoesNotChangeTheResult(seed: UInt64) throws {
        let (reference, referenceFindings, _) = try Shop.snapshot(groups: [Shop.inputs])
        var rng = SeededGenerator(seed: seed)
        var files = Shop.inputs
        files.shuffle(using: &rng)
        // Each file separately, in a shuffled order: identity data may come after the calls it judges.
        let (chains, findings, _) = try Shop.snapshot(groups: files.map { [$0] })
        expectSame(chains, reference, "chains, order \(files)")
        expectSame(findings, referenceFindings, "findings, order \(files)")
    }

    @Test func reingestingAddsNothing() throws {
        let db = CLI.tempDB()
        try CLI.run(["ingest", "--db", db] + Shop.inputs)
        let again = try CLI.run(["ingest", "--db", db] + Shop.inputs)
        #expect(again.stdout.contains(" 0 stored"))
        #expect(again.stdout.contains("53 already stored"))
    }

    @Test func whoAccessedJSONHasTheDocumentedKeys() throws {
        let db = CLI.tempDB()
        try CLI.run(["ingest", "--db", db, "--allow-entry-point", Shop.entryPoint] + Shop.inputs)
        let r = try CLI.run(["who-accessed", "POST /payments/*", "--db", db, "--format", "json"])
        #expect(r.status == 0)
        let rows = try #require(r.json?.array)
        for key in ["principal", "principal_type", "client_ip", "chain", "caller", "resource", "calls", "first_seen",
                    "last_seen", "trace_ids", "findings"] {
            #expect(rows.allSatisfy { $0[key] != nil }, "\(key)")
        }
        let alice = try #require(rows.first { $0["principal"]?.string == "alice" })
        #expect(alice["principal_type"]?.string == "jwt")
        #expect(alice["client_ip"]?.string == "203.0.113.9")
        #expect(alice["calls"]?.int == 2)
        #expect(alice["chain"]?.array?.compactMap(\.string).map { $0.replacingOccurrences(of: "spiffe://shop.example/ns/shop/sa/", with: "") }
                == ["gateway", "web", "orders", "payments"])
        #expect(alice["findings"]?.array?.compactMap(\.string) == ["revoked-certificate"])
        let bypass = try #require(rows.first { $0["principal_type"]?.string == "workload" })
        #expect(bypass["principal"]?.string == "spiffe://shop.example/ns/shop/sa/inventory")
        #expect(bypass["findings"]?.array?.compactMap(\.string) == ["edge-bypass"])
        // The same question as CSV and as a table.
        let csv = try CLI.run(["who-accessed", "POST /payments/*", "--db", db, "--format", "csv"])
        #expect(csv.stdout.hasPrefix("principal,type,client ip,chain,calls,first seen,last seen,findings\r\n"))
        let since = try CLI.run(["who-accessed", "POST /payments/*", "--db", db, "--since", "2026-05-04T10:15:00Z", "--format", "json"])
        #expect(since.json?.array?.count == 1)
    }

    @Test func findingsFilterAndActivity() throws {
        let db = CLI.tempDB()
        try CLI.run(["ingest", "--db", db, "--allow-entry-point", Shop.entryPoint] + Shop.inputs)
        let revoked = try CLI.run(["findings", "--kind", "revoked-certificate", "--db", db, "--format", "json"])
        let f = try #require(revoked.json?.array?.first)
        #expect(revoked.json?.array?.count == 1)
        for key in ["kind", "severity", "trace_id", "principal", "identity", "serial", "time", "detail"] {
            #expect(f[key] != nil, "\(key)")
        }
        #expect(f["serial"]?.string == "1002")
        #expect(f["identity"]?.string == "spiffe://shop.example/ns/shop/sa/orders")
        let bad = try CLI.run(["findings", "--kind", "nope", "--db", db])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("unknown finding kind 'nope'"))
        let activity = try CLI.run(["activity", "alice", "--db", db, "--format", "json"])
        #expect(activity.json?.array?.compactMap { $0["trace_id"]?.string } ==
                ["a01171eeb6331bee0b4e1b01bd57d392", "f6dc38fe3cbb05f687b9ceb427a3681d", "917dfd92391a441047a2b3c9b3d18f49"])
    }

    @Test func evidencePrintsTheOriginalBytes() throws {
        let db = CLI.tempDB()
        try CLI.run(["ingest", "--db", db, "--allow-entry-point", Shop.entryPoint] + Shop.inputs)
        let chain = try #require(try CLI.run(["chain", "f6dc38fe3cbb05f687b9ceb427a3681d", "--db", db, "--format", "json"]).json)
        let revokedHop = try #require(chain["hops"]?.array?.first { $0["certificate"]?.string == "revoked" })
        let ids = revokedHop["evidence"]?.array?.compactMap { $0.int } ?? []
        #expect(!ids.isEmpty)
        let sources = try String(contentsOf: CLI.root.appendingPathComponent("\(Shop.dir)/istio-proxy.ndjson"), encoding: .utf8)
            + (try String(contentsOf: CLI.root.appendingPathComponent("\(Shop.dir)/otlp-traces.json"), encoding: .utf8))
            + (try String(contentsOf: CLI.root.appendingPathComponent("\(Shop.dir)/istio-proxy.log"), encoding: .utf8))
        for id in ids {
            let e = try CLI.run(["evidence", String(id), "--db", db])
            #expect(e.status == 0)
            #expect(!e.stdout.isEmpty && sources.contains(e.stdout), "evidence \(id) is not a record of the inputs")
        }
        #expect(try CLI.run(["evidence", "999999", "--db", db]).status == 1)
    }

    @Test func queriesListAndRunWithBoundParameters() throws {
        let db = CLI.tempDB()
        try CLI.run(["ingest", "--db", db, "--allow-entry-point", Shop.entryPoint] + Shop.inputs)
        let list = try CLI.run(["query", "--list", "--db", db, "--format", "json"])
        let names = Set(list.json?.array?.compactMap { $0["name"]?.string } ?? [])
        #expect(names.isSuperset(of: ["revoked_or_expired_in_use", "first_seen_edges", "plaintext_hops",
                                      "gateway_consumers_by_resource", "chains_through_workload"]))
        let revoked = try CLI.run(["query", "revoked_or_expired_in_use", "--db", db, "--format", "json"])
        #expect(Set(revoked.json?.array?.compactMap { $0["certificate"]?.string } ?? []) == ["revoked", "expired"])
        let plaintext = try CLI.run(["query", "plaintext_hops", "--db", db, "--format", "json"])
        #expect(plaintext.json?.array?.first?["path"]?.string == "/inventory/reconcile")
        let edges = try CLI.run(["query", "first_seen_edges", "--param", "since=2026-05-04T10:19:00Z", "--db", db, "--format", "json"])
        let firstEdges = edges.json?.array?.map { ($0["caller"]?.string ?? "") + ">" + ($0["callee"]?.string ?? "") } ?? []
        #expect(firstEdges.contains("spiffe://shop.example/ns/shop/sa/inventory>spiffe://shop.example/ns/shop/sa/payments"))
        let through = try CLI.run(["query", "chains_through_workload", "--param", "workload=spiffe://shop.example/ns/shop/sa/ledger", "--db", db, "--format", "json"])
        #expect(through.json?.array?.count == 3)
        let consumers = try CLI.run(["query", "gateway_consumers_by_resource", "--db", db, "--format", "json"])
        #expect(Set(consumers.json?.array?.compactMap { $0["principal"]?.string } ?? []) == ["alice", "acme-partner", "anonymous", "billing-sync"])
        let missing = try CLI.run(["query", "first_seen_edges", "--db", db])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("needs --param since"))
    }

    @Test func hostileStringsAreEscapedInEveryOutput() throws {
        let db = CLI.tempDB()
        let line = #"{"start_time":"2026-05-04T10:00:00Z","method":"GET","path":"/a","response_code":200,"upstream_cluster":"inbound|8080||","downstream_peer_uri_san":"spiffe://x.example/ns/a/sa/b","downstream_local_uri_san":"spiffe://x.example/ns/a/sa/c","user_agent":"<script>alert(1)</script>\u001b[31m=HYPERLINK(\"x\")","request_id":"=cmd|' /C calc'!A0","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#
        let ingest = try CLI.run(["ingest", "--db", db, "-"], stdin: Array((line + "\n").utf8))
        #expect(ingest.status == 0)
        let json = try CLI.run(["chain", "4bf92f3577b34da6a3ce929d0e0e4736", "--db", db, "--format", "json"])
        #expect(!json.stdout.contains("<script>"))
        #expect(json.stdout.contains("\\u003cscript\\u003e"))
        #expect(!json.stdout.contains("\u{1B}"))
        #expect(json.json?["hops"]?.array?.first?["user_agent"]?.string?.hasPrefix("<script>") == true)
        let csv = try CLI.run(["query", "chain_hops", "--param", "trace_id=4bf92f3577b34da6a3ce929d0e0e4736", "--db", db, "--format", "csv"])
        #expect(!csv.stdout.contains("\u{1B}"))
        let table = try CLI.run(["chain", "4bf92f3577b34da6a3ce929d0e0e4736", "--db", db])
        #expect(!table.stdout.contains("\u{1B}"))
    }

    @Test func errorsAreOneLineAndNonZero() throws {
        let missing = try CLI.run(["chain", "abc", "--db", "/nonexistent/dir/x.db"])
        #expect(missing.status == 1)
        #expect(missing.stderr.hasPrefix("error: "))
        #expect(missing.stderr.split(separator: "\n").count == 1)
        let db = CLI.tempDB()
        let noFile = try CLI.run(["ingest", "--db", db, "/nonexistent/file.log"])
        #expect(noFile.status == 1)
        #expect(noFile.stderr.contains("/nonexistent/file.log: no such file"))
        let unknown = try CLI.run(["chain", "4bf92f3577b34da6a3ce929d0e0e4736", "--db", db])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("no chain with trace id"))
    }

    @Test func hostileArgumentsGiveOneLineErrors() throws {
        let db = CLI.tempDB()
        try CLI.run(["ingest", "--db", db] + Shop.inputs)
        let since = try CLI.run(["who-accessed", "/x", "--since", "1e300d", "--db", db])
        #expect(since.status == 1)
        #expect(since.stderr.split(separator: "\n").count == 1)
        let param = try CLI.run(["query", "plaintext_hops", "--param", "=", "--db", db])
        #expect(param.status != 0)
        #expect(param.stderr.contains("must be key=value"))
        let skew = try CLI.run(["ingest", "--db", db, "--clock-skew", "1e300s", "\(Shop.dir)/kong.ndjson"])
        #expect(skew.status != 0)
        #expect(skew.stderr.contains("--clock-skew"))
    }

    @Test func leadingBlankLinesDoNotLookLikeProtobuf() throws {
        let db = CLI.tempDB()
        let kong = try Data(contentsOf: CLI.root.appendingPathComponent("\(Shop.dir)/kong-batch.json"))
        let r = try CLI.run(["ingest", "--db", db, "-"], stdin: Array("\n\n\n".utf8) + Array(kong))
        #expect(r.stdout.contains("kong"))
        #expect(r.status == 0)
    }

    @Test func whoAccessedListsTheDistinctRequestsAndActivityCoversCallees() throws {
        let db = CLI.tempDB()
        try CLI.run(["ingest", "--db", db, "--allow-entry-point", Shop.entryPoint] + Shop.inputs)
        let rows = try CLI.run(["who-accessed", "/payments/*", "--db", db, "--format", "json"]).json?.array ?? []
        let bypass = try #require(rows.first { $0["principal_type"]?.string == "workload" })
        #expect(bypass["resource"]?.string == "spiffe://shop.example/ns/shop/sa/payments POST /payments/refund")
        let byService = try CLI.run(["who-accessed", "payments", "--db", db, "--format", "json"]).json?.array ?? []
        #expect(Set(byService.compactMap { $0["principal"]?.string }) == ["alice", "spiffe://shop.example/ns/shop/sa/inventory"])
        let ledger = try CLI.run(["activity", "spiffe://shop.example/ns/shop/sa/ledger", "--db", db, "--format", "json"])
        #expect(ledger.json?.array?.count == 3)
    }

    @Test func compressedInputAndStdin() throws {
        let db = CLI.tempDB()
        let raw = try Data(contentsOf: CLI.root.appendingPathComponent("\(Shop.dir)/kong.ndjson"))
        let gz = try CLI.run(["ingest", "--db", db, "-"], stdin: gzip(Array(raw)))
        #expect(gz.stdout.contains("kong"))
        #expect(gz.stdout.contains("5 stored"))
    }

    private func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/gzip")
        p.arguments = ["-c"]
        let inp = Pipe(), out = Pipe()
        p.standardInput = inp
        p.standardOutput = out
        try p.run()
        inp.fileHandleForWriting.write(Data(bytes))
        try inp.fileHandleForWriting.close()
        let d = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Array(d)
    }
}

/// Compares two JSON documents and reports only the first differing line (golden files are large).
func expectSame(_ actual: JSONValue, _ expected: JSONValue, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual != expected else { return }
    let a = actual.serialized(pretty: true).split(separator: "\n"), e = expected.serialized(pretty: true).split(separator: "\n")
    let n = Array(zip(a, e)).firstIndex { $0.0 != $0.1 } ?? min(a.count, e.count)
    Issue.record("\(what) differs at line \(n + 1): got `\(n < a.count ? a[n] : "<end>")`, expected `\(n < e.count ? e[n] : "<end>")` (TRAIL_UPDATE_GOLDENS=1 rewrites goldens)", sourceLocation: sourceLocation)
}

struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
