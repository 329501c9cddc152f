import Foundation
import TrailCore

/// The evidence section of a JSON report, which is also the whole content of an evidence bundle file
/// (`trail report --evidence-bundle FILE`): every record with its hash and its bytes.
///
/// ```json
/// {"algorithm": "sha256", "set_sha256": "…", "set_hash": "…definition…", "count": 2,
///  "records": [{"id": 7, "sha256": "…", "format": "kong", "source": "kong.ndjson", "line": 1,
///               "encoding": "utf-8", "data": "{…}"}]}
/// ```
/// `encoding` is `utf-8` (data is the text) or `base64` (for bytes that are not UTF-8, such as protobuf).
public enum EvidenceBundle {
    public static func json(_ manifest: EvidenceManifest, includeData: Bool) -> JSONValue {
        .object([
            ("algorithm", .string("sha256")),
            ("set_sha256", .string(manifest.setSHA256)),
            ("set_hash", .string(EvidenceManifest.setHashDefinition)),
            ("count", .int(Int64(manifest.records.count))),
            ("records", .array(manifest.records.map { r in
                var members: [(String, JSONValue)] = [
                    ("id", .int(r.id)), ("sha256", .string(r.sha256)), ("format", .string(r.format)),
                    ("source", .string(r.source)), ("line", .int(Int64(r.line))),
                ]
                if includeData {
                    if let text = r.text {
                        members += [("encoding", .string("utf-8")), ("data", .string(text))]
                    } else {
                        members += [("encoding", .string("base64")), ("data", .string(Data(r.bytes).base64EncodedString()))]
                    }
                }
                return .object(members)
            })),
        ])
    }

    /// A bundle file: the manifest with the records' bytes.
    public static func file(_ manifest: EvidenceManifest) -> String {
        var members = [("trail_evidence_bundle", JSONValue.int(1))]
        members += json(manifest, includeData: true).object ?? []
        return JSONValue.object(members).serialized(pretty: true) + "\n"
    }
}

/// A manifest as read back from a JSON report or a bundle: what the report claims.
public struct ClaimedEvidence: Sendable {
    public struct Entry: Sendable {
        public var id: Int64
        public var sha256: String
        public var source: String
        public var line: Int
        /// The bytes carried by the document, when it carries them.
        public var bytes: [UInt8]?
    }

    public var entries: [Entry]
    public var setSHA256: String

    /// Error in a report or bundle document: says what is wrong and where.
    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Reads the evidence from a JSON report (`evidence` member) or a bundle file (top level).
    public static func parse(_ bytes: [UInt8], name: String) throws -> ClaimedEvidence {
        let doc: JSONValue
        do {
            doc = try JSONParser.parse(bytes)
        } catch {
            throw ParseError(description: "\(name) is not a JSON report or evidence bundle (\(error)); Markdown, HTML, CSV and OCSF reports cannot be verified, make one with --format json or --evidence-bundle")
        }
        let section: JSONValue
        if doc["trail_evidence_bundle"] != nil {
            section = doc
        } else if let e = doc["evidence"], doc["report"] != nil {
            section = e
        } else {
            throw ParseError(description: "\(name) is JSON but neither a Trail report (no report/evidence members) nor an evidence bundle")
        }
        guard let set = section["set_sha256"]?.string, let records = section["records"]?.array else {
            throw ParseError(description: "\(name): the evidence section has no set_sha256 or records")
        }
        // The document may be hostile: a hash that is not 64 hex digits is refused, never echoed.
        guard isSHA256Hex(set) else { throw ParseError(description: "\(name): set_sha256 is not 64 hex digits") }
        var entries: [Entry] = []
        for (i, r) in records.enumerated() {
            guard let id = r["id"]?.int, let sha = r["sha256"]?.string else {
                throw ParseError(description: "\(name): evidence record \(i + 1) has no id or sha256")
            }
            guard isSHA256Hex(sha) else {
                throw ParseError(description: "\(name): evidence record \(id) has a sha256 that is not 64 hex digits")
            }
            var data: [UInt8]?
            if let text = r["data"]?.string {
                switch r["encoding"]?.string {
                case "utf-8": data = Array(text.utf8)
                case "base64":
                    guard let d = Data(base64Encoded: text) else {
                        throw ParseError(description: "\(name): evidence record \(id) has invalid base64 data")
                    }
                    data = Array(d)
                default:
                    throw ParseError(description: "\(name): evidence record \(id) has an unknown encoding; expected utf-8 or base64")
                }
            }
            entries.append(Entry(id: id, sha256: sha.lowercased(), source: r["source"]?.string ?? "?",
                                 line: Int(r["line"]?.int ?? 0), bytes: data))
        }
        return ClaimedEvidence(entries: entries, setSHA256: set.lowercased())
    }

    static func isSHA256Hex(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) || (0x41...0x46).contains($0) }
    }
}

/// Compares claimed evidence with the bytes some source (the store, a bundle, the report itself) holds now.
public enum EvidenceVerifier {
    public enum Outcome: Sendable, Equatable {
        case intact
        /// The bytes hash to something else now.
        case changed(actual: String)
        /// The source has no such record.
        case missing
        /// The source has it but cannot read it (a damaged block).
        case unreadable(String)
    }

    public struct Result: Sendable {
        public var id: Int64
        public var source: String
        public var line: Int
        public var expected: String
        public var outcome: Outcome
    }

    public struct Summary: Sendable {
        public var results: [Result]
        /// The set hash the document states.
        public var claimedSet: String
        /// The set hash recomputed from the per-record hashes the document lists.
        public var recomputedSet: String
        public var problems: [Result] { results.filter { $0.outcome != .intact } }
        public var manifestConsistent: Bool { claimedSet == recomputedSet }
        public var ok: Bool { problems.isEmpty && manifestConsistent }
    }

    /// - Parameter lookup: the bytes the source holds for a record id, nil when it has none; throws when the
    ///   record exists but cannot be read.
    public static func verify(_ claimed: ClaimedEvidence, lookup: (ClaimedEvidence.Entry) throws -> [UInt8]?) -> Summary {
        let results = claimed.entries.map { e -> Result in
            let outcome: Outcome
            do {
                if let bytes = try lookup(e) {
                    let actual = EvidenceManifest.sha256(bytes)
                    outcome = actual == e.sha256 ? .intact : .changed(actual: actual)
                } else {
                    outcome = .missing
                }
            } catch {
                outcome = .unreadable("\(error)")
            }
            return Result(id: e.id, source: e.source, line: e.line, expected: e.sha256, outcome: outcome)
        }
        return Summary(results: results, claimedSet: claimed.setSHA256,
                       recomputedSet: EvidenceManifest.setHash(claimed.entries.map(\.sha256)))
    }
}
