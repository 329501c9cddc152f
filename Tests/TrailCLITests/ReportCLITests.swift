import Foundation
import Testing
import TrailCore

/// Where the report tests keep their stores and outputs: under .build (ignored by git), at fixed relative paths,
/// so that the store path printed in reports' reproduction commands is the same on every machine.
enum ReportFixtures {
    static let workDir = ".build/trail-report-tests"
    static let goldenDir = "fixtures/report/golden"

    static func url(_ relative: String) -> URL { CLI.root.appendingPathComponent(relative) }

    /// A fresh store with the shop scenario, at `.build/trail-report-tests/NAME.db`.
    static func shopStore(_ name: String) throws -> String {
        let db = "\(workDir)/\(name).db"
        try FileManager.default.createDirectory(at: url(workDir), withIntermediateDirectories: true)
        for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(at: url(db + s)) }
        let r = try CLI.run(["ingest", "--db", db, "--allow-entry-point", Shop.entryPoint] + Shop.inputs)
        #expect(r.status == 2, "the shop scenario has two malformed records: \(r.stderr)")
        return db
    }

    /// Compares with `fixtures/report/golden/NAME` byte for byte (TRAIL_UPDATE_GOLDENS=1 rewrites it).
    static func expectGolden(_ actual: String, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let file = url("\(goldenDir)/\(name)")
        if ProcessInfo.processInfo.environment["TRAIL_UPDATE_GOLDENS"] == "1" {
            try FileManager.default.createDirectory(at: url(goldenDir), withIntermediateDirectories: true)
            try Data(actual.utf8).write(to: file)
        }
        let expected = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
        guard actual != expected else { return }
        let a = actual.split(separator: "\n", omittingEmptySubsequences: false)
        let e = expected.split(separator: "\n", omittingEmptySubsequences: false)
        let n = Array(zip(a, e)).firstIndex { $0.0 != $0.1 } ?? min(a.count, e.count)
        Issue.record("\(name) differs at line \(n + 1): got `\(n < a.count ? String(a[n].prefix(200)) : "<end>")`, expected `\(n < e.count ? String(e[n].prefix(200)) : "<end>")` (TRAIL_UPDATE_GOLDENS=1 rewrites goldens)", sourceLocation: sourceLocation)
    }

    /// A tool the test needs from the machine (.ci/setup installs it). Missing on CI is a failure; elsewhere the
    /// test says loudly that it was skipped.
    static func require(_ what: String, available: Bool, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        if available { return true }
        if ProcessInfo.processInfo.environment["CI"] != nil {
            Issue.record("\(what) is not installed; .ci/setup installs it", sourceLocation: sourceLocation)
        } else {
            FileHandle.standardError.write(Data("\n*** SKIPPED: \(what) is not installed (run .ci/setup); this test did not run ***\n\n".utf8))
        }
        return false
    }

    /// The first of `names` found on PATH.
    static func which(_ names: [String]) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        for n in names {
            for dir in path + ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(n)") {
                return "\(dir)/\(n)"
            }
        }
        return nil
    }

    /// Runs a program under `timeout` (a hung browser must not hang the suite); returns status, stdout, stderr.
    static func exec(_ path: String, _ args: [String], seconds: Int = 90) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        p.arguments = [String(seconds), path] + args
        p.currentDirectoryURL = CLI.root
        let errFile = FileManager.default.temporaryDirectory.appendingPathComponent("trail-exec-\(UUID().uuidString).err")
        FileManager.default.createFile(atPath: errFile.path, contents: nil)
        let errHandle = try FileHandle(forWritingTo: errFile)
        defer { try? FileManager.default.removeItem(at: errFile) }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = errHandle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try errHandle.close()
        let e = (try? Data(contentsOf: errFile)) ?? Data()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

@Suite("trail report and trail verify", .serialized)
struct ReportCLITests {
    static let t3 = "f6dc38fe3cbb05f687b9ceb427a3681d"

    @Test func goldenReportsOfTheShopScenario() throws {
        let db = try ReportFixtures.shopStore("shop")
        let md = try CLI.run(["report", "--principal", "alice", "--format", "md", "--db", db])
        #expect(md.status == 0, "\(md.stderr)")
        try ReportFixtures.expectGolden(md.stdout, "shop-alice.md")
        let json = try CLI.run(["report", "--trace", Self.t3, "--format", "json", "--db", db])
        #expect(json.status == 0, "\(json.stderr)")
        try ReportFixtures.expectGolden(json.stdout, "shop-revoked-trace.json")
        let csv = try CLI.run(["report", "--resource", "POST /payments/*", "--format", "csv", "--db", db])
        #expect(csv.status == 0, "\(csv.stderr)")
        try ReportFixtures.expectGolden(csv.stdout, "shop-payments.csv")
        let ocsf = try CLI.run(["report", "--query", "chains_through_workload", "--param", "workload=spiffe://shop.example/ns/shop/sa/inventory", "--format", "ocsf", "--db", db])
        #expect(ocsf.status == 0, "\(ocsf.stderr)")
        try ReportFixtures.expectGolden(ocsf.stdout, "shop-inventory.ocsf.ndjson")

        // The same request gives the same bytes (no clock, no randomness inside).
        #expect(try CLI.run(["report", "--principal", "alice", "--format", "md", "--db", db]).stdout == md.stdout)
    }

    @Test func reportContentCoversTheIncident() throws {
        let db = try ReportFixtures.shopStore("content")
        let r = try #require(try CLI.run(["report", "--trace", Self.t3, "--format", "json", "--db", db]).json)
        #expect(r["summary"]?["principals"]?.array?.first?.string == "alice (jwt)")
        #expect(r["summary"]?["client_ips"]?.array?.first?.string == "203.0.113.9")
        #expect(r["chains"]?.array?.first?["hops"]?.array?.count == 4)
        #expect(r["findings"]?.array?.map { $0["kind"]?.string } == ["revoked-certificate"])
        #expect(r["findings"]?.array?.first?["why"]?.string?.isEmpty == false)
        let orders = try #require(r["identities"]?.array?.first { $0["spiffe_id"]?.string == "spiffe://shop.example/ns/shop/sa/orders" })
        let cert1002 = try #require(orders["certificates"]?.array?.first { $0["serial"]?.string == "1002" })
        #expect(cert1002["events"]?.array?.compactMap { $0["kind"]?.string } == ["issued", "revoked"])
        // Evidence: the hops' records, the finding's, and the certificate and CRL records, each with its hash.
        let records = try #require(r["evidence"]?["records"]?.array)
        let formats: Set<String> = Set(records.compactMap { $0["format"]?.string })
        #expect(formats.isSuperset(of: ["kong", "envoy-json", "otlp-json", "pem", "crl"]))
        for rec in records {
            let id = try #require(rec["id"]?.int)
            let raw = try CLI.run(["evidence", String(id), "--db", db])
            #expect(rec["data"]?.string == raw.stdout, "record \(id) is the raw record")
        }
        let reproduce = r["reproduce"]?.array?.compactMap(\.string) ?? []
        #expect(reproduce.first == "trail report --trace \(Self.t3) --format json --db \(db)")
        // Every scope works and finds the right chains.
        let finding = try #require(r["findings"]?.array?.first?["id"]?.string)
        let byFinding = try CLI.run(["report", "--finding", finding, "--format", "json", "--db", db]).json
        #expect(byFinding?["chains"]?.array?.compactMap { $0["trace_id"]?.string } == [Self.t3])
        let byIdentity = try CLI.run(["report", "--identity", "spiffe://shop.example/ns/shop/sa/ledger", "--format", "json", "--db", db]).json
        #expect(byIdentity?["chains"]?.array?.count == 3)
        let windowed = try CLI.run(["report", "--principal", "alice", "--since", "2026-05-04T10:05:00Z", "--until", "2026-05-04T10:30:00Z", "--format", "json", "--db", db]).json
        #expect(windowed?["chains"]?.array?.compactMap { $0["trace_id"]?.string } == [Self.t3])
        let query = try CLI.run(["report", "--query", "findings_by_kind", "--param", "kind=revoked-certificate", "--format", "json", "--db", db]).json
        #expect(query?["chains"]?.array?.compactMap { $0["trace_id"]?.string } == [Self.t3])
        let queryWindow = try CLI.run(["report", "--query", "findings_by_kind", "--param", "kind=revoked-certificate", "--since", "2026-05-04T10:11:00Z", "--db", db])
        #expect(queryWindow.status == 1 && queryWindow.stderr.contains("no chains for query findings_by_kind"))
        // -o writes the file and says so on stderr.
        let out = "\(ReportFixtures.workDir)/content.html"
        let html = try CLI.run(["report", "--trace", Self.t3, "--format", "html", "-o", out, "--db", db])
        #expect(html.status == 0 && html.stdout.isEmpty && html.stderr.contains("wrote \(out)"))
    }

    @Test func badRequestsGiveOneLineErrors() throws {
        let db = try ReportFixtures.shopStore("errors")
        let cases: [([String], String)] = [
            (["report", "--trace", "0123456789abcdef0123456789abcdef"], "no chain with trace id 0123456789abcdef0123456789abcdef"),
            (["report"], "name what to report on"),
            (["report", "--trace", Self.t3, "--principal", "alice"], "give one scope, not --trace and --principal"),
            (["report", "--trace", Self.t3, "--param", "a=b"], "--param applies to --query only"),
            (["report", "--identity", "orders"], "is not a SPIFFE ID"),
            (["report", "--finding", "nope"], "no finding with id nope"),
            (["report", "--query", "plaintext_hops"], "returns no trace_id column"),
            (["report", "--query", "nope"], "no query 'nope'"),
            (["report", "--principal", "nobody"], "no chains for principal nobody"),
            (["report", "--trace", Self.t3, "--since", "yesterday"], "--since 'yesterday'"),
            (["verify", "/nonexistent/report.json"], "cannot read /nonexistent/report.json"),
            (["verify", "README.md"], "is not a JSON report or evidence bundle"),
        ]
        for (args, message) in cases {
            let r = try CLI.run(args + ["--db", db])
            #expect(r.status == 1, "\(args)")
            #expect(r.stderr.hasPrefix("error: ") && r.stderr.contains(message), "\(args): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(args): \(r.stderr)")
        }
        let format = try CLI.run(["report", "--trace", Self.t3, "--format", "pdf", "--db", db])
        #expect(format.status != 0 && format.stderr.contains("pdf"))
    }

    @Test func verifyChecksTheStoreTheBundleAndTheReportItself() throws {
        let db = try ReportFixtures.shopStore("verify")
        let dir = ReportFixtures.workDir
        let report = "\(dir)/verify-report.json", bundle = "\(dir)/verify-bundle.json"
        let made = try CLI.run(["report", "--principal", "alice", "--format", "json", "-o", report, "--evidence-bundle", bundle, "--db", db])
        #expect(made.status == 0, "\(made.stderr)")
        for args in [[report], [report, "--db", db], [bundle], [report, "--bundle", bundle]] {
            let r = try CLI.run(["verify"] + args)
            #expect(r.status == 0, "\(args): \(r.stdout) \(r.stderr)")
            #expect(r.stdout.hasPrefix("OK: 26 evidence records intact"), "\(args): \(r.stdout)")
        }
        let doc = try #require(try JSONParser.parse(Array(Data(contentsOf: ReportFixtures.url(report)))).object)
        let set = try #require(doc.first { $0.0 == "evidence" }?.1["set_sha256"]?.string)
        #expect(try CLI.run(["verify", report, "--expect-set-sha256", set]).status == 0)
        let wrongSet = try CLI.run(["verify", report, "--expect-set-sha256", String(repeating: "0", count: 64)])
        #expect(wrongSet.status == 2 && wrongSet.stdout.contains("expected 0000"))

        // One changed byte in one record of the bundle.
        var text = try String(contentsOf: ReportFixtures.url(bundle), encoding: .utf8)
        let target = "\\\"username\\\":\\\"alice\\\",\\\"custom_id\\\""
        let range = try #require(text.range(of: target), "the bundle holds alice's Kong record")
        text.replaceSubrange(range, with: target.replacingOccurrences(of: "alice", with: "alicf"))
        let tampered = "\(dir)/verify-tampered.json"
        try Data(text.utf8).write(to: ReportFixtures.url(tampered))
        let changed = try CLI.run(["verify", report, "--bundle", tampered])
        #expect(changed.status == 2)
        #expect(changed.stdout.contains("fixtures/scenarios/shop/kong.ndjson:") && changed.stdout.contains(" changed: sha256 is now"))
        #expect(changed.stdout.split(separator: "\n").count == 1, "only that record: \(changed.stdout)")
        #expect(changed.stderr.contains("1 of 26 records changed or missing"))
        // The tampered bundle alone: its own hashes no longer match its data.
        #expect(try CLI.run(["verify", tampered]).status == 2)

        // A record missing from the bundle.
        var bundleDoc = try JSONParser.parse(Array(Data(contentsOf: ReportFixtures.url(bundle))))
        if case .object(var members) = bundleDoc, let i = members.firstIndex(where: { $0.0 == "records" }),
           case .array(let records) = members[i].1 {
            members[i].1 = .array(Array(records.dropFirst()))
            bundleDoc = .object(members)
        }
        let short = "\(dir)/verify-short.json"
        try Data(bundleDoc.serialized(pretty: true).utf8).write(to: ReportFixtures.url(short))
        let missing = try CLI.run(["verify", report, "--bundle", short])
        #expect(missing.status == 2 && missing.stdout.contains(" missing"))

        // Editing a record and its hash together is caught by the set hash.
        let firstHash = try #require(doc.first { $0.0 == "evidence" }?.1["records"]?.array?.first?["sha256"]?.string)
        var reportText = try String(contentsOf: ReportFixtures.url(report), encoding: .utf8)
        reportText = reportText.replacingOccurrences(of: firstHash, with: String(repeating: "a", count: 64))
        let edited = "\(dir)/verify-edited.json"
        try Data(reportText.utf8).write(to: ReportFixtures.url(edited))
        let manifest = try CLI.run(["verify", edited, "--db", db])
        #expect(manifest.status == 2 && manifest.stdout.contains("the manifest was edited"))
    }

    @Test func ocsfValidatesAgainstTheReleasedSchema() throws {
        let db = try ReportFixtures.shopStore("ocsf")
        var ndjson = ""
        for t in Shop.traces {
            let r = try CLI.run(["report", "--trace", t, "--format", "ocsf", "--db", db])
            #expect(r.status == 0, "\(t): \(r.stderr)")
            ndjson += r.stdout
        }
        let lines = ndjson.split(separator: "\n").compactMap { try? JSONParser.parse(Array($0.utf8)) }
        // One API Activity per hop (20 hops in the scenario), one Authentication per edge authentication.
        #expect(lines.filter { $0["class_uid"]?.int == 6003 }.count == 20)
        #expect(lines.filter { $0["class_uid"]?.int == 3002 }.count > 0)
        #expect(lines.allSatisfy { $0["metadata"]?["version"]?.string == "1.5.0" })
        let file = "\(ReportFixtures.workDir)/shop.ocsf.ndjson"
        try Data(ndjson.utf8).write(to: ReportFixtures.url(file))
        guard let python = ReportFixtures.which(["python3"]) else {
            _ = ReportFixtures.require("python3", available: false)
            return
        }
        let (status, out, err) = try ReportFixtures.exec(python, ["fixtures/report/validate_ocsf.py", "1.5.0", file])
        if status == 2 {
            _ = ReportFixtures.require("the OCSF validator (ocsf-json-schema, jsonschema): \(err)", available: false)
            return
        }
        #expect(status == 0, "\(out)\(err)")
        #expect(out.contains("0 invalid"))
    }

    @Test func htmlRendersInChromiumAndTelemetryCannotRunScript() throws {
        guard let chromium = ReportFixtures.which(["chromium", "chromium-browser", "google-chrome"]) else {
            _ = ReportFixtures.require("chromium (Debian package chromium)", available: false)
            return
        }
        // A store whose telemetry tries to inject script and markup into the report.
        let dir = ReportFixtures.workDir
        try FileManager.default.createDirectory(at: ReportFixtures.url(dir), withIntermediateDirectories: true)
        let db = "\(dir)/hostile.db"
        for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(at: ReportFixtures.url(db + s)) }
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        let lines = [
            #"{"start_time":"2026-05-04T10:00:00Z","method":"GET","path":"/a\"><img src=x onerror=\"document.title='pwned-img'\">","response_code":200,"upstream_cluster":"inbound|8080||","downstream_peer_uri_san":"spiffe://x.example/ns/a/sa/front","downstream_local_uri_san":"spiffe://x.example/ns/a/sa/back","user_agent":"<script>document.title='pwned'</script>","request_id":"r1","trace_id":"\#(trace)"}"#,
            #"{"start_time":"2026-05-04T10:00:01Z","method":"POST","path":"/b</text><script>document.title='pwned-svg'</script>","response_code":201,"upstream_cluster":"inbound|8080||","downstream_peer_uri_san":"spiffe://x.example/ns/a/sa/back","downstream_local_uri_san":"spiffe://x.example/ns/a/sa/store","user_agent":"x' onload='document.title=1","request_id":"r2","trace_id":"\#(trace)"}"#,
        ]
        let ingest = try CLI.run(["ingest", "--db", db, "-"], stdin: Array((lines.joined(separator: "\n") + "\n").utf8))
        #expect(ingest.status == 0, "\(ingest.stdout)\(ingest.stderr)")
        let html = "\(dir)/hostile.html"
        let r = try CLI.run(["report", "--trace", trace, "--format", "html", "-o", html, "--db", db])
        #expect(r.status == 0, "\(r.stderr)")
        let source = try String(contentsOf: ReportFixtures.url(html), encoding: .utf8)
        #expect(!source.contains("<script"), "no script element anywhere in the file")
        #expect(!source.contains("http://") || !source.contains("src=\"http"), "no external resources")

        let (status, dom, err) = try ReportFixtures.exec(chromium, [
            "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", ReportFixtures.url(html).absoluteString,
        ])
        #expect(status == 0, "chromium: \(err.suffix(500))")
        #expect(dom.contains("<title>Trail incident report: trace \(trace)</title>"), "the page rendered with its own title")
        #expect(!dom.contains("pwned</title>") && !dom.contains("<title>pwned") && !dom.contains("<title>1</title>"))
        #expect(!dom.contains("<script"), "no script element in the rendered DOM")
        #expect(!dom.contains("<img"), "no element injected through a path")
        #expect(dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"), "the user agent shows as text")
        // The SVG draws every hop of the chain.
        let svg = try #require(dom.range(of: "<svg class=\"chain-diagram\"").map { String(dom[$0.lowerBound...]) })
        let svgBody = String(svg[..<(svg.range(of: "</svg>")?.upperBound ?? svg.endIndex)])
        #expect(svgBody.components(separatedBy: "<g class=\"hop").count - 1 == 2)

        // The shop scenario: every hop of every chain in the SVGs; a screenshot renders.
        let shop = try ReportFixtures.shopStore("chromium")
        let alice = "\(dir)/alice.html"
        #expect(try CLI.run(["report", "--principal", "alice", "--format", "html", "-o", alice, "--db", shop]).status == 0)
        let (s2, dom2, _) = try ReportFixtures.exec(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", ReportFixtures.url(alice).absoluteString])
        #expect(s2 == 0)
        let diagrams = dom2.components(separatedBy: "<svg class=\"chain-diagram\"").dropFirst()
        #expect(diagrams.count == 3)
        for d in diagrams {
            let hops = Int(d.split(separator: "data-hops=\"").dropFirst().first?.prefix { $0.isNumber } ?? "") ?? -1
            let body = d[..<(d.range(of: "</svg>")?.lowerBound ?? d.endIndex)]
            #expect(body.components(separatedBy: "<g class=\"hop").count - 1 == hops && hops > 0)
        }
        #expect(dom2.contains("revoked-certificate (high)"))
        let png = ReportFixtures.url("\(dir)/alice.png")
        try? FileManager.default.removeItem(at: png)
        let (s3, _, err3) = try ReportFixtures.exec(chromium, [
            "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,1500",
            "--screenshot=\(png.path)", ReportFixtures.url(alice).absoluteString,
        ])
        #expect(s3 == 0, "\(err3.suffix(300))")
        let bytes = try Data(contentsOf: png)
        #expect(bytes.count > 10_000 && bytes.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
    }
}
