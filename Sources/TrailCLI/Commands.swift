import ArgumentParser
import Foundation
import TrailCore
import TrailStore

struct CorrelateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "correlate",
        abstract: "Rebuild every chain, hop and finding from the stored observations and identity events.")
    @OptionGroup var store: StoreOptions

    func run() throws {
        try runReporting {
            let s = try store.open(readOnly: false)
            let counts = try s.correlate(DirtySet(), all: true)
            writeOut("correlated \(counts.traces) traces: \(counts.hops) hops, \(counts.findings) findings\n")
        }
    }
}

struct ChainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chain",
        abstract: "Show the whole call chain of one trace: origin, every hop with its identities and certificate state, findings and gaps.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The trace id (32 hex; 16-hex B3 ids are padded).") var traceID: String

    func run() throws {
        try runReporting {
            let s = try store.open(readOnly: true)
            let id = TrailStore.normalizeTraceArgument(traceID)
            guard let chain = try s.chain(traceID: id) else {
                throw StoreError("no chain with trace id \(id) in \(s.path)")
            }
            let o = chain.origin
            var text = ""
            if output.format == .table {
                text += "trace \(chain.traceID)\norigin: \(TextTable.sanitize(o.principal)) (\(o.principalType.rawValue))"
                text += o.clientIP.map { " from \(TextTable.sanitize($0))" } ?? ""
                text += o.viaGateway ? " via the gateway\n" : " inside the mesh\n"
            }
            let out = Output(
                columns: ["hop", "call", "request", "status", "start", "transport", "serial", "certificate", "policy", "findings"],
                rows: Render.hopRows(chain), json: Render.chain(chain))
            text += out.render(output.format)
            if output.format == .table {
                for g in chain.gaps { text += "gap before hop \(g.beforeHop): \(TextTable.sanitize(g.detail))\n" }
                for f in chain.findings {
                    text += "finding \(f.kind.rawValue) (\(f.severity.rawValue)) at hop \(f.hopIndex.map(String.init) ?? "-"): \(TextTable.sanitize(f.detail))\n"
                }
            }
            writeOut(text)
        }
    }
}

struct WhoAccessedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "who-accessed",
        abstract: "Who reached a resource, from where, through which chain.",
        discussion: "RESOURCE is a SPIFFE ID, a service name, or a path: exact (/payments/refund), prefix (/payments/*), optionally with a method ('POST /payments/*').")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var window: WindowOptions
    @Argument(help: "SPIFFE ID, service name, or [METHOD] /path[*].") var resource: String

    func run() throws {
        try runReporting {
            let s = try store.open(readOnly: true)
            let rows = try s.whoAccessed(ResourceMatcher.parse(resource), window: try window.window())
            let json = JSONValue.array(rows.map { r in
                .object([
                    ("principal", .string(r.principal)),
                    ("principal_type", .string(r.principalType)),
                    ("client_ip", .from(r.clientIPs.last)),
                    ("client_ips", .from(r.clientIPs)),
                    ("chain", .from(r.chain)),
                    ("caller", .string(r.caller)),
                    ("resource", .string(r.resource)),
                    ("calls", .int(Int64(r.calls))),
                    ("first_seen", .string(r.firstSeen.description)),
                    ("last_seen", .string(r.lastSeen.description)),
                    ("trace_ids", .from(r.traceIDs)),
                    ("findings", .from(r.findings)),
                ])
            })
            let table = rows.map { r in
                [r.principal, r.principalType, r.clientIPs.joined(separator: ","), r.chain.joined(separator: " → "),
                 String(r.calls), r.firstSeen.description, r.lastSeen.description, r.findings.joined(separator: ",")]
            }
            writeOut(Output(
                columns: ["principal", "type", "client ip", "chain", "calls", "first seen", "last seen", "findings"],
                rows: table, json: json).render(output.format))
        }
    }
}

struct ActivityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "activity",
        abstract: "Everything an end user, consumer, API key or workload did, as chains.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var window: WindowOptions
    @Argument(help: "Consumer, JWT subject, API key credential, certificate subject, SPIFFE ID or service name.")
    var principal: String

    func run() throws {
        try runReporting {
            let s = try store.open(readOnly: true)
            let traces = try s.activity(principal: principal, window: try window.window())
            let chains = try traces.compactMap { try s.chain(traceID: $0) }
            let rows = chains.map { c -> [String] in
                let longest = c.hops.map(\.chainPath).max { $0.count < $1.count } ?? []
                let requests = c.hops.filter { $0.parent == nil }.map { [$0.method, $0.path].compactMap { $0 }.joined(separator: " ") }
                return [c.traceID, c.start.description, c.origin.principal, c.origin.clientIP ?? "",
                        requests.joined(separator: "; "), longest.joined(separator: " → "), String(c.hops.count),
                        Set(c.findings.map(\.kind.rawValue)).sorted().joined(separator: ",")]
            }
            writeOut(Output(
                columns: ["trace", "start", "principal", "client ip", "request", "chain", "hops", "findings"],
                rows: rows, json: .array(chains.map { Render.chain($0) })).render(output.format))
        }
    }
}

struct FindingsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "findings",
        abstract: "List findings: \(FindingKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var window: WindowOptions
    @Option(name: .long, help: "Only this kind (repeatable).") var kind: [String] = []
    @Option(name: .long, help: "Only findings of this trace.") var trace: String?

    func validate() throws {
        for k in kind where FindingKind(rawValue: k) == nil {
            throw ValidationError("unknown finding kind '\(k)'; kinds: \(FindingKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        try runReporting {
            let s = try store.open(readOnly: true)
            let rows = try s.findings(kinds: kind, window: try window.window(), traceID: trace.map(TrailStore.normalizeTraceArgument))
            writeOut(Output(
                columns: ["id", "time", "kind", "severity", "trace", "principal", "identity", "serial", "detail"],
                rows: rows.map { [$0.id, $0.time.description, $0.kind, $0.severity, $0.traceID, $0.principal ?? "",
                                  $0.identity ?? "", $0.serial ?? "", $0.detail] },
                json: .array(rows.map(Render.finding))).render(output.format))
        }
    }
}

struct IdentitiesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identities",
        abstract: "Known SPIFFE IDs, their certificates and each certificate's state.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(name: .long, help: "Judge certificate states at this time (RFC 3339 or a duration before now). Default: now.")
    var at: String?

    func run() throws {
        try runReporting {
            let s = try store.open(readOnly: true)
            let now = Timestamp.now
            var time = now
            if let at {
                guard let t = TimeArgument.parse(at, now: now) else { throw CLIError("--at '\(at)' is not a time") }
                time = t
            }
            let ids = try s.identities(at: time)
            var rows: [[String]] = []
            for i in ids {
                let certs = i.certificates.map { "\($0.serial):\($0.state)" }.joined(separator: " ")
                rows.append([i.spiffeID, i.services.joined(separator: ","), certs, String(i.callsAsCaller),
                             String(i.callsAsCallee), i.lastSeen?.description ?? ""])
            }
            let json = JSONValue.array(ids.map { i in
                .object([
                    ("spiffe_id", .string(i.spiffeID)),
                    ("services", .from(i.services)),
                    ("certificates", .array(i.certificates.map { c in
                        .object([
                            ("serial", .string(c.serial)),
                            ("fingerprint_sha256", .from(c.fingerprint)),
                            ("not_before", .from(c.notBefore?.description)),
                            ("not_after", .from(c.notAfter?.description)),
                            ("issuer", .from(c.issuer)),
                            ("state", .string(c.state)),
                            ("events", .array(c.events.map { e in
                                .object([("kind", .string(e.kind)), ("time", .string(e.time.description)), ("reason", .from(e.reason))])
                            })),
                        ])
                    })),
                    ("calls_as_caller", .int(Int64(i.callsAsCaller))),
                    ("calls_as_callee", .int(Int64(i.callsAsCallee))),
                    ("first_seen", .from(i.firstSeen?.description)),
                    ("last_seen", .from(i.lastSeen?.description)),
                ])
            })
            writeOut(Output(
                columns: ["spiffe id", "services", "certificates (serial:state at \(time))", "as caller", "as callee", "last seen"],
                rows: rows, json: json).render(output.format))
        }
    }
}

struct EvidenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evidence",
        abstract: "Print a raw record exactly as it was ingested (the evidence behind hops and findings).")
    @OptionGroup var store: StoreOptions
    @Flag(name: .long, help: "Print where it came from and its SHA-256 on stderr.") var verbose = false
    @Flag(name: .long, help: "Write the exact bytes even to a terminal (by default a terminal gets control characters escaped).")
    var raw = false
    @Argument(help: "Raw record id (as listed in `evidence` of chains and findings).") var id: Int64

    func run() throws {
        try runReporting {
            let s = try store.open(readOnly: true)
            guard let e = try s.evidence(id: id) else { throw StoreError("no raw record \(id) in \(s.path)") }
            if verbose {
                printError("record \(e.id): \(e.format) from \(TextTable.sanitize(e.source)) line \(e.line)\(e.detail.map { " \(TextTable.sanitize($0))" } ?? ""), sha256 \(e.sha256)")
            }
            guard !raw, isatty(STDOUT_FILENO) != 0 else {
                FileHandle.standardOutput.write(Data(e.bytes))
                return
            }
            // A terminal would run the escape sequences a hostile record holds: show them escaped. A pipe or a
            // file (or --raw) gets the bytes exactly as ingested.
            guard let text = String(bytes: e.bytes, encoding: .utf8) else {
                writeOut("(\(e.bytes.count) bytes that are not UTF-8 text: pipe the output, or pass --raw, to get them)\n")
                return
            }
            let shown = text.split(separator: "\n", omittingEmptySubsequences: false).map { TextTable.sanitize(String($0)) }
                .joined(separator: "\n")
            writeOut(shown.hasSuffix("\n") ? shown : shown + "\n")
            if shown != text { printError("(control characters shown escaped on a terminal: pipe the output, or pass --raw, for the exact bytes)") }
        }
    }
}

struct RejectsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rejects",
        abstract: "List rejected records with file, line and reason.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(name: .long, help: "At most this many.") var limit = 1000

    func run() throws {
        try runReporting {
            let s = try store.open(readOnly: true)
            let rows = try s.rejects(limit: limit)
            writeOut(Output(
                columns: ["source", "line", "format", "where", "reason"],
                rows: rows.map { [$0.source, String($0.line), $0.format ?? "", $0.detail ?? "", $0.reason] },
                json: .array(rows.map { r in
                    .object([("source", .string(r.source)), ("line", .int(Int64(r.line))), ("format", .from(r.format)),
                             ("detail", .from(r.detail)), ("reason", .string(r.reason)), ("ingested_at", .string(r.time.description))])
                })).render(output.format))
        }
    }
}

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Run a named query from queries/NAME.sql (read-only, parameters bound).")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(name: .long, help: "Folder of query files. Default: $TRAIL_QUERIES, else ./queries, else the queries folder of Trail's checkout.")
    var queries: String?
    @Option(name: .long, help: "A parameter as key=value (repeatable).") var param: [String] = []
    @Flag(name: .long, help: "List the available queries and their parameters.") var list = false
    @Argument(help: "Query name (file name without .sql).") var name: String?

    func validate() throws {
        if !list && name == nil { throw ValidationError("name a query, or pass --list") }
        for p in param where p.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first?.isEmpty ?? true
            || !p.contains("=")
        {
            throw ValidationError("--param '\(p)' must be key=value")
        }
    }

    func run() throws {
        try runReporting {
            let dir = try QueryDirectory.locate(queries)
            let all = try NamedQuery.loadAll(directory: dir)
            if list {
                let rows = all.map { q in
                    [q.name, q.description, q.parameters.map { p in
                        "\(p.name):\(p.kind.rawValue)\(p.defaultValue.map { "=\($0)" } ?? "")"
                    }.joined(separator: " ")]
                }
                let json = JSONValue.array(all.map { q in
                    .object([("name", .string(q.name)), ("description", .string(q.description)),
                             ("parameters", .array(q.parameters.map { p in
                                 .object([("name", .string(p.name)), ("type", .string(p.kind.rawValue)),
                                          ("default", .from(p.defaultValue)), ("description", .string(p.description))])
                             }))])
                })
                writeOut(Output(columns: ["name", "description", "parameters"], rows: rows, json: json).render(output.format))
                return
            }
            guard let name, let q = all.first(where: { $0.name == name }) else {
                throw StoreError("no query '\(name ?? "")' in \(dir); available: \(all.map(\.name).joined(separator: ", "))")
            }
            var given: [String: String] = [:]
            for p in param {
                let parts = p.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                given[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
            }
            let s = try store.open(readOnly: true)
            let result = try s.run(q, arguments: try q.arguments(given, now: .now))
            let json = JSONValue.array(result.rows.map { row in .object(Array(zip(result.columns, row))) })
            let rows = result.rows.map { $0.map { v -> String in
                switch v {
                case .null: return ""
                case .string(let s): return s
                default: return v.serialized()
                }
            } }
            writeOut(Output(columns: result.columns, rows: rows, json: json).render(output.format))
        }
    }
}

enum QueryDirectory {
    static func locate(_ explicit: String?) throws -> String {
        let fm = FileManager.default
        if let explicit { return explicit }
        if let env = ProcessInfo.processInfo.environment["TRAIL_QUERIES"] { return env }
        if fm.fileExists(atPath: "queries") { return "queries" }
        // The checkout the executable was built in (.build/<config>/trail).
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent("queries").path
            if fm.fileExists(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        throw StoreError("no queries folder found: run from Trail's checkout, or pass --queries DIR")
    }
}
