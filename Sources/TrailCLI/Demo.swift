import ArgumentParser
import Foundation
import TrailCore
import TrailFormats
import GRDB
import TrailStore

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay the recorded shop estate (gateway, mesh, traces, CA) into the store and show what Trail finds.",
        discussion: """
            The shop scenario in fixtures/scenarios/shop holds a Kong gateway's logs, an Istio mesh's access logs,
            OTLP spans and an openssl-made CA with a CRL. The demo ingests them into the store (--db, default
            ./trail.db), prints the chains, identities and findings, and the commands to explore them.
            """)

    @OptionGroup var store: StoreOptions
    @Option(name: .long, help: "The fixtures folder (default: ./fixtures, else the one in Trail's checkout).")
    var fixtures: String?

    func run() throws {
        try runReporting {
            let root = try FixtureDirectory.locate(fixtures)
            let shop = root + "/scenarios/shop"
            let identity = root + "/identity"
            let fm = FileManager.default
            let scenarioFiles = try fm.contentsOfDirectory(atPath: shop).sorted()
                .filter { $0.hasSuffix(".ndjson") || $0.hasSuffix(".json") || $0.hasSuffix(".log") }
                .filter { !$0.hasPrefix("expected") }
                .map { shop + "/" + $0 }
            let files = [identity + "/root-ca.pem", identity + "/svids.pem", identity + "/crl.pem"] + scenarioFiles
            writeOut("Trail demo: replaying the shop estate into \(store.path)\n")
            for f in files { writeOut("  \(f)\n") }
            let s = try store.open(readOnly: false)
            if let entry = try? String(contentsOfFile: shop + "/entry-points.txt", encoding: .utf8) {
                let ids = entry.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty && !$0.hasPrefix("#") }
                try s.setAllowedEntryPoints(try s.allowedEntryPoints() + ids)
            }
            let summary = try IngestDriver(store: s, format: nil, options: ParseOptions()).ingest(files: files)
            writeOut("\n" + summary.render())
            if summary.totals.rejected > 0 {
                writeOut("(the scenario holds deliberately malformed records: Trail keeps their neighbours and lists them in `trail rejects`)\n")
            }

            let chains = try s.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM chain") ?? 0 }
            let identities = try s.identities(at: .now)
            let findings = try s.findings(kinds: [], window: TimeWindow())
            writeOut("\n\(chains) chains, \(identities.count) identities, \(findings.count) findings:\n")
            var byKind: [String: Int] = [:]
            for f in findings { byKind[f.kind, default: 0] += 1 }
            for (kind, n) in byKind.sorted(by: { $0.key < $1.key }) { writeOut("  \(kind): \(n)\n") }

            let db = store.db.map { " --db \($0)" } ?? ""
            // Commands as this binary was invoked, so they can be pasted as they are (`.build/release/trail`).
            let trail = CommandLine.arguments[0].contains("/") ? CommandLine.arguments[0] : "trail"
            writeOut("\nExplore:\n")
            writeOut("  \(trail) who-accessed 'POST /payments/*'\(db)\n")
            if let revoked = findings.first(where: { $0.kind == FindingKind.revokedCertificate.rawValue }) {
                writeOut("  \(trail) chain \(revoked.traceID)\(db)          # \(revoked.kind): \(revoked.identity ?? "")\n")
            }
            if let bypass = findings.first(where: { $0.kind == FindingKind.edgeBypass.rawValue }) {
                writeOut("  \(trail) chain \(bypass.traceID)\(db)          # \(bypass.kind)\n")
            }
            writeOut("  \(trail) findings\(db)\n")
            writeOut("  \(trail) activity alice\(db)\n")
            writeOut("  \(trail) identities --at 2026-05-04T10:30:00Z\(db)\n")
            writeOut("  \(trail) query --list\(db)\n")
        }
    }
}
