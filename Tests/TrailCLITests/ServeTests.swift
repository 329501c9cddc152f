import Foundation
import GRDB
import Testing
import TrailCore
import TrailStore

/// `trail serve` as a real process, fed by real clients: the OpenTelemetry Python SDK's OTLP/HTTP exporter
/// and curl, over TLS with a bearer token or a SPIFFE client certificate (openssl-made).
@Suite("trail serve with real clients", .serialized)
struct ServeTests {
    final class Server {
        let process = Process()
        let url: String
        let dir: URL
        let db: String
        let token: String

        /// Starts `trail serve` with fresh certificates, or again on the certificates and store of `reusing`; on
        /// `port` (0: a free one), with the store at `db` (default: `trail.db` beside the certificates), client
        /// certificates chaining to `clientCA` (default: the CA that made the server's certificate), its stderr
        /// appended to `stderrPath` (default: discarded).
        init(reusing: URL? = nil, port: Int = 0, db: String? = nil, clientCA: String? = nil, stderrPath: String? = nil,
             extraArguments: [String] = []) throws {
            if let reusing {
                dir = reusing
            } else {
                dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-serve-\(UUID().uuidString)")
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                let make = Process()
                make.executableURL = URL(fileURLWithPath: "/bin/bash")
                make.arguments = [CLI.root.appendingPathComponent("fixtures/serve/make-server-certs.sh").path, dir.path]
                try make.run()
                make.waitUntilExit()
            }
            let tokens = try String(contentsOf: dir.appendingPathComponent("tokens"), encoding: .utf8)
            token = String(tokens.split(separator: ":")[1].trimmingCharacters(in: .whitespacesAndNewlines))
            self.db = db ?? dir.appendingPathComponent("trail.db").path
            process.executableURL = CLI.binary
            process.arguments = [
                "serve", "--db", self.db, "--listen", "127.0.0.1:\(port)",
                "--tls-cert", dir.appendingPathComponent("server.pem").path,
                "--tls-key", dir.appendingPathComponent("server.key").path,
                "--client-ca", clientCA ?? dir.appendingPathComponent("ca.pem").path, "--allow", "spiffe://shop.example",
                "--token-file", dir.appendingPathComponent("tokens").path,
            ] + extraArguments
            let out = Pipe()
            process.standardOutput = out
            if let stderrPath {
                if !FileManager.default.fileExists(atPath: stderrPath) { FileManager.default.createFile(atPath: stderrPath, contents: nil) }
                let handle = FileHandle(forWritingAtPath: stderrPath)
                handle?.seekToEndOfFile()
                process.standardError = handle
            } else {
                process.standardError = FileHandle.nullDevice
            }
            try process.run()
            // The first line is `listening on URL`.
            var line = [UInt8]()
            let handle = out.fileHandleForReading
            while true {
                let byte = handle.readData(ofLength: 1)
                guard let b = byte.first else { break }
                if b == 0x0A { break }
                line.append(b)
            }
            let text = String(decoding: line, as: UTF8.self)
            guard text.hasPrefix("listening on ") else {
                process.terminate()
                throw CLIError("serve did not start: '\(text)'")
            }
            url = String(text.dropFirst("listening on ".count))
        }

        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

        func stop() {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }

        /// Runs curl against the server and returns (HTTP status, body).
        func curl(_ arguments: [String], auth: Bool = true) throws -> (Int, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            p.arguments = ["-sS", "--cacert", path("ca.pem"), "-o", "-", "-w", "\n%{http_code}"]
                + (auth ? ["-H", "Authorization: Bearer \(token)"] : []) + arguments
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let text = String(decoding: data, as: UTF8.self)
            let status = Int(text.split(separator: "\n").last ?? "") ?? 0
            return (status, String(text.split(separator: "\n").dropLast().joined(separator: "\n")))
        }
    }

    struct CLIError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    static func fixture(_ path: String) -> String { CLI.root.appendingPathComponent("fixtures/\(path)").path }

    /// One Kong record whose x-request-id names it.
    static func kongRecord(_ id: String, ms: Int64) -> String {
        #"{"request":{"id":"\#(id)","method":"POST","uri":"/orders","headers":{"host":"shop.example","x-request-id":"\#(id)"}},"response":{"status":201},"service":{"name":"orders"},"client_ip":"203.0.113.7","started_at":\#(ms),"latencies":{"request":3}}"#
    }

    /// Opens the store read-only (after a crash too: SQLite recovers the WAL) and runs `block` on it.
    static func inspect<T: Sendable>(_ db: String, _ block: @Sendable (Database) throws -> T) throws -> T {
        try TrailStore(path: db, readOnly: true).read(block)
    }

    /// kill -9 at random moments under load, many times in a row, restarting `trail serve` each time on the same
    /// address, store and certificates. Four senders post batches of 50 Kong records and retry every batch that was
    /// not acknowledged, byte for byte, as an exporter does. Afterwards every acknowledged record is stored exactly
    /// once (observations and raw records), and the database passes `PRAGMA integrity_check` after every kill.
    @Test func repeatedKillNineUnderLoadLosesAndDuplicatesNothing() throws {
        let kills = 20
        let port = try MeshTests.Estate.freePort()
        let errPath = FileManager.default.temporaryDirectory.appendingPathComponent("trail-kill-\(UUID().uuidString).err").path
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        var server = try Server(port: port, stderrPath: errPath)
        let dir = server.dir
        let db = server.db
        let stopFile = dir.appendingPathComponent("stop-senders").path
        let senders = Process()
        senders.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        senders.arguments = ["python3", Self.fixture("serve/retrying_sender.py"), server.url, server.path("ca.pem"), server.token, "4", "50", stopFile]
        let out = Pipe()
        senders.standardOutput = out
        try senders.run()
        // However the test ends, nothing it started outlives it.
        defer {
            if senders.isRunning { senders.terminate() }
            server.stop()
        }

        var moments: [Double] = []
        var killed = 0
        for _ in 0..<kills {
            let moment = Double.random(in: 0.2...2.0)
            moments.append(moment)
            Thread.sleep(forTimeInterval: moment)
            kill(server.process.processIdentifier, SIGKILL)
            server.process.waitUntilExit()
            #expect(server.process.terminationReason == .uncaughtSignal)
            killed += 1
            // What a restart finds: an intact database.
            let check = try Self.inspect(db) { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
            #expect(check == ["ok"], "after kill \(killed): \(check.prefix(5))")
            server = try Server(reusing: dir, port: port, stderrPath: errPath)
        }
        // The last server stays up while the senders finish; then it stops cleanly.
        Thread.sleep(forTimeInterval: 1)
        FileManager.default.createFile(atPath: stopFile, contents: nil)
        let report = out.fileHandleForReading.readDataToEndOfFile()
        senders.waitUntilExit()
        server.stop()

        let results = String(decoding: report, as: UTF8.self).split(separator: "\n").compactMap { try? JSONParser.parse(Array($0.utf8)) }
        #expect(results.count == 4, "senders: \(String(decoding: report, as: UTF8.self))")
        var acknowledged: [String] = []
        for r in results {
            let sender = r["sender"]?.int ?? -1
            #expect(r["gave_up"]?.bool == false, "sender \(sender) gave up: \(r.serialized())")
            for batch in 0..<(r["batches"]?.int ?? 0) {
                acknowledged += (0..<50).map { "kill-s\(sender)-b\(batch)-r\($0)" }
            }
        }
        let batches = results.reduce(0) { $0 + ($1["batches"]?.int ?? 0) }
        let attempts = results.reduce(0) { $0 + ($1["attempts"]?.int ?? 0) }
        let retries = results.reduce(0) { $0 + ($1["retries"]?.int ?? 0) }
        let deduplicated = results.reduce(0) { $0 + ($1["duplicates"]?.int ?? 0) }

        let (observations, rows, rawRecords, distinctRaw, check) = try Self.inspect(db) { db in
            (
                try String.fetchAll(db, sql: "SELECT request_id FROM observation WHERE request_id LIKE 'kill-%'"),
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM observation WHERE request_id LIKE 'kill-%'") ?? -1,
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM raw_record") ?? -1,
                try Int.fetchOne(db, sql: "SELECT COUNT(DISTINCT sha256) FROM raw_record") ?? -1,
                try String.fetchAll(db, sql: "PRAGMA integrity_check")
            )
        }
        // Records a killed server had stored but not yet correlated were correlated after a restart.
        let uncorrelated = try TrailStore(path: db, readOnly: true).uncorrelatedChains()
        #expect(uncorrelated.isEmpty, "\(uncorrelated.count) chains were never correlated")
        let stored = Set(observations)
        let missing = acknowledged.filter { !stored.contains($0) }
        let duplicates = rows - stored.count
        // Restarts that found traces stored but not yet correlated say so (and correlate them).
        let resumed = ((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { $0.components(separatedBy: "trail serve: correlating ").dropFirst().first?.split(separator: " ").first.flatMap { Int($0) } }
        print("""
            kill -9 under load: \(killed) kills at \(moments.map { String(format: "%.2f", $0) }.joined(separator: ", ")) s after each start; \
            \(batches) batches acknowledged (\(acknowledged.count) records) in \(attempts) attempts, \(retries) retries, \
            \(deduplicated) retried records already stored; lost \(missing.count), duplicates \(duplicates); \
            \(resumed.count) restarts correlated \(resumed.reduce(0, +)) traces left uncorrelated
            """)
        #expect(missing.isEmpty, "\(missing.count) acknowledged records are missing, e.g. \(missing.prefix(3))")
        // Exactly once: each sent record is one observation and one raw record, and nothing else was stored (every
        // batch a sender started was acknowledged in the end).
        #expect(duplicates == 0, "\(duplicates) observations are stored twice")
        #expect(rows == acknowledged.count && rawRecords == acknowledged.count && distinctRaw == rawRecords,
                "\(acknowledged.count) acknowledged, \(rows) observations, \(rawRecords) raw records (\(distinctRaw) distinct)")
        #expect(check == ["ok"])
        // The kills really came under load: batches were in flight or refused and had to be sent again.
        #expect(retries >= kills, "only \(retries) retries for \(kills) kills")
        #expect(acknowledged.count >= kills * 50, "only \(acknowledged.count) records acknowledged")
    }

    /// Whether this process may mount a size-limited tmpfs (root with CAP_SYS_ADMIN, as here and in CI); tried once.
    static let canMountTmpfs: Bool = {
        guard geteuid() == 0 else { return false }
        let probe = FileManager.default.temporaryDirectory.appendingPathComponent("trail-mount-probe-\(UUID().uuidString)")
        guard (try? FileManager.default.createDirectory(at: probe, withIntermediateDirectories: true)) != nil else { return false }
        defer { try? FileManager.default.removeItem(at: probe) }
        guard (try? MeshTests.run("/usr/bin/env", ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe.path], in: probe))?.0 == 0 else { return false }
        _ = try? MeshTests.run("/usr/bin/env", ["umount", probe.path], in: FileManager.default.temporaryDirectory)
        return true
    }()

    /// The store on a 32 MiB tmpfs that a filler file fills: ingestion answers 503 with Retry-After (never 200 for
    /// what it could not store, never a crash), /healthz still answers, what was acknowledged stays; once the filler
    /// is gone the refused batches are taken on their retry and new ones too, every chain is correlated, and the
    /// store is intact. The log says so once, not once per request.
    @Test(.enabled(if: ServeTests.canMountTmpfs, "mounting a size-limited tmpfs needs root (CAP_SYS_ADMIN), as in CI"))
    func diskFullAnswers503KeepsWhatItHadAndResumes() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("trail-full-\(UUID().uuidString)")
        let mount = base.appendingPathComponent("store")
        try FileManager.default.createDirectory(at: mount, withIntermediateDirectories: true)
        let mounted = try MeshTests.run("/usr/bin/env", ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", mount.path], in: base)
        try #require(mounted.0 == 0, "mount: \(mounted.2)")
        defer {
            _ = try? MeshTests.run("/usr/bin/env", ["umount", mount.path], in: base)
            try? FileManager.default.removeItem(at: base)
        }
        let errPath = base.appendingPathComponent("serve.err").path
        let server = try Server(db: mount.appendingPathComponent("trail.db").path, stderrPath: errPath)
        defer { server.stop() }

        /// Posts a batch of Kong records named `full-NAME-i`; returns the status and the Retry-After header.
        func send(_ name: String, records: Int = 20) throws -> (status: Int, retryAfter: String?) {
            let body = (0..<records).map { Self.kongRecord("full-\(name)-\($0)", ms: 1_777_888_800_000 + Int64($0)) }.joined(separator: "\n")
            let (status, text) = try server.curl(["-i", "--max-time", "20", "--data-binary", body, server.url + "/v1/access-logs"])
            let retryAfter = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("retry-after:") }
                .map { $0.dropFirst("retry-after:".count).trimmingCharacters(in: .whitespaces) }
            return (status, retryAfter)
        }
        func ids(_ name: String, records: Int = 20) -> [String] { (0..<records).map { "full-\(name)-\($0)" } }

        // Enough records first for SQLite to checkpoint its write-ahead log into the database at least once, so
        // that the log has room to reuse when the disk fills.
        var acknowledged: [String] = []
        for b in 0..<30 {
            #expect(try send("before-\(b)", records: 200).status == 200)
            acknowledged += ids("before-\(b)", records: 200)
        }
        let walBefore = (try? FileManager.default.attributesOfItem(atPath: server.db + "-wal"))?[.size] as? Int ?? 0
        let dbBefore = (try? FileManager.default.attributesOfItem(atPath: server.db))?[.size] as? Int ?? 0
        print("disk full: before filling, database \(dbBefore) bytes, WAL \(walBefore) bytes")

        // Fill the file system.
        let filler = mount.appendingPathComponent("filler").path
        let dd = try MeshTests.run("/usr/bin/env", ["dd", "if=/dev/zero", "of=\(filler)", "bs=65536"], in: base)
        #expect(dd.0 != 0 && dd.2.contains("No space left"), "dd: \(dd.2)")

        // Senders keep sending, as exporters do. Each answer is 200, and then the batch is stored (the write-ahead log
        // can still reuse room it already has), or 503 with Retry-After: 5; nothing else. Once the store needs room
        // it cannot get, batches are refused.
        var refused: [String] = []
        var storedWhileFull = 0
        for b in 0..<60 where refused.count < 4 {
            let answer = try send("during-\(b)")
            if answer.status == 200 {
                acknowledged += ids("during-\(b)")
                storedWhileFull += 1
            } else {
                #expect(answer.status == 503 && answer.retryAfter == "5", "batch \(b) while full: \(answer)")
                refused.append("during-\(b)")
            }
        }
        #expect(refused.count == 4, "60 batches on a full file system: \(storedWhileFull) stored, \(refused.count) refused")
        let otlp = try server.curl(["-i", "-H", "Content-Type: application/json", "--data-binary", "@" + Self.fixture("otlp/sdk-export.json"), server.url + "/v1/traces"])
        #expect(otlp.0 == 200 || (otlp.0 == 503 && otlp.1.lowercased().contains("retry-after: 5")), "OTLP while full: \(otlp)")
        // The server lives, answers its probes, and has kept everything it acknowledged.
        #expect(try server.curl([server.url + "/healthz"], auth: false).0 == 200)
        #expect(server.process.isRunning)
        let (whileFull, spans) = try Self.inspect(server.db) { db in
            (
                Set(try String.fetchAll(db, sql: "SELECT request_id FROM observation WHERE request_id LIKE 'full-%'")),
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM observation WHERE format = 'otlp-json'") ?? 0
            )
        }
        #expect(acknowledged.allSatisfy(whileFull.contains), "acknowledged records are missing while the disk is full")
        #expect(otlp.0 != 200 || spans > 0, "OTLP answered 200 but its spans are not stored")

        // Space returns: the senders' retries are taken, and so are new batches.
        try FileManager.default.removeItem(atPath: filler)
        for batch in refused {
            let retried = try send(batch)
            #expect(retried.status == 200, "the retry of \(batch) after space returned: \(retried)")
            acknowledged += ids(batch)
        }
        for b in 0..<5 {
            #expect(try send("after-\(b)").status == 200)
            acknowledged += ids("after-\(b)")
        }
        server.stop()

        let (stored, rows, check) = try Self.inspect(server.db) { db in
            (
                Set(try String.fetchAll(db, sql: "SELECT request_id FROM observation WHERE request_id LIKE 'full-%'")),
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM observation WHERE request_id LIKE 'full-%'") ?? -1,
                try String.fetchAll(db, sql: "PRAGMA integrity_check")
            )
        }
        let missing = acknowledged.filter { !stored.contains($0) }
        print("""
            disk full: \(acknowledged.count) records acknowledged; with the filler in place \(storedWhileFull) batches stored and \
            \(refused.count) refused with 503 (OTLP: \(otlp.0)), the refused ones taken on retry once it was gone; \
            lost \(missing.count), duplicates \(rows - stored.count)
            """)
        #expect(missing.isEmpty, "\(missing.count) acknowledged records are missing, e.g. \(missing.prefix(3))")
        #expect(rows == stored.count && rows == acknowledged.count, "\(rows) observations for \(acknowledged.count) acknowledged records")
        #expect(check == ["ok"])
        #expect(try TrailStore(path: server.db, readOnly: true).uncorrelatedChains().isEmpty, "chains left uncorrelated")
        // One line when the store stops writing, one when it writes again.
        let log = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        let lines = log.split(separator: "\n").filter { !$0.contains("shutting down") }
        #expect(lines.count == 2 && lines.first?.contains("the store cannot write (SQLite error 13: database or disk is full)") == true
                && lines.last?.contains("the store writes again") == true, "stderr: \(log)")
    }

    /// `trail ca revoke` while serve runs with `--crl` on the CA's CRL file: the sender's next request is refused,
    /// without a restart. A CRL that serve cannot trust stops it at the start.
    @Test(.timeLimit(.minutes(2))) func aSenderRevokedByTheCAIsRefusedWithoutARestart() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-serve-crl-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ca = dir.appendingPathComponent("ca").path
        let client = dir.appendingPathComponent("collector").path
        #expect(try CLI.run(["ca", "init", "--dir", ca, "--trust-domain", "shop.example"]).status == 0)
        let issued = try CLI.run(["ca", "issue", "--dir", ca, "--spiffe-id", "spiffe://shop.example/ns/observability/sa/collector", "--out", client])
        let serial = try #require(issued.stdout.split(separator: " ").drop { $0 != "serial" }.dropFirst().first).trimmingCharacters(in: .punctuationCharacters)

        let server = try Server(clientCA: ca + "/bundle.pem", extraArguments: ["--crl", ca + "/crl.pem"])
        defer { server.stop() }
        func send(_ id: String) throws -> (Int, String) {
            try server.curl(
                ["--cert", client + "/svid.pem", "--key", client + "/svid.key", "--data-binary", Self.kongRecord(id, ms: 1_777_888_800_000),
                 server.url + "/v1/access-logs"], auth: false)
        }
        #expect(try send("before-revocation").0 == 200)
        #expect(try CLI.run(["ca", "revoke", "--dir", ca, "--serial", serial, "--reason", "keyCompromise"]).status == 0)
        let refused = try send("after-revocation")
        #expect(refused.0 == 403, "\(refused)")
        #expect(refused.1.contains("the client certificate \(serial) is revoked"), "\(refused)")

        // Another CA's CRL does not verify against --client-ca: serve says which file and why, and does not start.
        let other = dir.appendingPathComponent("other-ca").path
        #expect(try CLI.run(["ca", "init", "--dir", other, "--trust-domain", "other.example"]).status == 0)
        let foreign = try CLI.run([
            "serve", "--db", dir.appendingPathComponent("other.db").path, "--listen", "127.0.0.1:0", "--tls-cert", server.path("server.pem"),
            "--tls-key", server.path("server.key"), "--client-ca", ca + "/bundle.pem", "--allow", "shop.example", "--crl", other + "/crl.pem",
        ])
        #expect(foreign.status != 0)
        #expect(foreign.stderr.contains("--crl \(other)/crl.pem: the CRL of") && foreign.stderr.contains("is not signed by a CA certificate of --client-ca"), "\(foreign.stderr)")
    }

    @Test func otelSDKAndCurlFeedTheStoreAndTheCLIAnswers() throws {
        let server = try Server()
        defer { server.stop() }
        // The OpenTelemetry Python SDK's own exporter, over TLS with a bearer token, gzip-compressed.
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", Self.fixture("serve/send_otlp.py"), server.url + "/v1/traces", server.path("ca.pem"), server.token, "gzip"]
        let out = Pipe()
        python.standardOutput = out
        try python.run()
        let traceID = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        python.waitUntilExit()
        #expect(python.terminationStatus == 0, "the SDK exporter reported a failure")
        #expect(traceID.count == 32)

        // curl with Kong records, Envoy lines (with a SPIFFE client certificate), a certificate bundle and a CRL.
        let kong = try server.curl(["--data-binary", "@" + Self.fixture("scenarios/shop/kong.ndjson"), server.url + "/v1/access-logs"])
        #expect(kong.0 == 200, "\(kong.1)")
        #expect(kong.1.contains("\"rejected\":1"))
        let envoy = try server.curl([
            "--cert", server.path("client.pem"), "--key", server.path("client.key"),
            "--data-binary", "@" + Self.fixture("scenarios/shop/istio-proxy.ndjson"), server.url + "/v1/access-logs",
        ], auth: false)
        #expect(envoy.0 == 200, "\(envoy.1)")
        let pem = try server.curl(["--data-binary", "@" + Self.fixture("identity/svids.pem"), server.url + "/v1/identity-events"])
        #expect(pem.0 == 200)
        let crl = try server.curl(["--data-binary", "@" + Self.fixture("identity/crl.der"), server.url + "/v1/identity-events"])
        #expect(crl.0 == 200)

        // Strangers are refused.
        #expect(try server.curl(["--data-binary", "{}", server.url + "/v1/access-logs"], auth: false).0 == 401)
        #expect(try server.curl(["-H", "Authorization: Bearer nope", "--data-binary", "{}", server.url + "/v1/access-logs"], auth: false).0 == 401)
        // Bad bodies get their status; the good data around them stays.
        #expect(try server.curl(["-H", "Content-Type: application/x-protobuf", "--data-binary", "@" + Self.fixture("otlp/bad_truncated.binpb"), server.url + "/v1/traces"]).0 == 400)
        #expect(try server.curl(["-H", "Content-Type: text/plain", "--data-binary", "x", server.url + "/v1/traces"]).0 == 415)
        // Probes need no credentials; everything else does.
        #expect(try server.curl([server.url + "/healthz"], auth: false).0 == 200)
        #expect(try server.curl([server.url + "/metrics"], auth: false).0 == 401)
        #expect(try server.curl(["-X", "GET", "--data-binary", "padding", server.url + "/healthz"], auth: false).0 == 401)
        let metrics = try server.curl([server.url + "/metrics"])
        #expect(metrics.0 == 200)
        #expect(metrics.1.contains("trail_ingest_requests_total"))
        server.stop()

        // The CLI answers from the same store.
        let chain = try CLI.run(["chain", traceID, "--db", server.db, "--format", "json"])
        #expect(chain.status == 0, "\(chain.stderr)")
        #expect(chain.json?["origin"]?["principal"]?.string == "carol")
        #expect(chain.json?["hops"]?.array?.count == 2)
        let revoked = try CLI.run(["findings", "--kind", "revoked-certificate", "--db", server.db, "--format", "json"])
        #expect(revoked.json?.array?.count == 1)
        let source = try CLI.run(["query", "chain_hops", "--param", "trace_id=\(traceID)", "--db", server.db, "--format", "json"])
        #expect(source.status == 0)
    }
}
