import ArgumentParser
import Foundation
import TrailCore
import TrailReport
import TrailStore

extension ReportFormat: ExpressibleByArgument {}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write an incident report (Markdown, HTML, JSON, CSV or OCSF) with its evidence and their hashes.",
        discussion: """
            Give exactly one scope: --trace, --finding, --principal, --identity, --resource or --query (with --param).
            The JSON report and --evidence-bundle carry every raw record, so `trail verify` can check them later,
            offline or against the store.
            """)
    @OptionGroup var store: StoreOptions
    @OptionGroup var window: WindowOptions

    @Option(name: .long, help: "One trace, by id.") var trace: String?
    @Option(name: .long, help: "One finding, by its id (see `trail findings`).") var finding: String?
    @Option(name: .long, help: "Everything a consumer, JWT subject, API key or workload did.") var principal: String?
    @Option(name: .long, help: "Every chain a SPIFFE ID took part in.") var identity: String?
    @Option(name: .long, help: "Who reached a resource: SPIFFE ID, service name, or [METHOD] /path[*].") var resource: String?
    @Option(name: .long, help: "The traces a named query returns (its trace_id column).") var query: String?
    @Option(name: .long, help: "A parameter of --query as key=value (repeatable).") var param: [String] = []
    @Option(name: .long, help: "Folder of query files (as for `trail query`).") var queries: String?
    @Option(name: .long, help: "md, html, json, csv or ocsf.") var format: ReportFormat = .md
    @Option(name: [.customShort("o"), .long], help: "Write the report to this file instead of stdout.") var output: String?
    @Option(name: .long, help: "Also write the evidence bundle (every raw record with its SHA-256) to this file.")
    var evidenceBundle: String?

    func run() throws {
        try runReporting {
            let scope = try scope()
            let request = try request(scope)
            let s = try store.open(readOnly: true)
            let report = try ReportBuilder(store: s).build(request)
            let text = format.renderer.render(report)
            if let output {
                try write(text, to: output)
                printError("wrote \(output): \(report.chains.count) chains, \(report.findings.count) findings, \(report.evidence.records.count) evidence records, set sha256 \(report.evidence.setSHA256)")
            } else {
                writeOut(text)
            }
            if let evidenceBundle {
                try write(EvidenceBundle.file(report.evidence), to: evidenceBundle)
                printError("wrote evidence bundle \(evidenceBundle): \(report.evidence.records.count) records")
            }
        }
    }

    /// Exactly one scope; `--param` only with `--query`.
    func scope() throws -> ReportScope {
        var scopes: [(String, ReportScope)] = []
        if let trace { scopes.append(("--trace", .trace(trace))) }
        if let finding { scopes.append(("--finding", .finding(finding))) }
        if let principal { scopes.append(("--principal", .principal(principal))) }
        if let identity {
            guard identity.lowercased().hasPrefix("spiffe://") else {
                throw CLIError("--identity '\(identity)' is not a SPIFFE ID (spiffe://trust-domain/path); for a service name use --principal or --resource")
            }
            scopes.append(("--identity", .identity(identity)))
        }
        if let resource { scopes.append(("--resource", .resource(resource))) }
        var parameters: [(String, String)] = []
        for p in param {
            let parts = p.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else { throw CLIError("--param '\(p)' must be key=value") }
            parameters.append((String(parts[0]), String(parts[1])))
        }
        if let query { scopes.append(("--query", .query(name: query, parameters: parameters))) }
        if query == nil && !param.isEmpty { throw CLIError("--param applies to --query only") }
        guard scopes.count == 1 else {
            if scopes.isEmpty {
                throw CLIError("name what to report on: --trace, --finding, --principal, --identity, --resource or --query")
            }
            throw CLIError("give one scope, not \(scopes.map(\.0).joined(separator: " and "))")
        }
        return scopes[0].1
    }

    func request(_ scope: ReportScope) throws -> ReportRequest {
        var request = ReportRequest(scope: scope, window: try window.window(), storePath: store.path)
        if case .query(let name, let parameters) = scope {
            let dir = try QueryDirectory.locate(queries)
            guard let q = try NamedQuery.loadAll(directory: dir).first(where: { $0.name == name }) else {
                throw CLIError("no query '\(name)' in \(dir); see `trail query --list`")
            }
            request.query = q
            var given = Dictionary(parameters, uniquingKeysWith: { _, last in last })
            // A query that declares `since`/`until` gets the report's window unless --param names them.
            let declared = Set(q.parameters.map(\.name))
            if let since = request.window.since, declared.contains("since"), given["since"] == nil {
                given["since"] = since.rfc3339(fractionDigits: 9)
            }
            if let until = request.window.until, declared.contains("until"), given["until"] == nil {
                given["until"] = until.rfc3339(fractionDigits: 9)
            }
            request.queryParameters = given
        }
        return request
    }

    func write(_ text: String, to path: String) throws {
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        } catch {
            throw CLIError("cannot write \(path): \((error as NSError).localizedDescription)")
        }
    }
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a report's evidence: against the store (--db), an evidence bundle (--bundle), or the records the report carries.",
        discussion: """
            REPORT is a JSON report (`trail report --format json`) or an evidence bundle (`--evidence-bundle`).
            Exit codes: 0 every record intact; 2 records changed or missing, or the manifest was edited; 1 could not run.
            """)
    @Argument(help: "The JSON report or evidence bundle to check.") var report: String
    @Option(name: .long, help: "Check against this store: the records as they are stored now.") var db: String?
    @Option(name: .long, help: "Check against this evidence bundle file, offline.") var bundle: String?
    @Option(name: .long, help: "Also require this set SHA-256 (the one recorded in the ticket).") var expectSetSha256: String?

    func run() throws {
        var failed = false
        try runReporting {
            if db != nil && bundle != nil { throw CLIError("give --db or --bundle, not both") }
            let claimed = try ClaimedEvidence.parse(try read(report), name: report)
            let summary: EvidenceVerifier.Summary
            var against: String
            if let db {
                guard FileManager.default.fileExists(atPath: db) else { throw CLIError("no store at \(db)") }
                let s = try TrailStore(path: db, readOnly: true)
                against = "the store \(db)"
                summary = EvidenceVerifier.verify(claimed) { e in try s.evidence(id: e.id)?.bytes }
            } else if let bundle {
                let b = try ClaimedEvidence.parse(try read(bundle), name: bundle)
                let byID = Dictionary(b.entries.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                against = "the bundle \(bundle)"
                summary = EvidenceVerifier.verify(claimed) { e in
                    guard let entry = byID[e.id] else { return nil }
                    guard let bytes = entry.bytes else { throw CLIError("the bundle lists record \(e.id) without its data") }
                    return bytes
                }
            } else {
                guard claimed.entries.allSatisfy({ $0.bytes != nil }) else {
                    throw CLIError("\(report) does not carry the records' data; check it with --db STORE or --bundle FILE")
                }
                against = "the records it carries"
                summary = EvidenceVerifier.verify(claimed) { $0.bytes }
            }
            var lines: [String] = []
            for p in summary.problems {
                let what: String
                switch p.outcome {
                case .intact: continue
                case .changed(let actual): what = "changed: sha256 is now \(actual), the report says \(p.expected)"
                case .missing: what = "missing"
                case .unreadable(let why): what = "unreadable: \(why)"
                }
                lines.append("record \(p.id) (\(TextTable.sanitize(p.source)):\(p.line)) \(what)")
            }
            if !summary.manifestConsistent {
                lines.append("the manifest was edited: its records hash to set sha256 \(summary.recomputedSet), it states \(summary.claimedSet)")
            }
            if let expect = expectSetSha256?.lowercased(), expect != summary.recomputedSet {
                lines.append("set sha256 is \(summary.recomputedSet), expected \(expect)")
            }
            if lines.isEmpty {
                writeOut("OK: \(summary.results.count) evidence records intact against \(against); set sha256 \(summary.recomputedSet)\n")
            } else {
                writeOut(lines.joined(separator: "\n") + "\n")
                printError("error: evidence of \(report) does not match \(against): \(summary.problems.count) of \(summary.results.count) records changed or missing\(summary.manifestConsistent ? "" : ", manifest edited")")
                failed = true
            }
        }
        if failed { throw ExitCode(2) }
    }

    func read(_ path: String) throws -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path): no such file") }
        return Array(d)
    }
}
