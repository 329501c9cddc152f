import Crypto
import Foundation
import TrailCore

/// One raw record a report rests on: the bytes exactly as ingested (decompressed) and their SHA-256.
public struct EvidenceRecord: Sendable, Hashable {
    /// The store's raw record id (`trail evidence ID`).
    public var id: Int64
    /// Lowercase hex SHA-256 of ``bytes``.
    public var sha256: String
    public var format: String
    public var source: String
    public var line: Int
    public var bytes: [UInt8]

    public init(id: Int64, sha256: String, format: String, source: String, line: Int, bytes: [UInt8]) {
        self.id = id
        self.sha256 = sha256
        self.format = format
        self.source = source
        self.line = line
        self.bytes = bytes
    }

    /// The bytes as text when they are valid UTF-8, else nil (renderers then show base64).
    public var text: String? {
        String(validating: bytes, as: UTF8.self)
    }
}

/// The evidence a report rests on and one hash over the whole set.
///
/// The set hash is the SHA-256 of the records' lowercase hex SHA-256 values, sorted ascending and joined by
/// `\n` (no trailing newline), encoded as UTF-8. Anyone can recompute it with
/// `printf '%s' "$(sort hashes.txt)" | sha256sum`.
public struct EvidenceManifest: Sendable {
    /// Ascending by id.
    public var records: [EvidenceRecord]

    public init(records: [EvidenceRecord]) {
        self.records = records.sorted { $0.id < $1.id }
    }

    public var setSHA256: String { Self.setHash(records.map(\.sha256)) }

    public static func setHash(_ hashes: [String]) -> String {
        let joined = hashes.map { $0.lowercased() }.sorted().joined(separator: "\n")
        return Self.sha256(Array(joined.utf8))
    }

    public static func sha256(_ bytes: [UInt8]) -> String {
        Hex.encode(Array(SHA256.hash(data: bytes)))
    }

    /// How the set hash is defined, as written into JSON reports and bundles.
    public static let setHashDefinition =
        "sha256 of the records' lowercase hex sha256 values, sorted ascending, joined by \\n, no trailing newline"
}
