import Foundation
import Testing
import TrailCore

/// `trail gateway` as a real process against misbehaving upstreams (`fixtures/gateway/upstream.py`): rule
/// timeouts, retries on the next backendRef, RateLimit headers on forwarded responses, the separate credentials
/// file, and the gateway's OTLP spans, which `trail ingest` joins with its Kong log into one edge hop.
@Suite("trail gateway upstream behaviour", .serialized)
struct GatewayUpstreamTests {
    typealias M = MeshTests

    final class Estate {
        let dir: URL
        var daemons: [M.Daemon] = []
        var ports: [String: String] = [:]

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-gw-upstream-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }

        deinit { for d in daemons.reversed() { d.stop() } }

        /// Starts an upstream and returns its port.
        func upstream(_ name: String, _ mode: [String] = []) throws -> String {
            let d = try M.Daemon(
                URL(fileURLWithPath: "/usr/bin/env"),
                ["python3", CLI.root.appendingPathComponent("fixtures/gateway/upstream.py").path, "0", name] + mode, dir: dir, name: name)
            daemons.append(d)
            let port = String(d.lines[0].split(separator: " ")[1])
            ports[name] = port
            return port
        }

        func start(_ arguments: [String], _ name: String) throws -> M.Daemon {
            let d = try M.Daemon(CLI.binary, arguments, dir: dir, name: name)
            daemons.append(d)
            return d
        }

        func write(_ text: String, _ name: String, mode: Int = 0o644) throws {
            let path = dir.appendingPathComponent(name).path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        }

        func lines(_ name: String) -> [JSONValue] { M.accessLog(dir.appendingPathComponent(name)) }

        /// The Kong line of a request id (waits for it).
        func line(requestID: String) -> JSONValue? {
            var found: JSONValue?
            _ = M.eventually(5) {
                found = lines("gateway-access.ndjson").first { $0["request"]?["id"]?.string == requestID }
                return found != nil
            }
            return found
        }
    }

    static let aliceKey = "alice-secret-key"

    /// Upstreams: good (200), flaky (503), slow (sleeps 3 s), and a port nobody listens on. Alice's key is only in
    /// the credentials file (0600).
    static func gateway(_ e: Estate) throws -> M.Daemon {
        let good = try e.upstream("good")
        let flaky = try e.upstream("flaky", ["status", "503"])
        let slow = try e.upstream("slow", ["slow", "3"])
        let dead = try M.Estate.freePort()
        let hash = String(try M.run("/bin/sh", ["-c", "printf %s '\(aliceKey)' | sha256sum"], in: e.dir).1.prefix(64))
        try e.write("""
            consumers:
              alice:
                key-auth:
                  - key_sha256: \(hash)
            """, "creds.yaml", mode: 0o600)
        try e.write("""
            listen: 127.0.0.1:0
            credentials_file: creds.yaml
            telemetry:
              access_log: gateway-access.ndjson
              spans_file: gateway-spans.ndjson
            consumers:
              - username: alice
                id: alice-id
            routes:
              - name: slow
                rules:
                  - matches: [{path: {type: PathPrefix, value: /slow}}]
                    backendRefs: [{name: slow, host: 127.0.0.1, port: \(slow)}]
                    timeouts: {backendRequest: 500ms}
                  - matches: [{path: {type: PathPrefix, value: /slower}}]
                    backendRefs: [{name: slow, host: 127.0.0.1, port: \(slow)}]
                    timeouts: {request: 1s, backendRequest: 400ms}
                    retry: {attempts: 3}
                auth: {methods: [key-auth]}
              - name: dead
                rules:
                  - matches: [{path: {type: PathPrefix, value: /dead}}]
                    backendRefs:
                      - {name: dead, host: 127.0.0.1, port: \(dead), weight: 1000000}
                      - {name: good, host: 127.0.0.1, port: \(good), weight: 1}
                    retry: {attempts: 1}
                auth: {methods: [key-auth]}
              - name: flaky
                rules:
                  - matches: [{path: {type: PathPrefix, value: /flaky}}]
                    backendRefs:
                      - {name: flaky, host: 127.0.0.1, port: \(flaky), weight: 1000000}
                      - {name: good, host: 127.0.0.1, port: \(good), weight: 1}
                    retry: {attempts: 1}
                auth: {methods: [key-auth]}
              - name: limited
                rules:
                  - backendRefs: [{name: good, host: 127.0.0.1, port: \(good)}]
                auth: {methods: [key-auth]}
                rate_limit: {per_consumer: {requests: 5, window: 1m}}
            """, "gateway.yaml")
        return try e.start(["gateway", "--config", "gateway.yaml"], "gateway")
    }

    /// curl with headers: (status, headers lowercased, body, seconds).
    static func curl(_ arguments: [String], in dir: URL) throws -> (Int, [String: String], String, Double) {
        let started = Date()
        let (_, out, _) = try M.run(
            "/usr/bin/curl", ["-sS", "--max-time", "10", "-D", "-", "-o", "-", "-w", "\n%{http_code}"] + arguments, in: dir)
        let elapsed = Date().timeIntervalSince(started)
        let parts = out.components(separatedBy: "\r\n\r\n")
        var headers: [String: String] = [:]
        for line in (parts.first ?? "").split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let rest = parts.dropFirst().joined(separator: "\r\n\r\n")
        let lines = rest.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, headers, lines.dropLast().joined(separator: "\n"), elapsed)
    }

    @Test func timeoutsRetriesRateLimitHeadersAndCredentialsFile() throws {
        let e = try Estate()
        let gateway = try Self.gateway(e)
        let auth = ["-H", "apikey: \(Self.aliceKey)"]

        // The credentials file's key works; a wrong one does not.
        let minuteOfFirst = Int(Date().timeIntervalSince1970) / 60
        let ok = try Self.curl(auth + ["\(gateway.url)/anything"], in: e.dir)
        #expect(ok.0 == 200, "\(ok.2) \(gateway.stderr)")
        #expect(try Self.curl(["-H", "apikey: nope", "\(gateway.url)/anything"], in: e.dir).0 == 401)

        // RateLimit headers on a forwarded 200 (Kong's names too: the window is a minute).
        #expect(ok.1["ratelimit-limit"] == "5", "\(ok.1)")
        #expect(ok.1["ratelimit-remaining"] == "4", "\(ok.1)")
        #expect(Int(ok.1["ratelimit-reset"] ?? "") != nil, "\(ok.1)")
        #expect(ok.1["x-ratelimit-limit-minute"] == "5" && ok.1["x-ratelimit-remaining-minute"] == "4", "\(ok.1)")
        let second = try Self.curl(auth + ["\(gateway.url)/anything"], in: e.dir)
        // Windows are clock minutes, as Kong's: when a new one began between the two calls, the count starts again.
        let sameWindow = Int(Date().timeIntervalSince1970) / 60 == minuteOfFirst
        #expect(second.0 == 200 && (second.1["ratelimit-remaining"] == "3" || !sameWindow && second.1["ratelimit-remaining"] == "4"), "\(second.1)")
        // Routes without a rate limit send none.
        let dead = try Self.curl(auth + ["\(gateway.url)/dead/x"], in: e.dir)
        #expect(dead.1["ratelimit-limit"] == nil)

        // A backendRef that refuses connections is retried on the next one.
        #expect(dead.0 == 200, "\(dead.2) \(gateway.stderr)")
        #expect(dead.2.contains("\"app\": \"good\""), "\(dead.2)")
        if let line = e.line(requestID: dead.1["x-kong-request-id"] ?? "-") {
            let tries = line["tries"]?.array ?? []
            #expect(tries.count == 2, "\(line)")
            #expect(tries.first?["state"]?.string == "failed" && tries.first?["code"]?.int == 502, "\(line)")
            #expect(tries.first?["port"]?.int != tries.last?["port"]?.int)
            #expect(tries.last?["code"] == nil && tries.last?["balancer_latency"]?.int != nil)
            #expect(line["upstream_status"]?.string == "502, 200", "\(line)")
            #expect(line["service"]?["name"]?.string == "good")
            #expect(line["response"]?["status"]?.int == 200)
        } else {
            Issue.record("no log line for the dead-backend request")
        }

        // A 503 is retried on the next backendRef for GET...
        let flaky = try Self.curl(auth + ["\(gateway.url)/flaky/x"], in: e.dir)
        #expect(flaky.0 == 200 && flaky.2.contains("\"app\": \"good\""), "\(flaky.2)")
        if let line = e.line(requestID: flaky.1["x-kong-request-id"] ?? "-") {
            let tries = line["tries"]?.array ?? []
            #expect(tries.count == 2, "\(line)")
            #expect(tries.first?["state"]?.string == "next" && tries.first?["code"]?.int == 503, "\(line)")
            #expect(line["upstream_status"]?.string == "503, 200", "\(line)")
        } else {
            Issue.record("no log line for the flaky request")
        }
        // ...but never for POST: the caller gets the 503 and good never sees the request.
        let count = "http://127.0.0.1:\(e.ports["good"] ?? "0")/__count"
        let goodBefore = try Self.curl([count], in: e.dir).2
        let post = try Self.curl(auth + ["-X", "POST", "-d", "amount=5", "\(gateway.url)/flaky/pay"], in: e.dir)
        #expect(post.0 == 503, "\(post.2)")
        if let line = e.line(requestID: post.1["x-kong-request-id"] ?? "-") {
            #expect((line["tries"]?.array ?? []).count == 1, "\(line)")
            #expect(line["upstream_status"]?.string == "503", "\(line)")
        } else {
            Issue.record("no log line for the POST")
        }
        #expect(try Self.curl([count], in: e.dir).2 == goodBefore)
        // A POST without a body is not retried either (the method is not idempotent).
        let emptyPost = try Self.curl(auth + ["-X", "POST", "\(gateway.url)/flaky/pay"], in: e.dir)
        #expect(emptyPost.0 == 503)

        // A slow upstream: 504 with the gateway's JSON body, within the backendRequest timeout.
        let slow = try Self.curl(auth + ["\(gateway.url)/slow/x"], in: e.dir)
        #expect(slow.0 == 504, "\(slow.2)")
        #expect(slow.3 < 2.5, "took \(slow.3) s")
        let body = try? JSONParser.parse(Array(slow.2.utf8))
        #expect(body?["message"]?.string == "The upstream server is timing out", "\(slow.2)")
        #expect(body?["request_id"]?.string == slow.1["x-kong-request-id"], "\(slow.2) \(slow.1)")
        if let line = e.line(requestID: slow.1["x-kong-request-id"] ?? "-") {
            #expect(line["response"]?["status"]?.int == 504)
            #expect(line["refusal_reason"]?.string == "backendRequest timeout 500ms (1 try)", "\(line)")
            #expect(line["upstream_status"]?.string == "504", "\(line)")
            #expect(line["tries"]?.array?.first?["code"]?.int == 504, "\(line)")
            #expect(line["latencies"]?["proxy"]?.int == -1)
            #expect((line["latencies"]?["request"]?.int ?? 0) >= 450, "\(line)")
        } else {
            Issue.record("no log line for the slow request")
        }
        // The whole-request timeout bounds the retries: 400 ms tries, 1 s in all.
        let slower = try Self.curl(auth + ["\(gateway.url)/slower/x"], in: e.dir)
        #expect(slower.0 == 504, "\(slower.2)")
        #expect(slower.3 < 2.5 && slower.3 > 0.9, "took \(slower.3) s")
        if let line = e.line(requestID: slower.1["x-kong-request-id"] ?? "-") {
            #expect(line["refusal_reason"]?.string == "request timeout 1s (3 tries)", "\(line)")
            #expect(line["upstream_status"]?.string == "504, 504, 504", "\(line)")
        } else {
            Issue.record("no log line for the slower request")
        }
    }

    @Test func spansAndKongLogMakeOneEdgeHopWithTheConsumer() throws {
        let e = try Estate()
        let gateway = try Self.gateway(e)
        let auth = ["-H", "apikey: \(Self.aliceKey)"]
        let trace = "5bf92f3577b34da6a3ce929d0e0e4736"
        let continued = try Self.curl(auth + ["-H", "traceparent: 00-\(trace)-00f067aa0ba902b7-01", "-A", "probe/1", "\(gateway.url)/items"], in: e.dir)
        #expect(continued.0 == 200, "\(continued.2)")
        let fresh = try Self.curl(auth + ["\(gateway.url)/items/2"], in: e.dir)
        #expect(fresh.0 == 200)
        let refused = try Self.curl(["\(gateway.url)/items/3"], in: e.dir)
        #expect(refused.0 == 401)

        var spans: [JSONValue] = []
        _ = M.eventually(5) {
            spans = e.lines("gateway-spans.ndjson")
            return spans.count >= 3
        }
        #expect(spans.count == 3)
        func span(_ line: JSONValue) -> JSONValue? { line["resourceSpans"]?.array?.first?["scopeSpans"]?.array?.first?["spans"]?.array?.first }
        func attributes(_ s: JSONValue?) -> [String: String] {
            var out: [String: String] = [:]
            for a in s?["attributes"]?.array ?? [] {
                if let k = a["key"]?.string { out[k] = a["value"]?["stringValue"]?.string ?? a["value"]?["intValue"]?.string }
            }
            return out
        }
        guard spans.count == 3 else { return }
        let first = span(spans[0])
        let a = attributes(first)
        #expect(first?["traceId"]?.string == trace)
        #expect(first?["parentSpanId"]?.string == "00f067aa0ba902b7")
        #expect(first?["kind"]?.int == 2)
        // Its span id is the parent the upstream received.
        let upstreamTraceparent = (try? JSONParser.parse(Array(continued.2.utf8)))?["traceparent"]?.string
        #expect(upstreamTraceparent == "00-\(trace)-\(first?["spanId"]?.string ?? "?")-01", "\(continued.2)")
        #expect(a["http.request.method"] == "GET" && a["url.path"] == "/items" && a["http.route"] == "limited", "\(a)")
        #expect(a["http.response.status_code"] == "200" && a["client.address"] == "127.0.0.1" && a["user_agent.original"] == "probe/1", "\(a)")
        #expect(a["enduser.id"] == "alice" && a["trail.principal.type"] == "api-key", "\(a)")
        let third = attributes(span(spans[2]))
        #expect(third["http.response.status_code"] == "401" && third["enduser.id"] == "anonymous", "\(third)")

        // The analyst: Kong log plus spans give one edge hop per request, the consumer as principal.
        let db = e.dir.appendingPathComponent("trail.db").path
        _ = try M.trail(["ingest", "--db", db, "-q", "gateway-access.ndjson", "gateway-spans.ndjson"], in: e.dir)
        let kong = e.lines("gateway-access.ndjson")
        let freshTrace = kong.first { $0["request"]?["uri"]?.string == "/items/2" }?["trace_id"]?["w3c"]?.string ?? "?"
        for t in [trace, freshTrace] {
            let (status, out, err) = try M.run(CLI.binary.path, ["chain", t, "--db", db, "--format", "json"], in: e.dir)
            #expect(status == 0, "\(err)")
            let chain = try? JSONParser.parse(Array(out.utf8))
            let hops = chain?["hops"]?.array ?? []
            #expect(hops.count == 1, "\(out)")
            #expect(chain?["origin"]?["principal"]?.string == "alice", "\(out)")
            #expect(chain?["origin"]?["via_gateway"]?.bool == true, "\(out)")
            let observed = hops.first?["observed_by"]?.array?.compactMap(\.string) ?? []
            #expect(observed == ["gateway"], "\(out)")
            #expect((hops.first?["evidence"]?.array ?? []).count == 2, "\(out)")  // the Kong line and the span
        }
    }

    @Test func aCredentialsFileReadableByOthersIsRefused() throws {
        let e = try Estate()
        try e.write("consumers:\n  alice:\n    key-auth:\n      - key_sha256: \(String(repeating: "ab", count: 32))\n", "creds.yaml", mode: 0o644)
        try e.write("""
            credentials_file: creds.yaml
            consumers: [{username: alice}]
            routes:
              - name: r
                rules: [{backendRefs: [{name: a, host: 127.0.0.1, port: 9}]}]
                auth: {methods: [key-auth]}
            """, "gateway.yaml")
        let (status, _, err) = try M.run(CLI.binary.path, ["gateway", "--config", "gateway.yaml"], in: e.dir)
        #expect(status != 0)
        #expect(err.contains("gateway.yaml: credentials_file (line 1)"), "\(err)")
        #expect(err.contains("chmod 600"), "\(err)")
        // With 0600 it loads, and a mistake in it is named by file, key path and line.
        try e.write("consumers:\n  alice:\n    key-auth:\n      - key_sha256: nothex\n", "creds.yaml", mode: 0o600)
        let (status2, _, err2) = try M.run(CLI.binary.path, ["gateway", "--config", "gateway.yaml"], in: e.dir)
        #expect(status2 != 0)
        #expect(err2.contains("creds.yaml: consumers.alice.key-auth[0].key_sha256 (line 4)"), "\(err2)")
    }
}
