import Testing
import TrailCore
import TrailFormats
import TrailMesh

@testable import TrailGateway

@Suite struct KongLogRecordTests {
    static let requestID = "2f6946328ffc4946b8c9120704a4a155"
    static let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

    static func record(caller: AuthenticatedCaller?, kind: CredentialKind?, status: Int, reason: String? = nil) -> KongLogRecord {
        var r = KongLogRecord(
            requestID: requestID, traceID: traceID, method: "POST", host: "api.example.com", port: 443,
            target: "/payments/refund?apikey=alice-key&x-api-key=k2&order=7", requestSize: 412,
            requestHeaders: [
                ("Host", "api.example.com"), ("User-Agent", "curl/8.5.0"), ("Authorization", "Bearer eyJhbGciOi.secret.sig"),
                ("apikey", "alice-key"), ("X-Api-Key", "k2"), ("Cookie", "session=abc"),
                ("X-Request-ID", "client-chosen"), ("traceparent", "00-\(traceID)-00f067aa0ba902b7-01"),
                ("Accept", "application/json"), ("accept", "text/plain"),
            ],
            status: status, responseSize: 77, clientIP: "203.0.113.9", startedAtMillis: 1_800_000_000_123,
            requestLatencyMillis: 12, gatewayLatencyMillis: 1)
        r.responseHeaders = [("Content-Type", "application/json"), ("Set-Cookie", "s=1")]
        r.routeName = "payments"
        r.caller = caller
        r.credentialKind = kind
        r.refusalReason = reason
        r.consumerID = caller.map { "id-\($0.consumer)" }
        r.credentialNames = ["x-api-key"]
        if status < 400 {
            r.upstream = .init(
                serviceName: "payments-v2", host: "payments.default.svc", port: 8443,
                uri: "/payments/refund?apikey=alice-key&order=7",
                tries: [KongLogRecord.Try(ip: "10.0.0.7", port: 8443, startedAtMillis: 1_800_000_000_124, latencyMillis: 0)])
            r.proxyLatencyMillis = 10
        }
        return r
    }

    static func parse(_ line: String) throws -> Observation {
        let results = KongLogParser().parse(Array(line.utf8))
        #expect(results.count == 1)
        guard case .record(let parsed)? = results.first else {
            Issue.record("Trail's Kong parser rejected the record: \(results)")
            throw CancellationError()
        }
        #expect(parsed.partialRejections.isEmpty, "\(parsed.partialRejections)")
        return try #require(parsed.observations.first)
    }

    @Test func grpcCallFromItsPath() {
        #expect(GRPCCall(path: "/demo.Echo/Say", status: "0", message: nil) == GRPCCall(service: "demo.Echo", method: "Say", status: "0"))
        #expect(GRPCCall(path: "/api/items/1", status: nil, message: nil) == GRPCCall(service: nil, method: nil, status: nil))
        #expect(GRPCCall(path: "/x/", status: nil, message: nil).method == nil)
        let json = GRPCCall(service: "demo.Echo", method: "Count", status: "15", message: "lost").json.serialized()
        #expect(json == #"{"service":"demo.Echo","method":"Count","status":15,"message":"lost"}"#)
    }

    @Test func trailsOwnParserReadsAnAuthenticatedRecord() throws {
        let caller = AuthenticatedCaller(consumer: "alice", kind: .keyAuth, credentialID: "key-auth:0572c17e")
        let line = Self.record(caller: caller, kind: .keyAuth, status: 200).line
        #expect(line.hasSuffix("}\n"))
        #expect(FormatRegistry.detect(Array(line.utf8)) == .kong)
        let obs = try Self.parse(line)
        #expect(obs.principal == Principal(name: "alice", type: .apiKey, credential: "key-auth:0572c17e"))
        #expect(obs.caller.address == "203.0.113.9")
        #expect(obs.route == "payments")
        #expect(obs.status == 200)
        #expect(obs.requestID == Self.requestID)
        #expect(obs.traceID == Self.traceID)
        #expect(obs.method == "POST")
        #expect(obs.path == "/payments/refund")
        #expect(obs.callee.service == "payments-v2")
        #expect(obs.callee.address == "10.0.0.7")
        #expect(obs.durationNanos == 12_000_000)
    }

    /// (credential kind, expected principal type in Trail).
    @Test(arguments: [(CredentialKind.jwt, PrincipalType.jwt), (.mtls, .clientCertificate), (.keyAuth, .apiKey)])
    func credentialKindsMapToPrincipalTypes(_ c: (CredentialKind, PrincipalType)) throws {
        let caller = AuthenticatedCaller(consumer: "bob", kind: c.0, credentialID: "cred")
        let obs = try Self.parse(Self.record(caller: caller, kind: c.0, status: 201).line)
        #expect(obs.principal?.type == c.1)
        #expect(obs.principal?.name == "bob")
    }

    @Test func refusedRequestsAreLoggedWithTheReasonAndNoConsumer() throws {
        let line = Self.record(caller: nil, kind: .jwt, status: 401, reason: "JWT has expired").line
        let json = try JSONParser.parse(Array(line.utf8))
        #expect(json["refusal_reason"]?.string == "JWT has expired")
        #expect(json["credential_type"]?.string == "jwt")
        #expect(json["consumer"] == nil)
        #expect(json["service"] == nil)
        #expect(json["latencies"]?["proxy"]?.int == -1)
        #expect(json["source"]?.string == "kong")
        let obs = try Self.parse(line)
        #expect(obs.status == 401)
        #expect(obs.principal?.type == .anonymous)
        #expect(obs.requestID == Self.requestID)
        #expect(obs.traceID == Self.traceID)
        #expect(obs.caller.address == "203.0.113.9")
    }

    @Test func credentialsNeverReachTheLog() throws {
        let caller = AuthenticatedCaller(consumer: "alice", kind: .keyAuth, credentialID: "key-auth:0572c17e")
        let line = Self.record(caller: caller, kind: .keyAuth, status: 200).line
        for secret in ["alice-key", "k2", "eyJhbGciOi", "session=abc", "s=1", "client-chosen"] {
            #expect(!line.contains(secret), "\(secret) leaked: \(line)")
        }
        let json = try JSONParser.parse(Array(line.utf8))
        let headers = try #require(json["request"]?["headers"])
        #expect(headers["authorization"]?.string == "REDACTED")
        #expect(headers["apikey"]?.string == "REDACTED")
        #expect(headers["x-api-key"]?.string == "REDACTED")
        #expect(headers["cookie"]?.string == "REDACTED")
        #expect(headers["x-request-id"]?.string == Self.requestID)
        #expect(headers["user-agent"]?.string == "curl/8.5.0")
        #expect(headers["accept"] == .array([.string("application/json"), .string("text/plain")]))
        #expect(json["request"]?["querystring"]?["order"]?.string == "7")
        #expect(json["request"]?["querystring"]?["apikey"]?.string == "REDACTED")
        #expect(json["request"]?["uri"]?.string == "/payments/refund?apikey=REDACTED&x-api-key=REDACTED&order=7")
        #expect(json["upstream_uri"]?.string == "/payments/refund?apikey=REDACTED&order=7")
        #expect(json["response"]?["headers"]?["set-cookie"]?.string == "REDACTED")
        #expect(json["response"]?["headers"]?["x-kong-request-id"]?.string == Self.requestID)
        #expect(json["consumer"]?["id"]?.string == "id-alice")
        #expect(json["authenticated_entity"]?["consumer_id"]?.string == "id-alice")
        #expect(json["started_at"]?.int == 1_800_000_000_123)
        #expect(json["trace_id"]?["w3c"]?.string == Self.traceID)
    }

    static func partnerCertificate(_ validity: ClientCertificateValidity) -> KongLogRecord.ClientCertificate {
        KongLogRecord.ClientCertificate(
            serial: "1a2b3c", fingerprintSHA256: String(repeating: "ab", count: 32), subject: "CN=acme,O=Acme",
            uriSANs: ["spiffe://partners.example/acme"], spiffeID: "spiffe://partners.example/acme",
            notBefore: Timestamp(seconds: 1_735_689_600), notAfter: Timestamp(seconds: 1_738_368_000),
            clientVerify: validity.clientVerify, tlsVersion: "TLSv1.3")
    }

    /// An expired partner certificate: refused with 401, logged with nginx's FAILED:reason, the certificate
    /// (Trail extension) and the consumer it names; Trail's parser reads all of it back.
    @Test func expiredPartnerCertificateIsLoggedWithItsSerialAndConsumer() throws {
        let caller = AuthenticatedCaller(consumer: "acme", kind: .mtls, credentialID: "spiffe://partners.example/acme")
        var record = Self.record(caller: caller, kind: .mtls, status: 401, reason: "client certificate has expired")
        record.clientCertificate = Self.partnerCertificate(.expired)
        let json = try JSONParser.parse(Array(record.line.utf8))
        let tls = json["request"]?["tls"]
        #expect(tls?["client_verify"]?.string == "FAILED:certificate has expired")
        #expect(tls?["version"]?.string == "TLSv1.3")
        let certificate = tls?["client_certificate"]
        #expect(certificate?["serial"]?.string == "1a2b3c")
        #expect(certificate?["sha256"]?.string == String(repeating: "ab", count: 32))
        #expect(certificate?["subject"]?.string == "CN=acme,O=Acme")
        #expect(certificate?["uri_sans"]?.array?.compactMap(\.string) == ["spiffe://partners.example/acme"])
        #expect(certificate?["spiffe_id"]?.string == "spiffe://partners.example/acme")
        #expect(certificate?["not_before"]?.string == "2025-01-01T00:00:00Z")
        #expect(certificate?["not_after"]?.string == "2025-02-01T00:00:00Z")
        #expect(json["consumer"]?["username"]?.string == "acme")
        #expect(json["refusal_reason"]?.string == "client certificate has expired")
        #expect(json["service"] == nil)

        let obs = try Self.parse(record.line)
        #expect(obs.status == 401)
        #expect(obs.transport == .mtls)
        #expect(obs.tlsVersion == "TLSv1.3")
        #expect(obs.principal == Principal(name: "acme", type: .clientCertificate, credential: "spiffe://partners.example/acme"))
        #expect(obs.callerCertificate == PresentedCertificate(
            serial: "1a2b3c", fingerprintSHA256: String(repeating: "ab", count: 32),
            notBefore: Timestamp(seconds: 1_735_689_600), notAfter: Timestamp(seconds: 1_738_368_000),
            uriSANs: ["spiffe://partners.example/acme"], subject: "CN=acme,O=Acme"))
    }

    @Test func validPartnerCertificateIsLoggedWithSuccessAndItsSerial() throws {
        let caller = AuthenticatedCaller(consumer: "acme", kind: .mtls, credentialID: "spiffe://partners.example/acme")
        var record = Self.record(caller: caller, kind: .mtls, status: 200)
        record.clientCertificate = Self.partnerCertificate(.valid)
        let json = try JSONParser.parse(Array(record.line.utf8))
        #expect(json["request"]?["tls"]?["client_verify"]?.string == "SUCCESS")
        #expect(json["request"]?["tls"]?["client_certificate"]?["serial"]?.string == "1a2b3c")
        let obs = try Self.parse(record.line)
        #expect(obs.callerCertificate?.serial == "1a2b3c")
        #expect(obs.principal?.name == "acme")
        #expect(obs.transport == .mtls)
        // Not yet valid has its own nginx wording.
        #expect(ClientCertificateValidity.notYetValid.clientVerify == "FAILED:certificate is not yet valid")
    }
}
