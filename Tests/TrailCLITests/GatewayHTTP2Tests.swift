import Foundation
import Testing
import TrailCore

/// `trail gateway` speaking HTTP/2 at the edge: curl's `--http2` over edge TLS (ALPN `h2`) with several
/// concurrent streams on one connection, each authenticated, forwarded to an HTTP/1.1 backend and logged with its
/// own line and trace; h2c with prior knowledge on a plain listener; and gRPC end to end with real grpcio clients
/// and servers (`fixtures/gateway/grpc_app.py`): unary and server-streaming calls, `grpc-status` 0 and non-zero
/// passed through from the trailers, a large streamed answer, and the RPC method in the Kong log and the chain.
@Suite("trail gateway HTTP/2 and gRPC", .serialized)
struct GatewayHTTP2Tests {
    typealias M = MeshTests

    final class Estate {
        let dir: URL
        var daemons: [M.Daemon] = []
        let key = "h2-alice-key"

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-gw-h2-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }

        deinit { for d in daemons.reversed() { d.stop() } }

        func start(_ executable: URL, _ arguments: [String], _ name: String) throws -> M.Daemon {
            let d = try M.Daemon(executable, arguments, dir: dir, name: name)
            daemons.append(d)
            return d
        }

        func python(_ script: String, _ arguments: [String], _ name: String) throws -> M.Daemon {
            try start(URL(fileURLWithPath: "/usr/bin/env"), ["python3", CLI.root.appendingPathComponent("fixtures/\(script)").path] + arguments, name)
        }

        var keyHash: String {
            get throws { String(try M.run("/bin/sh", ["-c", "printf %s '\(key)' | sha256sum"], in: dir).1.prefix(64)) }
        }

        func log(atLeast count: Int) -> [JSONValue] {
            var lines: [JSONValue] = []
            _ = M.eventually(5) {
                lines = M.accessLog(dir.appendingPathComponent("gateway-access.ndjson"))
                return lines.count >= count
            }
            return lines
        }

        func grpc(_ target: String, _ method: String, _ payload: String, _ metadata: [String] = [], ca: String? = nil) throws -> JSONValue? {
            let script = CLI.root.appendingPathComponent("fixtures/gateway/grpc_app.py").path
            let env = ca.map { ["GRPC_CA=\($0)"] } ?? []
            let out = try M.run("/usr/bin/env", env + ["python3", script, "call", target, method, payload] + metadata, in: dir).1
            return try? JSONParser.parse(Array(out.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
        }
    }

    @Test func restOverHTTP2StreamsOnOneTLSConnection() throws {
        let e = try Estate()
        _ = try M.trail(["ca", "init", "--dir", "ca", "--trust-domain", "shop.example"], in: e.dir)
        _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/edge", "--ip", "127.0.0.1", "--out", "edge"], in: e.dir)
        let app = try e.python("mesh/app.py", ["0", "catalog"], "app")
        let files = try e.python("gateway/upstreams.py", ["http", "0"], "files")
        let echo = try e.python("gateway/grpc_app.py", ["serve", "0"], "grpc-server")
        try """
            listen: 127.0.0.1:0
            tls: {cert: edge/svid.pem, key: edge/svid.key}
            telemetry: {access_log: gateway-access.ndjson}
            consumers:
              - username: alice
                credentials: {key-auth: [{key_sha256: \(try e.keyHash)}]}
            routes:
              - name: echo
                rules:
                  - matches: [{path: {type: PathPrefix, value: /demo.Echo/}}]
                    backendRefs: [{name: echo, host: 127.0.0.1, port: \(echo.lines[0].split(separator: " ")[1]), protocol: grpc}]
                auth: {methods: [key-auth]}
              - name: files
                rules:
                  - matches: [{path: {type: PathPrefix, value: /big}}, {path: {type: PathPrefix, value: /upload}}]
                    backendRefs: [{name: files, host: 127.0.0.1, port: \(files.lines[0].split(separator: " ")[1])}]
                auth: {anonymous: true}
              - name: catalog
                rules:
                  - backendRefs: [{name: catalog, host: 127.0.0.1, port: \(app.lines[0].split(separator: " ")[1])}]
                auth: {methods: [key-auth]}
            """.write(to: e.dir.appendingPathComponent("gateway.yaml"), atomically: true, encoding: .utf8)
        let gateway = try e.start(CLI.binary, ["gateway", "--config", "gateway.yaml"], "gateway")
        #expect(gateway.url.hasPrefix("https://127.0.0.1:"))

        // gRPC over edge TLS (ALPN h2) with grpcio's TLS channel, to an h2c backend.
        let target = String(gateway.url.dropFirst("https://".count))
        let tlsCall = try e.grpc(target, "/demo.Echo/Say", "over tls", ["apikey=\(e.key)"], ca: "ca/bundle.pem")
        #expect(tlsCall?["code"]?.int == 0, "\(String(describing: tlsCall)) \(gateway.stderr)")
        #expect(tlsCall?["responses"]?.array?.first?.string == "echo:over tls")
        let tlsDenied = try e.grpc(target, "/demo.Echo/Say", "deny", ["apikey=\(e.key)"], ca: "ca/bundle.pem")
        #expect(tlsDenied?["code"]?.int == 7, "\(String(describing: tlsDenied))")

        // Flow control both ways over HTTP/2 to an HTTP/1.1 backend: a 24 MiB download, then an 8 MiB upload.
        let size = 24 << 20
        let download = try M.run("/usr/bin/curl", ["-sS", "--http2", "--cacert", "ca/bundle.pem", "-o", "big.bin", "-w", "%{http_version} %{response_code} %{size_download}",
                                                   "\(gateway.url)/big/\(size)"], in: e.dir).1
        #expect(download == "2 200 \(size)", "\(download) \(gateway.stderr)")
        let big = try Data(contentsOf: e.dir.appendingPathComponent("big.bin"))
        #expect(big.count == size && big.prefix(16) == Data("0123456789abcdef".utf8) && big.suffix(16) == Data("0123456789abcdef".utf8))
        try Data(repeating: 0x61, count: 8 << 20).write(to: e.dir.appendingPathComponent("upload.bin"))
        let upload = try M.run("/usr/bin/curl", ["-sS", "--http2", "--cacert", "ca/bundle.pem", "--data-binary", "@upload.bin", "-w", "\n%{http_version} %{response_code}",
                                                 "\(gateway.url)/upload"], in: e.dir).1
        #expect(upload.hasSuffix("\n2 200"), "\(upload)")
        let uploaded = try? JSONParser.parse(Array(upload.split(separator: "\n")[0].utf8))
        #expect(uploaded?["body_bytes"]?.int == Int64(8 << 20), "\(upload)")

        // Backpressure: a caller reading 48 MiB at 8 MiB/s; the gateway stops reading the fast backend instead of
        // buffering the difference (its resident memory stays well under the body's size).
        func residentKiB() -> Int {
            let status = (try? String(contentsOfFile: "/proc/\(gateway.process.processIdentifier)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        let before = residentKiB()
        let slow = Process()
        slow.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        slow.arguments = ["-sS", "--http2", "--cacert", "ca/bundle.pem", "--limit-rate", "8M", "-o", "slow.bin", "\(gateway.url)/big/\(48 << 20)"]
        slow.currentDirectoryURL = e.dir
        try slow.run()
        var peak = before
        while slow.isRunning {
            peak = max(peak, residentKiB())
            Thread.sleep(forTimeInterval: 0.25)
        }
        #expect(slow.terminationStatus == 0)
        #expect((try? FileManager.default.attributesOfItem(atPath: e.dir.appendingPathComponent("slow.bin").path)[.size] as? Int) == 48 << 20)
        // Not under AddressSanitizer, whose quarantine keeps freed memory resident on purpose (`.ci/sanitize`).
        if ProcessInfo.processInfo.environment["TRAIL_SANITIZER"] != "address" {
            #expect(peak - before < 16 << 10, "resident memory grew by \(peak - before) KiB while relaying 48 MiB to a slow reader")
        }

        // Four concurrent streams multiplexed on one connection (curl waits to multiplex with --parallel); three
        // carry the key, one does not.
        let urls = ["a", "b", "c"].map { "\(gateway.url)/items/\($0)?apikey=\(e.key)" } + ["\(gateway.url)/items/d"]
        var arguments = ["-sS", "--http2", "--cacert", "ca/bundle.pem", "--parallel", "--parallel-max", "10", "--max-time", "15",
                         "-w", "%{http_version} %{response_code} %{num_connects} %{url_effective}\\n"]
        for (i, url) in urls.enumerated() { arguments += ["-o", "body\(i).json", url] }
        let (status, out, err) = try M.run("/usr/bin/curl", arguments, in: e.dir)
        #expect(status == 0, "\(err) \(gateway.stderr)")
        let results = out.split(separator: "\n").map { $0.split(separator: " ") }
        #expect(results.count == 4, "\(out)")
        #expect(results.allSatisfy { $0.first == "2" }, "\(out)")
        #expect(results.map { Int($0[2]) ?? -1 }.reduce(0, +) == 1, "one connection for all streams: \(out)")
        #expect(results.filter { $0[1] == "200" }.count == 3, "\(out)")
        #expect(results.filter { $0[1] == "401" && $0[3].hasSuffix("/items/d") }.count == 1, "\(out)")
        var seenTraceparents: Set<String> = []
        for i in 0..<3 {
            let body = try? JSONParser.parse(Array(try Data(contentsOf: e.dir.appendingPathComponent("body\(i).json"))))
            #expect(body?["app"]?.string == "catalog")
            if let tp = body?["traceparent"]?.string { seenTraceparents.insert(tp) }
        }
        #expect(seenTraceparents.count == 3, "each stream has its own trace context: \(seenTraceparents)")

        // HTTP/1.1 by ALPN still works on the same listener.
        let h1 = try M.run("/usr/bin/curl", ["-sS", "--http1.1", "--cacert", "ca/bundle.pem", "-o", "/dev/null", "-w", "%{http_version} %{response_code}",
                                             "\(gateway.url)/items/h1?apikey=\(e.key)"], in: e.dir).1
        #expect(h1 == "1.1 200", "\(h1)")

        let lines = e.log(atLeast: 10)
        #expect(lines.count == 10)
        let tlsGRPC = lines.filter { $0["route"]?["name"]?.string == "echo" }
        #expect(tlsGRPC.compactMap { $0["grpc"]?["status"]?.int } == [0, 7], "\(tlsGRPC)")
        #expect(tlsGRPC.allSatisfy { $0["request"]?["http_version"]?.string == "2" && $0["request"]?["url"]?.string?.hasPrefix("https://") == true })
        let h2Lines = lines.filter { $0["request"]?["http_version"]?.string == "2" && $0["route"]?["name"]?.string == "catalog" }
        #expect(h2Lines.count == 4, "\(lines)")
        let sizes = lines.filter { $0["route"]?["name"]?.string == "files" }.map { ($0["request"]?["size"]?.int ?? 0, $0["response"]?["size"]?.int ?? 0) }
        #expect(sizes.contains { $0.1 == Int64(size) } && sizes.contains { $0.0 >= Int64(8 << 20) }, "\(sizes)")
        let accepted = h2Lines.filter { $0["response"]?["status"]?.int == 200 }
        #expect(accepted.count == 3)
        #expect(accepted.allSatisfy { $0["consumer"]?["username"]?.string == "alice" && $0["credential_type"]?.string == "key-auth" })
        #expect(Set(accepted.compactMap { $0["trace_id"]?["w3c"]?.string }).count == 3)
        #expect(Set(accepted.compactMap { $0["request"]?["id"]?.string }).count == 3)
        #expect(Set(accepted.compactMap { $0["trace_id"]?["w3c"]?.string }) == Set(seenTraceparents.map { String($0.split(separator: "-")[1]) }))
        #expect(h2Lines.filter { $0["response"]?["status"]?.int == 401 }.count == 1)
        #expect(lines.contains { $0["request"]?["http_version"]?.string == "1.1" && $0["response"]?["status"]?.int == 200 })

        // The chain of one HTTP/2 request after ingest: the consumer is its origin.
        let trace = accepted[0]["trace_id"]?["w3c"]?.string ?? ""
        let db = e.dir.appendingPathComponent("trail.db").path
        _ = try M.trail(["ingest", "--db", db, "-q", "gateway-access.ndjson"], in: e.dir)
        let (chainStatus, chainOut, chainErr) = try M.run(CLI.binary.path, ["chain", trace, "--db", db, "--format", "json"], in: e.dir)
        #expect(chainStatus == 0, "\(chainErr)")
        let chain = try? JSONParser.parse(Array(chainOut.utf8))
        #expect(chain?["origin"]?["principal"]?.string == "alice", "\(chainOut)")
        #expect(chain?["origin"]?["via_gateway"]?.bool == true, "\(chainOut)")
    }

    @Test func grpcEndToEndWithGrpcio() throws {
        let e = try Estate()
        _ = try M.trail(["ca", "init", "--dir", "ca", "--trust-domain", "shop.example"], in: e.dir)
        _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/edge/sa/gateway", "--out", "gateway"], in: e.dir)
        _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/shop/sa/echo", "--out", "echo"], in: e.dir)
        let server = try e.python("gateway/grpc_app.py", ["serve", "0"], "grpc-server")
        // The same service over mTLS: grpcio requires a client certificate from the bundle and h2 by ALPN.
        let secure = try e.python("gateway/grpc_app.py", ["serve", "0", "echo/svid.pem", "echo/svid.key", "ca/bundle.pem"], "grpc-secure")
        let securePort = secure.lines[0].split(separator: " ")[1]
        let app = try e.python("mesh/app.py", ["0", "catalog"], "app")
        try """
            listen: 127.0.0.1:0
            mesh:
              spiffe_id: spiffe://shop.example/ns/edge/sa/gateway
              trust_bundle: ca/bundle.pem
              svid: {cert: gateway/svid.pem, key: gateway/svid.key}
            telemetry: {access_log: gateway-access.ndjson, spans_file: gateway-spans.ndjson}
            consumers:
              - username: alice
                credentials: {key-auth: [{key_sha256: \(try e.keyHash)}]}
            routes:
              - name: echo-mtls
                rules:
                  - matches: [{path: {type: PathPrefix, value: /demo.Echo}, headers: [{name: x-hop, value: mtls}]}]
                    backendRefs:
                      - {name: echo-mtls, host: 127.0.0.1, port: \(securePort), protocol: grpc, spiffe_id: spiffe://shop.example/ns/shop/sa/echo}
                  - matches: [{path: {type: PathPrefix, value: /demo.Echo}, headers: [{name: x-hop, value: impostor}]}]
                    backendRefs:
                      - {name: echo-impostor, host: 127.0.0.1, port: \(securePort), protocol: grpc, spiffe_id: spiffe://shop.example/ns/shop/sa/other}
                auth: {methods: [key-auth]}
              - name: echo
                rules:
                  - matches: [{path: {type: PathPrefix, value: /demo.Echo}}]
                    backendRefs: [{name: echo, host: 127.0.0.1, port: \(server.lines[0].split(separator: " ")[1]), protocol: grpc}]
                auth: {methods: [key-auth]}
              - name: catalog
                rules:
                  - backendRefs: [{name: catalog, host: 127.0.0.1, port: \(app.lines[0].split(separator: " ")[1])}]
                auth: {methods: [key-auth]}
            """.write(to: e.dir.appendingPathComponent("gateway.yaml"), atomically: true, encoding: .utf8)
        let gateway = try e.start(CLI.binary, ["gateway", "--config", "gateway.yaml"], "gateway")
        let target = String(gateway.url.dropFirst("http://".count))

        // Unary: the answer, and the gateway's additions (consumer, trace context) as the server saw them.
        let ok = try e.grpc(target, "/demo.Echo/Say", "hello", ["apikey=\(e.key)"])
        #expect(ok?["code"]?.int == 0, "\(String(describing: ok)) \(gateway.stderr)")
        #expect(ok?["responses"]?.array?.first?.string == "echo:hello")
        #expect(ok?["metadata"]?["seen-consumer"]?.string == "alice")
        #expect(ok?["metadata"]?["seen-traceparent"]?.string?.hasPrefix("00-") == true)
        // A non-zero status from the app (Trailers-Only) passes through.
        let denied = try e.grpc(target, "/demo.Echo/Say", "deny", ["apikey=\(e.key)"])
        #expect(denied?["code"]?.int == 7, "\(String(describing: denied))")
        #expect(denied?["details"]?.string == "denied by the app")
        // Server streaming, then a stream that fails after its messages (status in the trailers).
        let stream = try e.grpc(target, "/demo.Echo/Count", "3", ["apikey=\(e.key)"])
        #expect(stream?["code"]?.int == 0, "\(String(describing: stream))")
        #expect(stream?["responses"]?.array?.compactMap(\.string) == ["item-0", "item-1", "item-2"])
        let failing = try e.grpc(target, "/demo.Echo/Count", "2:0:fail", ["apikey=\(e.key)"])
        #expect(failing?["code"]?.int == 15, "\(String(describing: failing))")
        #expect(failing?["responses"]?.array?.count == 2)
        // A large streamed answer (16 MiB in 256 messages) through both HTTP/2 flow-control windows.
        let large = try e.grpc(target, "/demo.Echo/Count", "256:65536", ["apikey=\(e.key)"])
        #expect(large?["code"]?.int == 0, "\(String(describing: large))")
        #expect(large?["responses"]?.array?.count == 256)
        #expect(large?["responses"]?.array?.allSatisfy { $0.int == 65536 } == true)
        // Refused at the edge: the gateway's 401 becomes UNAUTHENTICATED for the client.
        let refused = try e.grpc(target, "/demo.Echo/Say", "hello")
        #expect(refused?["code"]?.int == 16, "\(String(describing: refused))")

        // h2 over mTLS to the upstream, its SPIFFE ID checked: the right one answers, a wrong one is refused (503).
        let mtls = try e.grpc(target, "/demo.Echo/Count", "2", ["apikey=\(e.key)", "x-hop=mtls"])
        #expect(mtls?["code"]?.int == 0, "\(String(describing: mtls)) \(gateway.stderr)")
        #expect(mtls?["responses"]?.array?.compactMap(\.string) == ["item-0", "item-1"])
        let impostor = try e.grpc(target, "/demo.Echo/Say", "hello", ["apikey=\(e.key)", "x-hop=impostor"])
        #expect(impostor?["code"]?.int == 14, "UNAVAILABLE from the 503: \(String(describing: impostor))")

        // h2c with prior knowledge for REST on the same plain listener, and HTTP/1.1 as before.
        let prior = try M.run("/usr/bin/curl", ["-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{response_code}",
                                                "\(gateway.url)/items?apikey=\(e.key)"], in: e.dir).1
        #expect(prior == "2 200", "\(prior)")
        #expect(try M.curl(["\(gateway.url)/items?apikey=\(e.key)"], in: e.dir).0 == 200)

        let lines = e.log(atLeast: 10)
        #expect(lines.count == 10, "\(lines)")
        let grpcLines = lines.filter { $0["grpc"] != nil }
        #expect(grpcLines.count == 8)
        let mtlsLine = grpcLines.first { $0["route"]?["name"]?.string == "echo-mtls" && $0["service"]?["name"]?.string == "echo-mtls" }
        #expect(mtlsLine?["service"]?["protocol"]?.string == "grpcs")
        #expect(mtlsLine?["grpc"]?["status"]?.int == 0)
        let impostorLine = grpcLines.first { $0["service"]?["name"]?.string == "echo-impostor" }
        #expect(impostorLine?["response"]?["status"]?.int == 503)
        #expect(impostorLine?["refusal_reason"]?.string?.contains("spiffe://shop.example/ns/shop/sa/echo") == true, "\(String(describing: impostorLine))")
        func line(_ method: String, _ status: Int64) -> JSONValue? {
            grpcLines.first { $0["grpc"]?["method"]?.string == method && $0["grpc"]?["status"]?.int == status }
        }
        let say = line("Say", 0)
        #expect(say?["grpc"]?["service"]?.string == "demo.Echo")
        #expect(say?["request"]?["uri"]?.string == "/demo.Echo/Say")
        #expect(say?["request"]?["http_version"]?.string == "2")
        #expect(say?["service"]?["protocol"]?.string == "grpc")
        #expect(say?["consumer"]?["username"]?.string == "alice")
        #expect(line("Say", 7)?["grpc"]?["message"]?.string == "denied by the app")
        #expect(line("Count", 0) != nil)
        #expect(line("Count", 15) != nil)
        #expect(grpcLines.contains { $0["response"]?["status"]?.int == 401 && $0["grpc"]?["method"]?.string == "Say" })
        #expect(lines.filter { $0["request"]?["http_version"]?.string == "2" }.count == 9)

        // The RPC method is the chain hop's operation after ingest.
        let trace = say?["trace_id"]?["w3c"]?.string ?? ""
        let db = e.dir.appendingPathComponent("trail.db").path
        let spans = (try? String(contentsOf: e.dir.appendingPathComponent("gateway-spans.ndjson"), encoding: .utf8)) ?? ""
        let saySpan = spans.split(separator: "\n").first { $0.contains(trace) } ?? ""
        #expect(saySpan.contains(#"{"key":"rpc.method","value":{"stringValue":"Say"}}"#), "\(saySpan)")
        #expect(saySpan.contains(#"{"key":"network.protocol.version","value":{"stringValue":"2"}}"#), "\(saySpan)")
        _ = try M.trail(["ingest", "--db", db, "-q", "gateway-access.ndjson", "gateway-spans.ndjson"], in: e.dir)
        let (chainStatus, chainOut, chainErr) = try M.run(CLI.binary.path, ["chain", trace, "--db", db, "--format", "json"], in: e.dir)
        #expect(chainStatus == 0, "\(chainErr)")
        let chain = try? JSONParser.parse(Array(chainOut.utf8))
        #expect(chain?["origin"]?["principal"]?.string == "alice", "\(chainOut)")
        #expect(chain?["hops"]?.array?.contains { $0["operation"]?.string == "demo.Echo/Say" } == true, "\(chainOut)")
    }
}
