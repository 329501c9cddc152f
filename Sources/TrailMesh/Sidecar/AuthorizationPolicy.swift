import Foundation
import TrailCore

/// One authorization policy in the shape of Istio's `AuthorizationPolicy` (security.istio.io/v1):
/// `metadata.name`, `metadata.namespace`, the `istio.io/dry-run` annotation, `spec.action` (ALLOW, DENY, AUDIT)
/// and `spec.rules` with `from.source` (principals, notPrincipals, namespaces, notNamespaces) and `to.operation`
/// (methods, notMethods, paths, notPaths). Values match exactly, by prefix (`/api/*`), by suffix (`*.json`)
/// or always (`*`), as in Istio.
public struct AuthorizationPolicy: Sendable, Hashable {
    public enum Action: String, Sendable { case allow = "ALLOW", deny = "DENY", audit = "AUDIT" }

    public struct Source: Sendable, Hashable {
        var principals: [String]?
        var notPrincipals: [String]?
        var namespaces: [String]?
        var notNamespaces: [String]?
    }

    public struct Operation: Sendable, Hashable {
        var methods: [String]?
        var notMethods: [String]?
        var paths: [String]?
        var notPaths: [String]?
    }

    public struct Rule: Sendable, Hashable {
        var from: [Source]
        var to: [Operation]
    }

    public var name: String
    public var namespace: String
    public var action: Action
    public var dryRun: Bool
    /// nil: no `rules` key (matches nothing for ALLOW, as in Istio); `[Rule()]` with empty from/to matches all.
    public var rules: [Rule]

    /// `ns[NAMESPACE]-policy[NAME]`, as Envoy names the matched policy in `response_code_details`.
    public var qualifiedName: String { "ns[\(namespace)]-policy[\(name)]" }

    /// Reads every policy document in a YAML file (documents separated by `---`).
    public static func load(file: String) throws -> [AuthorizationPolicy] {
        try ConfigNode.documents(file: file).filter { !$0.isNull }.map(parse)
    }

    public static func load(text: String, file: String = "policy.yaml") throws -> [AuthorizationPolicy] {
        try ConfigNode.documents(text: text, file: file).filter { !$0.isNull }.map(parse)
    }

    static func parse(_ document: ConfigNode) throws -> AuthorizationPolicy {
        let top = try document.mapping(allowed: ["apiVersion", "kind", "metadata", "spec"])
        if let kind = top["kind"] {
            guard try kind.string() == "AuthorizationPolicy" else { throw kind.fail("expected AuthorizationPolicy") }
        }
        guard let metadataNode = top["metadata"] else { throw document.fail("metadata.name is required") }
        let metadata = try metadataNode.mapping(allowed: ["name", "namespace", "annotations", "labels"])
        guard let name = try metadata["name"]?.string(), !name.isEmpty else { throw metadataNode.fail("name is required") }
        let namespace = try metadata["namespace"]?.string() ?? "default"
        var dryRun = false
        if let annotations = metadata["annotations"] {
            let members = try annotations.mapping(allowed: ["istio.io/dry-run", "description"])
            if let d = members["istio.io/dry-run"] {
                let text = try d.string().lowercased()
                guard text == "true" || text == "false" else { throw d.fail("expected \"true\" or \"false\"") }
                dryRun = text == "true"
            }
        }
        var action = Action.allow
        var rules: [Rule] = []
        if let specNode = top["spec"], !specNode.isNull {
            let spec = try specNode.mapping(allowed: ["action", "rules", "selector"])
            if let a = spec["action"] {
                let text = try a.string()
                guard let parsed = Action(rawValue: text) else {
                    throw a.fail("'\(text)' is not ALLOW, DENY or AUDIT (CUSTOM needs an external authorizer Trail does not have)")
                }
                action = parsed
            }
            if let r = spec["rules"] { rules = try r.list().map(parseRule) }
        }
        return AuthorizationPolicy(name: name, namespace: namespace, action: action, dryRun: dryRun, rules: rules)
    }

    static func parseRule(_ node: ConfigNode) throws -> Rule {
        if node.isNull { return Rule(from: [], to: []) }
        let members = try node.mapping(allowed: ["from", "to"])
        let from = try members["from"]?.list().map { item -> Source in
            let m = try item.mapping(allowed: ["source"])
            guard let s = m["source"] else { throw item.fail("expected source:") }
            let f = try s.mapping(allowed: ["principals", "notPrincipals", "namespaces", "notNamespaces"])
            return Source(
                principals: try f["principals"]?.strings(), notPrincipals: try f["notPrincipals"]?.strings(),
                namespaces: try f["namespaces"]?.strings(), notNamespaces: try f["notNamespaces"]?.strings())
        } ?? []
        let to = try members["to"]?.list().map { item -> Operation in
            let m = try item.mapping(allowed: ["operation"])
            guard let o = m["operation"] else { throw item.fail("expected operation:") }
            let f = try o.mapping(allowed: ["methods", "notMethods", "paths", "notPaths"])
            for key in ["paths", "notPaths"] {
                for p in try f[key]?.strings() ?? [] where !p.hasPrefix("/") && !p.hasPrefix("*") {
                    throw f[key]!.fail("'\(p)' must start with / (or * for a suffix match)")
                }
            }
            return Operation(
                methods: try f["methods"]?.strings(), notMethods: try f["notMethods"]?.strings(),
                paths: try f["paths"]?.strings(), notPaths: try f["notPaths"]?.strings())
        } ?? []
        return Rule(from: from, to: to)
    }
}

/// What a request carries that policies look at.
public struct AuthorizationRequest: Sendable {
    /// The peer's SPIFFE ID, nil for plaintext or an unauthenticated peer.
    public var principal: String?
    public var method: String
    public var path: String

    public init(principal: String?, method: String, path: String) {
        self.principal = principal
        self.method = method
        self.path = path
    }

    /// Istio's principal form: the SPIFFE ID without `spiffe://`.
    var istioPrincipal: String? { principal.map { $0.hasPrefix("spiffe://") ? String($0.dropFirst(9)) : $0 } }

    var namespace: String? {
        guard let id = principal.flatMap(SPIFFEID.parse) else { return nil }
        let segments = id.segments
        guard segments.count >= 2, segments[0] == "ns" else { return nil }
        return String(segments[1])
    }

    /// The path without query and fragment, as Istio matches `paths`.
    var matchPath: String {
        String(path.prefix { $0 != "?" && $0 != "#" })
    }
}

/// The decision for one request: enforced, and what dry-run policies would have decided.
public struct AuthorizationDecision: Sendable, Hashable {
    public var allowed: Bool
    /// The policy that decided (a matching DENY, the matching ALLOW), nil when no policy applies.
    public var policy: String?
    /// True when dry-run policies would deny a request that is allowed (Istio's shadow effect).
    public var dryRunDenied: Bool
    public var dryRunPolicy: String?
    /// Matching AUDIT policies.
    public var audited: [String]
}

/// Evaluates policies as Istio does: a matching DENY denies; with no ALLOW policy everything else is allowed;
/// otherwise a matching ALLOW allows and anything else is denied. Dry-run policies are evaluated the same way on
/// their own (Envoy's shadow rules), and only recorded.
public struct PolicyEngine: Sendable {
    public let policies: [AuthorizationPolicy]

    public init(policies: [AuthorizationPolicy]) { self.policies = policies }

    public func decide(_ request: AuthorizationRequest) -> AuthorizationDecision {
        let enforced = policies.filter { !$0.dryRun }
        let (allowed, policy) = Self.evaluate(enforced, request)
        var decision = AuthorizationDecision(
            allowed: allowed, policy: policy, dryRunDenied: false, dryRunPolicy: nil,
            audited: policies.filter { $0.action == .audit && Self.matches($0, request) }.map(\.qualifiedName))
        let shadow = policies.filter { $0.dryRun && $0.action != .audit }
        if allowed, !shadow.isEmpty {
            // As Envoy's shadow rules: the dry-run policies evaluated on their own.
            let (shadowAllowed, shadowPolicy) = Self.evaluate(shadow, request)
            if !shadowAllowed {
                decision.dryRunDenied = true
                decision.dryRunPolicy = shadowPolicy ?? policies.first(where: \.dryRun)?.qualifiedName
            }
        }
        return decision
    }

    static func evaluate(_ policies: [AuthorizationPolicy], _ request: AuthorizationRequest) -> (Bool, String?) {
        if let deny = policies.first(where: { $0.action == .deny && matches($0, request) }) {
            return (false, deny.qualifiedName)
        }
        let allows = policies.filter { $0.action == .allow }
        if allows.isEmpty { return (true, nil) }
        if let allow = allows.first(where: { matches($0, request) }) { return (true, allow.qualifiedName) }
        // Denied because no ALLOW policy matched: name the dry-run one if that is what made the difference.
        return (false, allows.first(where: \.dryRun)?.qualifiedName ?? allows.first?.qualifiedName)
    }

    static func matches(_ policy: AuthorizationPolicy, _ request: AuthorizationRequest) -> Bool {
        policy.rules.contains { rule in
            (rule.from.isEmpty || rule.from.contains { matches($0, request) })
                && (rule.to.isEmpty || rule.to.contains { matches($0, request) })
        }
    }

    static func matches(_ s: AuthorizationPolicy.Source, _ r: AuthorizationRequest) -> Bool {
        if let list = s.principals {
            guard let p = r.istioPrincipal, list.contains(where: { pattern($0, p, principal: true) }) else { return false }
        }
        if let list = s.notPrincipals, let p = r.istioPrincipal, list.contains(where: { pattern($0, p, principal: true) }) {
            return false
        }
        if let list = s.namespaces {
            guard let n = r.namespace, list.contains(where: { pattern($0, n, principal: false) }) else { return false }
        }
        if let list = s.notNamespaces, let n = r.namespace, list.contains(where: { pattern($0, n, principal: false) }) {
            return false
        }
        return true
    }

    static func matches(_ o: AuthorizationPolicy.Operation, _ r: AuthorizationRequest) -> Bool {
        let method = r.method.uppercased()
        if let list = o.methods, !list.contains(where: { pattern($0.uppercased(), method, principal: false) }) { return false }
        if let list = o.notMethods, list.contains(where: { pattern($0.uppercased(), method, principal: false) }) { return false }
        let path = r.matchPath
        if let list = o.paths, !list.contains(where: { pattern($0, path, principal: false) }) { return false }
        if let list = o.notPaths, list.contains(where: { pattern($0, path, principal: false) }) { return false }
        return true
    }

    /// Istio's string match: `*` (any), `prefix*`, `*suffix`, or exact. Principals may be written with `spiffe://`.
    static func pattern(_ p: String, _ value: String, principal: Bool) -> Bool {
        var p = p
        if principal, p.hasPrefix("spiffe://") { p.removeFirst(9) }
        if p == "*" { return true }
        if p.hasSuffix("*") { return value.hasPrefix(p.dropLast()) }
        if p.hasPrefix("*") { return value.hasSuffix(p.dropFirst()) }
        return p == value
    }
}
