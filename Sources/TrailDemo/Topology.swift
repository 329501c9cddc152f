/// The demo's estate: a shop in trust domain `shop.example`. External callers reach `web`, `inventory` and (for
/// partners) `orders` through the gateway; web → orders → payments → ledger carries a checkout; `scheduler` is an
/// internal job that calls services directly (an allowed entry point).
public enum DemoTopology {
    public static let trustDomain = "shop.example"
    public static let namespace = "shop"

    /// Sample services in start order: every service after the ones it calls.
    public static let services = ["ledger", "payments", "inventory", "orders", "web", "scheduler"]

    public static func spiffeID(_ service: String) -> String { "spiffe://\(trustDomain)/ns/\(namespace)/sa/\(service)" }
    public static let gatewaySPIFFEID = "spiffe://\(trustDomain)/ns/edge/sa/gateway"
    public static let serveSPIFFEID = "spiffe://\(trustDomain)/trail/serve"

    /// The services a service's sidecar has outbound routes to. `inventory` may reach payments only because the
    /// compromised-workload incident needs a route to try; its policy refuses it.
    public static func upstreams(of service: String) -> [String] {
        switch service {
        case "web": return ["inventory", "orders"]
        case "orders": return ["inventory", "payments"]
        case "payments": return ["ledger"]
        case "inventory": return ["payments"]
        case "scheduler": return ["orders", "inventory", "ledger"]
        default: return []
        }
    }

    /// How the sidecar in front of a service accepts callers: ledger is in the middle of a PERMISSIVE rollout.
    public static func mode(of service: String) -> String { service == "ledger" ? "PERMISSIVE" : "STRICT" }

    /// One call a service makes while it serves a request.
    public struct Call: Sendable, Equatable {
        public var service: String
        public var method: String
        public var path: String
    }

    /// The calls `service` makes, in order, to serve `method path` (path without the query).
    public static func calls(service: String, method: String, path: String) -> [Call] {
        switch service {
        case "web":
            if path.hasPrefix("/shop/products/") {
                return [Call(service: "inventory", method: "GET", path: "/inventory/items/" + path.dropFirst("/shop/products/".count))]
            }
            if method == "POST" && path == "/shop/checkout" { return [Call(service: "orders", method: "POST", path: "/orders")] }
            if path.hasPrefix("/shop/orders") { return [Call(service: "orders", method: method, path: String(path.dropFirst("/shop".count)))] }
            return []
        case "orders":
            if method == "POST" && (path == "/orders" || path == "/partner/orders") {
                return [Call(service: "inventory", method: "POST", path: "/inventory/reserve"),
                        Call(service: "payments", method: "POST", path: "/pay/charge")]
            }
            return []
        case "payments":
            if method == "POST" && path == "/pay/charge" { return [Call(service: "ledger", method: "POST", path: "/ledger/entries")] }
            return []
        default:
            return []
        }
    }

    /// Istio AuthorizationPolicies per service (YAML documents), or nil.
    public static func policies(of service: String) -> String? {
        switch service {
        case "payments":
            return """
                apiVersion: security.istio.io/v1
                kind: AuthorizationPolicy
                metadata:
                  name: payments-only-from-orders
                  namespace: shop
                spec:
                  action: ALLOW
                  rules:
                  - from:
                    - source:
                        principals: ["\(trustDomain)/ns/shop/sa/orders"]
                    to:
                    - operation:
                        paths: ["/pay/*"]
                """
        case "ledger":
            return """
                apiVersion: security.istio.io/v1
                kind: AuthorizationPolicy
                metadata:
                  name: ledger-writes-only-from-payments
                  namespace: shop
                  annotations:
                    istio.io/dry-run: "true"
                spec:
                  action: DENY
                  rules:
                  - from:
                    - source:
                        notPrincipals: ["\(trustDomain)/ns/shop/sa/payments"]
                    to:
                    - operation:
                        methods: ["POST"]
                        paths: ["/ledger/entries*"]
                """
        default:
            return nil
        }
    }
}
