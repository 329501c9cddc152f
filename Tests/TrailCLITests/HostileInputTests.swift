import Crypto
import Foundation
import GRDB
import Testing
import TrailCore

/// The analyst's own inputs, when they carry an attack (pasted from telemetry, or typed by someone else): SQL
/// injection through every CLI parameter and query parameter, path traversal in query names and evidence bundles,
/// and terminal injection through what telemetry wrote, in every table Trail prints and in its error lines.
@Suite("hostile CLI arguments, query names, bundles and terminal output", .serialized)
struct HostileInputTests {
    /// Runs `trail` with stdout and stderr in files (an error may quote a 100 KB argument: pipes could fill).
    static func run(_ arguments: [String], in dir: URL, stdin: [UInt8]? = nil) throws -> CLI.Result {
        let id = UUID().uuidString
        let out = dir.appendingPathComponent("\(id).out"), err = dir.appendingPathComponent("\(id).err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        let p = Process()
        p.executableURL = CLI.binary
        p.arguments = arguments
        p.currentDirectoryURL = CLI.root
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "TRAIL_DB")
        p.environment = env
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        let input = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try p.run()
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin))
            try input.fileHandleForWriting.close()
        }
        p.waitUntilExit()
        return CLI.Result(
            status: p.terminationStatus, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    /// True for what must never reach a terminal raw: C0 controls but the line feed, DEL, C1 controls, the line
    /// and paragraph separators and the bidirectional controls.
    static func isDangerous(_ u: Unicode.Scalar) -> Bool {
        (u.value < 0x20 && u != "\n") || u.value == 0x7F || (0x80...0x9F).contains(u.value) || u == "\u{2028}" || u == "\u{2029}"
            || (0x202A...0x202E).contains(u.value) || (0x2066...0x2069).contains(u.value)
    }

    static func rawControls(_ text: String) -> [String] {
        text.unicodeScalars.filter(isDangerous).map { "U+" + String($0.value, radix: 16) }
    }

    /// Every table's row count, a SHA-256 of its rows, the schema and SQLite's integrity check.
    static func snapshot(_ path: String) throws -> [String] {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        return try queue.read { db in
            var out: [String] = []
            for table in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") {
                var hash = SHA256()
                var count = 0
                let rows = try Row.fetchCursor(db, sql: "SELECT * FROM \"\(table)\"")
                while let row = try rows.next() {
                    hash.update(data: Array(row.description.utf8))
                    count += 1
                }
                out.append("\(table): \(count) rows, sha256 \(Hex.encode(Array(hash.finalize())))")
            }
            out += try String.fetchAll(db, sql: "SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY type, name")
            out.append("integrity_check: " + (try String.fetchAll(db, sql: "PRAGMA integrity_check")).joined(separator: ", "))
            return out
        }
    }

    static func workspace() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    // MARK: SQL injection

    /// The classic payloads, and what a shell can put in an argument (no NUL: execve ends an argument at one; NUL
    /// bytes are tried against the store's API in `HostileQueryValueTests.hostileValuesThroughEveryQuery`).
    static func payloads(attach: String) -> [(String, String)] {
        [
            ("quote tautology", "' OR '1'='1"),
            ("stacked DROP", "\"; DROP TABLE observation; --"),
            ("UNION SELECT", "1) UNION SELECT name, sql, 1, 1, 1, 1, 1, 1, 1, 1 FROM sqlite_master --"),
            ("LIKE wildcard", "%' OR 1=1 --"),
            ("ATTACH", "*/ ATTACH DATABASE '\(attach)' AS pwned; --"),
            ("terminal escapes", "\u{1B}[2J\u{1B}]0;pwned\u{07}\u{9B}31m\u{202E}"),
            ("forged line", "x\nerror: forged line\r\nok"),
            ("100 KB", String(repeating: "A", count: 100_000)),
        ]
    }

    /// Every parameter of the analyst commands README.md lists, as (name, arguments for a payload). Query
    /// parameters come from `trail query --list`, so a new query file is covered without editing this test.
    static func parameterSlots(db: String, queries: JSONValue) -> [(String, (String) -> [String])] {
        let d = ["--db", db]
        var slots: [(String, (String) -> [String])] = [
            ("chain TRACE_ID", { ["chain", $0] + d }),
            ("chain --format", { ["chain", Shop.traces[0], "--format", $0] + d }),
            ("who-accessed RESOURCE", { ["who-accessed", $0] + d }),
            ("who-accessed /PATH*", { ["who-accessed", "POST /\($0)*", "--format", "json"] + d }),
            ("who-accessed SPIFFE_ID", { ["who-accessed", "spiffe://shop.example/\($0)"] + d }),
            ("who-accessed --since", { ["who-accessed", "/payments/*", "--since", $0] + d }),
            ("who-accessed --until", { ["who-accessed", "/payments/*", "--until", $0] + d }),
            ("activity PRINCIPAL", { ["activity", $0] + d }),
            ("activity --since", { ["activity", "alice", "--since", $0] + d }),
            ("findings --kind", { ["findings", "--kind", $0] + d }),
            ("findings --trace", { ["findings", "--trace", $0] + d }),
            ("findings --since", { ["findings", "--since", $0] + d }),
            ("findings --until", { ["findings", "--until", $0, "--format", "csv"] + d }),
            ("identities --at", { ["identities", "--at", $0] + d }),
            ("query NAME", { ["query", $0] + d }),
            ("query --param NAME=", { ["query", "plaintext_hops", "--param", "\($0)=1"] + d }),
            ("report --trace", { ["report", "--trace", $0] + d }),
            ("report --finding", { ["report", "--finding", $0] + d }),
            ("report --principal", { ["report", "--principal", $0, "--format", "json"] + d }),
            ("report --identity", { ["report", "--identity", "spiffe://shop.example/\($0)"] + d }),
            ("report --resource", { ["report", "--resource", $0, "--format", "csv"] + d }),
            ("report --query", { ["report", "--query", $0] + d }),
            ("report --query --param", { ["report", "--query", "findings_by_kind", "--param", "kind=\($0)", "--format", "ocsf"] + d }),
            ("report --since", { ["report", "--principal", "alice", "--since", $0] + d }),
            ("report --until", { ["report", "--principal", "alice", "--until", $0] + d }),
            ("report --format", { ["report", "--principal", "alice", "--format", $0] + d }),
            ("evidence ID", { ["evidence", $0] + d }),
            ("rejects --limit", { ["rejects", "--limit", $0] + d }),
        ]
        for query in queries.array ?? [] {
            guard let name = query["name"]?.string else { continue }
            let parameters = query["parameters"]?.array ?? []
            for p in parameters {
                guard let key = p["name"]?.string else { continue }
                // The other required parameters get ordinary values, so the payload reaches the statement.
                var others: [String] = []
                for o in parameters where o["name"]?.string != key && o["default"]?.isNull != false {
                    let value: String
                    switch o["type"]?.string {
                    case "int": value = "1"
                    case "time": value = "2026-01-01T00:00:00Z"
                    default: value = "x"
                    }
                    others += ["--param", "\(o["name"]?.string ?? "")=\(value)"]
                }
                slots.append(("query \(name) --param \(key)", { ["query", name, "--param", "\(key)=\($0)"] + others + d }))
            }
        }
        return slots
    }

    @Test func sqlInjectionThroughEveryParameterLeavesTheStoreUnchanged() throws {
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = dir.appendingPathComponent("trail.db").path
        let attach = dir.appendingPathComponent("pwned.db").path
        let ingest = try Self.run(["ingest", "--db", db, "-q", "--allow-entry-point", Shop.entryPoint] + Shop.inputs, in: dir)
        #expect(ingest.status == 2, "\(ingest.stderr)")
        let before = try Self.snapshot(db)
        #expect(before.last == "integrity_check: ok")
        let queries = try #require(try Self.run(["query", "--list", "--format", "json"], in: dir).json)
        let slots = Self.parameterSlots(db: db, queries: queries)
        #expect(slots.count >= 40, "\(slots.count) parameters")
        var tries = 0
        var outcomes: [Int32: Int] = [:]
        for (slot, arguments) in slots {
            for (what, payload) in Self.payloads(attach: attach) {
                let r = try Self.run(arguments(payload), in: dir)
                tries += 1
                outcomes[r.status, default: 0] += 1
                let label = "\(slot) with \(what)"
                switch r.status {
                case 0:
                    // A clean answer: nothing from the schema leaked into it.
                    #expect(!r.stdout.contains("CREATE TABLE") && !r.stdout.contains("sqlite_master"), "\(label): \(r.stdout.prefix(300))")
                case 1:
                    // One line, saying what was wrong.
                    #expect(r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1, "\(label): \(r.stderr.prefix(300))")
                    #expect(r.stdout.isEmpty, "\(label)")
                case 64:
                    // Refused by the argument parser (a number, a format, a finding kind): usage on stderr.
                    #expect(r.stderr.hasPrefix("Error: "), "\(label): \(r.stderr.prefix(300))")
                default:
                    Issue.record("\(label): exit code \(r.status): \(r.stderr.prefix(300))")
                }
                #expect(Self.rawControls(r.stdout + r.stderr).isEmpty, "\(label): raw \(Self.rawControls(r.stdout + r.stderr))")
                #expect(!(r.stdout + r.stderr).split(separator: "\n").contains { $0.hasPrefix("error: forged line") }, "\(label)")
            }
        }
        #expect(tries == slots.count * 8)
        #expect(!FileManager.default.fileExists(atPath: attach), "ATTACH ran")
        let after = try Self.snapshot(db)
        #expect(after == before, "the store changed: \(zip(after, before).filter { $0 != $1 }.prefix(3))")
        // The answers were real: some payloads found nothing, others were refused (the mix pins the test's reach).
        #expect((outcomes[0] ?? 0) > 50 && (outcomes[1] ?? 0) > 50 && (outcomes[64] ?? 0) > 10, "\(outcomes)")
    }

    /// `trail ingest`'s options are remembered in the store; their hostile values are stored as text or refused,
    /// and the schema and every other table stay as they were.
    @Test func hostileIngestOptionsAreRefusedOrKeptAsText() throws {
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = dir.appendingPathComponent("trail.db").path
        let attach = dir.appendingPathComponent("pwned.db").path
        _ = try Self.run(["ingest", "--db", db, "-q"] + Shop.inputs, in: dir)
        let before = try Self.snapshot(db).filter { !$0.hasPrefix("setting:") }
        let options: [(String, (String) -> [String])] = [
            ("--format", { ["--format", $0] }), ("--envoy-format", { ["--format", "envoy-text", "--envoy-format", $0] }),
            ("--allow-entry-point", { ["--allow-entry-point", $0] }), ("--clock-skew", { ["--clock-skew", $0] }),
            ("--credential-baseline", { ["--credential-baseline", $0] }),
        ]
        for (option, arguments) in options {
            for (what, payload) in Self.payloads(attach: attach) {
                // Nothing new to store: the Kong file is already in; only the option is new.
                let r = try Self.run(["ingest", "--db", db, "-q"] + arguments(payload) + ["\(Shop.dir)/kong.ndjson"], in: dir)
                #expect([0, 1, 2, 64].contains(r.status), "\(option) with \(what): \(r.status) \(r.stderr.prefix(200))")
                if r.status == 1 { #expect(r.stderr.split(separator: "\n").count == 1, "\(option) with \(what): \(r.stderr.prefix(300))") }
                #expect(Self.rawControls(r.stdout + r.stderr).isEmpty, "\(option) with \(what)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: attach))
        let after = try Self.snapshot(db).filter { !$0.hasPrefix("setting:") }
        // Correlation may rerun, and a wrong --format rejects the file's records (kept in `reject`); the evidence,
        // observations, identity events and schema may not change.
        for prefix in ["raw_block:", "raw_record:", "observation:", "identity_event:", "table ", "index ", "integrity_check:"] {
            #expect(after.filter { $0.hasPrefix(prefix) } == before.filter { $0.hasPrefix(prefix) }, "\(prefix)")
        }
    }

    // MARK: Path traversal

    /// A query folder with one harmless query, and next to it (and below it) query files that would print
    /// PWNED if any name reached them.
    @Test func queryNamesCannotLeaveTheQueryFolder() throws {
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let queries = dir.appendingPathComponent("queries")
        try FileManager.default.createDirectory(at: queries.appendingPathComponent("sub"), withIntermediateDirectories: true)
        let trap = "-- description: must never run\n-- param: trace_id text = x  x\nSELECT 'PWNED' AS trace_id\n"
        try "-- description: harmless\nSELECT 'fine' AS trace_id\n".write(to: queries.appendingPathComponent("ok.sql"), atomically: true, encoding: .utf8)
        try trap.write(to: dir.appendingPathComponent("evil.sql"), atomically: true, encoding: .utf8)
        try trap.write(to: queries.appendingPathComponent("sub/evil.sql"), atomically: true, encoding: .utf8)
        try trap.write(to: queries.appendingPathComponent(".hidden.sql.bak"), atomically: true, encoding: .utf8)
        let db = dir.appendingPathComponent("trail.db").path
        _ = try Self.run(["ingest", "--db", db, "-q", "\(Shop.dir)/kong.ndjson"], in: dir)
        let names = [
            "../evil", "../evil.sql", "..", ".", "./ok", "sub/evil", "sub/../../evil", dir.appendingPathComponent("evil").path,
            dir.appendingPathComponent("evil.sql").path, "/etc/passwd", "../../../../../../etc/passwd", "ok.sql", "ok/", "%2e%2e/evil",
            "..\\evil", "ok\u{1B}[2J", ".hidden", "", "ok\nok",
        ]
        for name in names {
            for arguments in [["query", name], ["report", "--query", name, "--format", "json"]] {
                let r = try Self.run(arguments + ["--queries", queries.path, "--db", db], in: dir)
                #expect(r.status == 1, "\(arguments.joined(separator: " ")): \(r.status) \(r.stdout.prefix(200))")
                #expect(!r.stdout.contains("PWNED") && !r.stderr.contains("PWNED"), "\(name) ran a file outside the query folder")
                #expect(r.stderr.hasPrefix("error: no query"), "\(name): \(r.stderr)")
                #expect(r.stderr.split(separator: "\n").count == 1 && Self.rawControls(r.stderr).isEmpty, "\(name): \(r.stderr)")
            }
        }
        // The control: the folder's own query runs.
        let ok = try Self.run(["query", "ok", "--queries", queries.path, "--db", db, "--format", "json"], in: dir)
        #expect(ok.status == 0 && ok.stdout.contains("fine"), "\(ok.stderr)")
    }

    /// `trail verify` reads two files it is given and writes none. A hostile bundle's `source` paths are text
    /// only: a bundle entry without data whose source names a real file with the very bytes the hash wants is
    /// still "without its data", never read from that path; hashes that are not hex are refused, not echoed.
    @Test func evidenceBundlesCannotPointVerifyAtFiles() throws {
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let secret = Array("the bytes the hash wants\n".utf8)
        let secretPath = dir.appendingPathComponent("secret.txt")
        try Data(secret).write(to: secretPath)
        let hash = Hex.encode(Array(SHA256.hash(data: secret)))
        let setHash = Hex.encode(Array(SHA256.hash(data: Array(hash.utf8))))
        func bundle(_ records: String, set: String = setHash) -> String {
            #"{"trail_evidence_bundle": 1, "algorithm": "sha256", "set_sha256": "\#(set)", "count": 1, "records": [\#(records)]}"#
        }
        let report = dir.appendingPathComponent("report.json")
        let relative = "../" + secretPath.lastPathComponent
        try bundle(#"{"id": 1, "sha256": "\#(hash)", "format": "kong", "source": "\#(relative)", "line": 1}"#)
            .write(to: report, atomically: true, encoding: .utf8)
        let sub = dir.appendingPathComponent("sub")
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
        let hostileBundle = dir.appendingPathComponent("bundle.json")
        try bundle(#"{"id": 1, "sha256": "\#(hash)", "format": "kong", "source": "\#(secretPath.path)", "line": 1}"#)
            .write(to: hostileBundle, atomically: true, encoding: .utf8)
        let listing = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        // Alone: the report carries no data, so verify says so instead of reading `source`.
        let alone = try Self.run(["verify", report.path], in: sub)
        #expect(alone.status == 1 && alone.stderr.contains("does not carry the records' data"), "\(alone.stdout) \(alone.stderr)")
        // Against a bundle with no data for the record either.
        let withBundle = try Self.run(["verify", report.path, "--bundle", hostileBundle.path], in: sub)
        #expect(withBundle.status == 2 && withBundle.stdout.contains("unreadable: the bundle lists record 1 without its data"),
                "\(withBundle.stdout) \(withBundle.stderr)")
        #expect(!withBundle.stdout.contains("OK"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == listing, "verify wrote a file")

        // Hashes that are not 64 hex digits (a terminal escape, a forged line) are refused without being printed.
        for (what, text) in [
            ("record hash", bundle(#"{"id": 1, "sha256": "\u001b[2J\nOK: all intact", "format": "kong", "source": "a", "line": 1, "encoding": "utf-8", "data": "x"}"#)),
            ("set hash", bundle(#"{"id": 1, "sha256": "\#(hash)", "format": "kong", "source": "a", "line": 1, "encoding": "utf-8", "data": "x"}"#, set: "\\u001b]0;pwned\\u0007")),
        ] {
            let path = dir.appendingPathComponent("hostile-\(what.replacingOccurrences(of: " ", with: "-")).json")
            try text.write(to: path, atomically: true, encoding: .utf8)
            let r = try Self.run(["verify", path.path], in: sub)
            #expect(r.status == 1, "\(what): \(r.status) \(r.stdout)")
            #expect(r.stderr.contains("is not 64 hex digits") && r.stderr.split(separator: "\n").count == 1, "\(what): \(r.stderr)")
            #expect(Self.rawControls(r.stdout + r.stderr).isEmpty && !r.stdout.contains("OK"), "\(what)")
        }
        // The source is shown escaped when verify names a changed record.
        let changed = dir.appendingPathComponent("changed.json")
        try bundle(#"{"id": 1, "sha256": "\#(hash)", "format": "kong", "source": "\u001b[2Jkong.ndjson\r\nOK: forged", "line": 1, "encoding": "utf-8", "data": "edited"}"#)
            .write(to: changed, atomically: true, encoding: .utf8)
        let r = try Self.run(["verify", changed.path], in: sub)
        #expect(r.status == 2, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.split(separator: "\n").count == 1 && r.stdout.hasPrefix("record 1 (\\u{1b}[2Jkong.ndjson\\u{d}\\u{a}OK: forged:1) changed"), "\(r.stdout)")
        #expect(Self.rawControls(r.stdout + r.stderr).isEmpty)
    }

    // MARK: Terminal injection through telemetry

    /// What an attacker puts in a user agent, a path, a consumer name: clear the screen, set the window title,
    /// return to the line start, forge a line, reverse the text, a C1 NEL and CSI.
    static let hostile = "\u{1B}[2J\u{1B}]0;pwned\u{07}\r\nforged: line\u{202E}gnp.exe\u{85}next\u{9B}31m"
    /// The same without a line feed, for a record's raw bytes.
    static let rawHostile = "\u{1B}[2J\u{1B}]0;pwned\u{07}\rforged: line\u{202E}gnp.exe\u{85}next\u{9B}31m"

    /// Records with the hostile string in every field a table shows, one file per format: a Kong line (consumer,
    /// URI, user agent, host), an Envoy JSON line (path, authority, user agent, request id), an Envoy text line
    /// with the raw bytes in its user agent (Envoy writes them so), and an Envoy JSON line that is rejected.
    static func hostileRecords() throws -> [(format: String, bytes: [UInt8])] {
        let h = JSONValue.string(hostile).serialized()
        let kong = try String(contentsOf: CLI.root.appendingPathComponent("\(Shop.dir)/kong.ndjson"), encoding: .utf8)
            .split(separator: "\n")[0]
            .replacingOccurrences(of: #""username":"alice""#, with: #""username":\#(h)"#)
            .replacingOccurrences(of: #""host":"shop.example.com""#, with: #""host":\#(h)"#)
            .replacingOccurrences(of: "Mozilla\\/5.0", with: String(h.dropFirst().dropLast()))
            .replacingOccurrences(of: "a01171eeb6331bee0b4e1b01bd57d392", with: "7a01171eeb6331bee0b4e1b01bd57d39")
        let envoy = #"{"start_time":"2026-05-04T10:00:00Z","method":"GET","path":\#(JSONValue.string("/a" + hostile).serialized()),"response_code":200,"authority":\#(h),"upstream_cluster":"inbound|8080||","downstream_peer_uri_san":"spiffe://x.example/ns/a/sa/b","downstream_local_uri_san":"spiffe://x.example/ns/a/sa/c","user_agent":\#(h),"request_id":\#(h),"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#
        let text = try String(contentsOf: CLI.root.appendingPathComponent("\(Shop.dir)/istio-proxy.log"), encoding: .utf8)
            .split(separator: "\n")[0]
            .replacingOccurrences(of: "Go-http-client/1.1", with: rawHostile)
        // Raw bytes in a JSON string are not JSON: rejected, and listed by `trail rejects`.
        let rejected = "{\"start_time\":\"2026-05-04T10:00:00Z\",\"method\":\"GET\",\"path\":\"/\(rawHostile)\"}"
        return [("kong", Array((kong + "\n").utf8)), ("envoy-json", Array((envoy + "\n").utf8)), ("envoy-text", Array((text + "\n").utf8)),
                ("envoy-json", Array((rejected + "\n").utf8))]
    }

    /// Ingests the hostile records into a new store; returns the ingest results.
    static func ingestHostile(db: String, in dir: URL) throws -> [CLI.Result] {
        try hostileRecords().map { try run(["ingest", "--db", db, "--format", $0.format, "-"], in: dir, stdin: $0.bytes) }
    }

    @Test func telemetryCannotDriveTheTerminalThroughAnyTable() throws {
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = dir.appendingPathComponent("trail.db").path
        let ingests = try Self.ingestHostile(db: db, in: dir)
        #expect(ingests.map(\.status) == [0, 0, 0, 2], "\(ingests.map { $0.stdout + $0.stderr })")
        for ingest in ingests { #expect(Self.rawControls(ingest.stdout + ingest.stderr).isEmpty, "ingest's list of rejections") }
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        let kongTrace = "7a01171eeb6331bee0b4e1b01bd57d39"
        var outputs: [(String, CLI.Result)] = []
        for arguments in [
            ["chain", trace], ["chain", kongTrace], ["who-accessed", "spiffe://x.example/ns/a/sa/c"], ["activity", Self.hostile],
            ["activity", "spiffe://x.example/ns/a/sa/b"], ["findings"], ["identities"], ["rejects"],
            ["query", "chain_hops", "--param", "trace_id=\(trace)"], ["query", "activity", "--param", "principal=\(Self.hostile)"],
            ["who-accessed", "/a*"], ["evidence", "1", "--verbose"], ["evidence", "3", "--verbose"], ["chain", Self.hostile],
            ["chain", "4bf92f3577b34da6a3ce929d0e0e4736"], ["who-accessed", "POST /payments/charge"],
        ] {
            for format in ["table", "csv"] where !(arguments[0] == "evidence" && format == "csv") {
                let args = arguments + (arguments[0] == "evidence" ? [] : ["--format", format]) + ["--db", db]
                outputs.append((args.joined(separator: " "), try Self.run(args, in: dir)))
            }
        }
        var rows = 0
        for (what, r) in outputs {
            // CSV records end with CR LF (RFC 4180); any other CR is an attack.
            let stdout = what.contains("--format csv") ? r.stdout.replacingOccurrences(of: "\r\n", with: "\n") : r.stdout
            let shown = what.hasPrefix("evidence") ? r.stderr : stdout + r.stderr
            #expect(Self.rawControls(shown).isEmpty, "\(what): raw \(Self.rawControls(shown))")
            #expect(!shown.split(separator: "\n").contains { $0.hasPrefix("forged") }, "\(what): a forged line")
            if shown.contains("\\u{1b}[2J") { rows += 1 }
        }
        // The hostile text was there to be escaped (not dropped): most outputs show it, escaped.
        #expect(rows >= 10, "only \(rows) outputs showed the escaped text")
        // JSON output escapes all of it, and a JSON reader gets the original string back.
        let json = try Self.run(["chain", trace, "--format", "json", "--db", db], in: dir)
        #expect(Self.rawControls(json.stdout).isEmpty)
        #expect(json.json?["hops"]?.array?.first?["user_agent"]?.string == Self.hostile)
    }

    /// `trail evidence` prints the record byte for byte into a pipe (for hashing), but on a terminal it shows
    /// the control characters escaped unless --raw is given.
    @Test func evidenceOnATerminalShowsControlsEscaped() throws {
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = dir.appendingPathComponent("trail.db").path
        _ = try Self.ingestHostile(db: db, in: dir)
        // The Envoy text line holds raw escape sequences; a pipe gets it byte for byte (without its line feed).
        let rawLine = String(decoding: try Self.hostileRecords()[2].bytes.dropLast(), as: UTF8.self)
        let id = try #require((1...5).first { try Self.run(["evidence", String($0), "--db", db], in: dir).stdout == rawLine },
                              "no evidence record holds the raw line")
        // A pseudo-terminal (util-linux `script`), as an analyst's shell has.
        func onTerminal(_ extra: String) throws -> CLI.Result {
            try Self.run(["-qec", "\(CLI.binary.path) evidence \(id) --db \(db) \(extra)", "/dev/null"], in: dir, executable: "/usr/bin/script")
        }
        let shown = try onTerminal("")
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(!shown.stdout.contains("\u{1B}[2J") && shown.stdout.contains("\\u{1b}[2J"), "\(shown.stdout.prefix(300))")
        #expect(shown.stdout.contains("control characters shown escaped"))
        let raw = try onTerminal("--raw")
        #expect(raw.stdout.contains("\u{1B}]0;pwned"), "--raw writes the bytes")
    }
}

extension HostileInputTests {
    /// `run` for another program (here `script`).
    static func run(_ arguments: [String], in dir: URL, executable: String) throws -> CLI.Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.currentDirectoryURL = CLI.root
        let out = dir.appendingPathComponent("\(UUID().uuidString).out")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: out)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return CLI.Result(status: p.terminationStatus, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "", stderr: "")
    }
}
