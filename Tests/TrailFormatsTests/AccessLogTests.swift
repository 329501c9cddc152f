import Foundation
import Testing
import TrailCore

@testable import TrailFormats

// MARK: - Helpers

private func accessLogFixture(_ name: String) throws -> [UInt8] {
    var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
        let parent = dir.deletingLastPathComponent()
        guard parent.path != dir.path else { throw CocoaError(.fileNoSuchFile) }
        dir = parent
    }
    let url = dir.appendingPathComponent("fixtures/access-logs").appendingPathComponent(name)
    return Array(try Data(contentsOf: url))
}

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

private extension ParseResult {
    var observation: Observation? { record?.observations.first }
}

private func observations(_ results: [ParseResult]) -> [Observation] {
    results.compactMap(\.observation)
}

// MARK: - Kong

@Suite("Kong access logs")
struct KongLogTests {
    let parser = KongLogParser()

    @Test func graphqlOperationExtension() throws {
        let line = #"{"started_at": 1726783839538, "request": {"method": "POST", "uri": "/graphql", "headers": {}}, "response": {"status": 200}, "graphql": {"operation_type": "mutation", "operation_name": "CreateOrder"}}"#
        let o = try #require(parser.parse(Array(line.utf8)).first?.record?.observations.first)
        #expect(o.operation == "mutation CreateOrder")
        let anonymous = #"{"started_at": 1726783839538, "graphql": {"operation_type": "query"}}"#
        #expect(parser.parse(Array(anonymous.utf8)).first?.record?.observations.first?.operation == "query")
    }

    @Test func grpcMethodExtension() throws {
        let line = #"{"started_at": 1726783839538, "request": {"method": "POST", "uri": "/demo.Echo/Say", "headers": {}, "http_version": "2"}, "response": {"status": 200}, "grpc": {"service": "demo.Echo", "method": "Say", "status": 7}}"#
        let o = try #require(parser.parse(Array(line.utf8)).first?.record?.observations.first)
        #expect(o.operation == "demo.Echo/Say")
        #expect(o.path == "/demo.Echo/Say")
        let noMethod = #"{"started_at": 1726783839538, "grpc": {"status": 0}}"#
        #expect(parser.parse(Array(noMethod.utf8)).first?.record?.observations.first?.operation == nil)
    }

    @Test func singleObjectRecord() throws {
        let input = try accessLogFixture("kong_http_log_single.json")
        let results = parser.parse(input)
        #expect(results.count == 1)
        let record = try #require(results.first?.record)
        #expect(record.format == .kong)
        #expect(record.location == RecordLocation(line: 1))
        #expect(record.raw == Array(input.dropLast()))  // the object without the trailing newline
        #expect(record.partialRejections.isEmpty)
        let o = try #require(record.observations.first)
        #expect(o.kind == .gateway)
        #expect(o.format == "kong")
        #expect(o.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(o.spanID == nil)
        #expect(o.parentSpanID == "00f067aa0ba902b7")
        #expect(o.requestID == "2f6946328ffc4946b8c9120704a4a155")
        #expect(o.start == Timestamp(milliseconds: 1_726_783_839_538))
        #expect(o.durationNanos == 173_000_000)
        #expect(o.method == "GET")
        #expect(o.path == "/example-route")
        #expect(o.authority == "localhost:8000")
        #expect(o.status == 200)
        #expect(o.userAgent == "HTTPie/3.2.3")
        #expect(o.route == "example_route")
        #expect(o.responseFlags == "upstream")
        #expect(o.caller == Endpoint(address: "192.168.65.1"))
        #expect(o.callee == Endpoint(service: "example_service", address: "34.237.204.224", port: 80))
        #expect(o.principal == Principal(name: "alice", type: .apiKey, credential: "7e2c1f00-aaaa-4bbb-8ccc-dddddddddddd"))
        #expect(o.transport == .plaintext)
        #expect(o.tlsVersion == nil)
        #expect(o.policy == nil)
    }

    @Test func httpLogBatchArray() throws {
        let results = parser.parse(try accessLogFixture("kong_http_log_batch.json"))
        #expect(results.count == 3)
        #expect(results.map { $0.record?.location } == [
            RecordLocation(line: 1, detail: "[0]"), RecordLocation(line: 1, detail: "[1]"),
            RecordLocation(line: 1, detail: "[2]"),
        ])
        let obs = observations(results)
        #expect(obs.count == 3)

        // JWT consumer over TLS, b3 single header, x-request-id header, two tries.
        let jwt = obs[0]
        #expect(jwt.traceID == "80f198ee56343ba864fe8b2a57d3eff7")
        #expect(jwt.parentSpanID == "e457b5a2e4d86bd1")
        #expect(jwt.requestID == "6c5b4a39-2817-4f06-95e4-d3c2b1a09f8e")
        #expect(jwt.method == "POST")
        #expect(jwt.path == "/example-route/orders")
        #expect(jwt.authority == "api.example.com:8443")
        #expect(jwt.status == 201)
        #expect(jwt.durationNanos == 40_000_000)
        #expect(jwt.callee == Endpoint(service: "example_service", address: "10.0.3.18", port: 8080))
        #expect(jwt.caller.address == "203.0.113.9")
        #expect(jwt.principal == Principal(name: "bob", type: .jwt, credential: "https://idp.example.com/"))
        #expect(jwt.transport == .tls)
        #expect(jwt.tlsVersion == "TLSv1.3")

        // Anonymous request, 64-bit B3 multi headers, rejected by Kong itself.
        let anon = obs[1]
        #expect(anon.principal == Principal(name: "anonymous", type: .anonymous))
        #expect(anon.traceID == "0000000000000000a3ce929d0e0e4736")
        #expect(anon.parentSpanID == "00f067aa0ba902b7")
        #expect(anon.status == 401)
        #expect(anon.responseFlags == "kong")
        #expect(anon.durationNanos == 0)
        // No tries: the service host stands in for the callee address.
        #expect(anon.callee == Endpoint(service: "example_service", address: "httpbin.konghq.com", port: 80))
        #expect(anon.transport == .plaintext)

        // Partner over mTLS, consumer known by custom_id, Datadog decimal trace id.
        let mtls = obs[2]
        #expect(mtls.principal == Principal(
            name: "partner-co", type: .clientCertificate, credential: "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"))
        #expect(mtls.transport == .mtls)
        #expect(mtls.tlsVersion == "TLSv1.2")
        #expect(mtls.traceID == "0000000000000000112210f47de98115")
        #expect(mtls.parentSpanID == nil)
        #expect(mtls.start == Timestamp(milliseconds: 1_726_783_902_345))
    }

    @Test func fileLogNDJSONWithStreamRecord() throws {
        let results = parser.parse(try accessLogFixture("kong_file_log.ndjson"))
        #expect(results.map { $0.record?.location.line } == [1, 2, 3])
        let obs = observations(results)
        #expect(obs.count == 3)

        // Numbers written as strings are read alike.
        #expect(obs[0].status == 200)
        #expect(obs[0].durationNanos == 22_000_000)
        #expect(obs[0].requestID == "3f9b8c1e-2a4d-4e6f-9b0a-1c2d3e4f5a6b")
        #expect(obs[0].traceID == "0af7651916cd43dd8448eb211c80319c")
        #expect(obs[0].parentSpanID == "b7ad6b7169203331")

        // correlation-id plugin, Jaeger ids, deny policy, a consumer without an apikey header.
        #expect(obs[1].requestID == "c9a0b1d2-e3f4-4a5b-8c6d-7e8f9a0b1c2d#17")
        #expect(obs[1].traceID == "00000000000000007b1d3f5e9a2c4b6d")
        #expect(obs[1].parentSpanID == "1a2b3c4d5e6f7a8b")
        #expect(obs[1].policy == .deny)
        #expect(obs[1].status == 403)
        #expect(obs[1].principal?.type == .consumer)

        // Stream (TCP/TLS) session.
        let s = obs[2]
        #expect(s.kind == .gateway)
        #expect(s.method == nil && s.path == nil)
        #expect(s.status == 200)
        #expect(s.durationNanos == 1_520_000_000)
        #expect(s.transport == .tls)
        #expect(s.tlsVersion == "TLSv1.3")
        #expect(s.route == "orders-db-tls")
        #expect(s.caller == Endpoint(address: "10.10.0.7"))
        #expect(s.callee == Endpoint(service: "orders-db", address: "10.0.5.21", port: 5432))
        #expect(s.principal == Principal(name: "anonymous", type: .anonymous))
    }

    @Test func badRecordsAreRejectedAndNeighboursKept() throws {
        let results = parser.parse(try accessLogFixture("bad_kong_mixed.ndjson"))
        #expect(results.count == 5)
        #expect(results[0].observation?.traceID == "0af7651916cd43dd8448eb211c80319c")

        let broken = try #require(results[1].rejection)
        #expect(broken.location.line == 2)
        #expect(broken.format == .kong)
        #expect(broken.reason.hasPrefix("invalid JSON at byte 52: expected ',' or '}'"))
        #expect(String(decoding: broken.raw, as: UTF8.self).hasPrefix("{\"request\":{\"id\":\"cc11dd22"))

        let missing = try #require(results[2].rejection)
        #expect(missing.location.line == 3)
        #expect(missing.reason == "missing started_at")

        // An invalid traceparent is ignored (as the W3C spec says) and reported; the record is kept.
        let badTrace = try #require(results[3].record)
        #expect(badTrace.location.line == 4)
        #expect(badTrace.observations.first?.traceID == nil)
        #expect(badTrace.observations.first?.parentSpanID == nil)
        #expect(badTrace.partialRejections.map(\.reason) == ["traceparent: trace-id is all zero"])
        #expect(badTrace.partialRejections.first?.location.line == 4)

        #expect(results[4].observation?.requestID == "c9a0b1d2-e3f4-4a5b-8c6d-7e8f9a0b1c2d#17")
    }

    @Test func principalTypeRules() throws {
        func principal(_ extra: String) throws -> Principal? {
            let json = #"{"started_at":1,"consumer":{"id":"cid","username":"u"},"authenticated_entity":{"id":"cred"}"#
                + extra + "}"
            return try #require(parser.parse(bytes(json)).first?.observation).principal
        }
        #expect(try principal(#","credential_type":"key-auth""#)?.type == .apiKey)
        #expect(try principal(#","auth_type":"mtls-auth""#)?.type == .clientCertificate)
        #expect(try principal(#","auth_type":"jwt""#)?.type == .jwt)
        #expect(try principal(#","auth_type":"basic-auth""#)?.type == .consumer)
        #expect(try principal(#","auth_type":"oauth2""#)?.type == .consumer)
        #expect(try principal(#","request":{"querystring":{"apikey":"k"}}"#)?.type == .apiKey)
        #expect(try principal(#","request":{"headers":{"authorization":"Bearer eyJ"}}"#)?.type == .jwt)
        #expect(try principal(#","request":{"tls":{"client_verify":"SUCCESS"}}"#)?.type == .clientCertificate)
        #expect(try principal(#","request":{"tls":{"client_verify":"FAILED:unable to verify"}}"#)?.type == .consumer)
        // Only the validity window failed: the trusted certificate still names the caller.
        #expect(try principal(#","request":{"tls":{"client_verify":"FAILED:certificate has expired"}}"#)?.type == .clientCertificate)
        #expect(try principal(#","request":{"tls":{"client_verify":"FAILED:certificate is not yet valid"}}"#)?.type == .clientCertificate)
        #expect(try principal("") == Principal(name: "u", type: .consumer, credential: "cred"))
        // Name fallbacks.
        let byCustomID = try #require(parser.parse(bytes(#"{"started_at":1,"consumer":{"id":"cid","custom_id":"cu"}}"#))
            .first?.observation)
        #expect(byCustomID.principal == Principal(name: "cu", type: .consumer))
        let byID = try #require(parser.parse(bytes(#"{"started_at":1,"consumer":{"id":"cid"}}"#)).first?.observation)
        #expect(byID.principal == Principal(name: "cid", type: .consumer))
    }

    @Test func transportRules() throws {
        func transport(_ request: String) throws -> Transport? {
            try #require(parser.parse(bytes(#"{"started_at":1,"request":"# + request + "}")).first?.observation).transport
        }
        #expect(try transport(#"{"url":"http://h/x"}"#) == .plaintext)
        #expect(try transport(#"{"url":"https://h/x"}"#) == nil)
        #expect(try transport(#"{"url":"https://h/x","tls":{"version":"TLSv1.3","client_verify":"NONE"}}"#) == .tls)
        #expect(try transport(#"{"tls":{"version":"TLSv1.3","client_verify":"SUCCESS"}}"#) == .mtls)
    }

    @Test func traceIDPrecedenceAndFormats() throws {
        func obs(_ json: String) throws -> ParsedRecord {
            try #require(parser.parse(bytes(json)).first?.record)
        }
        // trace_id object wins over headers; the header's span is used only for the same trace.
        let other = try obs(#"{"started_at":1,"trace_id":{"w3c":"11111111111111111111111111111111"},"#
            + #""request":{"headers":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}"#)
        #expect(other.observations[0].traceID == "11111111111111111111111111111111")
        #expect(other.observations[0].parentSpanID == nil)
        // instana / gcp / aws / ot hex, upper case accepted in trace_id values.
        #expect(try obs(#"{"started_at":1,"trace_id":{"instana":"00F067AA0BA902B7"}}"#).observations[0].traceID
            == "000000000000000000f067aa0ba902b7")
        #expect(try obs(#"{"started_at":1,"trace_id":{"aws":"1-5759e988-bd862e3fe1be46a994272793"}}"#).observations[0]
            .traceID == "5759e988bd862e3fe1be46a994272793")
        // An unusable trace_id value is reported and the next source is used.
        let bad = try obs(#"{"started_at":1,"trace_id":{"w3c":"nothex"},"request":{"headers":{"b3":"a3ce929d0e0e4736-00f067aa0ba902b7-1"}}}"#)
        #expect(bad.observations[0].traceID == "0000000000000000a3ce929d0e0e4736")
        #expect(bad.observations[0].parentSpanID == "00f067aa0ba902b7")
        #expect(bad.partialRejections.map(\.reason) == ["trace_id.w3c: 'nothex' is not a valid trace id"])
        // Repeated headers arrive as arrays: the first value wins.
        let repeated = try obs(
            #"{"started_at":1,"request":{"headers":{"x-request-id":["first","second"]},"id":"kongid"}}"#)
        #expect(repeated.observations[0].requestID == "first")
    }

    /// Trail's `request.tls.client_certificate` extension and nginx's `FAILED:reason` client_verify.
    @Test func readsTheClientCertificateExtensionAndFailedClientVerify() throws {
        let line = #"""
            {"started_at":1800000000000,"request":{"method":"GET","uri":"/items","url":"https://api.example.com:443/items",
             "headers":{"host":"api.example.com"},
             "tls":{"client_verify":"FAILED:certificate has expired","version":"TLSv1.3",
              "client_certificate":{"serial":"00:5A:F0","sha256":"AB:CD\#(String(repeating: ":ab", count: 30))",
               "subject":"CN=acme,O=Acme","uri_sans":["spiffe://partners.example/acme"],"spiffe_id":"spiffe://partners.example/acme",
               "not_before":"2025-01-01T00:00:00Z","not_after":1738368000}}},
             "response":{"status":401},"consumer":{"id":"acme-id","username":"acme"},
             "authenticated_entity":{"id":"spiffe://partners.example/acme","consumer_id":"acme-id"},
             "credential_type":"mtls","refusal_reason":"client certificate has expired","client_ip":"198.51.100.7"}
            """#.replacingOccurrences(of: "\n", with: "")
        let results = parser.parse(bytes(line))
        guard case .record(let record)? = results.first else {
            Issue.record("rejected: \(results)")
            return
        }
        #expect(record.partialRejections.isEmpty, "\(record.partialRejections)")
        let o = try #require(record.observations.first)
        #expect(o.transport == .mtls)
        #expect(o.tlsVersion == "TLSv1.3")
        #expect(o.status == 401)
        #expect(o.principal == Principal(name: "acme", type: .clientCertificate, credential: "spiffe://partners.example/acme"))
        #expect(o.callerCertificate == PresentedCertificate(
            serial: "5af0", fingerprintSHA256: "abcd" + String(repeating: "ab", count: 30),
            notBefore: Timestamp.utc(year: 2025, month: 1, day: 1, hour: 0),
            notAfter: Timestamp.utc(year: 2025, month: 2, day: 1, hour: 0),
            uriSANs: ["spiffe://partners.example/acme"], subject: "CN=acme,O=Acme"))

        // No consumer: the certificate names the principal; no credential_type: FAILED:… still means a certificate.
        let bare = parser.parse(bytes(#"""
            {"started_at":1,"request":{"tls":{"client_verify":"FAILED:certificate is not yet valid",
             "client_certificate":{"serial":"10:01","subject":"CN=acme","uri_sans":[]}}},"response":{"status":401}}
            """#.replacingOccurrences(of: "\n", with: "")))
        let b = try #require(bare.first?.observation)
        #expect(b.transport == .mtls)
        #expect(b.principal == Principal(name: "CN=acme", type: .clientCertificate, credential: "1001"))
        #expect(b.callerCertificate?.serial == "1001")
        #expect(b.callerCertificate?.subject == "CN=acme")

        // Malformed members are left out and reported; NONE is TLS without a client certificate.
        let bad = parser.parse(bytes(
            #"{"started_at":1,"request":{"tls":{"client_verify":"NONE","client_certificate":{"serial":"xyz","sha256":"12","not_after":"later"}}}}"#))
        guard case .record(let r)? = bad.first else {
            Issue.record("rejected: \(bad)")
            return
        }
        #expect(r.observations.first?.transport == .tls)
        #expect(r.observations.first?.callerCertificate == nil)
        #expect(r.partialRejections.map(\.reason) == [
            "request.tls.client_certificate.serial: 'xyz' is not hex",
            "request.tls.client_certificate.sha256: '12' is not a SHA-256 digest",
            "request.tls.client_certificate.not_after: 'later' is not RFC 3339 or epoch seconds",
        ])
    }

    @Test func rejectsNonObjectsAndBadStartTimes() {
        let results = parser.parse(bytes("[1, {\"started_at\":\"soon\"}, {\"started_at\":null}, {\"started_at\":\"1726783839538\"}]"))
        #expect(results.map { $0.rejection?.reason } == [
            "record is not a JSON object", "started_at: 'soon' is not epoch milliseconds", "missing started_at", nil,
        ])
        #expect(results[3].observation?.start == Timestamp(milliseconds: 1_726_783_839_538))
        #expect(parser.parse([]).isEmpty)
    }
}

// MARK: - Envoy JSON

@Suite("Envoy / Istio JSON access logs")
struct EnvoyJSONLogTests {
    let parser = EnvoyJSONLogParser()

    @Test func istioJSONLines() throws {
        let results = parser.parse(try accessLogFixture("istio_json.log"))
        #expect(results.map { $0.record?.location.line } == [1, 2, 3, 4, 5])
        #expect(results.allSatisfy { $0.record?.partialRejections.isEmpty == true })
        let obs = observations(results)
        #expect(obs.count == 5)

        // Outbound from sleep to httpbin (typed JSON).
        let out = obs[0]
        #expect(out.kind == .outbound)
        #expect(out.format == "envoy-json")
        #expect(out.start == Timestamp.utc(year: 2020, month: 11, day: 25, hour: 21, minute: 26, second: 18,
                                           nanosecond: 409_000_000))
        #expect(out.durationNanos == 4_000_000)
        #expect(out.method == "GET")
        #expect(out.path == "/status/418")
        #expect(out.authority == "httpbin:8000")
        #expect(out.status == 418)
        #expect(out.requestID == "84961386-6d84-929d-98bd-c5aee93b5c88")
        #expect(out.userAgent == "curl/7.73.0-DEV")
        #expect(out.responseFlags == nil)
        #expect(out.route == "default")
        #expect(out.traceID == "5b8aa5a2d2c872e8321cf37308d69df2")
        #expect(out.spanID == nil)
        #expect(out.parentSpanID == "051581bf3cb55c13")
        #expect(out.caller == Endpoint(spiffeID: "spiffe://cluster.local/ns/foo/sa/sleep", address: "10.44.1.23", port: 37652))
        #expect(out.callee == Endpoint(
            spiffeID: "spiffe://cluster.local/ns/foo/sa/httpbin", service: "httpbin", address: "10.44.1.27", port: 80))
        #expect(out.transport == .mtls)
        #expect(out.tlsVersion == "TLSv1.3")
        #expect(out.callerCertificate == nil)
        #expect(out.xfccURI == nil)

        // Inbound at httpbin (all values as strings).
        let inb = obs[1]
        #expect(inb.kind == .inbound)
        #expect(inb.status == 418)
        #expect(inb.durationNanos == 3_000_000)
        #expect(inb.traceID == "5b8aa5a2d2c872e8321cf37308d69df2")
        #expect(inb.parentSpanID == "7d1b3c5a9e2f4b6d")
        #expect(inb.caller == Endpoint(spiffeID: "spiffe://cluster.local/ns/foo/sa/sleep", address: "10.44.1.23", port: 37652))
        #expect(inb.callee == Endpoint(
            spiffeID: "spiffe://cluster.local/ns/foo/sa/httpbin", service: "httpbin", address: "10.44.1.27", port: 80))
        #expect(inb.transport == .mtls)
        #expect(inb.tlsVersion == "TLSv1.3")
        #expect(inb.xfccURI == "spiffe://cluster.local/ns/foo/sa/sleep")
        let cert = try #require(inb.callerCertificate)
        #expect(cert.serial == "3a7f0c2e9b1d4f6a8c0e2b4d6f8a0c1e")
        #expect(cert.fingerprintSHA256 == "6c1a4b7bd5f1e0c3b2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7")
        #expect(cert.subject == nil)  // "" is unset
        #expect(cert.uriSANs == ["spiffe://cluster.local/ns/foo/sa/sleep"])
        #expect(cert.notBefore == Timestamp.utc(year: 2020, month: 11, day: 25, hour: 9))
        #expect(cert.notAfter == Timestamp.utc(year: 2020, month: 11, day: 26, hour: 9))
        // The outbound line's caller matches the inbound line's caller: address and port.
        #expect(out.caller == inb.caller)

        // RBAC denial on a plaintext inbound connection.
        let deny = obs[2]
        #expect(deny.kind == .inbound)
        #expect(deny.policy == .deny)
        #expect(deny.status == 403)
        #expect(deny.transport == .plaintext)
        #expect(deny.caller == Endpoint(address: "10.44.2.9", port: 51234))
        #expect(deny.callee == Endpoint(address: "10.44.1.27", port: 80))  // authority is an IP: no service
        #expect(deny.route == nil)
        #expect(deny.traceID == nil)

        // Several peer SANs, OpenSSL-style validity times, b3, dry-run policy, a two-element XFCC chain.
        let multi = obs[3]
        #expect(multi.kind == .inbound)
        #expect(multi.start == Timestamp.utc(year: 2024, month: 5, day: 4, hour: 10, nanosecond: 250_123_000))
        #expect(multi.caller.spiffeID == "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account")
        #expect(multi.callerCertificate?.uriSANs == [
            "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
            "spiffe://cluster.local/ns/istio-system/sa/gateway-alt",
        ])
        #expect(multi.callerCertificate?.serial == "9f3b1142")
        #expect(multi.callerCertificate?.notBefore == Timestamp.utc(year: 2024, month: 5, day: 4, hour: 9))
        #expect(multi.callerCertificate?.notAfter == Timestamp.utc(year: 2024, month: 5, day: 5, hour: 9))
        #expect(multi.callee.service == "orders")
        #expect(multi.callee.spiffeID == "spiffe://cluster.local/ns/shop/sa/orders")
        #expect(multi.traceID == "000000000000000080f198ee56343ba8")
        #expect(multi.parentSpanID == "e457b5a2e4d86bd1")
        #expect(multi.policy == .dryRunDeny)
        #expect(multi.xfccURI == "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account")
        #expect(multi.status == 201)

        // Plain HTTP through the passthrough cluster; "" values are unset.
        let plain = obs[4]
        #expect(plain.kind == .outbound)
        #expect(plain.transport == .plaintext)
        #expect(plain.callee == Endpoint(address: "93.184.215.14", port: 80))
        #expect(plain.caller == Endpoint(address: "10.44.3.5", port: 50110))
        #expect(plain.requestID == nil)
        #expect(plain.responseFlags == nil)
        #expect(plain.status == 200)
        #expect(plain.durationNanos == 88_000_000)
    }

    @Test func stringsNumbersAndUnsetMarkersAreEquivalent() throws {
        let base = #""start_time":"2024-05-04T10:00:00Z","upstream_cluster":"outbound|80||web.shop.svc.cluster.local""#
        let variants = [
            "{" + base + #","response_code":200,"duration":7,"request_id":null,"response_flags":null}"#,
            "{" + base + #","response_code":"200","duration":"7","request_id":"-","response_flags":"-"}"#,
            "{" + base + #","response_code":"200","duration":7.0,"request_id":"","response_flags":""}"#,
            "{" + base + #","response_code":200.0,"duration":"7"}"#,
        ]
        let obs = try variants.map { try #require(parser.parse(bytes($0)).first?.observation) }
        for o in obs {
            #expect(o == obs[0])
            #expect(o.status == 200)
            #expect(o.durationNanos == 7_000_000)
            #expect(o.requestID == nil)
            #expect(o.responseFlags == nil)
            #expect(o.callee.service == "web")
            #expect(o.transport == nil)  // no TLS key at all
        }
    }

    @Test func directionAndTransportRules() throws {
        func obs(_ fields: String) throws -> Observation {
            try #require(parser.parse(bytes(#"{"start_time":"2024-05-04T10:00:00Z""# + fields + "}")).first?.observation)
        }
        // Without a cluster, a peer URI SAN makes the line inbound.
        let inbound = try obs(#","downstream_peer_uri_san":"spiffe://td/ns/a/sa/b","downstream_remote_address":"10.0.0.1:5000""#)
        #expect(inbound.kind == .inbound)
        #expect(inbound.transport == .mtls)
        #expect(inbound.caller == Endpoint(spiffeID: "spiffe://td/ns/a/sa/b", address: "10.0.0.1", port: 5000))
        #expect(try obs("").kind == .outbound)
        // inbound TLS without a client certificate
        let tls = try obs(#","upstream_cluster":"inbound|443||","downstream_tls_version":"TLSv1.2""#)
        #expect(tls.transport == .tls && tls.tlsVersion == "TLSv1.2")
        #expect(try obs(#","upstream_cluster":"inbound|443||","downstream_peer_fingerprint_256":"AB:CD""#).transport
            == .mtls)
        // outbound TLS to an upstream without a URI SAN
        #expect(try obs(#","upstream_cluster":"outbound|443||api.example.com","upstream_tls_version":"TLSv1.3""#)
            .transport == .tls)
        #expect(try obs(#","upstream_cluster":"outbound|443||api.example.com","upstream_tls_version":null"#)
            .transport == .plaintext)
        // Service names.
        #expect(try obs(#","upstream_cluster":"outbound|9080|v1|reviews.bookinfo.svc.cluster.local""#).callee.service
            == "reviews")
        #expect(try obs(#","upstream_cluster":"inbound|9080||","authority":"10.1.1.1:9080","requested_server_name":"outbound_.9080_._.details.bookinfo.svc.cluster.local""#)
            .callee.service == "details")
        #expect(try obs(#","upstream_cluster":"service_google""#).callee.service == "service_google")
        #expect(try obs(#","upstream_cluster":"BlackHoleCluster","authority":"x.example""#).callee.service == nil)
        #expect(try obs(#","authority":"locations""#).callee.service == "locations")
        // IPv6 and URL-style upstream hosts.
        let v6 = try obs(#","upstream_host":"[2001:db8::1]:8443","downstream_remote_address":"[::1]:40000""#)
        #expect(v6.callee.address == "2001:db8::1" && v6.callee.port == 8443)
        #expect(v6.caller.address == "::1")
        #expect(try obs(#","upstream_host":"tcp://10.0.2.1:80""#).callee == Endpoint(address: "10.0.2.1", port: 80))
        // x_b3 multi headers; policy values.
        let b3 = try obs(#","x_b3_traceid":"463ac35c9f6413ad48485a3953bb6124","x_b3_spanid":"a2fb4a1d1a96d312","policy":"allow""#)
        #expect(b3.traceID == "463ac35c9f6413ad48485a3953bb6124" && b3.parentSpanID == "a2fb4a1d1a96d312")
        #expect(b3.policy == .allow)
        // %TRACE_ID% alone gives the trace id but no parent.
        let tid = try obs(#","trace_id":"463ac35c9f6413ad48485a3953bb6124""#)
        #expect(tid.traceID == "463ac35c9f6413ad48485a3953bb6124" && tid.parentSpanID == nil)
    }

    @Test func partialProblemsAreReported() throws {
        let line = #"{"start_time":"2024-05-04T10:00:00Z","upstream_cluster":"inbound|80||","response_code":"abc","#
            + #""policy":"maybe","downstream_peer_cert_v_end":"someday","x_forwarded_client_cert":"By=a;URI=\"x","#
            + #""downstream_peer_serial":"zz","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7""#
            + "}"
        let record = try #require(parser.parse(bytes(line)).first?.record)
        #expect(record.partialRejections.map(\.reason) == [
            "response_code: 'abc' is not a number",
            "traceparent: too short for version 00 (52 characters, need 55)",
            "downstream_peer_cert_v_end: 'someday' is not a time",
            "downstream_peer_serial: 'zz' is not hex",
            "x-forwarded-client-cert: element 1: unterminated quoted value for URI",
            "policy: 'maybe' is not allow, deny or dry-run-deny",
        ])
        let o = try #require(record.observations.first)
        #expect(o.status == nil && o.policy == nil && o.xfccURI == nil && o.traceID == nil)
        #expect(o.kind == .inbound)
    }

    @Test func badLinesAreRejectedWithLineNumbers() throws {
        let results = parser.parse(try accessLogFixture("bad_istio_json.log"))
        #expect(results.count == 6)
        #expect(results[0].observation?.kind == .outbound)
        #expect(results[1].rejection?.location.line == 2)
        #expect(results[1].rejection?.reason == "invalid JSON at byte 56: expected a member name")
        #expect(results[2].rejection?.location.line == 3)
        #expect(results[2].rejection?.reason == "missing start_time")
        #expect(results[3].rejection?.location.line == 4)
        #expect(results[3].rejection?.reason == "start_time: '25/Nov/2020:21:26:18 +0000' is not an RFC 3339 time")
        let upper = try #require(results[4].record)
        #expect(upper.location.line == 5)
        #expect(upper.partialRejections.map(\.reason) == [
            "traceparent: trace-id has uppercase hex (only lowercase is allowed)",
        ])
        #expect(upper.observations.first?.traceID == nil)
        #expect(results[5].observation?.parentSpanID == "7d1b3c5a9e2f4b6d")
        #expect(results[5].record?.location.line == 6)
    }

    @Test func epochStartTimes() throws {
        let s = try #require(parser.parse(bytes(#"{"start_time":1714816800}"#)).first?.observation)
        #expect(s.start == Timestamp(seconds: 1_714_816_800))
        let ms = try #require(parser.parse(bytes(#"{"start_time":"1714816800123"}"#)).first?.observation)
        #expect(ms.start == Timestamp(milliseconds: 1_714_816_800_123))
    }
}

// MARK: - Envoy text

@Suite("Envoy / Istio text access logs")
struct EnvoyTextLogTests {
    @Test func istioDefaultTextLines() throws {
        let results = EnvoyTextLogParser().parse(try accessLogFixture("istio_text.log"))
        #expect(results.count == 4)
        let obs = observations(results)
        #expect(obs.count == 4)

        let client = obs[0]
        #expect(client.kind == .outbound)
        #expect(client.format == "envoy-text")
        #expect(client.start == Timestamp.utc(year: 2020, month: 11, day: 25, hour: 21, minute: 26, second: 18,
                                              nanosecond: 409_000_000))
        #expect(client.method == "GET")
        #expect(client.path == "/status/418")
        #expect(client.status == 418)
        #expect(client.responseFlags == nil)
        #expect(client.durationNanos == 4_000_000)
        #expect(client.userAgent == "curl/7.73.0-DEV")
        #expect(client.requestID == "84961386-6d84-929d-98bd-c5aee93b5c88")
        #expect(client.authority == "httpbin:8000")
        #expect(client.route == "default")
        #expect(client.caller == Endpoint(address: "10.44.1.23", port: 37652))
        #expect(client.callee == Endpoint(service: "httpbin", address: "10.44.1.27", port: 80))
        #expect(client.transport == nil)
        #expect(client.traceID == nil)

        let server = obs[1]
        #expect(server.kind == .inbound)
        #expect(server.durationNanos == 3_000_000)
        #expect(server.caller == Endpoint(address: "10.44.1.23", port: 37652))
        #expect(server.callee == Endpoint(service: "httpbin", address: "10.44.1.27", port: 80))
        #expect(server.route == "default")
        // The two sides of the hop share the caller's address and port.
        #expect(client.caller == server.caller)

        let failed = obs[2]
        #expect(failed.responseFlags == "UC,URX")
        #expect(failed.status == 503)
        #expect(failed.method == "POST")
        #expect(failed.durationNanos == 30_004_000_000)
        #expect(failed.callee == Endpoint(service: "order-service", address: "10.244.3.12", port: 8080))

        // A browser user agent full of spaces and parentheses.
        let browser = obs[3]
        #expect(browser.userAgent?.hasPrefix("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)") == true)
        #expect(browser.userAgent?.hasSuffix("Safari/537.36") == true)
        #expect(browser.kind == .inbound)
        #expect(browser.callee.service == "productpage")  // authority is an IP: the SNI names the service
        #expect(browser.caller == Endpoint(address: "10.244.0.0", port: 0))
    }

    @Test func envoyDefaultFormat() throws {
        let results = EnvoyTextLogParser(format: EnvoyFormat.envoyDefault).parse(try accessLogFixture("envoy_default.log"))
        let o = try #require(results.first?.observation)
        #expect(results.count == 1)
        #expect(o.start == Timestamp.utc(year: 2016, month: 4, day: 15, hour: 20, minute: 17, nanosecond: 310_000_000))
        #expect(o.method == "POST")
        #expect(o.path == "/api/v1/locations")
        #expect(o.status == 204)
        #expect(o.responseFlags == nil)
        #expect(o.durationNanos == 226_000_000)
        #expect(o.userAgent == "nsq2http")
        #expect(o.requestID == "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2")
        #expect(o.authority == "locations")
        #expect(o.kind == .outbound)
        #expect(o.callee == Endpoint(service: "locations", address: "10.0.2.1", port: 80))
        #expect(o.caller == Endpoint())
    }

    @Test func formatCompilesToIstioJSONKeys() {
        #expect(EnvoyTextLogParser().keys == [
            "start_time", "method", "path", "protocol", "response_code", "response_flags", "response_code_details",
            "connection_termination_details", "upstream_transport_failure_reason", "bytes_received", "bytes_sent",
            "duration", "upstream_service_time", "x_forwarded_for", "user_agent", "request_id", "authority",
            "upstream_host", "upstream_cluster", "upstream_local_address", "downstream_local_address",
            "downstream_remote_address", "requested_server_name", "route_name",
        ])
        let custom = EnvoyTextLogParser(
            format: "%START_TIME(%s)% %REQ(TRACEPARENT)% %REQ(X-B3-TRACEID):16% %RESP(CONTENT-TYPE)% 100%% %DOWNSTREAM_PEER_URI_SAN%")
        #expect(custom.keys == ["start_time", "traceparent", "x_b3_traceid", "resp_content_type", "downstream_peer_uri_san"])
    }

    @Test func textAndJSONGiveIdenticalObservations() throws {
        let textLines = try accessLogFixture("istio_text.log")
        let textObs = observations(EnvoyTextLogParser().parse(textLines))
        // The same two hops written by Istio's JSON encoder (all values as strings, unset as "-").
        let json = [
            #"{"start_time":"2020-11-25T21:26:18.409Z","method":"GET","path":"/status/418","protocol":"HTTP/1.1","response_code":"418","response_flags":"-","response_code_details":"via_upstream","connection_termination_details":"-","upstream_transport_failure_reason":"-","bytes_received":"0","bytes_sent":"135","duration":"4","upstream_service_time":"4","x_forwarded_for":"-","user_agent":"curl/7.73.0-DEV","request_id":"84961386-6d84-929d-98bd-c5aee93b5c88","authority":"httpbin:8000","upstream_host":"10.44.1.27:80","upstream_cluster":"outbound|8000||httpbin.foo.svc.cluster.local","upstream_local_address":"10.44.1.23:37652","downstream_local_address":"10.0.45.184:8000","downstream_remote_address":"10.44.1.23:46520","requested_server_name":"-","route_name":"default"}"#,
            #"{"start_time":"2020-11-25T21:26:18.409Z","method":"GET","path":"/status/418","protocol":"HTTP/1.1","response_code":418,"response_flags":null,"response_code_details":"via_upstream","connection_termination_details":null,"upstream_transport_failure_reason":null,"bytes_received":0,"bytes_sent":135,"duration":3,"upstream_service_time":"1","x_forwarded_for":null,"user_agent":"curl/7.73.0-DEV","request_id":"84961386-6d84-929d-98bd-c5aee93b5c88","authority":"httpbin:8000","upstream_host":"127.0.0.1:80","upstream_cluster":"inbound|8000||","upstream_local_address":"127.0.0.1:41854","downstream_local_address":"10.44.1.27:80","downstream_remote_address":"10.44.1.23:37652","requested_server_name":"outbound_.8000_._.httpbin.foo.svc.cluster.local","route_name":"default"}"#,
        ].joined(separator: "\n")
        var jsonObs = observations(EnvoyJSONLogParser().parse(bytes(json)))
        #expect(jsonObs.count == 2)
        for i in jsonObs.indices { jsonObs[i].format = InputFormat.envoyText.rawValue }
        #expect(Array(textObs.prefix(2)) == jsonObs)
    }

    @Test func badLinesAreRejectedWithReasons() throws {
        let results = EnvoyTextLogParser().parse(try accessLogFixture("bad_istio_text.log"))
        #expect(results.count == 4)
        #expect(results[0].observation?.kind == .outbound)
        let garbage = try #require(results[1].rejection)
        #expect(garbage.location.line == 2)
        #expect(garbage.format == .envoyText)
        #expect(garbage.reason == "line does not match the Envoy format: expected '[' at column 1 (before %START_TIME%)")
        #expect(String(decoding: garbage.raw, as: UTF8.self) == "2020-11-25 21:26:18 INFO this is not an access log line")
        let badTime = try #require(results[2].rejection)
        #expect(badTime.location.line == 3)
        #expect(badTime.reason == "start_time: 'yesterday' is not an RFC 3339 time")
        #expect(results[3].observation?.kind == .inbound)
        #expect(results[3].record?.location.line == 4)
    }

    @Test func mismatchNamesTheFailingPiece() {
        let parser = EnvoyTextLogParser(format: EnvoyFormat.envoyDefault)
        let truncated = #"[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 "10.0.35.28" "nsq2http"#
        #expect(parser.parse(bytes(truncated)).first?.rejection?.reason
            == "line does not match the Envoy format: no '\" \"' after %REQ(USER-AGENT)% (from column 94)")
        let noQuote = #"[2016-04-15T20:17:00.310Z] POST"#
        #expect(parser.parse(bytes(noQuote)).first?.rejection?.reason
            == "line does not match the Envoy format: no '] \"' after %START_TIME% (from column 2)")
        // The last literal must end the line.
        let unclosed = #"[2016-04-15T20:17:00.310Z] POST "HTTP/1.1"#
        #expect(EnvoyTextLogParser(format: "[%START_TIME%] %REQ(:METHOD)% \"%PROTOCOL%\"").parse(bytes(unclosed))
            .first?.rejection?.reason
            == "line does not match the Envoy format: no '\"' after %PROTOCOL% (from column 34)")
        // CRLF line endings and blank lines.
        let good = #"[2016-04-15T20:17:00.310Z] "GET / HTTP/1.1" 200 - 0 1 2 - "-" "-" "-" "h" "-""#
        let results = parser.parse(bytes(good + "\r\n\r\n" + good + "\r\n"))
        #expect(results.map { $0.record?.location.line } == [1, 3])
        #expect(results.first?.observation?.status == 200)
        #expect(results.first?.observation?.userAgent == nil)
    }
}

// MARK: - Hostile input

@Suite("Access logs: hostile input")
struct AccessLogHostileInputTests {
    /// A small deterministic generator (SplitMix64) so failures reproduce.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test(arguments: [
        ("kong_file_log.ndjson", InputFormat.kong), ("kong_http_log_batch.json", .kong),
        ("istio_json.log", .envoyJSON), ("istio_text.log", .envoyText), ("bad_istio_json.log", .envoyJSON),
    ])
    func mutatedFixturesNeverCrash(name: String, format: InputFormat) throws {
        let original = try accessLogFixture(name)
        var rng = SplitMix(state: UInt64(name.utf8.count))
        let interesting: [UInt8] = Array("\"\\,;=:-|[]{}%0fF \n\u{7f}".utf8) + [0x00, 0xC3, 0xFF]
        for _ in 0..<150 {
            var input = original
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                guard !input.isEmpty else { break }
                let i = Int.random(in: 0..<input.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: input[i] = interesting.randomElement(using: &rng) ?? 0
                case 1: input.remove(at: i)
                case 2: input.insert(interesting.randomElement(using: &rng) ?? 0, at: i)
                default: input = Array(input[..<i])
                }
            }
            let results: [ParseResult]
            switch format {
            case .kong: results = KongLogParser().parse(input)
            case .envoyJSON: results = EnvoyJSONLogParser().parse(input)
            default: results = EnvoyTextLogParser().parse(input)
            }
            for r in results {
                switch r {
                case .record(let rec):
                    #expect(rec.format == format)
                    #expect(rec.observations.count == 1)
                    #expect(rec.location.line >= 1)
                case .rejected(let rej):
                    #expect(!rej.reason.isEmpty)
                    #expect(rej.location.line >= 1)
                }
            }
        }
    }

    @Test func extremeValuesAreHandled() throws {
        let kong = KongLogParser().parse(bytes(
            #"{"started_at":1e300,"latencies":{"request":1e300}} {"started_at":9223372036854775807,"latencies":{"request":9223372036854775807},"response":{"status":99999999999999999999}}"#))
        #expect(kong[0].rejection?.reason == "started_at: '1e+300' is not epoch milliseconds")
        let o = try #require(kong[1].observation)
        #expect(o.durationNanos == nil)
        #expect(o.status == nil)
        let envoy = EnvoyJSONLogParser().parse(bytes(
            #"{"start_time":"2024-05-04T10:00:00Z","duration":1e300,"downstream_peer_cert_v_end":"Jan  1 00:00:00 99999999999999999 GMT","upstream_cluster":"inbound|||","downstream_remote_address":"[::1","upstream_host":":::::"}"#))
        let e = try #require(envoy.first?.record)
        #expect(e.observations[0].durationNanos == nil)
        #expect(e.observations[0].caller.address == nil)
        #expect(e.partialRejections.map(\.reason) == [
            "downstream_peer_cert_v_end: 'Jan  1 00:00:00 99999999999999999 GMT' is not a time",
        ])
    }
}
