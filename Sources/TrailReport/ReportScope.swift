import TrailCore
import TrailStore

/// What a report is about: exactly one of the scopes `trail report` accepts.
public enum ReportScope: Sendable, Hashable {
    /// One trace, by id.
    case trace(String)
    /// One finding, by its stable id; the report covers the chain it was found in.
    case finding(String)
    /// Everything an end user, consumer, API key, JWT subject or workload did.
    case principal(String)
    /// Every chain a SPIFFE ID took part in, as caller or callee.
    case identity(String)
    /// Who reached a resource: a SPIFFE ID, a service name or `[METHOD] /path[*]`.
    case resource(String)
    /// The traces a named query returns (its `trace_id` column), with bound parameters.
    case query(name: String, parameters: [(String, String)])

    public static func == (a: ReportScope, b: ReportScope) -> Bool { a.arguments == b.arguments }
    public func hash(into h: inout Hasher) { h.combine(arguments) }

    /// The `trail report` arguments that select this scope.
    public var arguments: [String] {
        switch self {
        case .trace(let id): return ["--trace", id]
        case .finding(let id): return ["--finding", id]
        case .principal(let p): return ["--principal", p]
        case .identity(let i): return ["--identity", i]
        case .resource(let r): return ["--resource", r]
        case .query(let name, let parameters):
            return ["--query", name] + parameters.flatMap { ["--param", "\($0.0)=\($0.1)"] }
        }
    }

    /// A short human title: "trace 4bf9…", "principal alice".
    public var title: String {
        switch self {
        case .trace(let id): return "trace \(id)"
        case .finding(let id): return "finding \(id)"
        case .principal(let p): return "principal \(p)"
        case .identity(let i): return "identity \(i)"
        case .resource(let r): return "resource \(r)"
        case .query(let name, let parameters):
            return "query \(name)" + (parameters.isEmpty ? "" : " (" + parameters.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") + ")")
        }
    }

    /// The JSON name of the scope kind.
    public var kind: String {
        switch self {
        case .trace: return "trace"
        case .finding: return "finding"
        case .principal: return "principal"
        case .identity: return "identity"
        case .resource: return "resource"
        case .query: return "query"
        }
    }
}

/// Everything the builder needs besides the store: the scope, the window, and how the report was asked for
/// (so that it can print the exact commands that reproduce it).
public struct ReportRequest: Sendable {
    public var scope: ReportScope
    public var window: TimeWindow
    /// The store path as the user gave it, repeated in the reproduction commands.
    public var storePath: String
    /// For `.query` scopes: the loaded query and its bound arguments are run by the builder.
    public var query: NamedQuery?
    /// Parameters given to the named query, already converted (see ``NamedQuery/arguments(_:now:)``).
    public var queryParameters: [String: String]

    public init(scope: ReportScope, window: TimeWindow, storePath: String, query: NamedQuery? = nil,
                queryParameters: [String: String] = [:]) {
        self.scope = scope
        self.window = window
        self.storePath = storePath
        self.query = query
        self.queryParameters = queryParameters
    }
}
