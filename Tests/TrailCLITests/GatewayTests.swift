import Foundation
import Testing
import TrailCore

/// `trail gateway` as a real process in front of a STRICT sidecar and a Python app, driven with curl; its Kong
/// log and the sidecar's Envoy log then make one chain that starts at the gateway's consumer.
@Suite("trail gateway with real clients", .serialized)
struct GatewayTests {
    typealias M = MeshTests

    @Test func gatewayAuthenticatesLogsAndForwardsIntoTheMeshOverMTLS() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-gateway-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var daemons: [M.Daemon] = []
        defer { for d in daemons.reversed() { d.stop() } }
        func start(_ executable: URL, _ arguments: [String], _ name: String, lines: Int = 1) throws -> M.Daemon {
            let d = try M.Daemon(executable, arguments, dir: dir, name: name, lines: lines)
            daemons.append(d)
            return d
        }
        _ = try M.trail(["ca", "init", "--dir", "ca", "--trust-domain", "shop.example"], in: dir)
        _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/shop/sa/payments", "--out", "payments"], in: dir)
        _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/edge/sa/gateway", "--out", "gateway"], in: dir)

        let app = try start(URL(fileURLWithPath: "/usr/bin/env"), ["python3", CLI.root.appendingPathComponent("fixtures/mesh/app.py").path, "0", "payments"], "payments-app")
        try """
            spiffe_id: spiffe://shop.example/ns/shop/sa/payments
            service: payments
            trust_bundle: ca/bundle.pem
            svid: {cert: payments/svid.pem, key: payments/svid.key}
            inbound:
              listen: 127.0.0.1:0
              app: 127.0.0.1:\(app.lines[0].split(separator: " ")[1])
              mode: STRICT
            telemetry:
              access_log: payments-access.ndjson
            """.write(to: dir.appendingPathComponent("payments.yaml"), atomically: true, encoding: .utf8)
        let sidecar = try start(CLI.binary, ["sidecar", "--config", "payments.yaml"], "payments-sidecar")
        let sidecarPort = sidecar.url.split(separator: ":").last!

        let key = "s3cret-alice-key"
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
                id: alice-id
                credentials:
                  key-auth:
                    - key_sha256: \(keyHash)
            routes:
              - name: payments
                rules:
                  - matches:
                      - path: {type: PathPrefix, value: /pay}
                    backendRefs:
                      - {name: payments, host: 127.0.0.1, port: \(sidecarPort), spiffe_id: spiffe://shop.example/ns/shop/sa/payments}
                auth:
                  methods: [key-auth]
            """.write(to: dir.appendingPathComponent("gateway.yaml"), atomically: true, encoding: .utf8)
        let gatewayPort = try M.Estate.freePort()
        let gateway = try start(CLI.binary, ["gateway", "--config", "gateway.yaml", "--listen", "127.0.0.1:\(gatewayPort)"], "gateway")
        #expect(gateway.lines[0] == "listening on http://127.0.0.1:\(gatewayPort)")

        let trace = "7bf92f3577b34da6a3ce929d0e0e4736"
        let ok = try M.curl(["-H", "apikey: \(key)", "-H", "traceparent: 00-\(trace)-00f067aa0ba902b7-01", "\(gateway.url)/pay/charge?x=1"], in: dir)
        #expect(ok.0 == 200, "\(ok.1) \(gateway.stderr)")
        // The app sees the gateway's SVID (through the sidecar's XFCC) and no API key.
        #expect(ok.1.contains("URI=spiffe://shop.example/ns/edge/sa/gateway"), "\(ok.1)")
        #expect(!ok.1.contains(key))
        // A key in the query string works too, and is not passed on.
        let viaQuery = try M.curl(["\(gateway.url)/pay/q?apikey=\(key)&y=2"], in: dir)
        #expect(viaQuery.0 == 200 && viaQuery.1.contains("\"path\": \"/pay/q?y=2\""), "\(viaQuery.1)")
        #expect(try M.curl(["\(gateway.url)/pay/charge"], in: dir).0 == 401)
        #expect(try M.curl(["-H", "apikey: wrong-key", "\(gateway.url)/pay/charge"], in: dir).0 == 401)
        #expect(try M.curl(["\(gateway.url)/pay/charge?apikey=wrong"], in: dir).0 == 401)

        var lines: [JSONValue] = []
        _ = M.eventually(5) {
            lines = M.accessLog(dir.appendingPathComponent("gateway-access.ndjson"))
            return lines.count >= 5
        }
        #expect(lines.count == 5)
        let text = (try? String(contentsOf: dir.appendingPathComponent("gateway-access.ndjson"), encoding: .utf8)) ?? ""
        #expect(!text.contains(key) && !text.contains("wrong-key"), "\(text)")
        if lines.count == 5 {
            #expect(lines[0]["consumer"]?["username"]?.string == "alice")
            #expect(lines[0]["credential_type"]?.string == "key-auth")
            #expect(lines[0]["client_ip"]?.string == "127.0.0.1")
            #expect(lines[0]["route"]?["name"]?.string == "payments")
            #expect(lines[0]["response"]?["status"]?.int == 200)
            #expect(lines[0]["trace_id"]?["w3c"]?.string == trace)
            #expect(lines[1]["response"]?["status"]?.int == 200)
            for line in lines[2...] {
                #expect(line["response"]?["status"]?.int == 401)
                #expect(line["route"]?["name"]?.string == "payments")
                #expect(line["refusal_reason"]?.string != nil)
                #expect(line["client_ip"]?.string == "127.0.0.1")
            }
            #expect(lines[3]["credential_type"]?.string == "key-auth")
        }

        // The analyst's chain: the gateway's consumer is the origin; the hop into payments carries its SPIFFE IDs.
        _ = M.eventually(5) { M.accessLog(dir.appendingPathComponent("payments-access.ndjson")).count >= 1 }
        let db = dir.appendingPathComponent("trail.db").path
        _ = try M.trail(["ingest", "--db", db, "-q", "gateway-access.ndjson", "payments-access.ndjson"], in: dir)
        let (status, out, err) = try M.run(CLI.binary.path, ["chain", trace, "--db", db, "--format", "json"], in: dir)
        #expect(status == 0, "\(err)")
        let chain = try? JSONParser.parse(Array(out.utf8))
        #expect(chain?["origin"]?["principal"]?.string == "alice", "\(out)")
        #expect(chain?["origin"]?["via_gateway"]?.bool == true, "\(out)")
        let hops = chain?["hops"]?.array ?? []
        #expect(hops.contains {
            $0["callee_spiffe_id"]?.string == "spiffe://shop.example/ns/shop/sa/payments"
                && $0["caller_spiffe_id"]?.string == "spiffe://shop.example/ns/edge/sa/gateway"
        }, "\(out)")
    }

    /// Edge TLS with optional partner client certificates: a partner's certificate is its credential (mtls), a
    /// caller without one still gets in with an API key; the backend here is plain HTTP (no spiffe_id).
    @Test func edgeTLSMapsAPartnerCertificateToItsConsumer() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-gateway-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var daemons: [M.Daemon] = []
        defer { for d in daemons.reversed() { d.stop() } }
        _ = try M.trail(["ca", "init", "--dir", "ca", "--trust-domain", "partners.example"], in: dir)
        _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://partners.example/acme", "--out", "acme"], in: dir)
        _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://partners.example/edge", "--ip", "127.0.0.1", "--out", "edge"], in: dir)
        let app = try M.Daemon(URL(fileURLWithPath: "/usr/bin/env"), ["python3", CLI.root.appendingPathComponent("fixtures/mesh/app.py").path, "0", "catalog"], dir: dir, name: "app")
        daemons.append(app)
        let key = "bob-key"
        let keyHash = String(try M.run("/bin/sh", ["-c", "printf %s '\(key)' | sha256sum"], in: dir).1.prefix(64))
        try """
            listen: 127.0.0.1:0
            tls: {cert: edge/svid.pem, key: edge/svid.key, client_ca: ca/bundle.pem}
            telemetry: {access_log: gateway-access.ndjson}
            consumers:
              - username: acme
                custom_id: acme-corp
                credentials: {mtls: [{spiffe_id: spiffe://partners.example/acme}]}
              - username: bob
                credentials: {key-auth: [{key_sha256: \(keyHash)}]}
            routes:
              - name: catalog
                rules:
                  - backendRefs: [{name: catalog, host: 127.0.0.1, port: \(app.lines[0].split(separator: " ")[1])}]
                auth: {methods: [mtls, key-auth]}
            """.write(to: dir.appendingPathComponent("gateway.yaml"), atomically: true, encoding: .utf8)
        let gateway = try M.Daemon(CLI.binary, ["gateway", "--config", "gateway.yaml"], dir: dir, name: "gateway")
        daemons.append(gateway)
        #expect(gateway.url.hasPrefix("https://127.0.0.1:"))
        let partner = try M.curl(["--cacert", "ca/bundle.pem", "--cert", "acme/svid.pem", "--key", "acme/svid.key", "\(gateway.url)/items"], in: dir)
        #expect(partner.0 == 200, "\(partner.1) \(gateway.stderr)")
        #expect(try M.curl(["--cacert", "ca/bundle.pem", "-H", "apikey: \(key)", "\(gateway.url)/items"], in: dir).0 == 200)
        #expect(try M.curl(["--cacert", "ca/bundle.pem", "\(gateway.url)/items"], in: dir).0 == 401)
        var lines: [JSONValue] = []
        _ = M.eventually(5) {
            lines = M.accessLog(dir.appendingPathComponent("gateway-access.ndjson"))
            return lines.count >= 3
        }
        #expect(lines.count == 3)
        if lines.count == 3 {
            #expect(lines[0]["credential_type"]?.string == "mtls")
            #expect(lines[0]["consumer"]?["username"]?.string == "acme")
            #expect(lines[0]["consumer"]?["custom_id"]?.string == "acme-corp")
            #expect(lines[0]["request"]?["tls"]?["client_verify"]?.string == "SUCCESS")
            #expect(lines[1]["consumer"]?["username"]?.string == "bob")
            #expect(lines[1]["credential_type"]?.string == "key-auth")
            #expect(lines[2]["response"]?["status"]?.int == 401)
        }
    }

    /// A partner CA made with openssl, as a partner would: `openssl ca` signs client certificates with explicit
    /// dates (OpenSSL 3.0's `x509` cannot backdate). Returns the paths of (certificate, key).
    static func partnerCertificate(
        ca: String, name: String, serial: String, startDate: String, endDate: String, in dir: URL
    ) throws -> (cert: String, key: String) {
        let caDir = dir.appendingPathComponent(ca)
        if !FileManager.default.fileExists(atPath: caDir.appendingPathComponent("ca.pem").path) {
            try FileManager.default.createDirectory(at: caDir, withIntermediateDirectories: true)
            try """
                [ca]
                default_ca = partner
                [partner]
                database = index.txt
                new_certs_dir = .
                certificate = ca.pem
                private_key = ca.key
                serial = serial.txt
                default_md = sha256
                policy = any
                unique_subject = no
                x509_extensions = leaf
                [any]
                commonName = supplied
                organizationName = optional
                [leaf]
                basicConstraints = critical,CA:false
                keyUsage = critical,digitalSignature
                extendedKeyUsage = clientAuth
                subjectAltName = URI:spiffe://partners.example/acme
                """.write(to: caDir.appendingPathComponent("ca.cnf"), atomically: true, encoding: .utf8)
            try "".write(to: caDir.appendingPathComponent("index.txt"), atomically: true, encoding: .utf8)
            let made = try M.run("/usr/bin/openssl", [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
                "-out", "ca.pem", "-days", "30", "-subj", "/CN=\(ca)/O=Partners",
            ], in: caDir)
            guard made.0 == 0 else { throw M.MeshTestError("openssl req -x509: \(made.2)") }
        }
        try "\(serial)\n".write(to: caDir.appendingPathComponent("serial.txt"), atomically: true, encoding: .utf8)
        let request = try M.run("/usr/bin/openssl", [
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(name).key",
            "-out", "\(name).csr", "-subj", "/CN=acme/O=Acme",
        ], in: caDir)
        guard request.0 == 0 else { throw M.MeshTestError("openssl req: \(request.2)") }
        let signed = try M.run("/usr/bin/openssl", [
            "ca", "-batch", "-config", "ca.cnf", "-in", "\(name).csr", "-out", "\(name).pem", "-notext",
            "-startdate", startDate, "-enddate", endDate,
        ], in: caDir)
        guard signed.0 == 0 else { throw M.MeshTestError("openssl ca: \(signed.2)") }
        return ("\(ca)/\(name).pem", "\(ca)/\(name).key")
    }

    /// A partner keeps calling with an expired client certificate: the handshake completes, the request is
    /// refused with 401 and logged with `FAILED:certificate has expired`, the certificate's serial and the
    /// partner consumer; a valid certificate gets 200 and SUCCESS; another CA's certificate still fails the
    /// handshake. Ingested, the log gives an expired-certificate finding naming the partner and the serial.
    @Test func expiredPartnerCertificateIsRefusedLoggedAndFound() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-gateway-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var daemons: [M.Daemon] = []
        defer { for d in daemons.reversed() { d.stop() } }
        _ = try M.trail(["ca", "init", "--dir", "ca", "--trust-domain", "edge.example"], in: dir)
        _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://edge.example/edge", "--ip", "127.0.0.1", "--out", "edge"], in: dir)
        let expired = try Self.partnerCertificate(
            ca: "partner", name: "expired", serial: "5AF0", startDate: "20250101000000Z", endDate: "20250201000000Z", in: dir)
        let valid = try Self.partnerCertificate(
            ca: "partner", name: "valid", serial: "5AF1", startDate: "20250101000000Z", endDate: "20991231000000Z", in: dir)
        let foreign = try Self.partnerCertificate(
            ca: "foreign", name: "foreign", serial: "5AF2", startDate: "20250101000000Z", endDate: "20991231000000Z", in: dir)
        let expiredSerial = try M.serial(ofPEM: expired.cert, in: dir)
        let validSerial = try M.serial(ofPEM: valid.cert, in: dir)
        #expect(expiredSerial == "5af0")

        let app = try M.Daemon(URL(fileURLWithPath: "/usr/bin/env"), ["python3", CLI.root.appendingPathComponent("fixtures/mesh/app.py").path, "0", "catalog"], dir: dir, name: "app")
        daemons.append(app)
        try """
            listen: 127.0.0.1:0
            tls: {cert: edge/svid.pem, key: edge/svid.key, client_ca: partner/ca.pem}
            telemetry: {access_log: gateway-access.ndjson}
            consumers:
              - username: acme
                custom_id: acme-corp
                credentials: {mtls: [{spiffe_id: spiffe://partners.example/acme}]}
            routes:
              - name: catalog
                rules:
                  - backendRefs: [{name: catalog, host: 127.0.0.1, port: \(app.lines[0].split(separator: " ")[1])}]
                auth: {methods: [mtls]}
            """.write(to: dir.appendingPathComponent("gateway.yaml"), atomically: true, encoding: .utf8)
        let gateway = try M.Daemon(CLI.binary, ["gateway", "--config", "gateway.yaml"], dir: dir, name: "gateway")
        daemons.append(gateway)

        let refused = try M.curl(["--cacert", "ca/bundle.pem", "--cert", expired.cert, "--key", expired.key, "\(gateway.url)/items"], in: dir)
        #expect(refused.0 == 401, "\(refused.1) \(gateway.stderr)")
        #expect(try JSONParser.parse(Array(refused.1.utf8))["message"]?.string == "client certificate has expired")
        let ok = try M.curl(["--cacert", "ca/bundle.pem", "--cert", valid.cert, "--key", valid.key, "\(gateway.url)/items"], in: dir)
        #expect(ok.0 == 200, "\(ok.1) \(gateway.stderr)")
        // Another CA's certificate fails the handshake as before: no HTTP status, nothing logged.
        #expect(try M.curl(["--cacert", "ca/bundle.pem", "--cert", foreign.cert, "--key", foreign.key, "\(gateway.url)/items"], in: dir).0 == 0)
        // The app saw only the valid partner's request.
        var lines: [JSONValue] = []
        _ = M.eventually(5) {
            lines = M.accessLog(dir.appendingPathComponent("gateway-access.ndjson"))
            return lines.count >= 2
        }
        Thread.sleep(forTimeInterval: 0.3)
        lines = M.accessLog(dir.appendingPathComponent("gateway-access.ndjson"))
        #expect(lines.count == 2)
        guard lines.count == 2 else { return }
        let refusedTLS = lines[0]["request"]?["tls"]
        #expect(lines[0]["response"]?["status"]?.int == 401)
        #expect(refusedTLS?["client_verify"]?.string == "FAILED:certificate has expired")
        #expect(refusedTLS?["client_certificate"]?["serial"]?.string == expiredSerial)
        #expect(refusedTLS?["client_certificate"]?["not_after"]?.string == "2025-02-01T00:00:00Z")
        #expect(refusedTLS?["client_certificate"]?["spiffe_id"]?.string == "spiffe://partners.example/acme")
        #expect(refusedTLS?["client_certificate"]?["subject"]?.string?.contains("CN=acme") == true)
        #expect(refusedTLS?["client_certificate"]?["sha256"]?.string?.count == 64)
        #expect(lines[0]["consumer"]?["username"]?.string == "acme")
        #expect(lines[0]["refusal_reason"]?.string == "client certificate has expired")
        #expect(lines[0]["service"] == nil)
        #expect(lines[1]["response"]?["status"]?.int == 200)
        #expect(lines[1]["request"]?["tls"]?["client_verify"]?.string == "SUCCESS")
        #expect(lines[1]["request"]?["tls"]?["client_certificate"]?["serial"]?.string == validSerial)
        #expect(lines[1]["consumer"]?["username"]?.string == "acme")

        // Evidence: ingest the gateway's log; the refusal is an expired-certificate finding naming the partner.
        let db = dir.appendingPathComponent("trail.db").path
        _ = try M.trail(["ingest", "--db", db, "gateway-access.ndjson"], in: dir)
        let out = try M.trail(["findings", "--db", db, "--format", "json"], in: dir)
        let findings = try JSONParser.parse(Array(out.utf8))
        let all = findings.array ?? findings["findings"]?.array ?? []
        let expiredFindings = all.filter { $0["kind"]?.string == "expired-certificate" }
        #expect(expiredFindings.count == 1, "\(out)")
        #expect(expiredFindings.first?["principal"]?.string == "acme", "\(out)")
        #expect(expiredFindings.first?["serial"]?.string == expiredSerial, "\(out)")
        // The valid partner certificate is no finding (partners are not issued by the mesh CA).
        #expect(!all.contains { $0["serial"]?.string == validSerial }, "\(out)")
    }
}
