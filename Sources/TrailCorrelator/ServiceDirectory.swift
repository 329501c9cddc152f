import TrailCore

/// One service name ↔ SPIFFE ID pair.
public struct ServiceIdentityPair: Sendable, Hashable, Comparable {
    public var service: String
    public var spiffeID: String
    public init(service: String, spiffeID: String) {
        self.service = service
        self.spiffeID = spiffeID
    }
    public static func < (a: ServiceIdentityPair, b: ServiceIdentityPair) -> Bool {
        (a.service, a.spiffeID) < (b.service, b.spiffeID)
    }
}

/// The service name ↔ SPIFFE ID mapping learned from observations that carry both for the same endpoint
/// (an inbound sidecar line names its own SPIFFE ID and its service; a span may carry both).
///
/// A service that maps to more than one SPIFFE ID is ambiguous and is not mapped at all: Trail never
/// guesses an identity.
public struct ServiceDirectory: Sendable, Hashable {
    public private(set) var identitiesByService: [String: Set<String>] = [:]

    public init() {}

    public init(pairs: [(service: String, spiffeID: String)]) {
        for pair in pairs { learn(service: pair.service, spiffeID: pair.spiffeID) }
    }

    public mutating func learn(service: String, spiffeID: String) {
        identitiesByService[service, default: []].insert(spiffeID)
    }

    /// The one SPIFFE ID of a service, nil when unknown or ambiguous.
    public func spiffeID(forService service: String) -> String? {
        guard let ids = identitiesByService[service], ids.count == 1 else { return nil }
        return ids.first
    }

}
