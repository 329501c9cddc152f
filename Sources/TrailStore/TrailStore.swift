import Crypto
import Foundation
import GRDB
import TrailCompression
import TrailCore
import TrailCorrelator

/// An error from the store, saying what failed and what to do.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The call-chain store: one SQLite file in WAL mode.
///
/// Writes go through ``ingest(_:source:)`` (raw records, observations, identity events, rejects) and then
/// ``correlate(_:)`` (hops, chains, findings for the traces the new records touched).
public final class TrailStore: Sendable {
    public let path: String
    let writer: any DatabaseWriter

    /// Opens (creating and migrating if needed) the store at `path`, or an in-memory store for ":memory:".
    public init(path: String, readOnly: Bool = false) throws {
        self.path = path
        var config = Configuration()
        config.readonly = readOnly
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            if !db.configuration.readonly {
                try db.execute(sql: "PRAGMA synchronous = NORMAL")
            }
            // Random-key indexes (trace ids, digests) need their pages in memory to insert quickly.
            try db.execute(sql: "PRAGMA cache_size = -131072")
            try db.execute(sql: "PRAGMA mmap_size = 1073741824")
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        do {
            if path == ":memory:" {
                writer = try DatabaseQueue(configuration: config)
            } else {
                if readOnly && !FileManager.default.fileExists(atPath: path) {
                    throw StoreError("no store at \(path): run `trail ingest --db \(path) FILE...` first, or pass --db")
                }
                writer = try DatabasePool(path: path, configuration: config)
            }
            if !readOnly {
                try Schema.migrator.migrate(writer)
            } else {
                let applied = try writer.read { db in try Schema.migrator.appliedIdentifiers(db) }
                guard applied.contains(Schema.migrationIDs.last!) else {
                    throw StoreError("\(path) is not a Trail store (or is from an older version): run `trail ingest --db \(path)` to migrate it")
                }
            }
        } catch let error as StoreError {
            throw error
        } catch let error as DatabaseError {
            throw StoreError("cannot open store \(path): \(error.message ?? error.description)")
        }
    }

    /// Runs a read-only block.
    public func read<T: Sendable>(_ block: @Sendable (Database) throws -> T) throws -> T {
        try writer.read(block)
    }

    // MARK: Settings

    public func setting(_ key: String) throws -> String? {
        try writer.read { db in try String.fetchOne(db, sql: "SELECT value FROM setting WHERE key = ?", arguments: [key]) }
    }

    public func setSetting(_ key: String, _ value: String) throws {
        try writer.write { db in
            try db.execute(
                sql: "INSERT INTO setting(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                arguments: [key, value])
        }
    }

    /// SPIFFE IDs (or trust domains) allowed to start chains inside the mesh without an `edge-bypass` finding.
    public func allowedEntryPoints() throws -> [String] {
        guard let text = try setting("allowed_entry_points"), let v = try? JSONParser.parse(Array(text.utf8)) else { return [] }
        return v.array?.compactMap(\.string) ?? []
    }

    public func setAllowedEntryPoints(_ ids: [String]) throws {
        try setSetting("allowed_entry_points", JSONValue.from(Array(Set(ids)).sorted()).serialized())
    }

    /// How many earlier gateway-entered chains a principal needs before `credential-anomaly` judges its next
    /// ones: below it, every address and route is new and nothing is flagged.
    public static let defaultCredentialAnomalyBaseline = 20

    /// The baseline of `credential-anomaly` (at least 1), remembered in the store.
    public func credentialAnomalyBaseline() throws -> Int {
        try setting("credential_anomaly_baseline").flatMap { Int($0) }.map { max(1, $0) }
            ?? Self.defaultCredentialAnomalyBaseline
    }

    /// Sets the baseline of `credential-anomaly`; takes effect at the next correlation.
    public func setCredentialAnomalyBaseline(_ n: Int) throws {
        try setSetting("credential_anomaly_baseline", String(max(1, n)))
    }

    /// Clock-skew tolerance used when joining observations.
    public func clockSkewNanos() throws -> Int64 {
        try setting("clock_skew_ns").flatMap { Int64($0) } ?? 2_000_000_000
    }
}

// MARK: - Ingestion

/// What one call to ``TrailStore/ingest(_:source:)`` stored.
public struct IngestCounts: Sendable, Hashable {
    public var records = 0
    public var stored = 0
    public var duplicates = 0
    public var rejected = 0
    public var observations = 0
    public var identityEvents = 0

    public init() {}

    public static func += (lhs: inout IngestCounts, rhs: IngestCounts) {
        lhs.records += rhs.records
        lhs.stored += rhs.stored
        lhs.duplicates += rhs.duplicates
        lhs.rejected += rhs.rejected
        lhs.observations += rhs.observations
        lhs.identityEvents += rhs.identityEvents
    }
}

/// What changed, so that correlation can be limited to the traces concerned.
public struct DirtySet: Sendable, Hashable {
    public var traceIDs: Set<String> = []
    public var serials: Set<String> = []
    public var fingerprints: Set<String> = []
    public var revokedIdentities: Set<String> = []
    public var identityEvents = false

    public init() {}

    public var isEmpty: Bool { traceIDs.isEmpty && !identityEvents }

    public mutating func formUnion(_ other: DirtySet) {
        traceIDs.formUnion(other.traceIDs)
        serials.formUnion(other.serials)
        fingerprints.formUnion(other.fingerprints)
        revokedIdentities.formUnion(other.revokedIdentities)
        identityEvents = identityEvents || other.identityEvents
    }
}

extension TrailStore {
    /// Stores parse results durably (one transaction). Records whose exact bytes are already stored are skipped,
    /// so ingesting the same input twice adds nothing.
    public func ingest(_ results: [ParseResult], source: String, now: Timestamp = .now) throws -> (IngestCounts, DirtySet) {
        try writer.write { db in try Self.ingest(results, source: source, now: now, db: db) }
    }

    /// Stores several submissions, each with its own source, in one transaction: durable together when this
    /// returns. Returns each submission's counts and the union of what changed.
    public func ingestBatch(
        _ submissions: [(results: [ParseResult], source: String)], now: Timestamp = .now
    ) throws -> ([IngestCounts], DirtySet) {
        try writer.write { db in
            var all: [IngestCounts] = []
            var dirty = DirtySet()
            for s in submissions {
                let (counts, d) = try Self.ingest(s.results, source: s.source, now: now, db: db)
                all.append(counts)
                dirty.formUnion(d)
            }
            return (all, dirty)
        }
    }

    /// Whether a failed write may succeed later unchanged: the disk was full, an I/O error, a lock held elsewhere
    /// for too long. Anything else (a constraint, a bug) fails again.
    public static func isTransient(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        return [.SQLITE_FULL, .SQLITE_IOERR, .SQLITE_BUSY, .SQLITE_LOCKED, .SQLITE_NOMEM, .SQLITE_CANTOPEN]
            .contains(error.resultCode)
    }

    /// A store error for a log line: SQLite's code and message, without the statement.
    public static func summary(of error: any Error) -> String {
        guard let error = error as? DatabaseError else { return "\(error)" }
        return "SQLite error \(error.resultCode.rawValue): \(error.message ?? error.resultCode.description)"
    }

    /// Chains whose observations were stored but never correlated (every correlated chain has its `chain` row):
    /// what a writer stopped by a crash leaves behind. Reads the whole chain index of the observations.
    public func uncorrelatedChains() throws -> Set<String> {
        try writer.read { db in
            Set(try String.fetchAll(db, sql: """
                SELECT DISTINCT chain_id FROM observation
                 WHERE NOT EXISTS (SELECT 1 FROM chain WHERE chain.trace_id = observation.chain_id)
                """))
        }
    }

    /// Bytes the store takes on disk (database plus write-ahead log).
    public func sizeOnDisk() -> Int64 {
        guard path != ":memory:" else { return 0 }
        var total: Int64 = 0
        for suffix in ["", "-wal"] {
            if let size = (try? FileManager.default.attributesOfItem(atPath: path + suffix))?[.size] as? NSNumber {
                total += size.int64Value
            }
        }
        return total
    }

    static func digest(_ bytes: [UInt8]) -> (Int64, String) {
        let hash = Array(SHA256.hash(data: bytes))
        var prefix: UInt64 = 0
        for b in hash[0..<8] { prefix = prefix << 8 | UInt64(b) }
        return (Int64(bitPattern: prefix), Hex.encode(hash))
    }

    static func ingest(_ results: [ParseResult], source: String, now: Timestamp, db: Database) throws -> (IngestCounts, DirtySet) {
        var counts = IngestCounts()
        var dirty = DirtySet()
        var records: [ParsedRecord] = []
        var rejections: [Rejection] = []
        for r in results {
            switch r {
            case .record(let rec): records.append(rec)
            case .rejected(let rej): rejections.append(rej)
            }
        }
        counts.records = results.count

        // One compressed block holds the raw bytes of every record of the batch.
        var blockID: Int64 = 0
        if !records.isEmpty {
            var concatenated: [UInt8] = []
            concatenated.reserveCapacity(records.reduce(0) { $0 + $1.raw.count })
            for rec in records { concatenated += rec.raw }
            try db.execute(sql: "INSERT INTO raw_block(codec, data) VALUES ('zstd', ?)",
                           arguments: [Data(Zstd.compress(concatenated, level: 1))])
            blockID = db.lastInsertedRowID
        }
        let insertRaw = try RawStatement(db, """
            INSERT INTO raw_record(digest, sha256, format, source, line, detail, block_id, offset, length, ingested_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(digest) DO NOTHING
            """)
        let insertObservation = try RawStatement(db, ObservationRow.insertSQL)
        let insertEvent = try RawStatement(db, """
            INSERT INTO identity_event(raw_id, kind, spiffe_id, serial, sha256, not_before, not_after, issuer, time, reason, format)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        var offset = 0
        var anyStored = false
        for rec in records {
            defer { offset += rec.raw.count }
            let (digest, hex) = digest(rec.raw)
            insertRaw.bind(digest)
            insertRaw.bind(hex)
            insertRaw.bind(rec.format.rawValue)
            insertRaw.bind(source)
            insertRaw.bind(rec.location.line)
            insertRaw.bind(rec.location.detail)
            insertRaw.bind(blockID)
            insertRaw.bind(offset)
            insertRaw.bind(rec.raw.count)
            insertRaw.bind(now.nanoseconds)
            try insertRaw.execute()
            guard insertRaw.changes > 0 else {
                counts.duplicates += 1
                continue
            }
            anyStored = true
            counts.stored += 1
            let rawID = insertRaw.lastInsertedRowID
            for (n, o) in rec.observations.enumerated() {
                let traceID = o.traceID ?? "untraced:" + String(hex.prefix(24)) + "-\(n)"
                ObservationRow.bind(o, rawID: rawID, traceID: traceID, to: insertObservation)
                try insertObservation.execute()
                dirty.traceIDs.insert(traceID)
                counts.observations += 1
            }
            for e in rec.identityEvents {
                insertEvent.bind(rawID)
                insertEvent.bind(e.kind.rawValue)
                insertEvent.bind(e.spiffeID)
                insertEvent.bind(e.serial)
                insertEvent.bind(e.fingerprintSHA256)
                insertEvent.bind(e.notBefore?.nanoseconds)
                insertEvent.bind(e.notAfter?.nanoseconds)
                insertEvent.bind(e.issuer)
                insertEvent.bind(e.time.nanoseconds)
                insertEvent.bind(e.reason)
                insertEvent.bind(e.format)
                try insertEvent.execute()
                counts.identityEvents += 1
                dirty.identityEvents = true
                if let s = e.serial { dirty.serials.insert(s) }
                if let f = e.fingerprintSHA256 { dirty.fingerprints.insert(f) }
                if e.kind == .revoked, e.serial == nil, let id = e.spiffeID { dirty.revokedIdentities.insert(id) }
            }
            for part in rec.partialRejections {
                try insertReject(part, source: source, rawID: rawID, now: now, db: db, counts: &counts)
            }
        }
        if !anyStored && blockID != 0 {
            try db.execute(sql: "DELETE FROM raw_block WHERE id = ?", arguments: [blockID])
        }
        for rej in rejections {
            try insertReject(rej, source: source, rawID: nil, now: now, db: db, counts: &counts)
        }
        return (counts, dirty)
    }

    static func insertReject(
        _ rej: Rejection, source: String, rawID: Int64?, now: Timestamp, db: Database, counts: inout IngestCounts
    ) throws {
        counts.rejected += 1
        let key = Array("\(rej.format?.rawValue ?? "")|\(rej.location)|\(rej.reason)|".utf8) + rej.raw
        let (digest, _) = digest(key)
        try db.execute(
            sql: """
                INSERT INTO reject(digest, source, format, line, detail, reason, raw, raw_record_id, ingested_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(digest) DO NOTHING
                """,
            arguments: [
                digest, StoredText.replacingNUL(source), rej.format?.rawValue, rej.location.line,
                rej.location.detail.map(StoredText.replacingNUL), StoredText.replacingNUL(rej.reason),
                Data(Zstd.compress(rej.raw, level: 1)), rawID, now.nanoseconds,
            ])
    }
}

extension Timestamp {
    /// The current time.
    public static var now: Timestamp {
        Timestamp(nanoseconds: Int64(Date().timeIntervalSince1970 * 1_000_000) * 1000)
    }
}
