import ArgumentParser
import Foundation
import TrailMesh

struct CA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca",
        abstract: "A SPIFFE trust domain's certificate authority: X509-SVIDs, join tokens, revocation, CRL and trust bundle.",
        subcommands: [CAInit.self, CAServe.self, CAIssue.self, CAToken.self, CARevoke.self])
}

struct CAInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Create a CA in DIR: a root (or an intermediate under --root-cert/--root-key), bundle and CRL.")
    @Option(name: .long, help: "Directory for the CA's files (created; must not hold a CA).") var dir: String
    @Option(name: .long, help: "The trust domain, e.g. shop.example.") var trustDomain: String
    @Option(name: .long, help: "Default SVID lifetime in seconds.") var svidTTL = 3600
    @Option(name: .long, help: "CRL lifetime (nextUpdate) in seconds.") var crlTTL = 86_400
    @Option(name: .long, help: "Root certificate (PEM) to sign an intermediate CA with.") var rootCert: String?
    @Option(name: .long, help: "The root's private key (PEM, ECDSA P-256).") var rootKey: String?

    func run() throws {
        try runReporting {
            let ca = try CertificateAuthority.initialize(
                directory: dir, trustDomain: trustDomain, svidTTLSeconds: svidTTL, crlTTLSeconds: crlTTL,
                rootCertificatePath: rootCert, rootKeyPath: rootKey)
            writeOut("""
                created CA for trust domain \(ca.trustDomain) in \(dir)
                trust bundle: \(dir)/bundle.pem (give it to every sidecar as trust_bundle)

                """)
        }
    }
}

struct CAServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the workload API: SVIDs for join tokens, renewal over mTLS, trust bundle and CRL; ship identity events.",
        discussion: "The first line on stdout is `listening on URL`.")
    @Option(name: .long, help: "The CA directory (trail ca init).") var dir: String
    @Option(name: .long, help: "HOST:PORT to listen on (port 0 picks a free one).") var listen = "127.0.0.1:8600"
    @Option(name: .long, help: "A trail serve URL to send identity events to (repeatable).") var ingest: [String] = []
    @Option(name: .long, help: "Bearer token file for --ingest (default: mTLS with the CA's own SVID).") var ingestTokenFile: String?

    func run() async throws {
        do {
            let ca = try CertificateAuthority.open(directory: dir)
            guard let (host, port) = splitHostPort(listen) else { throw CLIError("--listen '\(listen)' must be HOST:PORT") }
            let server = CAServer(ca: ca, host: host, port: port, ingest: ingest, ingestTokenFile: ingestTokenFile) { printError($0) }
            let url = try await server.start()
            writeOut("listening on \(url.absoluteString)\n")
            await SignalWaiter.waitForTermination()
            await server.stop()
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }
}

struct CAIssue: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue", abstract: "Issue an X509-SVID with a new key into OUT (svid.pem, svid.key, bundle.pem), for workloads outside the mesh and tests.")
    @Option(name: .long, help: "The CA directory.") var dir: String
    @Option(name: .long, help: "The workload's SPIFFE ID.") var spiffeID: String
    @Option(name: .long, help: "Output directory.") var out: String
    @Option(name: .long, help: "Lifetime in seconds (default: the CA's).") var ttl: Int?
    @Option(name: .long, help: "Extra DNS SAN (repeatable), for servers reached by name.") var dns: [String] = []
    @Option(name: .long, help: "Extra IP SAN (repeatable).") var ip: [String] = []

    func run() throws {
        try runReporting {
            let ca = try CertificateAuthority.open(directory: dir)
            let (svid, key) = try ca.issueWithNewKey(spiffeID: spiffeID, ttlSeconds: ttl, dnsNames: dns, ipAddresses: ip)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try MeshFiles.write(svid.chainPEM, to: "\(out)/svid.pem")
            try MeshFiles.write(key, to: "\(out)/svid.key", mode: 0o600)
            try MeshFiles.write(svid.bundlePEM, to: "\(out)/bundle.pem")
            writeOut("issued \(svid.spiffeID) serial \(svid.serial), valid until \(ISO8601DateFormatter().string(from: svid.notAfter)), in \(out)\n")
        }
    }
}

struct CAToken: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Make a single-use join token for a workload's SPIFFE ID (printed once; only its hash is kept).")
    @Option(name: .long, help: "The CA directory.") var dir: String
    @Option(name: .long, help: "The workload's SPIFFE ID.") var spiffeID: String
    @Option(name: .long, help: "Seconds the token stays valid.") var ttl = 3600
    @Option(name: .long, help: "Write the token to this file (0600) instead of stdout.") var out: String?

    func run() throws {
        try runReporting {
            let token = try CertificateAuthority.open(directory: dir).createJoinToken(spiffeID: spiffeID, ttlSeconds: ttl)
            if let out {
                try MeshFiles.write(token + "\n", to: out, mode: 0o600)
            } else {
                writeOut(token + "\n")
            }
        }
    }
}

struct CARevoke: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Revoke SVIDs by serial or SPIFFE ID; rewrites the CRL and records revoked events.")
    @Option(name: .long, help: "The CA directory.") var dir: String
    @Option(name: .long, help: "Certificate serial (hex; colons allowed).") var serial: String?
    @Option(name: .long, help: "Revoke every unexpired SVID of this SPIFFE ID.") var spiffeID: String?
    @Option(name: .long, help: "RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, ...") var reason = "unspecified"

    func validate() throws {
        if (serial == nil) == (spiffeID == nil) { throw ValidationError("give exactly one of --serial or --spiffe-id") }
    }

    func run() throws {
        try runReporting {
            let revoked = try CertificateAuthority.open(directory: dir).revoke(serial: serial, spiffeID: spiffeID, reason: reason)
            if revoked.isEmpty { writeOut("already revoked; nothing changed\n") }
            for r in revoked { writeOut("revoked \(r.spiffeID) serial \(r.serial) (\(r.reason))\n") }
        }
    }
}

struct SidecarCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecar",
        abstract: "Run one workload's mTLS sidecar: SPIFFE identity, authorization policy, access logs and spans to trail serve.",
        discussion: "The first line on stdout is `listening on URL` (the inbound mTLS listener); then `outbound on URL` and `admin on URL` when configured.")
    @Option(name: .long, help: "The sidecar's YAML config file.") var config: String

    func run() async throws {
        do {
            let configuration = try SidecarConfiguration.load(file: config)
            let sidecar = try Sidecar(configuration: configuration, threads: configuration.concurrency) { printError($0) }
            let urls = try await sidecar.start()
            writeOut("listening on \(urls.inbound)\n")
            if let outbound = urls.outbound { writeOut("outbound on \(outbound)\n") }
            if let admin = urls.admin { writeOut("admin on \(admin)\n") }
            await SignalWaiter.waitForTermination()
            await sidecar.stop()
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }
}

func splitHostPort(_ text: String) -> (String, Int)? {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else { return nil }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return host.isEmpty ? nil : (host, port)
}
