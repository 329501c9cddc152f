import Foundation
import Testing
import TrailCore
import TrailFormats
import TrailMesh

@testable import TrailGateway

/// Retries, timeouts, the credentials file and the gateway's span, without a network.
@Suite struct RetryDecisionTests {
    static let target = UpstreamTarget(host: "a", port: 1, expectedSPIFFEID: nil)

    @Test func onlyIdempotentMethodsWithoutABodySentAndWithTriesLeft() {
        let plan = ForwardPlan(targets: [Self.target], retries: 2, idempotent: true)
        #expect(plan.mayRetry(triesMade: 1, bodySent: false))
        #expect(plan.mayRetry(triesMade: 2, bodySent: false))
        #expect(!plan.mayRetry(triesMade: 3, bodySent: false))
        #expect(!plan.mayRetry(triesMade: 1, bodySent: true))
        #expect(!ForwardPlan(targets: [Self.target], retries: 2, idempotent: false).mayRetry(triesMade: 1, bodySent: false))
        #expect(!ForwardPlan(targets: [Self.target], retries: 0, idempotent: true).mayRetry(triesMade: 1, bodySent: false))
        #expect(ForwardPlan.idempotentMethods == ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
        #expect(!ForwardPlan.idempotentMethods.contains("POST") && !ForwardPlan.idempotentMethods.contains("PATCH"))
        #expect(ForwardPlan.retryableStatuses == [502, 503, 504])
    }

    @Test func retriesGoToTheNextWeightedBackendRef() {
        let a = BackendRef(name: "a", host: "a", port: 1, weight: 5)
        let b = BackendRef(name: "b", host: "b", port: 2, weight: 0)
        let c = BackendRef(name: "c", host: "c", port: 3, weight: 1)
        #expect(GatewayPolicy.tryOrder([a, b, c], first: a, retries: 0).map(\.name) == ["a"])
        #expect(GatewayPolicy.tryOrder([a, b, c], first: a, retries: 3).map(\.name) == ["a", "c", "a", "c"])
        #expect(GatewayPolicy.tryOrder([a, b, c], first: c, retries: 1).map(\.name) == ["c", "a"])
        #expect(GatewayPolicy.tryOrder([a], first: a, retries: 2).map(\.name) == ["a", "a", "a"])
        let plan = ForwardPlan(targets: [Self.target, UpstreamTarget(host: "b", port: 2, expectedSPIFFEID: nil)], retries: 3)
        #expect(plan.target(forTry: 0).host == "a" && plan.target(forTry: 1).host == "b" && plan.target(forTry: 5).host == "b")
    }
}

@Suite struct TimeoutsConfigurationTests {
    static func yaml(_ rule: String) -> String {
        """
        consumers: [{username: u}]
        routes:
          - name: r
            rules:
              - backendRefs: [{name: a, port: 80}]
        \(rule)
            auth: {anonymous: true}
        """
    }

    @Test func timeoutsAndRetriesAreParsedAndValidated() throws {
        let config = try GatewayConfiguration.parse(
            yaml: Self.yaml("        timeouts: {request: 1m30s, backendRequest: 500ms}\n        retry: {attempts: 2}"), file: "/t/g.yaml")
        let rule = config.routes[0].rules[0]
        #expect(rule.timeouts == RouteTimeouts(request: 90, backendRequest: 0.5))
        #expect(rule.retryAttempts == 2)
        #expect(GatewayPolicy.timeAmount(0.5) == .milliseconds(500))
        #expect(GatewayPolicy.timeoutReason("backendRequest timeout", rule.timeouts, tries: 3) == "backendRequest timeout 500ms (3 tries)")
        #expect(GatewayPolicy.timeoutReason("request timeout", rule.timeouts, tries: 1) == "request timeout 90s (1 try)")
        #expect(throws: ConfigError.self) {
            try GatewayConfiguration.parse(yaml: Self.yaml("        timeouts: {request: 1s, backendRequest: 2s}"), file: "/t/g.yaml")
        }
        do {
            _ = try GatewayConfiguration.parse(yaml: Self.yaml("        timeouts: {request: soon}"), file: "/t/g.yaml")
            Issue.record("accepted a bad duration")
        } catch {
            #expect("\(error)".contains("/t/g.yaml: routes[0].rules[0].timeouts.request (line 6)"), "\(error)")
        }
    }
}

@Suite struct CredentialsFileTests {
    static let main = """
        credentials_file: creds.yaml
        telemetry: {spans_file: spans.ndjson}
        consumers:
          - username: alice
            credentials: {key-auth: [{key_sha256: \(sha256Hex("alice-main"))}]}
          - username: bob
        routes:
          - name: r
            rules: [{backendRefs: [{name: a, port: 80}]}]
            auth: {methods: [key-auth]}
        """

    static func folder(creds: String, mode: Int) throws -> TempFolder {
        let folder = try TempFolder(files: ["gateway.yaml": main, "creds.yaml": creds])
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: folder.path + "/creds.yaml")
        return folder
    }

    static let creds = """
        consumers:
          alice:
            key-auth: [{key_sha256: \(sha256Hex("alice-file"))}]
          bob:
            mtls: [{spiffe_id: spiffe://partners.example/bob}]
        """

    @Test func credentialsAreAddedToTheirConsumers() throws {
        let folder = try Self.folder(creds: Self.creds, mode: 0o600)
        defer { folder.remove() }
        let config = try GatewayConfiguration.load(file: folder.path + "/gateway.yaml")
        #expect(config.credentialsFile == folder.path + "/creds.yaml")
        #expect(config.server.telemetry.spansFile == folder.path + "/spans.ndjson")
        let alice = try #require(config.consumer(named: "alice"))
        #expect(alice.keySHA256.map { Hex.encode($0) } == [sha256Hex("alice-main"), sha256Hex("alice-file")])
        #expect(config.consumer(named: "bob")?.certificates == [.spiffeID("spiffe://partners.example/bob")])
    }

    @Test func groupOrWorldAccessIsRefused() throws {
        for mode in [0o640, 0o604, 0o620, 0o644] {
            let folder = try Self.folder(creds: Self.creds, mode: mode)
            defer { folder.remove() }
            do {
                _ = try GatewayConfiguration.load(file: folder.path + "/gateway.yaml")
                Issue.record("mode \(String(mode, radix: 8)) accepted")
            } catch {
                let text = "\(error)"
                #expect(text.hasPrefix(folder.path + "/gateway.yaml: credentials_file (line 1): "), "\(text)")
                #expect(text.contains("mode \(String(mode, radix: 8))") && text.contains("chmod 600"), "\(text)")
            }
        }
        let folder = try TempFolder(files: ["gateway.yaml": Self.main])
        defer { folder.remove() }
        #expect(throws: ConfigError.self) { try GatewayConfiguration.load(file: folder.path + "/gateway.yaml") }
    }

    @Test(arguments: [
        ("consumers:\n  carol:\n    key-auth: []\n", "creds.yaml: consumers.carol (line 3): no consumer 'carol' in the configuration; known: alice, bob"),
        ("consumers:\n  alice:\n    key-auth:\n      - key_sha256: abc\n", "creds.yaml: consumers.alice.key-auth[0].key_sha256 (line 4): expected 64 hex digits"),
        ("consumers:\n  alice:\n    passwords: []\n", "creds.yaml: consumers.alice.passwords (line 3): unknown key"),
        ("users: {}\n", "creds.yaml: users (line 1): unknown key"),
        ("consumers:\n  bob:\n    key-auth: [{key_sha256: \(sha256Hex("alice-main"))}]\n", "consumer 'bob' has an API key that another credential already has"),
    ])
    func mistakesNameFileKeyPathAndLine(_ c: (String, String)) throws {
        let folder = try Self.folder(creds: c.0, mode: 0o600)
        defer { folder.remove() }
        do {
            _ = try GatewayConfiguration.load(file: folder.path + "/gateway.yaml")
            Issue.record("accepted: \(c.0)")
        } catch {
            #expect("\(error)".contains(c.1), "\(error)")
        }
    }
}

@Suite struct GatewaySpanTests {
    static func span() -> GatewaySpan {
        var s = GatewaySpan(
            traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: "00f067aa0ba90301", parentSpanID: "00f067aa0ba902b7",
            startNanos: 1_800_000_000_123_456_789, endNanos: 1_800_000_000_223_456_789, method: "GET",
            target: "/pay/1?apikey=x", scheme: "http", status: 200, requestID: "req-1")
        s.host = "api.example.com"
        s.routeName = "payments"
        s.serviceName = "payments"
        s.clientAddress = "203.0.113.9"
        s.userAgent = "curl/8"
        s.consumer = "alice"
        s.consumerID = "alice-id"
        s.credentialID = "0572c17e"
        s.credentialKind = .keyAuth
        s.upstreamAddress = "10.0.0.7:8443"
        s.tries = 2
        return s
    }

    static func attributes(_ span: JSONValue) -> [String: String] {
        var out: [String: String] = [:]
        for a in span["attributes"]?.array ?? [] {
            if let k = a["key"]?.string { out[k] = a["value"]?["stringValue"]?.string ?? a["value"]?["intValue"]?.string }
        }
        return out
    }

    @Test func theSpanCarriesTheRequestAndTheConsumer() {
        let json = Self.span().json
        #expect(json["kind"]?.int == 2)
        #expect(json["traceId"]?.string == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(json["spanId"]?.string == "00f067aa0ba90301")
        #expect(json["parentSpanId"]?.string == "00f067aa0ba902b7")
        #expect(json["startTimeUnixNano"]?.string == "1800000000123456789")
        let a = Self.attributes(json)
        #expect(a["http.request.method"] == "GET" && a["url.path"] == "/pay/1" && a["http.route"] == "payments")
        #expect(a["http.response.status_code"] == "200" && a["client.address"] == "203.0.113.9" && a["user_agent.original"] == "curl/8")
        #expect(a["enduser.id"] == "alice" && a["trail.principal.type"] == "api-key" && a["authenticated_entity.id"] == "0572c17e")
        #expect(a["component"] == "gateway" && a["kong.request.id"] == "req-1" && a["kong.service.name"] == "payments")
        #expect(!a.values.contains { $0.contains("apikey") })
        var anonymous = Self.span()
        anonymous.consumer = nil
        anonymous.status = 401
        anonymous.parentSpanID = nil
        let refused = anonymous.json
        #expect(refused["parentSpanId"] == nil)
        #expect(Self.attributes(refused)["enduser.id"] == "anonymous" && Self.attributes(refused)["trail.principal.type"] == "anonymous")
        #expect(refused["status"]?["code"]?.int == 0)
    }

    /// Trail's own OTLP parser reads the span as the gateway observation its Kong line gives.
    @Test func trailReadsTheSpanLikeTheKongLine() throws {
        let s = Self.span()
        let request = GatewaySpan.exportRequest(spans: [s.json.serialized()], serviceName: "trail-gateway", spiffeID: nil)
        let results = OTLPJSONParser().parse(Array(request.utf8))
        guard case .record(let record)? = results.first else {
            Issue.record("not parsed: \(results)")
            return
        }
        let o = try #require(record.observations.first)
        #expect(o.kind == .gateway)
        #expect(o.traceID == s.traceID && o.parentSpanID == "00f067aa0ba902b7" && o.spanID == nil)
        #expect(o.principal == Principal(name: "alice", type: .apiKey, credential: "0572c17e"))
        #expect(o.route == "payments" && o.callee.service == "payments" && o.callee.address == "10.0.0.7" && o.callee.port == 8443)
        #expect(o.caller.address == "203.0.113.9" && o.requestID == "req-1" && o.status == 200 && o.path == "/pay/1")

        // The Kong line of the same request gives the same principal.
        var log = KongLogRecord(
            requestID: "req-1", traceID: s.traceID, method: "GET", host: "api.example.com", port: 80, target: "/pay/1",
            requestSize: 0, requestHeaders: [("traceparent", "00-\(s.traceID)-00f067aa0ba902b7-01")], status: 200, responseSize: 0,
            clientIP: "203.0.113.9", startedAtMillis: 1_800_000_000_123, requestLatencyMillis: 100, gatewayLatencyMillis: 1)
        log.caller = AuthenticatedCaller(consumer: "alice", kind: .keyAuth, credentialID: "0572c17e")
        log.credentialKind = .keyAuth
        log.consumerID = "alice-id"
        guard case .record(let kong)? = KongLogParser().parse(Array(log.line.utf8)).first else {
            Issue.record("Kong line not parsed")
            return
        }
        #expect(kong.observations.first?.principal == o.principal)
        #expect(kong.observations.first?.parentSpanID == o.parentSpanID)
    }
}
