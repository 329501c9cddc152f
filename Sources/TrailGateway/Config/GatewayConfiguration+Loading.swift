import Foundation
import TrailCore
import TrailMesh

extension GatewayConfiguration {
    /// Reads and validates a gateway configuration file.
    /// - Throws: ``ConfigError`` naming the file, the key path and the line of the first problem.
    package static func load(file: String) throws -> GatewayConfiguration {
        let documents = try ConfigNode.documents(file: file)
        return try parse(documents: documents, file: file)
    }

    /// Parses and validates configuration text; `file` names it in errors and anchors relative `jwks_file` paths.
    package static func parse(yaml: String, file: String) throws -> GatewayConfiguration {
        try parse(documents: ConfigNode.documents(text: yaml, file: file), file: file)
    }

    private static func parse(documents: [ConfigNode], file: String) throws -> GatewayConfiguration {
        guard documents.count == 1, let root = documents.first else {
            throw ConfigError("\(file): expected exactly one YAML document, found \(documents.count)")
        }
        let top = try root.mapping(allowed: [
            "key_auth", "jwt", "consumers", "routes", "listen", "tls", "mesh", "telemetry", "trace", "credentials_file",
        ])
        let keyAuth = try top["key_auth"].map(parseKeyAuth) ?? KeyAuthSettings()
        let jwt = try top["jwt"].map(parseJWT) ?? JWTSettings()
        var consumers = try top["consumers"]?.list().map(parseConsumer) ?? []
        var credentialsFile: String?
        if let node = top["credentials_file"] {
            let path = try node.filePath()
            credentialsFile = path
            try loadCredentials(file: path, from: node, into: &consumers)
        }
        guard let routesNode = top["routes"] else { throw root.fail("missing key 'routes' (a list of routes)") }
        let routes = try routesNode.list().map(parseRoute)
        guard !routes.isEmpty else { throw routesNode.fail("at least one route is needed") }
        var configuration = GatewayConfiguration(keyAuth: keyAuth, jwt: jwt, consumers: consumers, routes: routes)
        configuration.credentialsFile = credentialsFile
        configuration.server = try parseServer(top)
        if configuration.server.mesh == nil,
            let node = top["routes"], routes.contains(where: { $0.rules.contains { $0.backendRefs.contains { $0.spiffeID != nil } } })
        {
            throw node.fail("a backendRef has spiffe_id, so the gateway needs its own SVID: add 'mesh' (spiffe_id, trust_bundle, svid)")
        }
        try validateReferences(configuration, top: top)
        return configuration
    }

    // MARK: Sections

    private static func parseKeyAuth(_ node: ConfigNode) throws -> KeyAuthSettings {
        let m = try node.mapping(allowed: ["key_names", "key_in_header", "key_in_query"])
        var settings = KeyAuthSettings()
        if let names = m["key_names"] {
            settings.keyNames = try names.strings().map { $0.lowercased() }
            guard !settings.keyNames.isEmpty else { throw names.fail("at least one key name is needed") }
        }
        if let n = m["key_in_header"] { settings.keyInHeader = try n.bool() }
        if let n = m["key_in_query"] { settings.keyInQuery = try n.bool() }
        return settings
    }

    private static func parseJWT(_ node: ConfigNode) throws -> JWTSettings {
        let m = try node.mapping(allowed: ["clock_skew_seconds", "issuers"])
        var settings = JWTSettings()
        if let n = m["clock_skew_seconds"] {
            settings.clockSkewSeconds = try n.int()
            guard (0...3600).contains(settings.clockSkewSeconds) else { throw n.fail("must be between 0 and 3600") }
        }
        var seen: Set<String> = []
        for item in try m["issuers"]?.list() ?? [] {
            let i = try item.mapping(allowed: ["issuer", "audiences", "algorithms", "jwks_file", "consumer_claim"])
            let issuer = try required(i, "issuer", in: item).string()
            guard seen.insert(issuer).inserted else { throw item.fail("issuer '\(issuer)' is listed twice") }
            let audNode = try required(i, "audiences", in: item)
            let audiences = try audNode.strings()
            guard !audiences.isEmpty else { throw audNode.fail("at least one audience is needed") }
            var algorithms = JWTAlgorithm.allCases
            if let n = i["algorithms"] {
                algorithms = try n.list().map { (a: ConfigNode) throws -> JWTAlgorithm in
                    let name = try a.string()
                    guard let alg = JWTAlgorithm(rawValue: name) else {
                        throw a.fail("'\(name)' is not supported; use HS256, RS256 or ES256")
                    }
                    return alg
                }
            }
            let jwksNode = try required(i, "jwks_file", in: item)
            let path = try jwksNode.filePath()
            let keys: JWKSet
            do {
                keys = try JWKSet.load(file: path)
            } catch {
                throw jwksNode.fail("\(error)")
            }
            settings.issuers.append(JWTIssuer(
                issuer: issuer, audiences: audiences, algorithms: algorithms, keys: keys,
                consumerClaim: try i["consumer_claim"]?.string() ?? "sub"))
        }
        return settings
    }

    private static func parseConsumer(_ node: ConfigNode) throws -> Consumer {
        let m = try node.mapping(allowed: ["username", "id", "custom_id", "groups", "credentials", "rate_limit"])
        let username = try required(m, "username", in: node).string()
        guard !username.isEmpty else { throw node.fail("username must not be empty") }
        var consumer = Consumer(
            username: username, id: try m["id"]?.string() ?? username, customID: try m["custom_id"]?.string(),
            groups: try m["groups"]?.strings() ?? [], keySHA256: [], jwtSubjects: [], certificates: [],
            rateLimit: try m["rate_limit"].map(parseRateLimit))
        guard let credentials = m["credentials"] else { return consumer }
        try parseCredentials(credentials, into: &consumer)
        return consumer
    }

    /// The credentials file: `consumers` maps usernames of consumers defined in the main file to their
    /// `credentials` (the same keys as `consumers[].credentials`), which are added to theirs. It holds material that
    /// identifies callers (key digests, certificate names), so it must not be readable by group or others.
    static func loadCredentials(file path: String, from reference: ConfigNode, into consumers: inout [Consumer]) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw reference.fail("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw reference.fail(
                "\(path) is readable or writable by group or others (mode \(String(mode, radix: 8))); "
                    + "run chmod 600 \(path)")
        }
        let documents = try ConfigNode.documents(file: path)
        guard documents.count == 1, let root = documents.first else {
            throw ConfigError("\(path): expected exactly one YAML document, found \(documents.count)")
        }
        let top = try root.mapping(allowed: ["consumers"])
        guard let list = top["consumers"] else { throw root.fail("missing key 'consumers' (credentials by username)") }
        for (username, node) in try list.members() {
            guard let index = consumers.firstIndex(where: { $0.username == username }) else {
                let known = consumers.map(\.username).sorted().joined(separator: ", ")
                throw node.fail("no consumer '\(username)' in the configuration; known: \(known)")
            }
            try parseCredentials(node, into: &consumers[index])
        }
    }

    private static func parseCredentials(_ credentials: ConfigNode, into consumer: inout Consumer) throws {
        let c = try credentials.mapping(allowed: ["key-auth", "jwt", "mtls"])
        for item in try c["key-auth"]?.list() ?? [] {
            let k = try item.mapping(allowed: ["key_sha256"])
            let hexNode = try required(k, "key_sha256", in: item)
            let hex = try hexNode.string().lowercased()
            guard let digest = Hex.decode(hex), digest.count == 32 else {
                throw hexNode.fail("expected 64 hex digits, the SHA-256 of the key (e.g. printf %s KEY | sha256sum); "
                    + "plain keys are not accepted")
            }
            consumer.keySHA256.append(digest)
        }
        for item in try c["jwt"]?.list() ?? [] {
            let j = try item.mapping(allowed: ["issuer", "subject"])
            consumer.jwtSubjects.append(JWTSubject(
                issuer: try required(j, "issuer", in: item).string(), subject: try required(j, "subject", in: item).string()))
        }
        for item in try c["mtls"]?.list() ?? [] {
            let t = try item.mapping(allowed: ["spiffe_id", "subject"])
            switch (t["spiffe_id"], t["subject"]) {
            case (let s?, nil):
                let id = try s.string()
                guard id.hasPrefix("spiffe://") else { throw s.fail("a SPIFFE ID starts with spiffe://") }
                consumer.certificates.append(.spiffeID(id))
            case (nil, let s?): consumer.certificates.append(.subject(try s.string()))
            default: throw item.fail("give exactly one of spiffe_id or subject")
            }
        }
    }

    private static func parseRoute(_ node: ConfigNode) throws -> Route {
        let m = try node.mapping(allowed: ["name", "hostnames", "rules", "auth", "acl", "rate_limit", "websocket", "graphql"])
        let name = try required(m, "name", in: node).string()
        let hostnames = try m["hostnames"]?.list().map { (h: ConfigNode) throws -> String in
            let host = try h.string().lowercased()
            let bare = host.hasPrefix("*.") ? String(host.dropFirst(2)) : host
            guard !bare.isEmpty, !bare.contains("*"), !bare.contains(":") else {
                throw h.fail("'\(host)' is not a hostname; use api.example.com or *.example.com (no port)")
            }
            return host
        } ?? []
        let rulesNode = try required(m, "rules", in: node)
        let rules = try rulesNode.list().map(parseRule)
        guard !rules.isEmpty else { throw rulesNode.fail("at least one rule is needed") }
        return Route(
            name: name, hostnames: hostnames, rules: rules, auth: try m["auth"].map(parseAuth) ?? defaultAuth,
            acl: try m["acl"].map(parseACL), rateLimits: try m["rate_limit"].map(parseRouteRateLimits) ?? RouteRateLimits(),
            websocket: try m["websocket"]?.bool() ?? false, graphql: try m["graphql"]?.bool() ?? false)
    }

    /// Without an `auth` key a route is closed: no method is accepted and anonymous callers are refused, so a
    /// forgotten block cannot open a route.
    private static let defaultAuth = RouteAuth(methods: [], allowAnonymous: false, anonymousConsumer: "anonymous")

    private static func parseRule(_ node: ConfigNode) throws -> RouteRule {
        let m = try node.mapping(allowed: ["matches", "backendRefs", "timeouts", "retry"])
        var matches = try m["matches"]?.list().map(parseMatch) ?? []
        if matches.isEmpty { matches = [RouteMatch(path: .prefix(""), method: nil, headers: [], queryParams: [])] }
        let backendsNode = try required(m, "backendRefs", in: node)
        let backends = try backendsNode.list().map(parseBackend)
        guard !backends.isEmpty else { throw backendsNode.fail("at least one backend is needed") }
        guard backends.contains(where: { $0.weight > 0 }) else { throw backendsNode.fail("all weights are 0") }
        var timeouts = RouteTimeouts()
        if let t = m["timeouts"] {
            let tm = try t.mapping(allowed: ["request", "backendRequest"])
            timeouts.request = try tm["request"].map(duration)
            timeouts.backendRequest = try tm["backendRequest"].map(duration)
            if let r = timeouts.request, let b = timeouts.backendRequest, b > r, let n = tm["backendRequest"] {
                throw n.fail("backendRequest must not be longer than request (Gateway API)")
            }
        }
        var retries = 0
        if let r = m["retry"] {
            let rm = try r.mapping(allowed: ["attempts"])
            if let a = rm["attempts"] {
                retries = try a.int()
                guard (0...10).contains(retries) else { throw a.fail("must be between 0 and 10") }
            }
        }
        return RouteRule(matches: matches, backendRefs: backends, timeouts: timeouts, retryAttempts: retries)
    }

    private static func parseMatch(_ node: ConfigNode) throws -> RouteMatch {
        let m = try node.mapping(allowed: ["path", "method", "headers", "queryParams"])
        var path = PathMatch.prefix("")
        if let p = m["path"] {
            let pm = try p.mapping(allowed: ["type", "value"])
            let type = try pm["type"]?.string() ?? "PathPrefix"
            let valueNode = try required(pm, "value", in: p)
            let value = try valueNode.string()
            switch type {
            case "Exact", "PathPrefix":
                guard value.hasPrefix("/"), !value.contains("?"), !value.contains("#") else {
                    throw valueNode.fail("a path starts with / and has no ? or #")
                }
                path = type == "Exact" ? .exact(value) : .prefix(value.hasSuffix("/") ? String(value.dropLast()) : value)
            case "RegularExpression": path = .regularExpression(try pattern(value, valueNode))
            default:
                throw (pm["type"] ?? p).fail("'\(type)' is not a path match type; use Exact, PathPrefix or RegularExpression")
            }
        }
        var method: String?
        if let n = m["method"] {
            let value = try n.string()
            guard !value.isEmpty, value.allSatisfy({ $0.isLetter && $0.isUppercase }) else {
                throw n.fail("'\(value)' is not an HTTP method; write it in capitals, e.g. GET")
            }
            method = value
        }
        return RouteMatch(
            path: path, method: method,
            headers: try m["headers"]?.list().map { try valueMatch($0, lowercaseName: true) } ?? [],
            queryParams: try m["queryParams"]?.list().map { try valueMatch($0, lowercaseName: false) } ?? [])
    }

    private static func valueMatch(_ node: ConfigNode, lowercaseName: Bool) throws -> ValueMatch {
        let m = try node.mapping(allowed: ["name", "value", "type"])
        let name = try required(m, "name", in: node).string()
        let valueNode = try required(m, "value", in: node)
        let value = try valueNode.string()
        switch try m["type"]?.string() ?? "Exact" {
        case "Exact": return ValueMatch(name: lowercaseName ? name.lowercased() : name, value: .exact(value))
        case "RegularExpression":
            return ValueMatch(name: lowercaseName ? name.lowercased() : name, value: .regularExpression(try pattern(value, valueNode)))
        case let other: throw (m["type"] ?? node).fail("'\(other)' is not a match type; use Exact or RegularExpression")
        }
    }

    private static func pattern(_ value: String, _ node: ConfigNode) throws -> PatternMatcher {
        do { return try PatternMatcher(value) } catch { throw node.fail("not a valid regular expression: \(error)") }
    }

    private static func parseBackend(_ node: ConfigNode) throws -> BackendRef {
        let m = try node.mapping(allowed: ["name", "host", "port", "weight", "spiffe_id", "protocol"])
        let name = try required(m, "name", in: node).string()
        let portNode = try required(m, "port", in: node)
        let port = try portNode.int()
        guard (1...65535).contains(port) else { throw portNode.fail("a port is between 1 and 65535") }
        var weight = 1
        if let w = m["weight"] {
            weight = try w.int()
            guard (0...1_000_000).contains(weight) else { throw w.fail("a weight is between 0 and 1000000") }
        }
        var backend = BackendRef(name: name, host: try m["host"]?.string() ?? name, port: port, weight: weight)
        if let idNode = m["spiffe_id"] {
            let id = try idNode.string()
            guard let parsed = SPIFFEID.parse(id), parsed.isLeaf else {
                throw idNode.fail("'\(id)' is not a workload SPIFFE ID such as spiffe://shop.example/ns/shop/sa/orders")
            }
            backend.spiffeID = id
        }
        if let protocolNode = m["protocol"] {
            switch try protocolNode.string() {
            case "http": backend.grpc = false
            case "grpc": backend.grpc = true
            case let other: throw protocolNode.fail("protocol '\(other)' is not supported: use http (HTTP/1.1, the default) or grpc (HTTP/2)")
            }
        }
        return backend
    }

    private static func parseServer(_ top: [String: ConfigNode]) throws -> GatewayServerSettings {
        var settings = GatewayServerSettings()
        if let listen = top["listen"] { (settings.listenHost, settings.listenPort) = try listen.hostPort() }
        if let node = top["tls"] {
            let t = try node.mapping(allowed: ["cert", "key", "client_ca"])
            settings.tls = EdgeTLS(
                certificate: try required(t, "cert", in: node).filePath(), key: try required(t, "key", in: node).filePath(),
                clientCA: try t["client_ca"]?.filePath())
        }
        if let node = top["mesh"] {
            let m = try node.mapping(allowed: ["spiffe_id", "trust_bundle", "svid"])
            let idNode = try required(m, "spiffe_id", in: node)
            let id = try idNode.string()
            guard let parsed = SPIFFEID.parse(id), parsed.isLeaf else {
                throw idNode.fail("'\(id)' is not a workload SPIFFE ID such as spiffe://shop.example/gateway")
            }
            let svidNode = try required(m, "svid", in: node)
            let svid = try svidNode.mapping(allowed: ["cert", "key"])
            settings.mesh = MeshIdentity(
                spiffeID: id, trustBundle: try required(m, "trust_bundle", in: node).filePath(),
                certificate: try required(svid, "cert", in: svidNode).filePath(), key: try required(svid, "key", in: svidNode).filePath())
        }
        if let node = top["telemetry"] {
            let t = try node.mapping(allowed: ["access_log", "ingest", "token_file", "ca", "buffer_dir", "buffer_max_bytes", "spans_file"])
            settings.telemetry.accessLog = try t["access_log"]?.filePath()
            settings.telemetry.spansFile = try t["spans_file"]?.filePath()
            if let ingest = t["ingest"] {
                let url = try ingest.string()
                guard url.hasPrefix("https://") || url.hasPrefix("http://") else { throw ingest.fail("expected the URL of trail serve") }
                settings.telemetry.ingest = url
            }
            settings.telemetry.ingestTokenFile = try t["token_file"]?.filePath()
            settings.telemetry.ingestCA = try t["ca"]?.filePath()
            settings.telemetry.bufferDirectory = try t["buffer_dir"]?.filePath()
            if let b = t["buffer_max_bytes"] {
                settings.telemetry.bufferMaxBytes = try b.int()
                guard settings.telemetry.bufferMaxBytes >= 1 << 16 else { throw b.fail("must be at least 65536") }
            }
            if settings.telemetry.ingest != nil, settings.telemetry.bufferDirectory == nil {
                throw node.fail("'buffer_dir' is required with 'ingest' (records wait there while trail serve is unreachable)")
            }
        }
        if let node = top["trace"] {
            let t = try node.mapping(allowed: ["incoming"])
            if let n = t["incoming"] {
                let v = try n.string()
                guard let policy = TraceContext.IncomingPolicy(rawValue: v) else { throw n.fail("expected trust or restart") }
                settings.incomingTrace = policy
            }
        }
        return settings
    }

    private static func parseAuth(_ node: ConfigNode) throws -> RouteAuth {
        let m = try node.mapping(allowed: ["methods", "anonymous", "anonymous_consumer"])
        let methods = try m["methods"]?.list().map { (n: ConfigNode) throws -> CredentialKind in
            let name = try n.string()
            guard let kind = CredentialKind(rawValue: name), kind != .anonymous else {
                throw n.fail("'\(name)' is not an auth method; use key-auth, jwt or mtls (and anonymous: true)")
            }
            return kind
        } ?? []
        let anonymous = try m["anonymous"]?.bool() ?? false
        if methods.isEmpty && !anonymous { throw node.fail("no auth method and anonymous is false: nobody could call this route") }
        return RouteAuth(
            methods: methods, allowAnonymous: anonymous,
            anonymousConsumer: try m["anonymous_consumer"]?.string() ?? "anonymous")
    }

    private static func parseACL(_ node: ConfigNode) throws -> ACLRule {
        let m = try node.mapping(allowed: ["allow", "deny"])
        func lists(_ n: ConfigNode?) throws -> (consumers: [String], groups: [String]) {
            guard let n else { return ([], []) }
            let l = try n.mapping(allowed: ["consumers", "groups"])
            return (try l["consumers"]?.strings() ?? [], try l["groups"]?.strings() ?? [])
        }
        let allow = try lists(m["allow"])
        let deny = try lists(m["deny"])
        let rule = ACLRule(
            allowConsumers: allow.consumers, allowGroups: allow.groups, denyConsumers: deny.consumers, denyGroups: deny.groups)
        guard rule != ACLRule(allowConsumers: [], allowGroups: [], denyConsumers: [], denyGroups: []) else {
            throw node.fail("an acl needs at least one allow or deny entry")
        }
        return rule
    }

    private static func parseRouteRateLimits(_ node: ConfigNode) throws -> RouteRateLimits {
        let m = try node.mapping(allowed: ["per_consumer", "total"])
        return RouteRateLimits(perConsumer: try m["per_consumer"].map(parseRateLimit), total: try m["total"].map(parseRateLimit))
    }

    private static func parseRateLimit(_ node: ConfigNode) throws -> RateLimitRule {
        let m = try node.mapping(allowed: ["requests", "window"])
        let requestsNode = try required(m, "requests", in: node)
        let requests = try requestsNode.int()
        guard requests > 0 else { throw requestsNode.fail("must be at least 1") }
        let windowNode = try required(m, "window", in: node)
        let window = try duration(windowNode)
        guard window >= 1, window == window.rounded() else { throw windowNode.fail("a window is whole seconds, at least 1s") }
        return RateLimitRule(limit: requests, windowSeconds: Int(window))
    }

    // MARK: Cross-references

    private static func validateReferences(_ c: GatewayConfiguration, top: [String: ConfigNode]) throws {
        var usernames: Set<String> = []
        let consumerNodes = try top["consumers"]?.list() ?? []
        for (consumer, node) in zip(c.consumers, consumerNodes) {
            guard usernames.insert(consumer.username).inserted else {
                throw node.fail("consumer '\(consumer.username)' is defined twice")
            }
            for subject in consumer.jwtSubjects where !c.jwt.issuers.contains(where: { $0.issuer == subject.issuer }) {
                throw node.fail("jwt credential names issuer '\(subject.issuer)', which is not under jwt.issuers")
            }
        }
        var keys: Set<[UInt8]> = []
        for (consumer, node) in zip(c.consumers, consumerNodes) {
            for key in consumer.keySHA256 where !keys.insert(key).inserted {
                throw node.fail("consumer '\(consumer.username)' has an API key that another credential already has")
            }
        }
        var routeNames: Set<String> = []
        let routeNodes = try top["routes"]?.list() ?? []
        for (route, node) in zip(c.routes, routeNodes) {
            guard routeNames.insert(route.name).inserted else { throw node.fail("route '\(route.name)' is defined twice") }
            if route.auth.methods.contains(.jwt) && c.jwt.issuers.isEmpty {
                throw node.fail("route accepts jwt but no jwt.issuers are configured")
            }
            if let acl = route.acl {
                for name in acl.allowConsumers + acl.denyConsumers
                where !usernames.contains(name) && !(route.auth.allowAnonymous && name == route.auth.anonymousConsumer) {
                    throw node.fail("acl names consumer '\(name)', which is not defined; known: \(usernames.sorted().joined(separator: ", "))")
                }
            }
        }
    }

    // MARK: Helpers

    private static func required(_ m: [String: ConfigNode], _ key: String, in node: ConfigNode) throws -> ConfigNode {
        guard let n = m[key] else { throw node.fail("missing key '\(key)'") }
        return n
    }

    /// A Gateway API duration (GEP-2257): one to four `<number><unit>` parts, unit `h`, `m`, `s` or `ms`,
    /// e.g. `1m30s`, `500ms`. Returns seconds.
    private static func duration(_ node: ConfigNode) throws -> Double {
        let text = try node.string()
        guard let seconds = GatewayDuration.seconds(text) else {
            throw node.fail("'\(text)' is not a duration; write e.g. 10s, 500ms, 1m30s or 1h")
        }
        return seconds
    }
}

/// Gateway API duration strings (GEP-2257).
package enum GatewayDuration {
    package static func seconds(_ text: String) -> Double? {
        var total = 0.0
        var parts = 0
        var rest = Substring(text)
        while !rest.isEmpty {
            let digits = rest.prefix(while: \.isASCIIDigitCharacter)
            guard (1...5).contains(digits.count), let number = Double(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let scale: Double
            if rest.hasPrefix("ms") { scale = 0.001; rest = rest.dropFirst(2) }
            else if rest.hasPrefix("h") { scale = 3600; rest = rest.dropFirst() }
            else if rest.hasPrefix("m") { scale = 60; rest = rest.dropFirst() }
            else if rest.hasPrefix("s") { scale = 1; rest = rest.dropFirst() }
            else { return nil }
            total += number * scale
            parts += 1
        }
        return (1...4).contains(parts) ? total : nil
    }
}

extension Character {
    fileprivate var isASCIIDigitCharacter: Bool { isASCII && isNumber }
}

/// Lowercase hexadecimal.
package enum Hex {
    package static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            case 0x41...0x46: return c - 0x41 + 10
            default: return nil
            }
        }
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    package static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
