import Foundation
import Testing
import TrailCore

/// `trail ca`, `trail sidecar` and `trail serve` as real processes on loopback, with real clients: curl and
/// openssl s_client with client certificates, py-spiffe, and two small Python apps behind two sidecars.
@Suite("trail ca and trail sidecar with real clients", .serialized)
struct MeshTests {
    /// A process started from the test that prints a ready line first (`listening on URL`, `ready PORT`).
    final class Daemon {
        let process = Process()
        /// The first `lines` lines of stdout.
        var lines: [String] = []
        let errPath: String

        init(_ executable: URL, _ arguments: [String], dir: URL, name: String, lines count: Int = 1) throws {
            process.executableURL = executable
            process.arguments = arguments
            process.currentDirectoryURL = dir
            errPath = dir.appendingPathComponent("\(name).err").path
            FileManager.default.createFile(atPath: errPath, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: errPath)
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            let handle = out.fileHandleForReading
            var line = [UInt8]()
            while lines.count < count {
                let byte = handle.readData(ofLength: 1)
                guard let b = byte.first else { break }
                if b == 0x0A {
                    lines.append(String(decoding: line, as: UTF8.self))
                    line = []
                } else {
                    line.append(b)
                }
            }
            guard lines.count == count else {
                process.terminate()
                throw MeshTestError("\(name) did not start: \(lines) \((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")")
            }
        }

        var url: String { String(lines[0].split(separator: " ").last ?? "") }
        var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

        /// SIGTERM, then SIGKILL after 10 s (children inherit the test runner's blocked signal mask, so a process
        /// without its own signal handling may never see SIGTERM).
        func stop() {
            guard process.isRunning else { return }
            process.terminate()
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    struct MeshTestError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// Runs a program; returns (exit status, stdout, stderr).
    @discardableResult
    static func run(_ path: String, _ arguments: [String], in dir: URL) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        p.currentDirectoryURL = dir
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    static func trail(_ arguments: [String], in dir: URL) throws -> String {
        let (status, out, err) = try run(CLI.binary.path, arguments, in: dir)
        guard status == 0 else { throw MeshTestError("trail \(arguments.joined(separator: " ")) failed (\(status)): \(err)") }
        return out
    }

    /// curl; returns (HTTP status or 0 when the connection failed, body).
    static func curl(_ arguments: [String], in dir: URL) throws -> (Int, String) {
        let (_, out, _) = try run("/usr/bin/curl", ["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"] + arguments, in: dir)
        let parts = out.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(parts.last ?? "") ?? 0, parts.dropLast().joined(separator: "\n"))
    }

    static func serial(ofPEM path: String, in dir: URL) throws -> String {
        let (_, out, _) = try run("/usr/bin/openssl", ["x509", "-in", path, "-noout", "-serial"], in: dir)
        return CertificateSerial.normalize(String(out.split(separator: "=").last ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? ""
    }

    static func accessLog(_ path: URL) -> [JSONValue] {
        guard let text = try? String(contentsOf: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONParser.parse(Array($0.utf8)) }
    }

    /// Waits up to `seconds` for `condition`.
    static func eventually(_ seconds: Double = 15, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return try condition()
    }

    /// A CA, `trail serve`, and web → orders → payments: orders' sidecar is PERMISSIVE with an outbound route to
    /// payments; payments' sidecar is STRICT and only lets orders call `/pay*`.
    final class Estate {
        let dir: URL
        var daemons: [Daemon] = []
        var serveURL = ""
        var caURL = ""
        var ordersInbound = ""
        var ordersOutbound = ""
        var paymentsInbound = ""
        var paymentsAdmin = ""
        let db: String

        init(svidTTL: Int = 3600, refreshSeconds: Int = 1) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-mesh-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            db = dir.appendingPathComponent("trail.db").path
            _ = try trail(["ca", "init", "--dir", "ca", "--trust-domain", "shop.example", "--svid-ttl", String(svidTTL)], in: dir)
            _ = try trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/trail/serve", "--ip", "127.0.0.1", "--out", "serve"], in: dir)
            let serve = try start(CLI.binary, [
                "serve", "--db", db, "--listen", "127.0.0.1:0", "--tls-cert", "serve/svid.pem", "--tls-key", "serve/svid.key",
                "--client-ca", "ca/bundle.pem", "--allow", "shop.example",
            ], "serve")
            serveURL = serve.url
            caURL = try start(CLI.binary, ["ca", "serve", "--dir", "ca", "--listen", "127.0.0.1:0", "--ingest", serveURL], "ca").url
            for name in ["orders", "payments"] {
                _ = try trail(["ca", "token", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/shop/sa/\(name)", "--out", "\(name).token"], in: dir)
            }
            try """
                apiVersion: security.istio.io/v1
                kind: AuthorizationPolicy
                metadata:
                  name: payments-from-orders
                  namespace: shop
                spec:
                  action: ALLOW
                  rules:
                  - from:
                    - source:
                        principals: ["shop.example/ns/shop/sa/orders"]
                    to:
                    - operation:
                        paths: ["/pay*"]
                ---
                apiVersion: security.istio.io/v1
                kind: AuthorizationPolicy
                metadata:
                  name: refunds-need-approval
                  namespace: shop
                  annotations:
                    istio.io/dry-run: "true"
                spec:
                  action: DENY
                  rules:
                  - to:
                    - operation:
                        paths: ["/pay/refund"]
                """.write(to: dir.appendingPathComponent("payments-policy.yaml"), atomically: true, encoding: .utf8)
            let python = URL(fileURLWithPath: "/usr/bin/env")
            let app = CLI.root.appendingPathComponent("fixtures/mesh/app.py").path
            let paymentsApp = try start(python, ["python3", app, "0", "payments"], "payments-app")
            try sidecarConfig("payments", appPort: paymentsApp.lines[0].split(separator: " ")[1], mode: "STRICT", refresh: refreshSeconds,
                              extra: "  policies: [payments-policy.yaml]\n", outbound: "admin:\n  listen: 127.0.0.1:0\n")
            let payments = try start(CLI.binary, ["sidecar", "--config", "payments.yaml"], "payments-sidecar", lines: 2)
            paymentsInbound = payments.url
            paymentsAdmin = String(payments.lines[1].split(separator: " ").last ?? "")
            let paymentsPort = paymentsInbound.split(separator: ":").last!
            // orders' outbound port must be known to its app: bind it first with a fixed free port.
            let outboundPort = try Self.freePort()
            let ordersApp = try start(python, ["python3", app, "0", "orders", "http://127.0.0.1:\(outboundPort)", "payments"], "orders-app")
            try sidecarConfig("orders", appPort: ordersApp.lines[0].split(separator: " ")[1], mode: "PERMISSIVE", refresh: refreshSeconds, extra: "", outbound: """
                outbound:
                  listen: 127.0.0.1:\(outboundPort)
                  upstreams:
                  - name: payments
                    address: 127.0.0.1:\(paymentsPort)
                    spiffe_id: spiffe://shop.example/ns/shop/sa/payments

                """)
            let orders = try start(CLI.binary, ["sidecar", "--config", "orders.yaml"], "orders-sidecar", lines: 2)
            ordersInbound = orders.url
            ordersOutbound = String(orders.lines[1].split(separator: " ").last ?? "")
        }

        func start(_ executable: URL, _ arguments: [String], _ name: String, lines: Int = 1) throws -> Daemon {
            let d = try Daemon(executable, arguments, dir: dir, name: name, lines: lines)
            daemons.append(d)
            return d
        }

        func sidecarConfig(_ name: String, appPort: Substring, mode: String, refresh: Int, extra: String, outbound: String = "") throws {
            try """
                spiffe_id: spiffe://shop.example/ns/shop/sa/\(name)
                service: \(name)
                trust_bundle: ca/bundle.pem
                ca:
                  url: \(caURL)
                  join_token_file: \(name).token
                  state_dir: \(name)-state
                  refresh_seconds: \(refresh)
                inbound:
                  listen: 127.0.0.1:0
                  app: 127.0.0.1:\(appPort)
                  mode: \(mode)
                \(extra)\(outbound)telemetry:
                  ingest: \(serveURL)
                  access_log: \(name)-access.ndjson
                  buffer_dir: \(name)-buffer
                  flush_ms: 100
                """.write(to: dir.appendingPathComponent("\(name).yaml"), atomically: true, encoding: .utf8)
        }

        /// A port that is free now, picked below Linux's ephemeral range (32768–60999) so that no other
        /// test's outgoing connection takes it before the daemon binds it.
        static func freePort() throws -> Int {
            for _ in 0..<200 {
                let port = Int.random(in: 20000..<32768)
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var addr = sockaddr_in()
                addr.sin_family = sa_family_t(AF_INET)
                addr.sin_addr.s_addr = inet_addr("127.0.0.1")
                addr.sin_port = UInt16(port).bigEndian
                let bound = withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                close(fd)
                if bound == 0 { return port }
            }
            throw MeshTestError("no free port in 20000..<32768")
        }

        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

        func chain(_ trace: String) throws -> JSONValue? {
            let (status, out, _) = try run(CLI.binary.path, ["chain", trace, "--db", db, "--format", "json"], in: dir)
            return status == 0 ? try? JSONParser.parse(Array(out.utf8)) : nil
        }

        func stop() {
            for d in daemons.reversed() { d.stop() }
        }
    }

    @Test func twoSidecarsBindIdentityToEveryHopAndRefuseBadCertificates() throws {
        let estate = try Estate()
        defer { estate.stop() }
        let dir = estate.dir
        // Clients' certificates: a valid workload, one expiring in 10 s, another trust domain, self-signed, two URI SANs.
        _ = try Self.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/shop/sa/web", "--out", "web"], in: dir)
        _ = try Self.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/shop/sa/orders", "--ttl", "10", "--out", "short"], in: dir)
        let shortIssued = Date()
        _ = try Self.trail(["ca", "init", "--dir", "other-ca", "--trust-domain", "other.example"], in: dir)
        _ = try Self.trail(["ca", "issue", "--dir", "other-ca", "--spiffe-id", "spiffe://other.example/ns/shop/sa/orders", "--out", "other"], in: dir)
        try Self.run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "self.key", "-out", "self.pem",
            "-days", "1", "-subj", "/CN=self", "-addext", "subjectAltName=URI:spiffe://shop.example/ns/shop/sa/orders",
            "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=critical,digitalSignature",
        ], in: dir)
        try Self.run("/usr/bin/openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "two.key", "-out", "two.csr", "-subj", "/CN=two"], in: dir)
        try "subjectAltName=URI:spiffe://shop.example/ns/shop/sa/orders,URI:spiffe://shop.example/ns/shop/sa/admin\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n"
            .write(to: dir.appendingPathComponent("two.ext"), atomically: true, encoding: .utf8)
        try Self.run("/usr/bin/openssl", ["x509", "-req", "-in", "two.csr", "-CA", "ca/ca.pem", "-CAkey", "ca/ca.key", "-CAcreateserial", "-days", "1", "-extfile", "two.ext", "-out", "two.pem"], in: dir)

        // The CA's output passes openssl and py-spiffe.
        #expect(try Self.run("/usr/bin/openssl", ["verify", "-CAfile", "ca/bundle.pem", "web/svid.pem"], in: dir).0 == 0)
        let crlCheck = try Self.run("/usr/bin/openssl", ["crl", "-in", "ca/crl.pem", "-CAfile", "ca/bundle.pem", "-noout"], in: dir)
        #expect(crlCheck.2.contains("verify OK"), "openssl: \(crlCheck.2)")
        let spiffe = try Self.run("/usr/bin/env", [
            "python3", CLI.root.appendingPathComponent("fixtures/mesh/check_svid.py").path, "shop.example", "ca/bundle.pem",
            "spiffe://shop.example/ns/shop/sa/web", "web/svid.pem", "web/svid.key", "two.pem", "two.key",
        ], in: dir)
        #expect(spiffe.0 == 0, "py-spiffe: \(spiffe.1) \(spiffe.2)")

        // The sidecar presents its SVID (openssl s_client).
        let hostPort = estate.paymentsInbound.replacingOccurrences(of: "https://", with: "")
        let sclient = try Self.run("/bin/sh", ["-c", "echo | openssl s_client -connect \(hostPort) -cert web/svid.pem -key web/svid.key -CAfile ca/bundle.pem 2>/dev/null | openssl x509 -noout -ext subjectAltName"], in: dir)
        #expect(sclient.1.contains("URI:spiffe://shop.example/ns/shop/sa/payments"), "s_client: \(sclient.1)")

        // web → orders (mTLS) → payments (mTLS): the apps see who called them.
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        let (status, body) = try Self.curl([
            "--cacert", "ca/bundle.pem", "--cert", "web/svid.pem", "--key", "web/svid.key", "-k",
            "-H", "traceparent: 00-\(trace)-00f067aa0ba902b7-01", "-d", "amount=5", "\(estate.ordersInbound)/pay/charge",
        ], in: dir)
        #expect(status == 200, "\(body)")
        #expect(body.contains("URI=spiffe://shop.example/ns/shop/sa/web"))
        #expect(body.contains("URI=spiffe://shop.example/ns/shop/sa/orders"))

        // A large body streams through the sidecar (reading pauses while the app's socket is full).
        let big = dir.appendingPathComponent("big.bin")
        try Data(repeating: 0x61, count: 8 << 20).write(to: big)
        let upload = try Self.curl([
            "-k", "--cert", "web/svid.pem", "--key", "web/svid.key", "--data-binary", "@big.bin", "\(estate.ordersInbound)/pay/upload",
        ], in: dir)
        #expect(upload.0 == 200, "\(upload.1)")
        #expect(try Self.eventually(5) {
            Self.accessLog(dir.appendingPathComponent("orders-access.ndjson")).contains { $0["path"]?.string == "/pay/upload" && $0["bytes_received"]?.int == 8 << 20 }
        })

        // Plaintext into PERMISSIVE orders is served and recorded.
        let plainTrace = "5bf92f3577b34da6a3ce929d0e0e4736"
        #expect(try Self.curl(["-H", "traceparent: 00-\(plainTrace)-00f067aa0ba902b7-01", "\(estate.ordersInbound.replacingOccurrences(of: "https", with: "http"))/pay/x"], in: dir).0 == 200)
        // A dry-run policy would deny refunds: served, recorded, and found.
        let refundTrace = "6bf92f3577b34da6a3ce929d0e0e4736"
        #expect(try Self.curl([
            "-k", "--cert", "web/svid.pem", "--key", "web/svid.key", "-H", "traceparent: 00-\(refundTrace)-00f067aa0ba902b7-01",
            "\(estate.ordersInbound)/pay/refund",
        ], in: dir).0 == 200)
        // web may not call payments: the policy denies it.
        #expect(try Self.curl(["-k", "--cert", "web/svid.pem", "--key", "web/svid.key", "\(estate.paymentsInbound)/pay/x"], in: dir).0 == 403)

        // After ingestion the chain shows both hops with their SPIFFE IDs and serials.
        let webSerial = try Self.serial(ofPEM: "web/svid.pem", in: dir)
        let ordersSerial = try Self.serial(ofPEM: "orders-state/svid.pem", in: dir)
        var hops: [JSONValue] = []
        _ = try Self.eventually {
            hops = try estate.chain(trace)?["hops"]?.array ?? []
            return hops.count >= 2
        }
        #expect(hops.count == 2, "hops: \(hops)")
        if hops.count == 2 {
            #expect(hops[0]["caller_spiffe_id"]?.string == "spiffe://shop.example/ns/shop/sa/web")
            #expect(hops[0]["callee_spiffe_id"]?.string == "spiffe://shop.example/ns/shop/sa/orders")
            #expect(hops[0]["serial"]?.string == webSerial)
            #expect(hops[0]["transport"]?.string == "mtls")
            #expect(hops[1]["caller_spiffe_id"]?.string == "spiffe://shop.example/ns/shop/sa/orders")
            #expect(hops[1]["callee_spiffe_id"]?.string == "spiffe://shop.example/ns/shop/sa/payments")
            #expect(hops[1]["serial"]?.string == ordersSerial)
            #expect(hops[1]["certificate"]?.string == "valid")
            #expect(hops[1]["parent"]?.int == 0)
        }
        #expect(try Self.eventually { try Self.trail(["findings", "--db", estate.db, "--format", "json", "--kind", "plaintext-hop"], in: dir).contains(plainTrace) })
        #expect(try Self.eventually { try Self.trail(["findings", "--db", estate.db, "--format", "json", "--kind", "dry-run-denied"], in: dir).contains(refundTrace) })
        #expect(Self.accessLog(dir.appendingPathComponent("payments-access.ndjson")).contains {
            $0["policy"]?.string == "dry-run-deny" && $0["policy_name"]?.string == "ns[shop]-policy[refunds-need-approval]"
        })

        // Refused certificates: each refusal is in the payments sidecar's access log with its reason.
        let refusals: [(String, [String], String)] = [
            ("no certificate", [], "no client certificate"),
            ("another trust domain", ["--cert", "other/svid.pem", "--key", "other/svid.key"], "not in trust domain shop.example"),
            ("self-signed", ["--cert", "self.pem", "--key", "self.key"], "does not chain to the trust bundle"),
            ("two URI SANs", ["--cert", "two.pem", "--key", "two.key"], "2 URI SANs"),
        ]
        for (what, args, reason) in refusals {
            #expect(try Self.curl(["-k"] + args + ["\(estate.paymentsInbound)/pay/x"], in: dir).0 == 0, "\(what) was not refused")
            #expect(try Self.eventually(5) { Self.accessLog(dir.appendingPathComponent("payments-access.ndjson")).contains { $0["refusal_reason"]?.string?.contains(reason) == true } },
                    "\(what): no refusal saying '\(reason)'")
        }
        // Expired: the 10-second SVID.
        Thread.sleep(forTimeInterval: max(0, 11.5 - Date().timeIntervalSince(shortIssued)))
        #expect(try Self.curl(["-k", "--cert", "short/svid.pem", "--key", "short/svid.key", "\(estate.paymentsInbound)/pay/x"], in: dir).0 == 0)
        #expect(try Self.eventually(5) { Self.accessLog(dir.appendingPathComponent("payments-access.ndjson")).contains { $0["refusal_reason"]?.string?.contains("expired") == true } })

        // Revoked: orders keeps calling after the CA revokes it; payments refuses, and says why.
        _ = try Self.trail(["ca", "revoke", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/shop/sa/orders", "--reason", "keyCompromise"], in: dir)
        var refusedAfterRevocation = false
        _ = try Self.eventually {
            let (s, _) = try Self.curl(["-k", "--cert", "web/svid.pem", "--key", "web/svid.key", "\(estate.ordersInbound)/pay/y"], in: dir)
            refusedAfterRevocation = s == 403 || s == 503
            return refusedAfterRevocation
        }
        #expect(refusedAfterRevocation, "payments still accepts orders' revoked certificate")
        let revokedLine = Self.accessLog(dir.appendingPathComponent("payments-access.ndjson")).last { $0["refusal_reason"]?.string?.contains("revoked") == true }
        #expect(revokedLine?["downstream_peer_serial"]?.string == ordersSerial)
        #expect(revokedLine?["downstream_peer_uri_san"]?.string == "spiffe://shop.example/ns/shop/sa/orders")
        // The analyst sees the revoked certificate still being presented, with its serial.
        #expect(try Self.eventually {
            try Self.trail(["findings", "--db", estate.db, "--format", "json", "--kind", "revoked-certificate"], in: dir).contains(ordersSerial)
        })
        // Every line the sidecars and the CA delivered was read: nothing rejected, refusals included.
        let rejects = try Self.trail(["rejects", "--db", estate.db, "--format", "json"], in: dir)
        #expect(try JSONParser.parse(Array(rejects.utf8)).array?.isEmpty == true, "rejected: \(rejects)")
        // The admin endpoint counts what happened, by cause.
        let (metricsStatus, metrics) = try Self.curl(["\(estate.paymentsAdmin)/metrics"], in: dir)
        #expect(metricsStatus == 200)
        // The revoked certificate is refused on orders' pooled connection ("certificate"), or at a new handshake when
        // that connection was closed first (a slow machine).
        let revokedCause = revokedLine?["response_code_details"]?.string == "peer_certificate_rejected" ? "certificate" : "handshake"
        for cause in ["handshake", "policy", revokedCause] {
            #expect(metrics.contains("trail_sidecar_refusals_total{direction=\"inbound\",cause=\"\(cause)\"}"), "\(metrics)")
        }
        #expect(metrics.contains("trail_sidecar_crl_revoked_certificates 1"))
        #expect(try Self.curl(["\(estate.paymentsAdmin)/healthz"], in: dir).0 == 200)
        // The CA's events reached the store: orders' serial is revoked there too.
        #expect(try Self.eventually { try Self.trail(["identities", "--db", estate.db, "--format", "json"], in: dir).contains("revoked") })
    }
}

extension MeshTests {
    /// Both sidecars renew their 10-second SVIDs at half-life, twice or more during 13 s of traffic through
    /// web → orders → payments, with new connections and reused ones: no request fails.
    @Test func rotationUnderLoadLosesNoRequest() throws {
        let estate = try Estate(svidTTL: 10, refreshSeconds: 1)
        defer { estate.stop() }
        let plain = estate.ordersInbound.replacingOccurrences(of: "https", with: "http")
        let (status, out, err) = try Self.run("/usr/bin/env", [
            "python3", CLI.root.appendingPathComponent("fixtures/mesh/load.py").path, "\(plain)/pay/load", "13", "4",
        ], in: estate.dir)
        #expect(status == 0, "\(err)")
        let result = try JSONParser.parse(Array(out.utf8))
        #expect((result["requests"]?.int ?? 0) > 100, "\(out)")
        #expect(result["failures"]?.int == 0, "\(out)")
        let events = try String(contentsOf: estate.dir.appendingPathComponent("ca/events.ndjson"), encoding: .utf8)
        for name in ["orders", "payments"] {
            let renewals = events.split(separator: "\n").filter { $0.contains("\"renewed\"") && $0.contains("/sa/\(name)\"") }.count
            #expect(renewals >= 2, "\(name) renewed \(renewals) times")
        }
    }
}
