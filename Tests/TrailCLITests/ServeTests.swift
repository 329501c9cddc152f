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

        /// Starts `trail serve` with fresh certificates, or again on the certificates and store of `reusing`; client
        /// certificates chain to `clientCA` (by default the CA that made the server's certificate).
        init(reusing: URL? = nil, clientCA: String? = nil, extraArguments: [String] = []) throws {
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
            db = dir.appendingPathComponent("trail.db").path
            process.executableURL = CLI.binary
            process.arguments = [
                "serve", "--db", db, "--listen", "127.0.0.1:0",
                "--tls-cert", dir.appendingPathComponent("server.pem").path,
                "--tls-key", dir.appendingPathComponent("server.key").path,
                "--client-ca", clientCA ?? dir.appendingPathComponent("ca.pem").path, "--allow", "spiffe://shop.example",
                "--token-file", dir.appendingPathComponent("tokens").path,
            ] + extraArguments
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
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
            process.terminate()
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

    /// kill -9 under load: every acknowledged record is in the store after the restart, the database is intact,
    /// and the restarted server takes more.
    @Test func killNineLosesNothingAcknowledged() throws {
        var server = try Server()
        let dir = server.dir
        let db = server.db
        var acknowledged: [String] = []
        let victim = server.process.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + 1.5) { kill(victim, SIGKILL) }
        for i in 0..<2000 {
            let id = "crash-\(i)"
            // Several records per request, so that a request is in flight when the kill comes.
            let body = (0..<20).map { Self.kongRecord("\(id)-\($0)", ms: 1_777_888_800_000 + Int64(i)) }.joined(separator: "\n")
            let (status, _) = try server.curl(["--max-time", "5", "--data-binary", body, server.url + "/v1/access-logs"])
            if status == 200 {
                acknowledged += (0..<20).map { "\(id)-\($0)" }
            } else if status == 0 {
                break
            }
        }
        server.process.waitUntilExit()
        #expect(server.process.terminationReason == .uncaughtSignal)
        #expect(acknowledged.count >= 40, "only \(acknowledged.count) records were acknowledged before the kill")

        server = try Server(reusing: dir)
        defer { server.stop() }
        let after = try server.curl(["--data-binary", Self.kongRecord("after-restart", ms: 1_777_888_900_000), server.url + "/v1/access-logs"])
        #expect(after.0 == 200)
        server.stop()

        let store = try TrailStore(path: db, readOnly: true)
        let stored = Set(try store.read { db in try String.fetchAll(db, sql: "SELECT request_id FROM observation") })
        let missing = acknowledged.filter { !stored.contains($0) }
        #expect(missing.isEmpty, "\(missing.count) acknowledged records are missing, e.g. \(missing.prefix(3))")
        #expect(stored.contains("after-restart"))
        #expect(try store.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") } == "ok")
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
