import Foundation
import TrailCore

/// `trail sidecar --config FILE`: one workload's sidecar. See README.md, "trail sidecar", for a complete example.
public struct SidecarConfiguration: Sendable {
    public enum MTLSMode: String, Sendable {
        /// mTLS required; plaintext refused.
        case strict = "STRICT"
        /// mTLS or plaintext; plaintext requests are recorded as such (Istio's observe-first rollout).
        case permissive = "PERMISSIVE"
    }

    public struct Upstream: Sendable, Hashable {
        /// The name the app calls (its Host header or absolute URI host, without port).
        public var name: String
        public var host: String
        public var port: Int
        /// The SPIFFE ID the destination's sidecar must present.
        public var spiffeID: String
    }

    /// Where the workload's SVID comes from.
    public enum IdentitySource: Sendable {
        /// From `trail ca serve`: bootstrap with a join token (or an existing SVID in `stateDirectory`), renewed
        /// over mTLS at half-life with jitter; bundle and CRL refreshed every `refreshSeconds`.
        case ca(url: String, joinTokenFile: String?, stateDirectory: String, refreshSeconds: Int)
        /// SVID files on disk (from `trail ca issue`), reloaded when they change; CRL file optional.
        case files(certificate: String, key: String, crl: String?, refreshSeconds: Int)
    }

    public var file: String
    public var spiffeID: String
    public var trustDomain: String
    public var service: String
    public var bundlePath: String
    public var identity: IdentitySource

    public var inboundHost: String
    public var inboundPort: Int
    public var appHost: String
    public var appPort: Int
    public var mode: MTLSMode
    public var policies: [AuthorizationPolicy]

    public var outboundHost: String?
    public var outboundPort: Int?
    public var upstreams: [Upstream]

    /// `trail serve`'s URL, nil for no shipping.
    public var ingestURL: String?
    public var ingestTokenFile: String?
    /// PEM roots to verify `trail serve` with (default: the trust bundle).
    public var ingestCA: String?
    public var accessLogPath: String?
    public var bufferDirectory: String
    public var bufferMaxBytes: Int
    public var flushMilliseconds: Int
    /// Event-loop threads (Istio's `concurrency`; 2 by default, as Istio's sidecars).
    public var concurrency: Int
    /// The admin endpoint (`/healthz`, `/metrics`), plain HTTP; nil for none.
    public var adminHost: String?
    public var adminPort: Int?

    /// Reads and validates a sidecar config file; errors name the key path and line.
    public static func load(file: String) throws -> SidecarConfiguration {
        try parse(documents: ConfigNode.documents(file: file), file: file)
    }

    /// Validates config text; `file` names it in errors and anchors relative paths (policy files are read from there).
    public static func load(text: String, file: String) throws -> SidecarConfiguration {
        try parse(documents: ConfigNode.documents(text: text, file: file), file: file)
    }

    private static func parse(documents: [ConfigNode], file: String) throws -> SidecarConfiguration {
        guard documents.count == 1, let root = documents.first else {
            throw ConfigError("\(file): expected one YAML document")
        }
        let top = try root.mapping(allowed: ["spiffe_id", "service", "trust_bundle", "ca", "svid", "inbound", "outbound", "telemetry", "concurrency", "admin"])
        func required(_ key: String) throws -> ConfigNode {
            guard let n = top[key] else { throw root.fail("'\(key)' is required") }
            return n
        }
        let idNode = try required("spiffe_id")
        let idText = try idNode.string()
        guard let id = SPIFFEID.parse(idText), id.isLeaf else {
            throw idNode.fail("'\(idText)' is not a workload SPIFFE ID such as spiffe://shop.example/ns/shop/sa/orders")
        }
        let service = try top["service"]?.string() ?? String(id.segments.last ?? "workload")
        let bundle = try required("trust_bundle").filePath()

        let identity: IdentitySource
        switch (top["ca"], top["svid"]) {
        case (let ca?, nil):
            let m = try ca.mapping(allowed: ["url", "join_token_file", "state_dir", "refresh_seconds"])
            guard let url = m["url"] else { throw ca.fail("'url' is required (the URL trail ca serve printed)") }
            guard let state = m["state_dir"] else { throw ca.fail("'state_dir' is required (where the SVID is kept across restarts)") }
            let refresh = try m["refresh_seconds"]?.int() ?? 30
            guard refresh >= 1 else { throw m["refresh_seconds"]!.fail("must be at least 1") }
            identity = .ca(
                url: try url.string(), joinTokenFile: try m["join_token_file"]?.filePath(), stateDirectory: try state.filePath(),
                refreshSeconds: refresh)
        case (nil, let svid?):
            let m = try svid.mapping(allowed: ["cert", "key", "crl", "refresh_seconds"])
            guard let cert = m["cert"], let key = m["key"] else { throw svid.fail("'cert' and 'key' are required") }
            identity = .files(
                certificate: try cert.filePath(), key: try key.filePath(), crl: try m["crl"]?.filePath(),
                refreshSeconds: try m["refresh_seconds"]?.int() ?? 5)
        case (nil, nil):
            throw root.fail("say where the SVID comes from: 'ca' (trail ca serve) or 'svid' (files from trail ca issue)")
        case (_?, _?):
            throw root.fail("give either 'ca' or 'svid', not both")
        }

        let inNode = try required("inbound")
        let inbound = try inNode.mapping(allowed: ["listen", "app", "mode", "policies"])
        guard let listen = inbound["listen"], let app = inbound["app"] else {
            throw inNode.fail("'listen' (HOST:PORT for mTLS from other sidecars) and 'app' (HOST:PORT of the local app) are required")
        }
        let (inHost, inPort) = try listen.hostPort()
        let (appHost, appPort) = try app.hostPort()
        var mode = MTLSMode.strict
        if let m = inbound["mode"] {
            let text = try m.string()
            guard let parsed = MTLSMode(rawValue: text.uppercased()) else { throw m.fail("'\(text)' is not STRICT or PERMISSIVE") }
            mode = parsed
        }
        var policies: [AuthorizationPolicy] = []
        for p in try inbound["policies"]?.list() ?? [] {
            let path = try p.filePath()
            do {
                policies += try AuthorizationPolicy.load(file: path)
            } catch let e as ConfigError {
                throw p.fail(e.description)
            }
        }

        var outHost: String?
        var outPort: Int?
        var upstreams: [Upstream] = []
        if let outNode = top["outbound"] {
            let out = try outNode.mapping(allowed: ["listen", "upstreams"])
            guard let l = out["listen"] else { throw outNode.fail("'listen' is required (HOST:PORT the app sends plain HTTP to)") }
            (outHost, outPort) = try l.hostPort()
            for u in try out["upstreams"]?.list() ?? [] {
                let m = try u.mapping(allowed: ["name", "address", "spiffe_id"])
                guard let n = m["name"], let a = m["address"], let s = m["spiffe_id"] else {
                    throw u.fail("'name', 'address' and 'spiffe_id' are required")
                }
                let (host, port) = try a.hostPort()
                let sid = try s.string()
                guard let parsed = SPIFFEID.parse(sid), parsed.isLeaf else { throw s.fail("'\(sid)' is not a workload SPIFFE ID") }
                let name = try n.string().lowercased()
                guard !upstreams.contains(where: { $0.name == name }) else { throw n.fail("upstream '\(name)' appears twice") }
                upstreams.append(Upstream(name: name, host: host, port: port, spiffeID: parsed.description))
            }
        }

        var ingest: String?
        var token: String?
        var ingestCA: String?
        var accessLog: String?
        var buffer = ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent("\(service)-buffer")
        var bufferMax = 64 << 20
        var flush = 1000
        if let t = top["telemetry"] {
            let m = try t.mapping(allowed: ["ingest", "token_file", "ingest_ca", "access_log", "buffer_dir", "buffer_max_bytes", "flush_ms"])
            if let i = m["ingest"] {
                let text = try i.string()
                _ = try HTTPSClient.Endpoint(url: text)
                ingest = text
            }
            token = try m["token_file"]?.filePath()
            ingestCA = try m["ingest_ca"]?.filePath()
            accessLog = try m["access_log"]?.filePath()
            if let b = m["buffer_dir"] { buffer = try b.filePath() }
            if let b = m["buffer_max_bytes"] { bufferMax = try b.int() }
            if let f = m["flush_ms"] { flush = try f.int() }
            guard bufferMax >= 1 << 16 else { throw m["buffer_max_bytes"]!.fail("must be at least 65536") }
            guard flush >= 10 else { throw m["flush_ms"]!.fail("must be at least 10") }
        }
        var concurrency = 2
        if let c = top["concurrency"] {
            concurrency = try c.int()
            guard (1...64).contains(concurrency) else { throw c.fail("must be between 1 and 64") }
        }
        var adminHost: String?
        var adminPort: Int?
        if let a = top["admin"] {
            let m = try a.mapping(allowed: ["listen"])
            guard let l = m["listen"] else { throw a.fail("'listen' is required (HOST:PORT, e.g. 127.0.0.1:15000)") }
            (adminHost, adminPort) = try l.hostPort()
        }
        return SidecarConfiguration(
            file: file, spiffeID: id.description, trustDomain: id.trustDomain, service: service, bundlePath: bundle,
            identity: identity, inboundHost: inHost, inboundPort: inPort, appHost: appHost, appPort: appPort, mode: mode,
            policies: policies, outboundHost: outHost, outboundPort: outPort, upstreams: upstreams, ingestURL: ingest,
            ingestTokenFile: token, ingestCA: ingestCA, accessLogPath: accessLog, bufferDirectory: buffer,
            bufferMaxBytes: bufferMax, flushMilliseconds: flush, concurrency: concurrency,
            adminHost: adminHost, adminPort: adminPort)
    }
}
