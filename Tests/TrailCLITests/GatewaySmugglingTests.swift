import Foundation
import Testing
import TrailCore

/// Request smuggling and log injection at `trail gateway` and `trail sidecar`, as real processes, with raw bytes
/// (`fixtures/gateway/raw_http.py`) and raw HTTP/2 frames (`fixtures/gateway/raw_h2.py`): framing a front end and
/// a back end could read differently, targets that are not paths, dot segments that would leave a route, and
/// HTTP/2 requests whose downgrade to HTTP/1.1 would carry a second request. Behind the gateway, one upstream
/// writes every request it receives to a file: nothing smuggled may ever appear there. `GatewayProtocolTests`
/// has the first cases (CL with TE, two CLs, TE not chunked, obs-fold, Host); these are the rest.
@Suite("trail gateway and sidecar: smuggling and log injection", .serialized)
struct GatewaySmugglingTests {
    typealias M = MeshTests

    final class Setup {
        let dir: URL
        var daemons: [M.Daemon] = []
        var gatewayPort = 0
        var sidecarURL = ""
        let key = "smuggling-test-key"
        var requestLog: URL { dir.appendingPathComponent("upstream-requests.log") }

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-smuggling-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            _ = try M.trail(["ca", "init", "--dir", "ca", "--trust-domain", "shop.example"], in: dir)
            _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/shop/sa/api", "--out", "api"], in: dir)
            let fixture = CLI.root.appendingPathComponent("fixtures/gateway/upstreams.py").path
            let http = try start(URL(fileURLWithPath: "/usr/bin/env"), ["python3", fixture, "http", "0", requestLog.path], "http-app")
            let appPort = http.lines[0].split(separator: " ")[1]
            try """
                spiffe_id: spiffe://shop.example/ns/shop/sa/api
                trust_bundle: ca/bundle.pem
                svid: {cert: api/svid.pem, key: api/svid.key}
                inbound:
                  listen: 127.0.0.1:0
                  app: 127.0.0.1:\(appPort)
                  mode: PERMISSIVE
                telemetry:
                  access_log: sidecar-access.ndjson
                  flush_ms: 10
                """.write(to: dir.appendingPathComponent("api.yaml"), atomically: true, encoding: .utf8)
            sidecarURL = try start(CLI.binary, ["sidecar", "--config", "api.yaml"], "sidecar").url
            let keyHash = String(try M.run("/bin/sh", ["-c", "printf %s '\(key)' | sha256sum"], in: dir).1.prefix(64))
            try """
                listen: 127.0.0.1:0
                telemetry:
                  access_log: gateway-access.ndjson
                consumers:
                  - username: admin
                    credentials:
                      key-auth:
                        - key_sha256: \(keyHash)
                routes:
                  - name: public
                    rules:
                      - matches: [{path: {type: PathPrefix, value: /public}}]
                        backendRefs: [{name: app, host: 127.0.0.1, port: \(appPort)}]
                    auth: {anonymous: true}
                  - name: admin
                    rules:
                      - matches: [{path: {type: PathPrefix, value: /admin}}]
                        backendRefs: [{name: app, host: 127.0.0.1, port: \(appPort)}]
                    auth: {methods: [key-auth]}
                  - name: api
                    rules:
                      - matches: [{path: {type: PathPrefix, value: /api}}]
                        backendRefs: [{name: app, host: 127.0.0.1, port: \(appPort)}]
                    auth: {anonymous: true}
                """.write(to: dir.appendingPathComponent("gateway.yaml"), atomically: true, encoding: .utf8)
            gatewayPort = try M.Estate.freePort()
            _ = try start(CLI.binary, ["gateway", "--config", "gateway.yaml", "--listen", "127.0.0.1:\(gatewayPort)"], "gateway")
        }

        func start(_ executable: URL, _ arguments: [String], _ name: String) throws -> M.Daemon {
            let d = try M.Daemon(executable, arguments, dir: dir, name: name)
            daemons.append(d)
            return d
        }

        func raw(_ request: String, port: Int? = nil) throws -> String {
            let path = CLI.root.appendingPathComponent("fixtures/gateway/raw_http.py").path
            return try M.run("/usr/bin/env", ["python3", path, "127.0.0.1", String(port ?? gatewayPort), request], in: dir).1
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func h2(_ fields: [(String, String)], body: String? = nil) throws -> String {
            let path = CLI.root.appendingPathComponent("fixtures/gateway/raw_h2.py").path
            let json = JSONValue.array(fields.map { .array([.string($0.0), .string($0.1)]) }).serialized()
            return try M.run("/usr/bin/env", ["python3", path, "127.0.0.1", String(gatewayPort), json] + (body.map { [$0] } ?? []), in: dir).1
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func upstreamRequests() -> [String] {
            ((try? String(contentsOf: requestLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }

        func stop() { for d in daemons.reversed() { d.stop() } }
    }

    /// (what, raw request as a Python bytes expression, the status line's start or "closed"). Each hides a second
    /// request (`/api/smuggled…`) where a lax parser would find it.
    static let http1: [(String, String, [String])] = [
        ("chunk size not hex", #"b"POST /api/c1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /api/smuggled1 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400", "closed"]),
        ("negative chunk size", #"b"POST /api/c2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nGET /api/smuggled2 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400", "closed"]),
        ("chunk size overflow", #"b"POST /api/c3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nGET /api/smuggled3 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400", "closed"]),
        ("chunk size with 0x", #"b"POST /api/c4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nGET /api/smuggled4 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400", "closed"]),
        ("bare LF in a chunk extension", #"b"POST /api/c5 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x\nGET /api/smuggled5 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400", "closed"]),
        ("space before the colon of TE", #"b"POST /api/t1 HTTP/1.1\r\nHost: a\r\nContent-Length: 45\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /api/smuggled6 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("TE xchunked", #"b"POST /api/t2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /api/smuggled7 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("TE gzip alone", #"b"POST /api/t3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nGET /api/smuggled8 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("TE in HTTP/1.0", #"b"POST /api/t4 HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /api/smuggled9 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("TE with a vertical tab", #"b"POST /api/t5 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /api/smuggled10 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("CL with a plus sign", #"b"POST /api/l1 HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcdGET /api/smuggled11 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("negative CL", #"b"POST /api/l2 HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nGET /api/smuggled12 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("CL list with two values", #"b"POST /api/l3 HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 40\r\n\r\nabcdGET /api/smuggled13 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("CL in hex", #"b"POST /api/l4 HTTP/1.1\r\nHost: a\r\nContent-Length: 0x4\r\n\r\nabcdGET /api/smuggled14 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("CL overflow", #"b"POST /api/l5 HTTP/1.1\r\nHost: a\r\nContent-Length: 184467440737095516160\r\n\r\nGET /api/smuggled15 HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("bare CR in a header", #"b"GET /api/h1 HTTP/1.1\r\nHost: a\r\nX-A: b\rGET /api/smuggled16 HTTP/1.1\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("NUL in a header", #"b"GET /api/h2 HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("space in a header name", #"b"GET /api/h3 HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("header line without a colon", #"b"GET /api/h4 HTTP/1.1\r\nHost: a\r\nGET /api/smuggled17 HTTP/1.1\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("junk after the version", #"b"GET /api/h5 HTTP/1.1 GET /api/smuggled18\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("absolute-form to another host", #"b"GET http://evil.example/api/abs HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("CONNECT to an internal port", #"b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\nSSH-2.0-smuggled\r\n""#, ["HTTP/1.1 400"]),
        ("asterisk-form", #"b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n""#, ["HTTP/1.1 400"]),
        ("h2c upgrade through the gateway", #"b"GET /api/h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n""#, ["HTTP/1.1 200"]),
    ]

    /// Dot segments and escapes that would leave the anonymous `/public` route for the key-auth `/admin` one.
    static let traversals: [String] = [
        "/public/../admin", "/public/%2e%2e/admin", "/public/%2E%2E/admin", "/public/.%2e/admin", "/public/./../admin",
        "/public//../admin", "/public/x/../../admin", "//admin", "/public/../admin/../admin/x", "/%70ublic/../%61dmin",
    ]

    @Test func smugglingIsRefusedAndNothingHiddenReachesTheUpstream() throws {
        let s = try Setup()
        defer { s.stop() }
        for (what, request, statuses) in Self.http1 {
            let line = try s.raw(request)
            #expect(statuses.contains { line.hasPrefix($0) }, "\(what): \(line)")
        }
        // HTTP/2 (h2c, prior knowledge): connection-specific fields, CR LF and NUL in values, bad names and
        // pseudo-header fields, a body longer than its content-length, all refused before the HTTP/1.1 downgrade.
        let base: [(String, String)] = [(":method", "GET"), (":scheme", "http"), (":authority", "a")]
        let h2Cases: [(String, [(String, String)], String?, [String])] = [
            ("transfer-encoding", base + [(":path", "/api/x1"), ("transfer-encoding", "chunked")], nil, ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR"]),
            ("connection", base + [(":path", "/api/x2"), ("connection", "keep-alive")], nil, ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR"]),
            ("keep-alive", base + [(":path", "/api/x3"), ("keep-alive", "timeout=5")], nil, ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR"]),
            ("upgrade", base + [(":path", "/api/x4"), ("upgrade", "h2c")], nil, ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR"]),
            ("te: gzip", base + [(":path", "/api/x5"), ("te", "gzip")], nil, ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR"]),
            ("upper-case name", base + [(":path", "/api/x6"), ("X-Upper", "1")], nil, ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR"]),
            ("pseudo-header after a field", [(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":path", "/api/x7"), (":authority", "a")], nil,
             ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR"]),
            ("no :path", base, nil, ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR"]),
            ("CR LF in a value", base + [(":path", "/api/x8"), ("x-a", "1\\r\\n\\r\\nGET /api/smuggled-h2a HTTP/1.1\\r\\nHost: a")], nil,
             ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR", "status 400", "status 502"]),
            ("CR LF in :path", base + [(":path", "/api/x9 HTTP/1.1\\r\\nHost: a\\r\\n\\r\\nGET /api/smuggled-h2b")], nil,
             ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR", "status 400"]),
            ("NUL in a value", base + [(":path", "/api/x10"), ("x-a", "1\\x002")], nil, ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR", "status 400", "status 502"]),
            ("body longer than content-length", [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/api/x11"), ("content-length", "4")],
             "abcdGET /api/smuggled-h2c HTTP/1.1\r\nHost: a\r\n\r\n", ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR"]),
            (":authority and host differ", base + [(":path", "/api/x12"), ("host", "evil.example")], nil,
             ["RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR", "status 400"]),
            ("CONNECT", [(":method", "CONNECT"), (":authority", "127.0.0.1:22")], nil, ["status 501", "RST_STREAM PROTOCOL_ERROR", "RST_STREAM CANCEL"]),
            ("extended CONNECT", [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/api/x13"), (":authority", "a")], nil,
             ["status 501", "RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR"]),
        ]
        for (what, fields, body, outcomes) in h2Cases {
            let result = try s.h2(fields, body: body)
            #expect(outcomes.contains(result), "HTTP/2 \(what): \(result)")
        }
        // Dot segments never leave a route: /admin needs the key, whatever the spelling.
        for path in Self.traversals {
            let line = try s.raw(#"b"GET \#(path) HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n""#)
            #expect(line.hasPrefix("HTTP/1.1 401"), "\(path): \(line)")
        }
        // Controls: a plain request, the admin route with its key, a request and an HTTP/2 one with dot segments
        // inside the route (forwarded normalised).
        #expect(try s.raw(#"b"GET /public/a/./b/../c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n""#).hasPrefix("HTTP/1.1 200"))
        #expect(try s.raw(#"b"GET /public/../admin/x HTTP/1.1\r\nHost: a\r\napikey: \#(s.key)\r\nConnection: close\r\n\r\n""#).hasPrefix("HTTP/1.1 200"))
        #expect(try s.h2(base + [(":path", "/api/h2-ok")]) == "status 200")

        _ = M.eventually(3) { s.upstreamRequests().contains("GET /api/h2-ok") }
        let seen = s.upstreamRequests()
        #expect(!seen.contains { $0.contains("smuggled") || $0.contains("evil") || $0.contains("..") }, "\(seen)")
        #expect(!seen.contains { $0.hasPrefix("CONNECT") || $0.hasPrefix("OPTIONS") || $0.hasPrefix("PRI") }, "\(seen)")
        // The upstream saw exactly the requests the gateway should forward, with normalised paths: the bad-chunk
        // requests may have been forwarded up to the bad chunk (their heads were whole), nothing after it.
        let expected: Set<String> = ["GET /api/h2c", "GET /public/a/c", "GET /admin/x", "GET /api/h2-ok"]
        let partial: Set<String> = ["POST /api/c1", "POST /api/c2", "POST /api/c3", "POST /api/c4", "POST /api/c5"]
        #expect(Set(seen).subtracting(partial) == expected, "\(seen)")
    }

    /// Hostile paths, Host and User-Agent values (escape sequences, CR, C1 NEL and CSI, bidi overrides, U+2028)
    /// through the gateway and a PERMISSIVE sidecar: every request is one JSON line in each access log, and no
    /// line holds a raw control character; refusals are logged with their reason. C0 controls never get past
    /// the HTTP parser (400; the gateway logs the refusal with the request line, the sidecar answers without a
    /// line), nor does any byte over 0x7F in the request target; in header values C1 and bidirectional controls
    /// are valid UTF-8 (obs-text), pass, and are logged escaped.
    @Test func hostileRequestsCannotForgeLogLines() throws {
        let s = try Setup()
        defer { s.stop() }
        let sidecarPort = Int(s.sidecarURL.split(separator: ":").last ?? "") ?? 0
        let c0 = #"\x1b[2J\x1b]0;pwned\x07"#
        let obsText = #"\xc2\x85forged\xc2\x9b31m\xe2\x80\xaegnp.exe\xe2\x80\xa8\xe2\x81\xa6"#
        // (request, passes the HTTP parser)
        let requests: [(String, Bool)] = [
            (#"b"GET /api/ua HTTP/1.1\r\nHost: a\r\nUser-Agent: \#(obsText)\r\nConnection: close\r\n\r\n""#, true),
            (#"b"GET /api/host HTTP/1.1\r\nHost: \#(obsText)\r\nConnection: close\r\n\r\n""#, true),
            (#"b"GET /api/\#(obsText) HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n""#, false),
            (#"b"GET /api/q?x=\#(obsText) HTTP/1.1\r\nHost: a\r\nX-Request-Id: \#(obsText)\r\nConnection: close\r\n\r\n""#, false),
            (#"b"GET /api/traceparent HTTP/1.1\r\nHost: a\r\ntraceparent: 00-\#(obsText)-01\r\nConnection: close\r\n\r\n""#, true),
            (#"b"GET /api/c0 HTTP/1.1\r\nHost: a\r\nUser-Agent: \#(c0)\r\nConnection: close\r\n\r\n""#, false),
            (#"b"GET /api/\#(c0) HTTP/1.1\r\nHost: a\r\n\r\n""#, false),
            (#"b"GET /api/cr HTTP/1.1\r\nHost: a\r\nUser-Agent: a\rforged\r\nConnection: close\r\n\r\n""#, false),
            (#"b"\#(c0) /api/method HTTP/1.1\r\nHost: a\r\n\r\n""#, false),
        ]
        for (request, passes) in requests {
            for port in [s.gatewayPort, sidecarPort] {
                let line = try s.raw(request, port: port)
                #expect(line.hasPrefix("HTTP/1.1 "), "\(request): \(line)")
                if !passes { #expect(line.hasPrefix("HTTP/1.1 400"), "\(request): \(line)") }
            }
        }
        let passing = requests.filter(\.1).count
        for (log, minimum, escapes) in [
            ("gateway-access.ndjson", requests.count, ["\\u001b[2J", "\\u0085", "\\u009b", "\\u202e", "\\u2028", "\\u2066"]),
            ("sidecar-access.ndjson", passing, ["\\u0085", "\\u009b", "\\u202e", "\\u2028", "\\u2066"]),
        ] {
            var text = ""
            _ = M.eventually(5) {
                text = (try? String(contentsOf: s.dir.appendingPathComponent(log), encoding: .utf8)) ?? ""
                return text.split(separator: "\n").count >= minimum
            }
            #expect(text.split(separator: "\n").count == minimum, "\(log): one line per request")
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(lines.count >= minimum, "\(log): \(lines.count) lines")
            for line in lines {
                #expect((try? JSONParser.parse(Array(line.utf8))) != nil, "\(log): a line that is not JSON: \(line.prefix(200))")
            }
            let raw = HostileInputTests.rawControls(text.replacingOccurrences(of: "\n", with: ""))
            #expect(raw.isEmpty, "\(log): raw \(raw)")
            // Escaped, not dropped: the log still tells what was sent.
            for escape in escapes { #expect(text.contains(escape), "\(log): no \(escape)") }
        }
    }
}
