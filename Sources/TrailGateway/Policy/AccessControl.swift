/// Kong's acl plugin for one route. Deny entries win over allow entries.
package struct AccessControl: Sendable {
    package enum Decision: Sendable, Equatable {
        case allow
        /// 403 with a reason that names no credential.
        case deny(reason: String)
    }

    /// - Parameters:
    ///   - consumer: the authenticated consumer's username (the anonymous consumer for anonymous callers).
    ///   - groups: that consumer's groups.
    package static func decide(_ rule: ACLRule?, consumer: String, groups: [String]) -> Decision {
        guard let rule else { return .allow }
        if rule.denyConsumers.contains(consumer) || groups.contains(where: rule.denyGroups.contains) {
            return .deny(reason: "consumer is denied by the route's acl")
        }
        let hasAllowList = !rule.allowConsumers.isEmpty || !rule.allowGroups.isEmpty
        if hasAllowList && !rule.allowConsumers.contains(consumer) && !groups.contains(where: rule.allowGroups.contains) {
            return .deny(reason: "consumer is not allowed by the route's acl")
        }
        return .allow
    }
}
