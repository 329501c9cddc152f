import Crypto
import Foundation
import SwiftASN1
import Testing
import TrailCore
import X509

@testable import TrailFormats

// MARK: - Helpers

enum IdentityFixtures {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            let parent = url.deletingLastPathComponent()
            if parent.path == url.path { break }
            url = parent
        }
        return url.appendingPathComponent("fixtures/identity")
    }()

    static func bytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: root.appendingPathComponent(name)))
    }

    static func text(_ name: String) throws -> String {
        String(decoding: try bytes(name), as: UTF8.self)
    }

    static let issuer = "CN=Trail Fixture Root CA,O=Trail Fixture"

    /// SHA-256 fingerprints printed by `openssl x509 -fingerprint -sha256` (see fixtures/README.md).
    static let fingerprints: [String: String] = [
        "root-ca": "8d9c54a23c577e3754217b477b7966755a24cc73b8487ea1c344d01bcb715111",
        "gateway": "3d4cb50a00c08cbcbcf2e16a35e45f8c44e4ffe4e7594c38314004014d89db07",
        "web": "07da41670a33267f34690f4064506e30e3ee10034b6f30849e538d74949d9b84",
        "orders": "dc91a0fc8ddc0bb561b3a189ac50ef20e0ad1ec4b7a8bfdfcbe24a8882f4ea67",
        "orders-renewed": "8f052cffd75637fc3e3680be459dfbf94e5f3a2dc1ac3a8ab179878900b23a57",
        "payments": "bfe44a4e56f193cd1f0eb44bfa03129e94fb0c4cc9d19ee194967f27bbb3ce2d",
        "ledger": "bf36f048d01b9d28ab66f0f86c8041ecbfbb434bb71b390dc945061d9cb2e972",
        "inventory": "a3784e11ae8a5472359ad21a7f22ca27a2b3b2d3bbb9fbb95caad0c0a13c9d21",
        "scheduler": "49cbe06714992a0166649fe381e8c572ea8887cb7a0db52dd70efd73ed02356e",
        "inventory-old": "5d8384ca557ff7376e7bf967366f48f16b2737a915a6064db1b20d4eda1cdfc0",
    ]
}

func t(_ text: String) -> Timestamp {
    Timestamp.parseRFC3339(text) ?? Timestamp(nanoseconds: -1)
}


// MARK: - Identity NDJSON

@Suite("IdentityEventParser")
struct IdentityEventParserTests {
    @Test func readsFixture() throws {
        let results = IdentityEventParser().parse(try IdentityFixtures.bytes("identity-events.ndjson"))
        #expect(results.count == 11)
        let events = results.compactMap { $0.record?.identityEvents.first }
        #expect(events.count == 11)
        #expect(results.allSatisfy { $0.record?.identityEvents.count == 1 })
        #expect(events.map(\.kind) == [
            .issued, .expired, .issued, .issued, .issued, .issued, .issued, .issued, .issued, .revoked, .renewed,
        ])
        #expect(events.map { $0.serial ?? "-" } == [
            "1015", "1015", "1007", "1001", "1002", "1003", "1004", "1005", "1006", "1002", "1012",
        ])

        let first = events[0]
        #expect(first.spiffeID == "spiffe://shop.example/ns/shop/sa/inventory")
        #expect(first.fingerprintSHA256 == IdentityFixtures.fingerprints["inventory-old"])
        #expect(first.notBefore == t("2026-05-03T09:00:00Z"))
        #expect(first.notAfter == t("2026-05-03T21:00:00Z"))
        #expect(first.issuer == IdentityFixtures.issuer)
        #expect(first.time == t("2026-05-03T09:00:00Z"))
        #expect(first.format == "identity-ndjson")

        let revoked = events[9]
        #expect(revoked.kind == .revoked)
        #expect(revoked.time == t("2026-05-04T10:05:00Z"))
        #expect(revoked.reason == "keyCompromise")
        #expect(revoked.spiffeID == "spiffe://shop.example/ns/shop/sa/orders")

        let renewed = events[10]
        #expect(renewed.kind == .renewed)
        #expect(renewed.notBefore == t("2026-05-04T10:05:00Z"))
        #expect(renewed.fingerprintSHA256 == IdentityFixtures.fingerprints["orders-renewed"])

        let r0 = try #require(results[0].record)
        #expect(r0.location == RecordLocation(line: 1))
        #expect(r0.format == .identityNDJSON)
        #expect(String(decoding: r0.raw, as: UTF8.self).hasPrefix(#"{"event":"issued","time":"2026-05-03T09:00:00Z""#))
        #expect(r0.raw.last == UInt8(ascii: "}"))
    }

    @Test func badLineBetweenGoodOnes() throws {
        let results = IdentityEventParser().parse(try IdentityFixtures.bytes("bad_identity-events.ndjson"))
        #expect(results.count == 3)
        let first = try #require(results[0].record?.identityEvents.first)
        #expect(first.time == t("2026-05-04T09:00:00Z"))  // epoch seconds 1777885200
        #expect(first.serial == "1001")
        let bad = try #require(results[1].rejection)
        #expect(bad.location.line == 2)
        #expect(bad.reason == #"event: unknown event "minted" (expected issued, renewed, revoked or expired)"#)
        #expect(String(decoding: bad.raw, as: UTF8.self).hasPrefix(#"{"event":"minted""#))
        let third = try #require(results[2].record?.identityEvents.first)
        #expect(third.kind == .revoked)
        #expect(third.spiffeID == nil)
        #expect(third.serial == "1002")
    }

    @Test func optionalFieldsUnknownKeysAndNulls() throws {
        let line = #"{"event":"ISSUED","time":1777885200.5,"serial":"0A:Bc:00","spiffe_id":null,"x":{"y":[1]},"#
            + #""not_after":"1777928400","issuer":"","reason":null}"#
        let ev = try #require(IdentityEventParser().parse(Array(line.utf8)).first?.record?.identityEvents.first)
        #expect(ev.kind == .issued)
        #expect(ev.time == Timestamp(nanoseconds: 1_777_885_200_500_000_000))
        #expect(ev.serial == "abc00")
        #expect(ev.spiffeID == nil)
        #expect(ev.notAfter == t("2026-05-04T21:00:00Z"))
        #expect(ev.issuer == nil)
        #expect(ev.reason == nil)
        #expect(ev.notBefore == nil)
        #expect(ev.fingerprintSHA256 == nil)
    }

    @Test func spiffeIDIsCanonicalised() throws {
        let line = #"{"event":"expired","time":"2026-05-04T21:00:00+02:00","spiffe_id":"SPIFFE://Shop.Example/ns/Shop"}"#
        let ev = try #require(IdentityEventParser().parse(Array(line.utf8)).first?.record?.identityEvents.first)
        #expect(ev.spiffeID == "spiffe://shop.example/ns/Shop")
        #expect(ev.time == t("2026-05-04T19:00:00Z"))
    }

    @Test(arguments: [
        (#"42"#, "not a JSON object"),
        (#""text""#, "not a JSON object"),
        (#"{"time":"2026-05-04T09:00:00Z","serial":"01"}"#, "missing event"),
        (#"{"event":7,"time":"2026-05-04T09:00:00Z","serial":"01"}"#, "event: must be a string"),
        (#"{"event":"issued","serial":"01"}"#, "missing time"),
        (#"{"event":"issued","time":"yesterday","serial":"01"}"#, "time: not an RFC 3339 time or epoch seconds"),
        (#"{"event":"issued","time":true,"serial":"01"}"#, "time: not an RFC 3339 time or epoch seconds"),
        (#"{"event":"issued","time":"2026-05-04T09:00:00Z"}"#, "missing serial and spiffe_id (one is required)"),
        (#"{"event":"issued","time":"2026-05-04T09:00:00Z","serial":""}"#, "missing serial and spiffe_id (one is required)"),
        (#"{"event":"issued","time":"2026-05-04T09:00:00Z","serial":"xyz"}"#, #"serial: "xyz" is not hex"#),
        (#"{"event":"issued","time":"2026-05-04T09:00:00Z","serial":4098}"#, "serial: must be a string"),
        (#"{"event":"issued","time":"2026-05-04T09:00:00Z","spiffe_id":"spiffe://shop.example/ns/"}"#,
         "spiffe_id: path ends with '/'"),
        (#"{"event":"issued","time":"2026-05-04T09:00:00Z","spiffe_id":"https://shop.example/x"}"#,
         #"spiffe_id: scheme is "https", not spiffe://"#),
        (#"{"event":"issued","time":"2026-05-04T09:00:00Z","serial":"01","sha256":"abcd"}"#,
         "sha256: not a SHA-256 digest (64 hex digits)"),
        (#"{"event":"issued","time":"2026-05-04T09:00:00Z","serial":"01","not_after":"soon"}"#,
         "not_after: not an RFC 3339 time or epoch seconds"),
        (#"{"event":"issued","time":"2026-05-04T09:00:00Z","serial":"01","issuer":5}"#, "issuer: must be a string"),
        (#"{"event":"issued","time":"#, "invalid JSON at byte 25: unexpected end of input"),
        // Years a Timestamp cannot hold are refused instead of trapping.
        (#"{"event":"issued","time":"9999-12-31T23:59:59Z","serial":"01"}"#, "time: not an RFC 3339 time or epoch seconds"),
        (#"{"event":"issued","time":-9223372036854775808,"serial":"01"}"#, "time: not an RFC 3339 time or epoch seconds"),
        (#"{"event":"issued","time":1e300,"serial":"01"}"#, "time: not an RFC 3339 time or epoch seconds"),
    ])
    func rejects(_ line: String, _ reason: String) throws {
        let results = IdentityEventParser().parse(Array(line.utf8))
        #expect(results.count == 1)
        let r = try #require(results.first?.rejection)
        #expect(r.reason == reason)
        #expect(r.format == .identityNDJSON)
        #expect(r.raw == Array(line.utf8))
    }
}

// MARK: - SPIRE logs

@Suite("SPIRELogParser")
struct SPIRELogParserTests {
    let parser = SPIRELogParser()

    @Test func formatsDocFixtureLine() throws {
        let line = #"time="2026-05-04T10:00:00Z" level=info msg="API accessed" caller_addr="10.0.3.7:52010" caller_id="spiffe://example.org/spire/agent/k8s_psat/prod/abc" entry_id=2f1c... method=BatchNewX509SVID request_id=7e7c... service=svid.v1.SVID spiffe_id="spiffe://example.org/ns/shop/sa/cart" status=success type=audit"#
        let results = parser.parse(Array(line.utf8))
        let record = try #require(results.first?.record)
        #expect(results.count == 1)
        #expect(record.raw == Array(line.utf8))
        #expect(record.format == .spire)
        #expect(record.partialRejections.isEmpty)
        #expect(record.identityEvents == [
            IdentityEvent(kind: .issued, spiffeID: "spiffe://example.org/ns/shop/sa/cart", time: t("2026-05-04T10:00:00Z"),
                          format: "spire"),
        ])
    }

    @Test func serverTextLog() throws {
        let results = parser.parse(try IdentityFixtures.bytes("spire-server.log"))
        #expect(results.count == 10)
        #expect(results.allSatisfy { $0.record != nil && $0.record?.partialRejections.isEmpty == true })
        let events = results.map { $0.record?.identityEvents ?? [] }
        #expect(events.map(\.count) == [0, 1, 1, 1, 1, 0, 0, 1, 0, 1])

        let serverSVID = try #require(events[1].first)
        #expect(serverSVID.spiffeID == "spiffe://shop.example/spire/server")
        #expect(serverSVID.serial == "4c460142638247ad53ed09a29d90da1")  // 6336550875125993042626296812949540257
        #expect(serverSVID.notAfter == t("2026-05-04T09:59:59Z"))

        let orders = try #require(events[2].first)
        #expect(orders == IdentityEvent(
            kind: .issued, spiffeID: "spiffe://shop.example/ns/shop/sa/orders", serial: "1002",
            notAfter: t("2026-05-04T21:00:00Z"), time: t("2026-05-04T09:00:00Z"), format: "spire"))

        let audit = try #require(events[3].first)
        #expect(audit == IdentityEvent(
            kind: .issued, spiffeID: "spiffe://shop.example/ns/shop/sa/orders", time: t("2026-05-04T09:00:00Z"),
            format: "spire"))

        #expect(events[4].first?.serial == "1001")
        #expect(events[4].first?.spiffeID == "spiffe://shop.example/ns/shop/sa/web")
        #expect(events[7].first?.serial == "1012")
        #expect(events[7].first?.time == t("2026-05-04T10:05:00Z"))

        let banned = try #require(events[9].first)
        #expect(banned == IdentityEvent(
            kind: .revoked, spiffeID: "spiffe://shop.example/spire/agent/k8s_psat/prod/node-x",
            time: t("2026-05-04T10:06:00Z"), reason: "BanAgent", format: "spire"))
        #expect(results[9].record?.location == RecordLocation(line: 10))
    }

    @Test func agentTextLog() throws {
        let results = parser.parse(try IdentityFixtures.bytes("spire-agent.log"))
        let events = results.flatMap { $0.record?.identityEvents ?? [] }
        #expect(results.count == 4)
        #expect(events == [
            IdentityEvent(kind: .issued, spiffeID: "spiffe://shop.example/ns/shop/sa/orders",
                          time: t("2026-05-04T09:00:00Z"), format: "spire"),
            IdentityEvent(kind: .issued, spiffeID: "spiffe://shop.example/ns/shop/sa/web",
                          time: t("2026-05-04T09:00:01Z"), format: "spire"),
            IdentityEvent(kind: .renewed, spiffeID: "spiffe://shop.example/ns/shop/sa/orders",
                          notAfter: t("2026-05-04T21:00:00Z"), time: t("2026-05-04T10:05:00Z"), format: "spire"),
        ])
    }

    @Test func serverJSONLog() throws {
        let results = parser.parse(try IdentityFixtures.bytes("spire-server.json.log"))
        #expect(results.count == 5)
        let events = results.map { $0.record?.identityEvents ?? [] }
        #expect(events.map(\.count) == [0, 1, 1, 1, 1])
        #expect(events[1].first == IdentityEvent(
            kind: .issued, spiffeID: "spiffe://shop.example/ns/shop/sa/orders", serial: "1002",
            notAfter: t("2026-05-04T21:00:00Z"), time: t("2026-05-04T09:00:00Z"), format: "spire"))
        #expect(events[3].first?.serial == "1001")
        #expect(events[4].first == IdentityEvent(
            kind: .revoked, spiffeID: "spiffe://shop.example/spire/agent/k8s_psat/prod/node-y",
            time: t("2026-05-04T10:07:00Z"), reason: "DeleteAgent", format: "spire"))
    }

    @Test func mixedTextAndJSONLines() {
        let input = """
            {"time":"2026-05-04T09:00:00Z","level":"info","msg":"Renewing X509-SVID","spiffe_id":"spiffe://a.example/w","expires_at":"2026-05-04T10:00:00Z"}
            time="2026-05-04T09:00:01Z" level=info msg="Creating X509-SVID" spiffe_id=spiffe://a.example/v
            """
        let events = parser.parse(Array(input.utf8)).flatMap { $0.record?.identityEvents ?? [] }
        #expect(events.map(\.kind) == [.renewed, .issued])
        #expect(events.map { $0.spiffeID ?? "" } == ["spiffe://a.example/w", "spiffe://a.example/v"])
        #expect(events[0].notAfter == t("2026-05-04T10:00:00Z"))
    }

    @Test func logfmtUnquoting() throws {
        let line = try IdentityFixtures.text("spire-server.log").split(separator: "\n")[5]
        let fields = try SPIRELogParser.logfmtFields(Array(line.utf8)[...]).get()
        #expect(fields.map(\.0) == ["time", "level", "msg", "error", "subsystem_name", "trust_domain"])
        #expect(fields[3].1 == #"rpc error: code = Unavailable desc = "connection refused" from \\upstream"#)
        let esc = try SPIRELogParser.logfmtFields(Array(#"a="x\ty\n\u00e9\x41\101" b=plain c="""#.utf8)[...]).get()
        #expect(esc.map(\.1) == ["x\ty\n\u{e9}AA", "plain", ""])
    }

    @Test func auditFailuresAndOtherMethodsHaveNoEvents() throws {
        let lines = [
            #"time="2026-05-04T09:00:00Z" level=info msg="API accessed" method=BatchNewX509SVID spiffe_id="spiffe://a.example/w" status=error type=audit"#,
            #"time="2026-05-04T09:00:00Z" level=info msg="API accessed" method=ListAgents status=success type=audit"#,
            #"time="2026-05-04T09:00:00Z" level=info msg="API accessed" method=MintX509SVID status=success type=audit"#,
            #"time="2026-05-04T09:00:00Z" level=info msg="API accessed" method=MintX509SVID spiffe_id="spiffe://a.example/w" status=success"#,
        ]
        let results = parser.parse(Array(lines.joined(separator: "\n").utf8))
        #expect(results.count == 4)
        #expect(results.allSatisfy { $0.record?.identityEvents.isEmpty == true })
    }

    @Test func revokedAgentFromAgentID() throws {
        let line = #"time="2026-05-04T09:00:00Z" msg="API accessed" method=DeleteAgent agent_id="spiffe://a.example/spire/agent/x" status=success type=audit"#
        let ev = try #require(parser.parse(Array(line.utf8)).first?.record?.identityEvents.first)
        #expect(ev.kind == .revoked)
        #expect(ev.spiffeID == "spiffe://a.example/spire/agent/x")
        #expect(ev.reason == "DeleteAgent")
    }

    @Test func badFieldsArePartialRejections() throws {
        let line = #"time="2026-05-04T09:00:00Z" level=debug msg="Signed X509 SVID" expiration="2026-05-04T10:00:00Z" serial_num=12ab spiffe_id="spiffe://a.example/w""#
        let record = try #require(parser.parse(Array(line.utf8)).first?.record)
        #expect(record.partialRejections.map(\.reason) == [#"serial_num: "12ab" is not a decimal integer"#])
        #expect(record.identityEvents.first?.serial == nil)
        #expect(record.identityEvents.first?.spiffeID == "spiffe://a.example/w")

        let line2 = #"time="2026-05-04T09:00:00Z" msg="Renewing X509-SVID" spiffe_id="spiffe://a.example/w/" expires_at=never"#
        let record2 = try #require(parser.parse(Array(line2.utf8)).first?.record)
        #expect(record2.identityEvents.isEmpty)
        #expect(record2.partialRejections.map(\.reason) == [
            "spiffe_id: path ends with '/'", #"expires_at: "never" is not an RFC 3339 time"#,
        ])
    }

    @Test(arguments: [
        ("hello world", "not a SPIRE log line: no time and no msg"),
        (#"level=info msg="x""#, "missing time"),
        (#"time="2026-05-04T09:00:00Z" level=info"#, "missing msg"),
        (#"time="04/05/2026 09:00" msg=x"#, #"time: "04/05/2026 09:00" is not an RFC 3339 time"#),
        (#"time="2026-05-04T09:00:00Z" msg="unterminated"#, "msg: unterminated quoted value"),
        (#"time="2026-05-04T09:00:00Z" msg="bad \x4" a=b"#, #"msg: bad \x escape"#),
        (#"[1]"#, "not a SPIRE log line: no time and no msg"),
        (#"{"time":"2026-05-04T09:00:00Z","#, "invalid JSON at byte 31: expected a member name"),
        (#"{"msg":"x","level":"info"}"#, "missing time"),
        (#"time="9999-12-31T23:59:59Z" msg=x"#, #"time: "9999-12-31T23:59:59Z" is not an RFC 3339 time"#),
    ])
    func rejects(_ line: String, _ reason: String) throws {
        let r = try #require(parser.parse(Array(line.utf8)).first?.rejection)
        #expect(r.reason == reason)
        #expect(r.raw == Array(line.utf8))
        #expect(r.format == .spire)
    }

    @Test(arguments: [
        ("0", "0"), ("00042", "2a"), ("4098", "1002"), ("4097", "1001"), ("4114", "1012"),
        ("4294967295", "ffffffff"), ("4294967296", "100000000"),
        ("18446744073709551616", "10000000000000000"),
        ("340282366920938463463374607431768211455", "ffffffffffffffffffffffffffffffff"),
        ("6336550875125993042626296812949540257", "4c460142638247ad53ed09a29d90da1"),
    ])
    func decimalToHex(_ decimal: String, _ hex: String) {
        #expect(DecimalSerial.hex(fromDecimal: decimal) == hex)
    }

    @Test func decimalToHexRejects() {
        #expect(DecimalSerial.hex(fromDecimal: "") == nil)
        #expect(DecimalSerial.hex(fromDecimal: "-1") == nil)
        #expect(DecimalSerial.hex(fromDecimal: "12a") == nil)
        #expect(DecimalSerial.hex(fromDecimal: " 1") == nil)
        #expect(DecimalSerial.hex(fromDecimal: String(repeating: "9", count: 101)) == nil)
        #expect(DecimalSerial.hex(fromDecimal: String(repeating: "9", count: 100)) != nil)
    }
}

// MARK: - PEM certificates

@Suite("PEMCertificateParser")
struct PEMCertificateParserTests {
    let parser = PEMCertificateParser()

    @Test func svidBundle() throws {
        let input = try IdentityFixtures.bytes("svids.pem")
        let results = parser.parse(input)
        let expected: [(String, String, String, String, String)] = [
            ("gateway", "gateway", "1007", "2026-05-04T09:00:00Z", "2026-05-04T21:00:00Z"),
            ("web", "web", "1001", "2026-05-04T09:00:00Z", "2026-05-04T21:00:00Z"),
            ("orders", "orders", "1002", "2026-05-04T09:00:00Z", "2026-05-04T21:00:00Z"),
            ("orders-renewed", "orders", "1012", "2026-05-04T10:05:00Z", "2026-05-04T21:00:00Z"),
            ("payments", "payments", "1003", "2026-05-04T09:00:00Z", "2026-05-04T21:00:00Z"),
            ("ledger", "ledger", "1004", "2026-05-04T09:00:00Z", "2026-05-04T21:00:00Z"),
            ("inventory", "inventory", "1005", "2026-05-04T09:00:00Z", "2026-05-04T21:00:00Z"),
            ("scheduler", "scheduler", "1006", "2026-05-04T09:00:00Z", "2026-05-04T21:00:00Z"),
            ("inventory-old", "inventory", "1015", "2026-05-03T09:00:00Z", "2026-05-03T21:00:00Z"),
        ]
        #expect(results.count == expected.count)
        for (result, (file, sa, serial, nb, na)) in zip(results, expected) {
            let record = try #require(result.record, "\(file)")
            #expect(record.identityEvents == [
                IdentityEvent(
                    kind: .issued, spiffeID: "spiffe://shop.example/ns/shop/sa/\(sa)", serial: serial,
                    fingerprintSHA256: IdentityFixtures.fingerprints[file], notBefore: t(nb), notAfter: t(na),
                    issuer: IdentityFixtures.issuer, time: t(nb), format: "pem"),
            ], "\(file)")
            let raw = String(decoding: record.raw, as: UTF8.self)
            #expect(raw.hasPrefix("-----BEGIN CERTIFICATE-----\n"))
            #expect(raw.hasSuffix("\n-----END CERTIFICATE-----"))
        }
        // Each block's raw text is found verbatim in the input, at the line the record says.
        let lines = String(decoding: input, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        for result in results {
            let record = try #require(result.record)
            #expect(lines[record.location.line - 1] == "-----BEGIN CERTIFICATE-----")
        }
        #expect(results[0].record?.location.line == 1)
        #expect((results[1].record?.location.line ?? 0) > 1)
    }

    @Test func fingerprintIsSHA256OfDER() throws {
        let blocks = PEMScanner.blocks(in: try IdentityFixtures.bytes("svids.pem"))
        let der = try #require(blocks.first?.der)
        let summary = try CertificateSummary.summarize(der: der)
        #expect(summary.fingerprintSHA256 == Hex.encode(Array(SHA256.hash(data: der))))
        #expect(summary.fingerprintSHA256 == IdentityFixtures.fingerprints["gateway"])
    }

    @Test func trustBundleIsRecordWithoutEvents() throws {
        let input = try IdentityFixtures.bytes("root-ca.pem")
        let results = parser.parse(input)
        #expect(results.count == 1)
        let record = try #require(results.first?.record)
        #expect(record.identityEvents.isEmpty)
        #expect(record.partialRejections.isEmpty)
        let summary = try CertificateSummary.summarize(pem: try IdentityFixtures.text("root-ca.pem"))
        #expect(summary.isCA)
        #expect(summary.keyCertSign && summary.cRLSign)
        #expect(summary.spiffeID == "spiffe://shop.example")
        #expect(summary.serial == "1")
        #expect(summary.subject == IdentityFixtures.issuer)
        #expect(summary.fingerprintSHA256 == IdentityFixtures.fingerprints["root-ca"])
        #expect(summary.notBefore == t("2026-01-01T00:00:00Z"))
        #expect(summary.notAfter == t("2036-01-01T00:00:00Z"))
        #expect(try summary.svidRole() == .signing(SPIFFEID(parsing: "spiffe://shop.example")))
    }

    @Test(arguments: [
        ("bad_two_uri_sans.pem", "certificate has 2 URI SANs; an X509-SVID has exactly one"),
        ("bad_ca_leaf.pem",
         "certificate with leaf SPIFFE ID spiffe://shop.example/ns/shop/sa/rogue has cA=true; a leaf X509-SVID must have cA=false"),
        ("bad_not_spiffe.pem",
         #"URI SAN "https://shop.example/ns/shop/sa/web" is not a SPIFFE ID: scheme is "https", not spiffe://"#),
    ])
    func negativeFixtures(_ file: String, _ reason: String) throws {
        let input = try IdentityFixtures.bytes(file)
        let results = parser.parse(input)
        #expect(results.count == 1)
        let r = try #require(results.first?.rejection)
        #expect(r.reason == reason)
        #expect(r.format == .pem)
        #expect(String(decoding: r.raw, as: UTF8.self) == String(decoding: input, as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test func mixedInputKeepsOrderAndIgnoresText() throws {
        var input = Array("subject=/CN=root\nissuer=whatever\n".utf8)
        input += try IdentityFixtures.bytes("root-ca.pem")
        input += Array("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n".utf8)
        input += try IdentityFixtures.bytes("bad_not_spiffe.pem")
        let svids = try IdentityFixtures.text("svids.pem")
        input += Array(svids.utf8)
        let results = parser.parse(input)
        #expect(results.count == 11)
        #expect(results[0].record?.identityEvents.isEmpty == true)
        #expect(results[0].record?.location.line == 3)
        #expect(results[1].rejection != nil)
        #expect(results[2].record?.identityEvents.first?.serial == "1007")
        #expect(results[10].record?.identityEvents.first?.serial == "1015")
    }

    @Test func derCertificate() throws {
        let der = try #require(PEMScanner.blocks(in: try IdentityFixtures.bytes("svids.pem"))[1].der)
        let results = parser.parse(der)
        let ev = try #require(results.first?.record?.identityEvents.first)
        #expect(results.count == 1)
        #expect(ev.serial == "1001")
        #expect(ev.fingerprintSHA256 == IdentityFixtures.fingerprints["web"])
        #expect(results.first?.record?.raw == der)
    }

    @Test func subjectlessLeaf() throws {
        let pem = try IdentityFixtures.text("svids.pem")
        let blocks = PEMScanner.blocks(in: Array(pem.utf8))
        let summary = try CertificateSummary.summarize(der: try #require(blocks[7].der))
        #expect(summary.subject == "")
        #expect(summary.spiffeID == "spiffe://shop.example/ns/shop/sa/scheduler")
        #expect(summary.presented == PresentedCertificate(
            serial: "1006", fingerprintSHA256: IdentityFixtures.fingerprints["scheduler"],
            notBefore: t("2026-05-04T09:00:00Z"), notAfter: t("2026-05-04T21:00:00Z"),
            uriSANs: ["spiffe://shop.example/ns/shop/sa/scheduler"], subject: nil))
    }

    @Test func malformedBlocks() throws {
        let pem = try IdentityFixtures.text("root-ca.pem")
        let unterminated = String(pem.prefix(200))
        #expect(parser.parse(Array(unterminated.utf8)).first?.rejection?.reason == "PEM block has no END CERTIFICATE line")

        let badBase64 = "-----BEGIN CERTIFICATE-----\nMIIB*AAA\n-----END CERTIFICATE-----\n"
        #expect(parser.parse(Array(badBase64.utf8)).first?.rejection?.reason == "PEM body is not valid base64")

        let notDER = "-----BEGIN CERTIFICATE-----\nAgEF\n-----END CERTIFICATE-----\n"  // INTEGER 5
        #expect(parser.parse(Array(notDER.utf8)).first?.rejection?.reason == "certificate: unexpected ASN.1 field type")
        let garbage = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"
        #expect(parser.parse(Array(garbage.utf8)).first?.rejection?.reason == "certificate: DER is truncated")

        // A certificate cut short inside its DER.
        let der = try #require(PEMScanner.blocks(in: Array(pem.utf8)).first?.der)
        let cut = "-----BEGIN CERTIFICATE-----\n" + Data(der.prefix(200)).base64EncodedString()
            + "\n-----END CERTIFICATE-----\n"
        #expect(parser.parse(Array(cut.utf8)).first?.rejection?.reason == "certificate: DER is truncated")

        #expect(parser.parse(Array("just some text\n".utf8)).first?.rejection?.reason
            == "no PEM CERTIFICATE block in the input")
        #expect(parser.parse(Array("-----BEGIN X509 CRL-----\nAA==\n-----END X509 CRL-----".utf8)).first?.rejection?.reason
            == "no PEM CERTIFICATE block in the input (found X509 CRL)")
        #expect(parser.parse(Array(" \n\n".utf8)).isEmpty)
        #expect(parser.parse([]).isEmpty)
    }

    /// The SVID rules on summaries built by hand (no openssl fixture has these shapes).
    @Test func svidRoleRules() throws {
        func summary(uris: [String], ca: Bool = false, certSign: Bool = false, crlSign: Bool = false) -> CertificateSummary {
            CertificateSummary(
                serial: "1", fingerprintSHA256: String(repeating: "0", count: 64), notBefore: t("2026-05-04T09:00:00Z"),
                notAfter: t("2026-05-04T21:00:00Z"), subject: "", issuer: "", uriSANs: uris,
                spiffeID: nil, isCA: ca, keyCertSign: certSign, cRLSign: crlSign)
        }
        let leaf = "spiffe://shop.example/ns/shop/sa/web"
        #expect(try summary(uris: [leaf]).svidRole() == .leaf(SPIFFEID(parsing: leaf)))
        #expect(try summary(uris: [], ca: true).svidRole() == .signing(nil))
        #expect(throws: IdentityParseError("leaf certificate has no URI SAN; an X509-SVID has exactly one (its SPIFFE ID)")) {
            try summary(uris: []).svidRole()
        }
        #expect(throws: IdentityParseError("SPIFFE ID spiffe://shop.example has no path; a leaf X509-SVID needs a workload path")) {
            try summary(uris: ["spiffe://shop.example"]).svidRole()
        }
        #expect(throws: IdentityParseError(
            "leaf X509-SVID spiffe://shop.example/ns/shop/sa/web has key usage keyCertSign, which a leaf must not have")) {
            try summary(uris: [leaf], certSign: true).svidRole()
        }
        #expect(throws: IdentityParseError(
            "leaf X509-SVID spiffe://shop.example/ns/shop/sa/web has key usage keyCertSign and cRLSign, which a leaf must not have")) {
            try summary(uris: [leaf], certSign: true, crlSign: true).svidRole()
        }
        #expect(throws: IdentityParseError(#"URI SAN "spiffe://shop.example/a/../b" is not a SPIFFE ID: path has a '..' segment"#)) {
            try summary(uris: ["spiffe://shop.example/a/../b"]).svidRole()
        }
        #expect(throws: IdentityParseError("certificate has 2 URI SANs; an X509-SVID has exactly one")) {
            try summary(uris: [leaf, leaf], ca: true).svidRole()
        }
    }

    /// A real certificate with a leaf SPIFFE ID and keyCertSign, made with swift-certificates.
    @Test func keyCertSignLeafIsRejected() throws {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("bad-ku") }
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(bytes: [0x00, 0x30, 0x01]),
            publicKey: .init(key.publicKey), notValidBefore: Date(timeIntervalSince1970: 1_777_885_200),
            notValidAfter: Date(timeIntervalSince1970: 253_402_300_799),  // 9999-12-31T23:59:59Z
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
                SubjectAlternativeNames([.uniformResourceIdentifier("spiffe://shop.example/ns/shop/sa/web")])
            },
            issuerPrivateKey: .init(key))
        var serializer = DER.Serializer()
        try serializer.serialize(cert)
        let der = serializer.serializedBytes
        let summary = try CertificateSummary.summarize(der: der)
        #expect(summary.serial == "3001")
        #expect(summary.notAfter == Timestamp(nanoseconds: Int64.max))  // clamped, no overflow
        #expect(summary.notBefore == t("2026-05-04T09:00:00Z"))
        let r = try #require(parser.parse(der).first?.rejection)
        #expect(r.reason
            == "leaf X509-SVID spiffe://shop.example/ns/shop/sa/web has key usage keyCertSign, which a leaf must not have")
    }
}

// MARK: - CRLs

@Suite("CRLParser")
struct CRLParserTests {
    let parser = CRLParser()
    let revokedOrders = IdentityEvent(
        kind: .revoked, serial: "1002", issuer: IdentityFixtures.issuer, time: t("2026-05-04T10:05:00Z"),
        reason: "keyCompromise", format: "crl")

    @Test func pemCRL() throws {
        let input = try IdentityFixtures.bytes("crl.pem")
        let results = parser.parse(input)
        #expect(results.count == 1)
        let record = try #require(results.first?.record)
        #expect(record.identityEvents == [revokedOrders])
        #expect(record.format == .crl)
        #expect(record.location.line == 1)
        #expect(String(decoding: record.raw, as: UTF8.self)
            == String(decoding: input, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test func derCRLIsTheSame() throws {
        let input = try IdentityFixtures.bytes("crl.der")
        let results = parser.parse(input)
        #expect(results.count == 1)
        let record = try #require(results.first?.record)
        #expect(record.identityEvents == [revokedOrders])
        #expect(record.raw == input)
        #expect(PEMScanner.blocks(in: try IdentityFixtures.bytes("crl.pem")).first?.der == input)

        let crl = try CertificateRevocationList.decode(der: input[...])
        #expect(crl.version == 2)
        #expect(crl.issuer == IdentityFixtures.issuer)
        #expect(crl.thisUpdate == t("2026-05-04T10:06:00Z"))
        #expect(crl.nextUpdate == t("2026-05-05T10:06:00Z"))
    }

    @Test func emptyCRL() throws {
        let results = parser.parse(try IdentityFixtures.bytes("crl-empty.pem"))
        #expect(results.count == 1)
        let record = try #require(results.first?.record)
        #expect(record.identityEvents.isEmpty)
        #expect(record.partialRejections.isEmpty)
    }

    @Test func severalEntriesAndReasons() throws {
        let events = try #require(parser.parse(try IdentityFixtures.bytes("crl-multi.pem")).first?.record?.identityEvents)
        #expect(events == [
            revokedOrders,
            IdentityEvent(kind: .revoked, serial: "2001", issuer: IdentityFixtures.issuer, time: t("2026-05-04T11:30:00Z"),
                          reason: nil, format: "crl"),
            IdentityEvent(kind: .revoked, serial: "2002", issuer: IdentityFixtures.issuer, time: t("2026-05-04T11:00:00Z"),
                          reason: "cACompromise", format: "crl"),
        ])
    }

    @Test func severalPEMBlocksAndConcatenatedDER() throws {
        var pem = try IdentityFixtures.bytes("crl-empty.pem")
        pem += Array("some note between blocks\n".utf8)
        pem += try IdentityFixtures.bytes("crl.pem")
        let fromPEM = parser.parse(pem)
        #expect(fromPEM.map { $0.record?.identityEvents.count ?? -1 } == [0, 1])
        #expect((fromPEM[1].record?.location.line ?? 0) > 2)

        let emptyDER = try #require(PEMScanner.blocks(in: try IdentityFixtures.bytes("crl-empty.pem")).first?.der)
        let der = emptyDER + (try IdentityFixtures.bytes("crl.der"))
        let fromDER = parser.parse(der)
        #expect(fromDER.map { $0.record?.identityEvents.count ?? -1 } == [0, 1])
        #expect(fromDER[1].record?.location == RecordLocation(line: 1, detail: "byte \(emptyDER.count)"))
    }

    @Test func reasonNames() {
        #expect(CertificateRevocationList.reasonNames.count == 10)
        #expect(CertificateRevocationList.reasonNames[5] == "cessationOfOperation")
        #expect(CertificateRevocationList.reasonNames[10] == "aACompromise")
        #expect(CertificateRevocationList.reasonNames[7] == nil)
    }

    @Test func rejections() throws {
        let der = try IdentityFixtures.bytes("crl.der")
        func reason(_ bytes: [UInt8]) -> String? { parser.parse(bytes).first?.rejection?.reason }

        #expect(reason(Array(der.dropLast(10))) == "CRL: DER is truncated")
        // Truncated inside a PEM block: the outer length runs past the data.
        let cutPEM = "-----BEGIN X509 CRL-----\n" + Data(der.prefix(120)).base64EncodedString() + "\n-----END X509 CRL-----\n"
        #expect(reason(Array(cutPEM.utf8)) == "CRL: DER is truncated")
        #expect(reason([0x30, 0x03, 0x02, 0x01, 0x01])
            == "CRL: CertificateList has 1 fields, expected 3 (tbsCertList, signatureAlgorithm, signature)")
        #expect(reason([0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]) == "CRL: CertificateList has 2 fields, expected 3 (tbsCertList, signatureAlgorithm, signature)")
        #expect(reason([0x30, 0x09, 0x02, 0x01, 0x01, 0x30, 0x00, 0x03, 0x02, 0x00, 0x00])
            == "CRL: tbsCertList is not a SEQUENCE")
        #expect(reason([0x30, 0x0B, 0x30, 0x02, 0x30, 0x00, 0x30, 0x00, 0x03, 0x03, 0x00, 0x00, 0x00])
            == "CRL: tbsCertList ends before issuer")
        #expect(reason(Array("hello".utf8)) == "not a CRL: neither a PEM X509 CRL block nor DER")
        #expect(reason(try IdentityFixtures.bytes("root-ca.pem")) == "no PEM X509 CRL block in the input (found CERTIFICATE)")
        #expect(parser.parse([]).isEmpty)

        // Garble the revocation date's tag (UTCTime 0x17 -> 0x04 OCTET STRING).
        var garbled = der
        let dateTag = try #require(findUTCTime(der, "260504100500Z"))
        garbled[dateTag] = 0x04
        #expect(reason(garbled) == "CRL: revokedCertificates[0]: revocationDate is not a time")

        // Garble the reason code (ENUMERATED 0x0A -> INTEGER 0x02).
        var badReason = der
        let enumAt = try #require(findSequence(der, [0x0A, 0x01, 0x01]))
        badReason[enumAt] = 0x02
        #expect(reason(badReason) == "CRL: revokedCertificates[0]: reasonCode is not an ENUMERATED")
    }

    private func findUTCTime(_ der: [UInt8], _ text: String) -> Int? {
        findSequence(der, [0x17, UInt8(text.utf8.count)] + Array(text.utf8))
    }

    private func findSequence(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where Array(hay[i..<(i + needle.count)]) == needle { return i }
        return nil
    }
}

// MARK: - Robustness

@Suite("IdentityRobustness")
struct IdentityRobustnessTests {
    /// Deterministic byte mutations of every fixture through every identity parser: nothing may trap, and
    /// every result keeps the format it was read as.
    @Test func mutatedFixturesNeverCrash() throws {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        let inputs: [([UInt8], (([UInt8]) -> [ParseResult]), InputFormat)] = [
            (try IdentityFixtures.bytes("crl.der"), CRLParser().parse, .crl),
            (try IdentityFixtures.bytes("crl-multi.pem"), CRLParser().parse, .crl),
            (try IdentityFixtures.bytes("svids.pem"), PEMCertificateParser().parse, .pem),
            (PEMScanner.blocks(in: try IdentityFixtures.bytes("root-ca.pem"))[0].der ?? [], PEMCertificateParser().parse, .pem),
            (try IdentityFixtures.bytes("spire-server.log"), SPIRELogParser().parse, .spire),
            (try IdentityFixtures.bytes("spire-server.json.log"), SPIRELogParser().parse, .spire),
            (try IdentityFixtures.bytes("identity-events.ndjson"), IdentityEventParser().parse, .identityNDJSON),
        ]
        var parsed = 0
        for (original, parse, format) in inputs {
            for round in 0..<300 {
                var bytes = original
                switch round % 3 {
                case 0:  // flip a few bytes
                    for _ in 0..<(1 + next() % 4) { bytes[next() % bytes.count] = UInt8(truncatingIfNeeded: next()) }
                case 1:  // truncate
                    bytes = Array(bytes.prefix(next() % bytes.count))
                default:  // drop a slice
                    let a = next() % bytes.count
                    let b = min(bytes.count, a + 1 + next() % 16)
                    bytes.removeSubrange(a..<b)
                }
                for r in parse(bytes) {
                    switch r {
                    case .record(let rec): #expect(rec.format == format)
                    case .rejected(let rej): #expect(rej.format == format && !rej.reason.isEmpty)
                    }
                    parsed += 1
                }
            }
        }
        #expect(parsed > 2000)
    }
}
