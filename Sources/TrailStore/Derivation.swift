import Crypto
import GRDB
import TrailCore
import TrailCorrelator

/// What a correlation pass rebuilt.
public struct CorrelationCounts: Sendable, Hashable {
    public var traces = 0
    public var hops = 0
    public var findings = 0
    public init() {}
}

extension TrailStore {
    /// A finding's id is derived from what it says, so it stays the same when the trace is correlated again
    /// and in any other store holding the same records.
    public static func findingID(_ f: Finding) -> String {
        let key = "\(f.kind.rawValue)|\(f.traceID)|\(f.hopIndex.map(String.init) ?? "-")|\(f.detail)"
        return String(Hex.encode(Array(SHA256.hash(data: Array(key.utf8)))).prefix(16))
    }

    /// Rebuilds hops, chains and in-chain findings for every trace the dirty set touches, then recomputes the
    /// cross-chain findings. Pass `all: true` to rebuild everything.
    ///
    /// `crossChain: false` skips the cross-chain pass (edge-bypass, credential-anomaly), for callers that correlate a large dirty
    /// set in several smaller transactions and run it once at the end with ``recomputeCrossChainFindings()``.
    @discardableResult
    public func correlate(_ dirty: DirtySet, all: Bool = false, crossChain: Bool = true) throws -> CorrelationCounts {
        let skew = try clockSkewNanos()
        let entryPoints = try allowedEntryPoints()
        let baseline = try credentialAnomalyBaseline()
        return try writer.write { db in
            try Self.correlate(
                dirty, all: all, skew: skew, entryPoints: entryPoints, credentialBaseline: baseline,
                crossChain: crossChain, db: db)
        }
    }

    /// Recomputes the findings that depend on every chain at once (edge-bypass, credential-anomaly).
    public func recomputeCrossChainFindings() throws {
        let entryPoints = try allowedEntryPoints()
        let baseline = try credentialAnomalyBaseline()
        _ = try writer.write { db in
            try Self.recomputeCrossChain(entryPoints: entryPoints, credentialBaseline: baseline, db: db)
        }
    }

    /// Every cross-chain finding; returns how many there are.
    static func recomputeCrossChain(entryPoints: [String], credentialBaseline: Int, db: Database) throws -> Int {
        try recomputeEdgeBypass(entryPoints: entryPoints, db: db)
            + recomputeCredentialAnomaly(baseline: credentialBaseline, db: db)
    }

    static func correlate(
        _ dirty: DirtySet, all: Bool, skew: Int64, entryPoints: [String],
        credentialBaseline: Int = TrailStore.defaultCredentialAnomalyBaseline, crossChain: Bool = true, db: Database
    ) throws -> CorrelationCounts {
        try db.execute(sql: "CREATE TEMP TABLE IF NOT EXISTS dirty_trace(trace_id TEXT PRIMARY KEY) WITHOUT ROWID")
        try db.execute(sql: "DELETE FROM dirty_trace")
        if all {
            try db.execute(sql: "INSERT OR IGNORE INTO dirty_trace SELECT DISTINCT chain_id FROM observation")
        } else {
            let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO dirty_trace(trace_id) VALUES (?)")
            for t in dirty.traceIDs { try insert.execute(arguments: [t]) }
        }

        try adoptUntracedObservations(db)

        // Learn service ↔ SPIFFE ID pairs; a new pair changes how other traces resolve that service.
        let before = try Int.fetchOne(db, sql: "SELECT count(*) FROM service_identity") ?? 0
        try db.execute(sql: """
            CREATE TEMP TABLE IF NOT EXISTS new_pair(service TEXT, spiffe_id TEXT);
            DELETE FROM new_pair;
            INSERT INTO new_pair
              SELECT caller_service, caller_spiffe FROM observation
               WHERE chain_id IN dirty_trace AND caller_service IS NOT NULL AND caller_spiffe IS NOT NULL
              UNION
              SELECT callee_service, callee_spiffe FROM observation
               WHERE chain_id IN dirty_trace AND callee_service IS NOT NULL AND callee_spiffe IS NOT NULL;
            DELETE FROM new_pair WHERE (service, spiffe_id) IN (SELECT service, spiffe_id FROM service_identity);
            INSERT OR IGNORE INTO service_identity SELECT service, spiffe_id FROM new_pair;
            """)
        let after = try Int.fetchOne(db, sql: "SELECT count(*) FROM service_identity") ?? 0
        if after > before { try markTracesResolvedBy(db) }
        // New identity events change the certificate judgement of hops that presented those certificates.
        if dirty.identityEvents {
            let mark = try db.cachedStatement(sql: "INSERT OR IGNORE INTO dirty_trace SELECT trace_id FROM hop WHERE serial = ?")
            for s in dirty.serials { try mark.execute(arguments: [s]) }
            let markFP = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO dirty_trace SELECT trace_id FROM hop WHERE fingerprint = ?")
            for f in dirty.fingerprints { try markFP.execute(arguments: [f]) }
            let markID = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO dirty_trace SELECT trace_id FROM hop WHERE caller_spiffe = ?")
            for i in dirty.revokedIdentities { try markID.execute(arguments: [i]) }
            // A first issuance in a trust domain turns "unlogged" unknowns into findings, and back.
            try db.execute(sql: "INSERT OR IGNORE INTO dirty_trace SELECT trace_id FROM hop WHERE cert_state = 'unknown'")
        }

        let ledger = try loadLedger(db)
        var counts = CorrelationCounts()
        // Merged hops can prove new service ↔ identity pairs, which change how other traces resolve; repeat
        // until nothing new is learned (pairs only accumulate, so this ends).
        for round in 0..<8 {
            var directory = ServiceDirectory()
            for row in try Row.fetchAll(db, sql: "SELECT service, spiffe_id FROM service_identity") {
                directory.learn(service: row[0], spiffeID: row[1])
            }
            let correlator = Correlator(configuration: .init(clockSkewNanos: skew), ledger: ledger, directory: directory)
            let learned = try rebuildDirtyTraces(correlator, db: db, counts: &counts)
            try db.execute(sql: "DELETE FROM new_pair")
            let insertPair = try db.cachedStatement(sql: """
                INSERT INTO new_pair SELECT ?, ? WHERE NOT EXISTS
                    (SELECT 1 FROM service_identity WHERE service = ? AND spiffe_id = ?)
                """)
            for p in learned { try insertPair.execute(arguments: [p.service, p.spiffeID, p.service, p.spiffeID]) }
            guard round < 7, try Int.fetchOne(db, sql: "SELECT count(*) FROM new_pair") ?? 0 > 0 else { break }
            try db.execute(sql: """
                INSERT OR IGNORE INTO service_identity SELECT DISTINCT service, spiffe_id FROM new_pair;
                DELETE FROM dirty_trace;
                """)
            try markTracesResolvedBy(db)
        }
        if crossChain {
            counts.findings += try recomputeCrossChain(entryPoints: entryPoints, credentialBaseline: credentialBaseline, db: db)
        }
        return counts
    }

    /// Marks the traces that a newly learned service ↔ identity pair (in `new_pair`) can change: those with a
    /// hop that names that service on a side with no SPIFFE ID, or with one the service was already mapped to
    /// (it may have been inferred, and a second identity makes the mapping ambiguous).
    static func markTracesResolvedBy(_ db: Database) throws {
        try db.execute(sql: """
            INSERT OR IGNORE INTO dirty_trace
              SELECT DISTINCT trace_id FROM hop
               WHERE (caller_service IN (SELECT service FROM new_pair)
                      AND (caller_spiffe IS NULL OR caller_spiffe IN
                           (SELECT spiffe_id FROM service_identity s WHERE s.service = hop.caller_service
                             AND (s.service, s.spiffe_id) NOT IN (SELECT service, spiffe_id FROM new_pair))))
                  OR (callee_service IN (SELECT service FROM new_pair)
                      AND (callee_spiffe IS NULL OR callee_spiffe IN
                           (SELECT spiffe_id FROM service_identity s WHERE s.service = hop.callee_service
                             AND (s.service, s.spiffe_id) NOT IN (SELECT service, spiffe_id FROM new_pair))))
            """)
    }

    /// A record without a trace id (Envoy's text format logs none) joins the trace of the traced records that
    /// share its request id (`x-request-id` is propagated through a whole chain); the smallest trace id wins
    /// if several do. Both its old and new chains are rebuilt.
    static func adoptUntracedObservations(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TEMP TABLE IF NOT EXISTS adopted(id INTEGER PRIMARY KEY, old TEXT, new TEXT);
            DELETE FROM adopted;
            INSERT INTO adopted
              SELECT o.id, o.chain_id,
                     (SELECT min(t.trace_id) FROM observation t
                       WHERE t.request_id = o.request_id AND t.trace_id NOT LIKE 'untraced:%')
                FROM observation o
               WHERE o.trace_id LIKE 'untraced:%' AND o.request_id IS NOT NULL
                 AND (o.chain_id IN dirty_trace
                      OR o.request_id IN (SELECT request_id FROM observation
                                           WHERE chain_id IN dirty_trace AND request_id IS NOT NULL));
            DELETE FROM adopted WHERE new IS NULL OR new = old;
            UPDATE observation SET chain_id = (SELECT new FROM adopted WHERE adopted.id = observation.id)
             WHERE id IN (SELECT id FROM adopted);
            INSERT OR IGNORE INTO dirty_trace SELECT old FROM adopted UNION SELECT new FROM adopted;
            """)
    }

    /// Deletes and rebuilds the derived rows of every trace in `dirty_trace`; returns the pairs learned.
    static func rebuildDirtyTraces(
        _ correlator: Correlator, db: Database, counts: inout CorrelationCounts
    ) throws -> Set<ServiceIdentityPair> {
        try db.execute(sql: """
            DELETE FROM hop WHERE trace_id IN dirty_trace;
            DELETE FROM gap WHERE trace_id IN dirty_trace;
            DELETE FROM finding WHERE trace_id IN dirty_trace;
            DELETE FROM chain WHERE trace_id IN dirty_trace;
            """)
        var learned = Set<ServiceIdentityPair>()
        let writer = try ChainWriter(db: db)
        let select = try RawStatement(db, ObservationRow.selectSQL + " WHERE chain_id IN dirty_trace ORDER BY chain_id")
        var currentTrace: String?
        var group: [StoredObservation] = []
        func flush() throws {
            guard let trace = currentTrace, !group.isEmpty else { return }
            let result = correlator.run(traceID: trace, observations: group)
            try writer.write(result.chain)
            learned.formUnion(result.learnedIdentities)
            counts.traces += 1
            counts.hops += result.chain.hops.count
            counts.findings += result.chain.findings.count
            group.removeAll(keepingCapacity: true)
        }
        while try select.step() {
            let trace = select.string(5) ?? ""
            if trace != currentTrace {
                try flush()
                currentTrace = trace
            }
            group.append(ObservationRow.decode(select))
        }
        try flush()
        return learned
    }

    static func loadLedger(_ db: Database) throws -> CertificateLedger {
        var ledger = CertificateLedger()
        for row in try Row.fetchAll(db, sql: """
            SELECT kind, spiffe_id, serial, sha256, not_before, not_after, issuer, time, reason, format
              FROM identity_event
             ORDER BY time, kind, serial, spiffe_id, sha256, reason, not_before, not_after, issuer, format
            """)
        {
            guard let kind = IdentityEventKind(rawValue: row["kind"]) else { continue }
            ledger.add(IdentityEvent(
                kind: kind, spiffeID: row["spiffe_id"], serial: row["serial"], fingerprintSHA256: row["sha256"],
                notBefore: (row["not_before"] as Int64?).map(Timestamp.init(nanoseconds:)),
                notAfter: (row["not_after"] as Int64?).map(Timestamp.init(nanoseconds:)), issuer: row["issuer"],
                time: Timestamp(nanoseconds: row["time"]), reason: row["reason"], format: row["format"]))
        }
        return ledger
    }

    /// `edge-bypass`: a chain that did not enter through the gateway, started by a workload that is not an
    /// allowed entry point, reaching a workload that gateway-entered chains reach. One finding per chain, on
    /// the first such hop.
    static func recomputeEdgeBypass(entryPoints: [String], db: Database) throws -> Int {
        try db.execute(sql: "DELETE FROM finding WHERE kind = 'edge-bypass'")
        // Workloads that some gateway-entered chain reaches (one EXISTS probe per known callee), then the hops of
        // internal-origin chains into them. Cheap however large the store: both sets are small.
        let rows = try Row.fetchAll(db, sql: """
            WITH protected AS (
                SELECT s.callee FROM callee_seen s
                 WHERE EXISTS (SELECT 1 FROM hop h JOIN chain c ON c.trace_id = h.trace_id
                                WHERE h.callee = s.callee AND c.via_gateway = 1)
            ),
            internal AS (SELECT trace_id FROM chain WHERE via_gateway = 0)
            SELECT h.trace_id, MIN(h.idx) AS idx FROM hop h
             WHERE h.trace_id IN internal AND h.callee IN protected
             GROUP BY h.trace_id
            """)
        let allowed = Set(entryPoints)
        var n = 0
        for row in rows {
            let trace: String = row["trace_id"]
            let idx: Int = row["idx"]
            guard let hop = try Row.fetchOne(db, sql: """
                SELECT h.caller, h.callee, h.caller_spiffe, h.method, h.path, h.start, h.serial, h.raw_ids,
                       c.origin_principal, c.origin_client_ip
                  FROM hop h JOIN chain c ON c.trace_id = h.trace_id WHERE h.trace_id = ? AND h.idx = ?
                """, arguments: [trace, idx])
            else { continue }
            let origin: String = hop["origin_principal"]
            if allowed.contains(origin) { continue }
            if let td = SPIFFETrustDomain.of(origin), allowed.contains(td) || allowed.contains("spiffe://" + td) { continue }
            let caller: String = hop["caller"]
            let callee: String = hop["callee"]
            let call = [hop["method"] as String?, hop["path"] as String?].compactMap { $0 }.joined(separator: " ")
            let detail = "\(origin) reached \(callee)\(call.isEmpty ? "" : " (\(call))") directly from \(caller), "
                + "not through the gateway that other chains to \(callee) pass"
            let rawIDs: String = hop["raw_ids"]
            let finding = Finding(
                kind: .edgeBypass, traceID: trace, hopIndex: idx, principal: origin,
                identity: hop["caller_spiffe"] ?? caller, serial: hop["serial"],
                time: Timestamp(nanoseconds: hop["start"]), detail: detail, rawRecordIDs: [])
            try ChainWriter.insertFinding(finding, rawIDsJSON: rawIDs, db: db)
            n += 1
        }
        return n
    }
}

extension TrailStore {
    /// `credential-anomaly`: a gateway-entered chain whose external principal (a credential holder: not
    /// anonymous, not a workload) already had at least `baseline` earlier gateway-entered chains, none of them
    /// from this chain's client address and none on its route (method and path template of the edge request,
    /// the chain's first hop). Both must be new: a new laptop on a usual route, or a usual address on a new
    /// route, is ordinary. "Earlier" is the order (start, trace id), so the result does not depend on the order
    /// records were ingested in. A chain with no logged client address counts towards its principal's history
    /// but is never flagged. One finding per flagged chain, on its edge hop.
    ///
    /// Cost: one pass over the partial covering index `chain_gateway_principal` in (principal, start, trace)
    /// order (the edge request's method and path are kept on the chain row for this), in memory only the
    /// addresses and routes of one principal; the hop table is read only for the flagged chains.
    @discardableResult
    static func recomputeCredentialAnomaly(baseline: Int = TrailStore.defaultCredentialAnomalyBaseline, db: Database) throws -> Int {
        try db.execute(sql: "DELETE FROM finding WHERE kind = ?", arguments: [FindingKind.credentialAnomaly.rawValue])
        let baseline = max(1, baseline)
        struct Flagged {
            var trace: String
            var principal: String
            var detail: String
        }
        var flagged: [Flagged] = []
        let scan = try RawStatement(db, credentialScanSQL)
        var principal: String?
        var earlier = 0
        var addresses: [String: Int] = [:]
        var routes = Set<String>()
        while try scan.step() {
            let p = scan.string(0) ?? ""
            if p != principal {
                principal = p
                earlier = 0
                addresses.removeAll(keepingCapacity: true)
                routes.removeAll(keepingCapacity: true)
            }
            let ip = scan.string(1)
            let route = Self.routeTemplate(method: scan.string(4), path: scan.string(5))
            if earlier >= baseline, let ip, addresses[ip] == nil, !routes.contains(route) {
                let usual = addresses.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                    .prefix(3).map(\.key).joined(separator: ", ")
                let detail = "\(p) used its credential from \(ip), never seen in its \(earlier) earlier requests"
                    + (usual.isEmpty ? "" : " (usual: \(usual))") + ", for \(route), a route it never used"
                flagged.append(Flagged(trace: scan.string(2) ?? "", principal: p, detail: detail))
            }
            earlier += 1
            if let ip { addresses[ip, default: 0] += 1 }
            routes.insert(route)
        }
        for f in flagged {
            guard let hop = try Row.fetchOne(db, sql: """
                SELECT h.start, h.raw_ids, c.origin_credential
                  FROM hop h JOIN chain c ON c.trace_id = h.trace_id WHERE h.trace_id = ? AND h.idx = 0
                """, arguments: [f.trace])
            else { continue }
            let finding = Finding(
                kind: .credentialAnomaly, traceID: f.trace, hopIndex: 0, principal: f.principal,
                // No serial: the edge hop's certificate is the gateway's own, not the credential that was misused.
                identity: hop["origin_credential"] ?? f.principal, serial: nil,
                time: Timestamp(nanoseconds: hop["start"]), detail: f.detail, rawRecordIDs: [])
            try ChainWriter.insertFinding(finding, rawIDsJSON: hop["raw_ids"], db: db)
        }
        return flagged.count
    }

    /// The ordered scan behind `credential-anomaly`: (principal, client address, trace, start, method, path)
    /// of every gateway-entered chain of a credential holder, by principal then (start, trace). It reads only
    /// the partial covering index `chain_gateway_principal`.
    static let credentialScanSQL = """
        SELECT c.origin_principal, c.origin_client_ip, c.trace_id, c.start, c.edge_method, c.edge_path
          FROM chain c INDEXED BY chain_gateway_principal
         WHERE c.via_gateway = 1 AND c.origin_type NOT IN ('anonymous', 'workload') AND c.origin_principal <> ''
         ORDER BY c.origin_principal, c.start, c.trace_id
        """

    /// A request's route: the upper-cased method and the path template, e.g. `GET /inventory/items/{id}`. The
    /// query string and fragment are dropped; a segment that holds a digit, is a UUID or is a long hex string
    /// becomes `{id}`. `-` stands for a missing method or path.
    public static func routeTemplate(method: String?, path: String?) -> String {
        let m = method.map { $0.uppercased() }.flatMap { $0.isEmpty ? nil : $0 } ?? "-"
        guard let path, !path.isEmpty else { return m + " -" }
        var p = Substring(path)
        if let cut = p.firstIndex(where: { $0 == "?" || $0 == "#" }) { p = p[..<cut] }
        let segments = p.split(separator: "/", omittingEmptySubsequences: false).map { s -> Substring in
            looksLikeID(s) ? "{id}" : s
        }
        return m + " " + segments.joined(separator: "/")
    }

    static func looksLikeID(_ s: Substring) -> Bool {
        if s.isEmpty { return false }
        if s.contains(where: { $0.isASCII && $0.isNumber }) { return true }
        // UUIDs (8-4-4-4-12 hex) and long hex strings, even all-letter ones.
        let hex = s.filter { $0 != "-" }
        guard hex.allSatisfy({ $0.isASCII && $0.isHexDigit }) else { return false }
        if s.contains("-") { return s.count == 36 && hex.count == 32 }
        return hex.count >= 16
    }
}

/// Writes one correlated chain into the derived tables.
final class ChainWriter {
    let db: Database
    let insertChain: RawStatement
    let insertHop: RawStatement
    let insertGap: RawStatement
    let insertKey: RawStatement
    let selectKey: RawStatement
    let insertCallee: RawStatement
    private var calleesSeen: Set<String> = []
    private var keys: [String: Int64] = [:]

    init(db: Database) throws {
        self.db = db
        insertChain = try RawStatement(db, """
            INSERT INTO chain(trace_id, origin_principal, origin_type, origin_client_ip, origin_credential,
                              via_gateway, start, end, hop_count, gap_count, edge_method, edge_path)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        insertHop = try RawStatement(db, """
            INSERT INTO hop(trace_id, idx, parent_idx, caller, caller_spiffe, caller_service, caller_address,
                            callee, callee_spiffe, callee_service, callee_address, method, path, operation, authority,
                            status, start, duration, transport, tls_version, serial, fingerprint, cert_state, policy,
                            request_id, user_agent, principal, principal_type, credential, observed_by,
                            observation_ids, raw_ids, chain_path, access_key, origin_client_ip)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        insertGap = try RawStatement(db, "INSERT INTO gap(trace_id, before_idx, detail) VALUES (?, ?, ?)")
        insertKey = try RawStatement(
            db, "INSERT OR IGNORE INTO access_key(principal, principal_type, chain_path) VALUES (?, ?, ?)")
        selectKey = try RawStatement(
            db, "SELECT id FROM access_key WHERE principal = ? AND principal_type = ? AND chain_path = ?")
        insertCallee = try RawStatement(db, "INSERT OR IGNORE INTO callee_seen(callee) VALUES (?)")
    }

    /// The id of (principal, type, chain path), created on first use.
    func accessKey(_ origin: ChainOrigin, _ chainPath: String) throws -> Int64 {
        let cacheKey = origin.principal + "\u{1F}" + origin.principalType.rawValue + "\u{1F}" + chainPath
        if let id = keys[cacheKey] { return id }
        insertKey.bind(origin.principal)
        insertKey.bind(origin.principalType.rawValue)
        insertKey.bind(chainPath)
        try insertKey.execute()
        selectKey.bind(origin.principal)
        selectKey.bind(origin.principalType.rawValue)
        selectKey.bind(chainPath)
        guard try selectKey.step(), let id = selectKey.int64(0) else { throw StoreError("access key lookup failed") }
        while try selectKey.step() {}
        keys[cacheKey] = id
        return id
    }

    func write(_ chain: Chain) throws {
        let o = chain.origin
        let c = insertChain
        c.bind(chain.traceID)
        c.bind(o.principal)
        c.bind(o.principalType.rawValue)
        c.bind(o.clientIP)
        c.bind(o.credential)
        c.bind(o.viaGateway)
        c.bind(chain.start.nanoseconds)
        c.bind(chain.end.nanoseconds)
        c.bind(chain.hops.count)
        c.bind(chain.gaps.count)
        let edge = chain.hops.first { $0.index == 0 }
        c.bind(edge?.method)
        c.bind(edge?.path)
        try c.execute()
        let s = insertHop
        for h in chain.hops where calleesSeen.insert(h.callee).inserted {
            insertCallee.bind(h.callee)
            try insertCallee.execute()
        }
        for h in chain.hops {
            s.bind(chain.traceID)
            s.bind(h.index)
            s.bind(h.parent)
            s.bind(h.caller)
            s.bind(h.callerSPIFFEID)
            s.bind(h.callerService)
            s.bind(h.callerAddress)
            s.bind(h.callee)
            s.bind(h.calleeSPIFFEID)
            s.bind(h.calleeService)
            s.bind(h.calleeAddress)
            s.bind(h.method)
            s.bind(h.path)
            s.bind(h.operation)
            s.bind(h.authority)
            s.bind(h.status)
            s.bind(h.start.nanoseconds)
            s.bind(h.durationNanos)
            s.bind(h.transport?.rawValue)
            s.bind(h.tlsVersion)
            s.bind(h.serial)
            s.bind(h.fingerprintSHA256)
            s.bind(h.certificateState.rawValue)
            s.bind(h.policy?.rawValue)
            s.bind(h.requestID)
            s.bind(h.userAgent)
            s.bind(h.principal?.name)
            s.bind(h.principal?.type.rawValue)
            s.bind(h.principal?.credential)
            s.bind(JSONValue.from(h.observedBy.map(\.rawValue)).serialized())
            s.bind(JSONValue.array(h.observationIDs.map { .int($0) }).serialized())
            s.bind(JSONValue.array(h.rawRecordIDs.map { .int($0) }).serialized())
            let chainPath = JSONValue.from(h.chainPath).serialized()
            s.bind(chainPath)
            s.bind(try accessKey(o, chainPath))
            s.bind(o.clientIP)
            try s.execute()
        }
        for g in chain.gaps {
            insertGap.bind(chain.traceID)
            insertGap.bind(g.beforeHop)
            insertGap.bind(g.detail)
            try insertGap.execute()
        }
        for f in chain.findings {
            try Self.insertFinding(f, rawIDsJSON: JSONValue.array(f.rawRecordIDs.map { .int($0) }).serialized(), db: db)
        }
    }

    static func findingID(_ f: Finding) -> String { TrailStore.findingID(f) }

    static func insertFinding(_ f: Finding, rawIDsJSON: String, db: Database) throws {
        try db.execute(
            sql: """
                INSERT OR IGNORE INTO finding(id, kind, severity, trace_id, hop_idx, principal, identity, serial, time, detail, raw_ids)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                findingID(f), f.kind.rawValue, f.severity.rawValue, f.traceID, f.hopIndex, f.principal, f.identity,
                f.serial, f.time.nanoseconds, f.detail, rawIDsJSON,
            ])
    }
}
