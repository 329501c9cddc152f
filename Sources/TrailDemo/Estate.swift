import Crypto
import Foundation
import TrailCore

/// Starts and stops the demo's estate, each component the real one in its own process: `trail serve` on the
/// store, `trail ca serve` for `shop.example`, a sample service with a `trail sidecar` in front of it for each
/// service of ``DemoTopology``, and `trail gateway` with edge TLS, JWT users, an API-key integration and a partner
/// authenticated by client certificate. Every file lives in `directory`; every port is picked free by the kernel.
public final class Estate: @unchecked Sendable {
    public let directory: String
    let trail: String
    let database: String
    let progress: @Sendable (String) -> Void
    private var children: [ChildProcess] = []
    private let lock = NSLock()

    public private(set) var serveURL = ""
    public private(set) var caURL = ""
    public private(set) var gatewayURL = ""
    /// Inbound (mTLS) listener of each service's sidecar.
    public private(set) var inbound: [String: String] = [:]
    /// Each sample service's own port, where the demo drives its control endpoint.
    public private(set) var appPorts: [String: Int] = [:]
    public let controlToken = SampleService.randomHex(16)
    public let apiKey = "sk_live_" + SampleService.randomHex(12)
    let tokens = TokenIssuer(issuer: "https://id.shop.example", audience: "shop-api")

    /// The consumers the gateway knows, with what they use.
    public static let users = ["alice", "bob", "carol"]
    public static let integration = "stock-sync"
    public static let partner = "partner-acme"
    public static let partnerSPIFFEID = "spiffe://partners.example/acme/billing"

    public init(directory: String, trailExecutable: String, database: String, progress: @escaping @Sendable (String) -> Void) {
        self.directory = directory
        self.trail = trailExecutable
        self.database = database
        self.progress = progress
    }

    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    /// Runs `trail ARGS` to completion; returns its stdout.
    @discardableResult
    func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: trail)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw DemoError("trail \(arguments.joined(separator: " ")) failed (exit \(process.terminationStatus)): "
                + String(decoding: stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return String(decoding: stdout, as: UTF8.self)
    }

    func start(_ name: String, _ arguments: [String], readyLines: Int = 1) throws -> ChildProcess {
        let child = try ChildProcess(
            name: name, executable: trail, arguments: arguments, logPath: path("\(name).log"), readyLines: readyLines)
        lock.withLock { children.append(child) }
        return child
    }

    /// Writes a file of the estate, readable by its owner only (tokens, keys, configurations).
    func write(_ name: String, _ text: String) throws {
        let p = path(name)
        guard FileManager.default.createFile(atPath: p, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw DemoError("cannot write \(p)")
        }
    }

    /// Creates the CA and every credential, then starts the components, callees before callers.
    public func start() throws {
        let td = DemoTopology.trustDomain
        progress("certificate authority for \(td)")
        try run(["ca", "init", "--dir", path("ca"), "--trust-domain", td, "--svid-ttl", "3600"])
        try run(["ca", "issue", "--dir", path("ca"), "--spiffe-id", DemoTopology.serveSPIFFEID, "--ip", "127.0.0.1", "--out", path("serve")])
        try run(["ca", "issue", "--dir", path("ca"), "--spiffe-id", DemoTopology.gatewaySPIFFEID, "--ip", "127.0.0.1", "--dns", "localhost",
                 "--out", path("gateway")])
        try run(["ca", "init", "--dir", path("partners-ca"), "--trust-domain", "partners.example"])
        let appToken = SampleService.randomHex(24)
        try write("serve-tokens.txt", "demo-apps:\(appToken)\n")
        try write("apps.token", appToken + "\n")
        try write("control.token", controlToken + "\n")

        progress("trail serve on \(database)")
        let serve = try start("serve", [
            "serve", "--db", database, "--listen", "127.0.0.1:0", "--tls-cert", path("serve/svid.pem"), "--tls-key", path("serve/svid.key"),
            "--client-ca", path("ca/bundle.pem"), "--crl", path("ca/crl.pem"), "--allow", td, "--token-file", path("serve-tokens.txt"),
        ])
        serveURL = serve.url()
        caURL = try start("ca", ["ca", "serve", "--dir", path("ca"), "--listen", "127.0.0.1:0", "--ingest", serveURL]).url()

        for service in DemoTopology.services {
            progress("\(service): sample service and sidecar (\(DemoTopology.mode(of: service)))")
            try startService(service)
        }

        progress("gateway")
        try write("jwks.json", tokens.jwks)
        try write("gateway.yaml", gatewayConfiguration(apiKeySHA256: Hex.encode(Array(SHA256.hash(data: Data(apiKey.utf8))))))
        gatewayURL = try start("gateway", ["gateway", "--config", path("gateway.yaml")]).url()
    }

    private func startService(_ service: String) throws {
        let id = DemoTopology.spiffeID(service)
        try run(["ca", "token", "--dir", path("ca"), "--spiffe-id", id, "--out", path("\(service).token")])
        let app = try start("\(service)-app", [
            "demo-service", "--name", service, "--ingest", serveURL, "--token-file", path("apps.token"),
            "--trust-bundle", path("ca/bundle.pem"), "--buffer-dir", path("\(service)-app-buffer"),
            "--control-token-file", path("control.token"),
        ])
        guard let appPort = Int(app.lines[0].split(separator: " ").last ?? "") else { throw DemoError("\(service): unexpected ready line \(app.lines[0])") }
        appPorts[service] = appPort

        var yaml = """
            spiffe_id: \(id)
            service: \(service)
            trust_bundle: \(path("ca/bundle.pem"))
            ca:
              url: \(caURL)
              join_token_file: \(path("\(service).token"))
              state_dir: \(path("\(service)-state"))
              refresh_seconds: 2
            inbound:
              listen: 127.0.0.1:0
              app: 127.0.0.1:\(appPort)
              mode: \(DemoTopology.mode(of: service))

            """
        if let policy = DemoTopology.policies(of: service) {
            try write("\(service)-policy.yaml", policy)
            yaml += "  policies: [\(path("\(service)-policy.yaml"))]\n"
        }
        let upstreams = DemoTopology.upstreams(of: service)
        if !upstreams.isEmpty {
            yaml += "outbound:\n  listen: 127.0.0.1:0\n  upstreams:\n"
            for upstream in upstreams {
                guard let address = inbound[upstream]?.split(separator: "/").last else { throw DemoError("\(upstream) must start before \(service)") }
                yaml += "  - name: \(upstream)\n    address: \(address)\n    spiffe_id: \(DemoTopology.spiffeID(upstream))\n"
            }
        }
        yaml += """
            telemetry:
              ingest: \(serveURL)
              access_log: \(path("\(service)-access.ndjson"))
              buffer_dir: \(path("\(service)-buffer"))
              flush_ms: 200

            """
        try write("\(service).yaml", yaml)
        let sidecar = try start("\(service)-sidecar", ["sidecar", "--config", path("\(service).yaml")], readyLines: upstreams.isEmpty ? 1 : 2)
        inbound[service] = sidecar.url()
        app.send("outbound \(upstreams.isEmpty ? "-" : sidecar.url(1))")
    }

    func gatewayConfiguration(apiKeySHA256: String) -> String {
        let users = Self.users.map { """
              - username: \($0)
                groups: [customers]
                credentials:
                  jwt:
                    - {issuer: "\(tokens.issuer)", subject: \($0)}

            """ }.joined()
        func backend(_ service: String) -> String {
            let address = inbound[service]!.split(separator: "/").last!.split(separator: ":")
            return "{name: \(service), host: \(address[0]), port: \(address[1]), spiffe_id: \(DemoTopology.spiffeID(service))}"
        }
        return """
            listen: 127.0.0.1:0
            tls:
              cert: \(path("gateway/svid.pem"))
              key: \(path("gateway/svid.key"))
              client_ca: \(path("partners-ca/bundle.pem"))
            mesh:
              spiffe_id: \(DemoTopology.gatewaySPIFFEID)
              trust_bundle: \(path("ca/bundle.pem"))
              svid: {cert: \(path("gateway/svid.pem")), key: \(path("gateway/svid.key"))}
            telemetry:
              access_log: \(path("gateway-access.ndjson"))
              ingest: \(serveURL)
              buffer_dir: \(path("gateway-buffer"))
            jwt:
              issuers:
                - issuer: "\(tokens.issuer)"
                  audiences: [\(tokens.audience)]
                  algorithms: [ES256]
                  jwks_file: \(path("jwks.json"))
            consumers:
            \(users)  - username: \(Self.integration)
                groups: [integrations]
                credentials:
                  key-auth:
                    - key_sha256: \(apiKeySHA256)
              - username: \(Self.partner)
                custom_id: acme-corp
                groups: [partners]
                credentials:
                  mtls:
                    - spiffe_id: \(Self.partnerSPIFFEID)
            routes:
              - name: shop
                rules:
                  - matches:
                      - path: {type: PathPrefix, value: /shop}
                    backendRefs:
                      - \(backend("web"))
                auth:
                  methods: [jwt, key-auth]
              - name: inventory
                rules:
                  - matches:
                      - path: {type: PathPrefix, value: /inventory}
                    backendRefs:
                      - \(backend("inventory"))
                auth:
                  methods: [key-auth, jwt]
              - name: partner-orders
                rules:
                  - matches:
                      - path: {type: Exact, value: /partner/orders}
                        method: POST
                    backendRefs:
                      - \(backend("orders"))
                auth:
                  methods: [mtls]
                acl:
                  allow: {groups: [partners]}

            """
    }

    /// Stops everything: callers before callees, so their last records still reach `trail serve`, which stops last.
    public func stop() {
        let running = lock.withLock {
            defer { children.removeAll() }
            return children
        }
        for child in running.reversed() { child.stop() }
    }

    /// The name of the first component that is no longer running, if any.
    public func firstExited() -> String? { lock.withLock { children }.first { !$0.isRunning }?.name }
}
