import Foundation
import Testing
import TrailCore

/// `trail gateway` with protocols beyond one request, one response: WebSocket upgrades (a real `websockets`
/// client and echo server, plain and through a STRICT sidecar over mTLS), server-sent events that must not be
/// buffered, GraphQL operations in the Kong log, and malformed requests refused with their status.
@Suite("trail gateway protocols with real clients", .serialized)
struct GatewayProtocolTests {
    typealias M = MeshTests

    final class Setup {
        let dir: URL
        var daemons: [M.Daemon] = []
        var gateway: M.Daemon!
        var gatewayPort = 0
        let key = "s3cret-alice-key"
        var requestLog: URL { dir.appendingPathComponent("upstream-requests.log") }

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-gwproto-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            _ = try M.trail(["ca", "init", "--dir", "ca", "--trust-domain", "shop.example"], in: dir)
            _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/shop/sa/chat", "--out", "chat"], in: dir)
            _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/edge/sa/gateway", "--out", "gateway"], in: dir)
            let fixture = CLI.root.appendingPathComponent("fixtures/gateway/upstreams.py").path
            let env = URL(fileURLWithPath: "/usr/bin/env")
            let ws = try start(env, ["python3", fixture, "ws", "0"], "ws-app")
            let sse = try start(env, ["python3", fixture, "sse", "0"], "sse-app")
            let http = try start(env, ["python3", fixture, "http", "0", requestLog.path], "http-app")
            func port(_ d: M.Daemon) -> Substring { d.lines[0].split(separator: " ")[1] }
            try """
                spiffe_id: spiffe://shop.example/ns/shop/sa/chat
                service: chat
                trust_bundle: ca/bundle.pem
                svid: {cert: chat/svid.pem, key: chat/svid.key}
                inbound:
                  listen: 127.0.0.1:0
                  app: 127.0.0.1:\(port(ws))
                  mode: STRICT
                telemetry:
                  access_log: chat-access.ndjson
                """.write(to: dir.appendingPathComponent("chat.yaml"), atomically: true, encoding: .utf8)
            let sidecar = try start(CLI.binary, ["sidecar", "--config", "chat.yaml"], "chat-sidecar")
            let sidecarPort = sidecar.url.split(separator: ":").last!
            let keyHash = String(try M.run("/bin/sh", ["-c", "printf %s '\(key)' | sha256sum"], in: dir).1.prefix(64))
            try """
                listen: 127.0.0.1:0
                mesh:
                  spiffe_id: spiffe://shop.example/ns/edge/sa/gateway
                  trust_bundle: ca/bundle.pem
                  svid: {cert: gateway/svid.pem, key: gateway/svid.key}
                telemetry:
                  access_log: gateway-access.ndjson
                consumers:
                  - username: alice
                    credentials:
                      key-auth:
                        - key_sha256: \(keyHash)
                routes:
                  - name: chat-mesh
                    websocket: true
                    rules:
                      - matches: [{path: {type: PathPrefix, value: /chat}}]
                        backendRefs:
                          - {name: chat, host: 127.0.0.1, port: \(sidecarPort), spiffe_id: spiffe://shop.example/ns/shop/sa/chat}
                    auth: {methods: [key-auth]}
                  - name: chat-plain
                    websocket: true
                    rules:
                      - matches: [{path: {type: PathPrefix, value: /plain-chat}}]
                        backendRefs: [{name: chat-plain, host: 127.0.0.1, port: \(port(ws))}]
                    auth: {methods: [key-auth]}
                  - name: no-upgrades
                    rules:
                      - matches: [{path: {type: PathPrefix, value: /no-upgrades}}]
                        backendRefs: [{name: chat-plain, host: 127.0.0.1, port: \(port(ws))}]
                    auth: {methods: [key-auth]}
                  - name: events
                    rules:
                      - matches: [{path: {type: PathPrefix, value: /events}}]
                        backendRefs: [{name: events, host: 127.0.0.1, port: \(port(sse))}]
                    auth: {anonymous: true}
                  - name: graphql
                    graphql: true
                    rules:
                      - matches: [{path: {type: Exact, value: /graphql}}]
                        backendRefs: [{name: orders-graphql, host: 127.0.0.1, port: \(port(http))}]
                    auth: {methods: [key-auth]}
                  - name: api
                    rules:
                      - matches: [{path: {type: PathPrefix, value: /api}}]
                        backendRefs: [{name: api, host: 127.0.0.1, port: \(port(http))}]
                    auth: {anonymous: true}
                """.write(to: dir.appendingPathComponent("gateway.yaml"), atomically: true, encoding: .utf8)
            gatewayPort = try M.Estate.freePort()
            gateway = try start(CLI.binary, ["gateway", "--config", "gateway.yaml", "--listen", "127.0.0.1:\(gatewayPort)"], "gateway")
        }

        func start(_ executable: URL, _ arguments: [String], _ name: String) throws -> M.Daemon {
            let d = try M.Daemon(executable, arguments, dir: dir, name: name)
            daemons.append(d)
            return d
        }

        func python(_ script: String, _ arguments: [String]) throws -> String {
            let path = CLI.root.appendingPathComponent("fixtures/gateway/\(script)").path
            return try M.run("/usr/bin/env", ["python3", path] + arguments, in: dir).1
        }

        func json(_ text: String) -> JSONValue? {
            try? JSONParser.parse(Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
        }

        /// The gateway's log lines, once there are at least `count`.
        func log(atLeast count: Int) -> [JSONValue] {
            var lines: [JSONValue] = []
            _ = M.eventually(5) {
                lines = M.accessLog(dir.appendingPathComponent("gateway-access.ndjson"))
                return lines.count >= count
            }
            return lines
        }

        func upstreamRequests() -> [String] {
            ((try? String(contentsOf: requestLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }

        func stop() { for d in daemons.reversed() { d.stop() } }
    }

    @Test func webSocketsStreamsGraphQLAndMalformedRequests() throws {
        let s = try Setup()
        defer { s.stop() }
        let ws = "ws://127.0.0.1:\(s.gatewayPort)"

        // WebSocket through the gateway and a STRICT sidecar (mTLS hop), and to a plain backend.
        let mesh = s.json(try s.python("ws_client.py", ["\(ws)/chat/room1", "apikey: \(s.key)", "hello", "second message", String(repeating: "x", count: 100_000)]))
        #expect(mesh?["status"]?.int == 101, "\(String(describing: mesh)) \(s.gateway.stderr)")
        let answers = mesh?["answers"]?.array?.compactMap(\.string) ?? []
        #expect(answers.count == 3 && answers[0] == "echo: hello" && answers[1] == "echo: second message", "\(answers.map { $0.prefix(40) })")
        #expect(answers.count == 3 && answers[2].count == 100_006)
        let plain = s.json(try s.python("ws_client.py", ["\(ws)/plain-chat", "apikey: \(s.key)", "one", "two"]))
        #expect(plain?["status"]?.int == 101 && plain?["answers"]?.array?.compactMap(\.string) == ["echo: one", "echo: two"], "\(String(describing: plain))")
        // Authentication first; a route without `websocket: true` refuses the upgrade.
        #expect(s.json(try s.python("ws_client.py", ["\(ws)/chat/room1", "-", "hello"]))?["status"]?.int == 401)
        #expect(s.json(try s.python("ws_client.py", ["\(ws)/no-upgrades", "apikey: \(s.key)", "hello"]))?["status"]?.int == 403)

        // Server-sent events arrive as they are sent: the first long before the upstream has finished (3 s).
        let sse = s.json(try s.python("sse_client.py", ["http://127.0.0.1:\(s.gatewayPort)/events"]))
        #expect(sse?["status"]?.int == 200 && sse?["events"]?.array?.count == 3, "\(String(describing: sse))")
        let first = sse?["first"]?.double ?? 99
        let total = sse?["total"]?.double ?? 0
        #expect(first < 1.4 && total > 2.5, "first event after \(first) s of \(total) s: buffered")

        // GraphQL: a POST (operationName given, or the first definition's name) and a GET.
        let graphqlURL = "http://127.0.0.1:\(s.gatewayPort)/graphql"
        let mutation = #"{"query": "mutation CreateOrder($item: ID!) { createOrder(item: $item) { id } }", "variables": {"item": "42"}}"#
        #expect(try M.curl(["-H", "apikey: \(s.key)", "-H", "content-type: application/json", "--data", mutation, graphqlURL], in: s.dir).0 == 200)
        let named = #"{"operationName": "Second", "query": "query First { a } subscription Second { b }"}"#
        #expect(try M.curl(["-H", "apikey: \(s.key)", "-H", "content-type: application/json", "--data", named, graphqlURL], in: s.dir).0 == 200)
        #expect(try M.curl(["-G", "-H", "apikey: \(s.key)", "--data-urlencode", "query=query Catalog { items { id } }", graphqlURL], in: s.dir).0 == 200)

        // Malformed requests: refused with their status, never forwarded.
        let before = s.upstreamRequests().count
        func raw(_ request: String) throws -> String {
            try s.python("raw_http.py", ["127.0.0.1", String(s.gatewayPort), request]).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let cases: [(String, String, String)] = [
            ("oversized headers", #"b"GET /api/x HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"a" * 6000 + b"\r\n" + (b"X-More: " + b"b" * 6000 + b"\r\n") * 6 + b"\r\n""#, "431"),
            ("long request line", #"b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n""#, "414"),
            ("missing Host", #"b"GET /api/nohost HTTP/1.1\r\n\r\n""#, "400"),
            ("empty Host", #"b"GET /api/emptyhost HTTP/1.1\r\nHost: \r\n\r\n""#, "400"),
            ("Host with a space", #"b"GET /api/spacehost HTTP/1.1\r\nHost: a b\r\n\r\n""#, "400"),
            ("Host with a control character", #"b"GET /api/ctlhost HTTP/1.1\r\nHost: a\x01b\r\n\r\n""#, "400"),
            ("two Host headers", #"b"GET /api/twohosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n""#, "400"),
            ("CL and TE", #"b"POST /api/clte HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n""#, "400"),
            ("two Content-Lengths", #"b"POST /api/clcl HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd""#, "400"),
            ("TE not chunked", #"b"POST /api/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\nabcd""#, "400"),
            ("obs-fold", #"b"GET /api/fold HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n""#, "400"),
        ]
        for (name, request, status) in cases {
            let line = try raw(request)
            #expect(line.hasPrefix("HTTP/1.1 \(status)"), "\(name): \(line)")
        }
        // A well-formed request on the same route still goes through, and is the only one the upstream saw.
        #expect(try raw(#"b"GET /api/ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n""#).hasPrefix("HTTP/1.1 200"))
        _ = M.eventually(3) { s.upstreamRequests().count > before }
        let seen = Array(s.upstreamRequests().dropFirst(before))
        #expect(seen == ["GET /api/ok"], "\(seen)")

        let lines = s.log(atLeast: 9 + 3 + cases.count + 1)
        func onRoute(_ route: String) -> [JSONValue] { lines.filter { $0["route"]?["name"]?.string == route } }
        let upgrades = lines.filter { $0["response"]?["status"]?.int == 101 }
        #expect(upgrades.count == 2, "\(upgrades)")
        #expect(upgrades.contains { $0["route"]?["name"]?.string == "chat-mesh" && $0["service"]?["protocol"]?.string == "https" })
        #expect(onRoute("no-upgrades").first?["response"]?["status"]?.int == 403)
        #expect(onRoute("no-upgrades").first?["refusal_reason"]?.string == "websocket upgrade is not enabled on this route")
        let graphql: [[String]] = onRoute("graphql").map { line in
            let type: String = line["graphql"]?["operation_type"]?.string ?? "-"
            let name: String = line["graphql"]?["operation_name"]?.string ?? "-"
            return [type, name]
        }
        #expect(graphql == [["mutation", "CreateOrder"], ["subscription", "Second"], ["query", "Catalog"]], "\(graphql)")
        let refused = lines.filter { ($0["response"]?["status"]?.int ?? 0) >= 400 && $0["route"]?["name"]?.string != "no-upgrades" && $0["route"]?["name"]?.string != "chat-mesh" }
        let statuses: [Int] = refused.compactMap { $0["response"]?["status"]?.int.map { Int($0) } }
        #expect(statuses.sorted() == cases.map { Int($0.2)! }.sorted(), "\(refused)")
        #expect(refused.allSatisfy { ($0["refusal_reason"]?.string ?? "").isEmpty == false }, "\(refused)")
        #expect(refused.contains { $0["refusal_reason"]?.string == "request line too long" && $0["request"]?["method"]?.string == "GET" })

        // The Kong parser puts the GraphQL operation into the observation: the chain shows it.
        let db = s.dir.appendingPathComponent("trail.db").path
        _ = try M.trail(["ingest", "--db", db, "-q", "gateway-access.ndjson"], in: s.dir)
        if let trace = onRoute("graphql").first?["trace_id"]?["w3c"]?.string {
            let (status, out, err) = try M.run(CLI.binary.path, ["chain", trace, "--db", db, "--format", "json"], in: s.dir)
            #expect(status == 0, "\(err)")
            #expect(out.contains("\"operation\": \"mutation CreateOrder\"") || out.contains("\"operation\":\"mutation CreateOrder\""), "\(out)")
        } else {
            Issue.record("no graphql line")
        }
    }
}
