import Foundation
import GRDB
import TrailCompression
import TrailCore

/// A time window; either bound may be open.
public struct TimeWindow: Sendable, Hashable {
    public var since: Timestamp?
    public var until: Timestamp?
    public init(since: Timestamp? = nil, until: Timestamp? = nil) {
        self.since = since
        self.until = until
    }

    var sinceNanos: Int64 { since?.nanoseconds ?? Int64.min }
    var untilNanos: Int64 { until?.nanoseconds ?? Int64.max }
}

/// What `who-accessed` looks for: a SPIFFE ID, a service name, or a path (exact or `prefix*`) with an
/// optional method.
public enum ResourceMatcher: Sendable, Hashable {
    case identity(String)
    case service(String)
    case path(method: String?, path: String, prefix: Bool)

    /// Parses `spiffe://…`, `POST /payments/*`, `/cart`, or a service name.
    public static func parse(_ text: String) -> ResourceMatcher {
        let t = StoredText.replacingNUL(text).trimmingCharacters(in: .whitespaces)
        if t.lowercased().hasPrefix("spiffe://") { return .identity(t) }
        let parts = t.split(separator: " ", maxSplits: 1).map(String.init)
        var method: String?
        var path = t
        if parts.count == 2, parts[1].hasPrefix("/") {
            method = parts[0].uppercased()
            path = parts[1].trimmingCharacters(in: .whitespaces)
        }
        if path.hasPrefix("/") {
            if path.hasSuffix("*") { return .path(method: method, path: String(path.dropLast()), prefix: true) }
            return .path(method: method, path: path, prefix: false)
        }
        return .service(t)
    }
}

/// One row of `who-accessed`.
public struct AccessRow: Sendable, Hashable {
    public var principal: String
    public var principalType: String
    public var clientIPs: [String]
    public var chain: [String]
    public var caller: String
    public var resource: String
    public var calls: Int
    public var firstSeen: Timestamp
    public var lastSeen: Timestamp
    public var traceIDs: [String]
    public var findings: [String]
}

/// One finding as stored.
public struct FindingRow: Sendable, Hashable {
    public var id: String
    public var kind: String
    public var severity: String
    public var traceID: String
    public var hopIndex: Int?
    public var principal: String?
    public var identity: String?
    public var serial: String?
    public var time: Timestamp
    public var detail: String
    public var rawIDs: [Int64]
}

/// A certificate of an identity, with its lifecycle.
public struct CertificateRow: Sendable, Hashable {
    public var serial: String
    public var fingerprint: String?
    public var notBefore: Timestamp?
    public var notAfter: Timestamp?
    public var issuer: String?
    public var events: [(kind: String, time: Timestamp, reason: String?)]
    public var state: String

    public static func == (a: CertificateRow, b: CertificateRow) -> Bool {
        a.serial == b.serial && a.state == b.state && a.notAfter == b.notAfter
    }
    public func hash(into h: inout Hasher) { h.combine(serial) }
}

/// A workload identity: its certificates and how it was seen in calls.
public struct IdentityRow: Sendable {
    public var spiffeID: String
    public var services: [String]
    public var certificates: [CertificateRow]
    public var callsAsCaller: Int
    public var callsAsCallee: Int
    public var firstSeen: Timestamp?
    public var lastSeen: Timestamp?
}

/// A rejected record.
public struct RejectRow: Sendable {
    public var source: String
    public var format: String?
    public var line: Int
    public var detail: String?
    public var reason: String
    public var time: Timestamp
}

extension TrailStore {
    // MARK: Chains

    /// Normalises a user-typed trace id (any case, 64-bit ids padded) or passes an `untraced:` id through.
    public static func normalizeTraceArgument(_ text: String) -> String {
        let text = StoredText.replacingNUL(text)
        if text.hasPrefix("untraced:") { return text }
        return TraceIDs.normalizeTraceID(text) ?? text.lowercased()
    }

    public func chain(traceID: String) throws -> Chain? {
        let traceID = StoredText.replacingNUL(traceID)
        return try writer.read { db in try Self.chain(traceID: traceID, db: db) }
    }

    static func chain(traceID: String, db: Database) throws -> Chain? {
        guard let c = try Row.fetchOne(db, sql: "SELECT * FROM chain WHERE trace_id = ?", arguments: [traceID]) else {
            return nil
        }
        let origin = ChainOrigin(
            principal: c["origin_principal"], principalType: PrincipalType(rawValue: c["origin_type"]) ?? .anonymous,
            clientIP: c["origin_client_ip"], viaGateway: c["via_gateway"], credential: c["origin_credential"])
        let hops = try Row.fetchAll(db, sql: "SELECT * FROM hop WHERE trace_id = ? ORDER BY idx", arguments: [traceID])
            .map(decodeHop)
        let gaps = try Row.fetchAll(db, sql: "SELECT before_idx, detail FROM gap WHERE trace_id = ? ORDER BY before_idx",
                                    arguments: [traceID]).map { Gap(beforeHop: $0[0], detail: $0[1]) }
        let findings = try findings(sql: "WHERE trace_id = ?", arguments: [traceID], db: db).map { f in
            Finding(
                kind: FindingKind(rawValue: f.kind) ?? .policyDenied, severity: Severity(rawValue: f.severity),
                traceID: f.traceID, hopIndex: f.hopIndex, principal: f.principal, identity: f.identity,
                serial: f.serial, time: f.time, detail: f.detail, rawRecordIDs: f.rawIDs)
        }
        return Chain(traceID: traceID, origin: origin, hops: hops, gaps: gaps, findings: findings)
    }

    static func strings(_ json: String?) -> [String] {
        guard let json, let v = try? JSONParser.parse(Array(json.utf8)) else { return [] }
        return v.array?.compactMap(\.string) ?? []
    }

    static func ints(_ json: String?) -> [Int64] {
        guard let json, let v = try? JSONParser.parse(Array(json.utf8)) else { return [] }
        return v.array?.compactMap(\.int) ?? []
    }

    static func decodeHop(_ r: Row) -> Hop {
        var principal: Principal?
        if let name: String = r["principal"] {
            principal = Principal(
                name: name, type: PrincipalType(rawValue: r["principal_type"] ?? "") ?? .consumer,
                credential: r["credential"])
        }
        return Hop(
            index: r["idx"], parent: r["parent_idx"], caller: r["caller"], callerSPIFFEID: r["caller_spiffe"],
            callerService: r["caller_service"], callerAddress: r["caller_address"], callee: r["callee"],
            calleeSPIFFEID: r["callee_spiffe"], calleeService: r["callee_service"], calleeAddress: r["callee_address"],
            method: r["method"], path: r["path"], operation: r["operation"], authority: r["authority"],
            status: r["status"], start: Timestamp(nanoseconds: r["start"]), durationNanos: r["duration"],
            transport: (r["transport"] as String?).flatMap(Transport.init(rawValue:)), tlsVersion: r["tls_version"],
            serial: r["serial"], fingerprintSHA256: r["fingerprint"],
            certificateState: CertificateState(rawValue: r["cert_state"]) ?? .unlogged,
            policy: (r["policy"] as String?).flatMap(PolicyDecision.init(rawValue:)), requestID: r["request_id"],
            userAgent: r["user_agent"], principal: principal,
            observedBy: strings(r["observed_by"]).compactMap(ObservationKind.init(rawValue:)),
            observationIDs: ints(r["observation_ids"]), rawRecordIDs: ints(r["raw_ids"]),
            chainPath: strings(r["chain_path"]))
    }

    // MARK: who-accessed

    /// At most this many trace ids are listed per `who-accessed` row (the most recent).
    public static let whoAccessedTraceLimit = 100

    public func whoAccessed(_ resource: ResourceMatcher, window: TimeWindow) throws -> [AccessRow] {
        try writer.read { db in
            var conditions: [String] = []
            var args: [(any DatabaseValueConvertible)?] = []
            var isPath = false
            // Alternatives that each use one index; their union is the resource (disjoint, so counts add up).
            var alternatives: [(String, [(any DatabaseValueConvertible)?])] = []
            switch resource {
            case .identity(let id):
                conditions.append("h.callee = ?")
                args.append(id)
            case .service(let name):
                let ids = try String.fetchAll(
                    db, sql: "SELECT spiffe_id FROM service_identity WHERE service = ?", arguments: [name]) + [name]
                let marks = ids.map { _ in "?" }.joined(separator: ", ")
                // `payments` also names `payments.shop.svc.cluster.local` and `payments:8443`, as in the correlator.
                let service = "(h.callee_service = ? OR (h.callee_service > ? AND h.callee_service < ?) OR (h.callee_service > ? AND h.callee_service < ?))"
                let serviceArgs: [(any DatabaseValueConvertible)?] = [name, name + ".", name + "/", name + ":", name + ";"]
                alternatives = [
                    ("h.callee IN (\(marks))", ids),
                    ("h.callee_service = ? AND h.callee NOT IN (\(marks))", [name] + ids),
                    ("h.callee_service > ? AND h.callee_service < ? AND h.callee NOT IN (\(marks))", [name + ".", name + "/"] + ids),
                    ("h.callee_service > ? AND h.callee_service < ? AND h.callee NOT IN (\(marks))", [name + ":", name + ";"] + ids),
                ]
                conditions.append("((h.callee IN (\(marks))) OR (\(service) AND h.callee NOT IN (\(marks))))")
                args += ids + serviceArgs + ids
            case .path(let method, let path, let prefix):
                isPath = true
                if prefix {
                    // A range, so that the path index serves prefixes too.
                    conditions.append("h.path >= ? AND h.path < ?")
                    args += [path, path + "\u{10FFFF}"]
                } else {
                    conditions.append("h.path = ?")
                    args.append(path)
                }
                if let method {
                    conditions.append("h.method = ?")
                    args.append(method)
                }
            }
            conditions.append("h.start >= ? AND h.start <= ?")
            args += [window.sinceNanos, window.untilNanos]
            let whereClause = conditions.joined(separator: " AND ")
            let arguments = StatementArguments(args)
            if alternatives.isEmpty {
                alternatives = [(conditions.dropLast().joined(separator: " AND "), Array(args.dropLast(2)))]
            }

            // One pass over a covering index: who (access key) and from where, with counts and times.
            struct Group {
                var calls = 0
                var first = Int64.max
                var last = Int64.min
                var ips: [String: Int64] = [:]
                var requests: Set<String> = []
            }
            var groups: [Int64: Group] = [:]
            let extra = isPath ? ", group_concat(DISTINCT coalesce(h.method || ' ', '') || h.path) AS requests" : ""
            var aggregated: [Row] = []
            for (clause, clauseArgs) in alternatives {
                aggregated += try Row.fetchAll(db, sql: """
                    SELECT h.access_key, h.origin_client_ip, count(*) AS calls, min(h.start) AS first, max(h.start) AS last\(extra)
                      FROM hop h WHERE \(clause) AND h.start >= ? AND h.start <= ?
                     GROUP BY h.access_key, h.origin_client_ip
                    """, arguments: StatementArguments(clauseArgs + [window.sinceNanos, window.untilNanos]))
            }
            for r in aggregated {
                let key: Int64 = r["access_key"]
                var g = groups[key] ?? Group()
                g.calls += r["calls"] as Int
                g.first = min(g.first, r["first"])
                g.last = max(g.last, r["last"])
                if let ip: String = r["origin_client_ip"] { g.ips[ip] = max(g.ips[ip] ?? Int64.min, r["last"]) }
                if isPath, let requests: String = r["requests"] {
                    g.requests.formUnion(requests.split(separator: ",").map(String.init))
                }
                groups[key] = g
            }
            guard !groups.isEmpty else { return [] }

            // Finding kinds per access key: findings are few, so walk them and look up their hops.
            var kinds: [Int64: Set<String>] = [:]
            for r in try Row.fetchAll(db, sql: """
                SELECT DISTINCT h.access_key, f.kind FROM finding f CROSS JOIN hop h ON h.trace_id = f.trace_id
                 WHERE \(whereClause)
                """, arguments: arguments)
            {
                kinds[r[0], default: []].insert(r[1])
            }

            var out: [AccessRow] = []
            for (key, g) in groups {
                guard let k = try Row.fetchOne(
                    db, sql: "SELECT principal, principal_type, chain_path FROM access_key WHERE id = ?", arguments: [key])
                else { continue }
                var traceArgs = args
                traceArgs.insert(key, at: 0)
                let traces = try String.fetchAll(db, sql: """
                    SELECT h.trace_id FROM hop h INDEXED BY hop_access WHERE h.access_key = ? AND \(whereClause)
                     ORDER BY h.start DESC, h.trace_id DESC LIMIT \(Self.whoAccessedTraceLimit)
                    """, arguments: StatementArguments(traceArgs))
                var seen = Set<String>()
                let traceIDs = traces.reversed().filter { seen.insert($0).inserted }
                let chain = Self.strings(k["chain_path"])
                let callee = chain.last ?? ""
                // Distinct requests to the resource, at most five named.
                let sortedRequests = g.requests.sorted()
                let request = sortedRequests.prefix(5).joined(separator: ", ")
                    + (sortedRequests.count > 5 ? ", … (\(sortedRequests.count) requests)" : "")
                let ips = g.ips.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map(\.key)
                out.append(AccessRow(
                    principal: k["principal"], principalType: k["principal_type"], clientIPs: ips, chain: chain,
                    caller: chain.count >= 2 ? chain[chain.count - 2] : "", 
                    resource: request.isEmpty ? callee : callee + " " + request, calls: g.calls,
                    firstSeen: Timestamp(nanoseconds: g.first), lastSeen: Timestamp(nanoseconds: g.last),
                    traceIDs: traceIDs, findings: (kinds[key] ?? []).sorted()))
            }
            return out.sorted { ($0.firstSeen, $0.principal, $0.chain.joined()) < ($1.firstSeen, $1.principal, $1.chain.joined()) }
        }
    }

    // MARK: activity

    /// Trace ids of every chain a principal started or took part in (as consumer, API key, JWT subject, client
    /// certificate, credential, or a workload calling or called), oldest first.
    public func activity(principal: String, window: TimeWindow) throws -> [String] {
        let principal = StoredText.replacingNUL(principal)
        return try writer.read { db in
            try String.fetchAll(db, sql: """
                SELECT trace_id FROM (
                    SELECT trace_id, start FROM chain WHERE (origin_principal = ? OR origin_credential = ?)
                    UNION
                    SELECT h.trace_id, c.start FROM hop h JOIN chain c ON c.trace_id = h.trace_id
                     WHERE h.caller = ? OR h.caller_spiffe = ? OR h.caller_service = ? OR h.principal = ?
                        OR h.credential = ? OR h.callee = ? OR h.callee_service = ?
                ) WHERE start >= ? AND start <= ? ORDER BY start, trace_id
                """, arguments: [
                    principal, principal, principal, principal, principal, principal, principal, principal, principal,
                    window.sinceNanos, window.untilNanos,
                ])
        }
    }

    // MARK: findings

    public func findings(kinds: [String], window: TimeWindow, traceID: String? = nil) throws -> [FindingRow] {
        let kinds = kinds.map(StoredText.replacingNUL)
        let traceID = traceID.map(StoredText.replacingNUL)
        return try writer.read { db in
            var sql = "WHERE time >= ? AND time <= ?"
            var args: [(any DatabaseValueConvertible)?] = [window.sinceNanos, window.untilNanos]
            if !kinds.isEmpty {
                sql += " AND kind IN (\(kinds.map { _ in "?" }.joined(separator: ",")))"
                args += kinds
            }
            if let traceID {
                sql += " AND trace_id = ?"
                args.append(traceID)
            }
            return try Self.findings(sql: sql, arguments: StatementArguments(args), db: db)
        }
    }

    static func findings(sql whereClause: String, arguments: StatementArguments, db: Database) throws -> [FindingRow] {
        try Row.fetchAll(db, sql: """
            SELECT id, kind, severity, trace_id, hop_idx, principal, identity, serial, time, detail, raw_ids
              FROM finding \(whereClause)
             ORDER BY time, trace_id, hop_idx, kind, id
            """, arguments: arguments).map { r in
            FindingRow(
                id: r["id"], kind: r["kind"], severity: r["severity"], traceID: r["trace_id"], hopIndex: r["hop_idx"],
                principal: r["principal"], identity: r["identity"], serial: r["serial"],
                time: Timestamp(nanoseconds: r["time"]), detail: r["detail"], rawIDs: ints(r["raw_ids"]))
        }
    }

    // MARK: identities

    public func identities(at time: Timestamp) throws -> [IdentityRow] {
        try writer.read { db in
            var ids = Set(try String.fetchAll(db, sql: "SELECT DISTINCT spiffe_id FROM identity_event WHERE spiffe_id IS NOT NULL"))
            ids.formUnion(try String.fetchAll(db, sql: """
                SELECT caller_spiffe FROM hop WHERE caller_spiffe IS NOT NULL
                UNION SELECT callee_spiffe FROM hop WHERE callee_spiffe IS NOT NULL
                """))
            let ledger = try Self.loadLedger(db)
            var out: [IdentityRow] = []
            for id in ids.sorted() {
                let events = try Row.fetchAll(db, sql: """
                    SELECT kind, serial, sha256, not_before, not_after, issuer, time, reason FROM identity_event
                     WHERE spiffe_id = ? OR (serial IS NOT NULL AND serial IN
                           (SELECT serial FROM identity_event WHERE spiffe_id = ? AND serial IS NOT NULL))
                     ORDER BY time, kind
                    """, arguments: [id, id])
                var certs: [String: CertificateRow] = [:]
                for e in events {
                    guard let serial: String = e["serial"] else { continue }
                    var c = certs[serial] ?? CertificateRow(
                        serial: serial, fingerprint: nil, notBefore: nil, notAfter: nil, issuer: nil, events: [],
                        state: "")
                    c.fingerprint = c.fingerprint ?? e["sha256"]
                    c.notBefore = c.notBefore ?? (e["not_before"] as Int64?).map(Timestamp.init(nanoseconds:))
                    if let na = (e["not_after"] as Int64?).map(Timestamp.init(nanoseconds:)) {
                        c.notAfter = max(c.notAfter ?? na, na)
                    }
                    c.issuer = c.issuer ?? e["issuer"]
                    c.events.append((e["kind"], Timestamp(nanoseconds: e["time"]), e["reason"]))
                    certs[serial] = c
                }
                let certificates = certs.values.sorted { ($0.notBefore ?? Timestamp(nanoseconds: 0), $0.serial) < ($1.notBefore ?? Timestamp(nanoseconds: 0), $1.serial) }
                    .map { c -> CertificateRow in
                        var c = c
                        c.state = ledger.judge(
                            serial: c.serial, fingerprint: c.fingerprint, presentedNotBefore: nil,
                            presentedNotAfter: nil, spiffeID: id, at: time).state.rawValue
                        return c
                    }
                let usage = try Row.fetchOne(db, sql: """
                    SELECT (SELECT count(*) FROM hop WHERE caller_spiffe = ?) AS as_caller,
                           (SELECT count(*) FROM hop WHERE callee_spiffe = ?) AS as_callee,
                           (SELECT min(start) FROM hop WHERE caller_spiffe = ? OR callee_spiffe = ?) AS first_seen,
                           (SELECT max(start) FROM hop WHERE caller_spiffe = ? OR callee_spiffe = ?) AS last_seen
                    """, arguments: [id, id, id, id, id, id])
                let services = try String.fetchAll(
                    db, sql: "SELECT service FROM service_identity WHERE spiffe_id = ? ORDER BY service", arguments: [id])
                out.append(IdentityRow(
                    spiffeID: id, services: services, certificates: certificates,
                    callsAsCaller: usage?["as_caller"] ?? 0, callsAsCallee: usage?["as_callee"] ?? 0,
                    firstSeen: (usage?["first_seen"] as Int64?).map(Timestamp.init(nanoseconds:)),
                    lastSeen: (usage?["last_seen"] as Int64?).map(Timestamp.init(nanoseconds:))))
            }
            return out
        }
    }

    // MARK: evidence and rejects

    /// A raw record exactly as it was ingested, with where it came from.
    public struct Evidence: Sendable {
        public var id: Int64
        public var format: String
        public var source: String
        public var line: Int
        public var detail: String?
        public var sha256: String
        public var bytes: [UInt8]
    }

    public func evidence(id: Int64) throws -> Evidence? {
        try writer.read { db in
            guard let r = try Row.fetchOne(db, sql: """
                SELECT r.id, r.format, r.source, r.line, r.detail, r.sha256, r.offset, r.length, b.data
                  FROM raw_record r JOIN raw_block b ON b.id = r.block_id WHERE r.id = ?
                """, arguments: [id])
            else { return nil }
            let data: Data = r["data"]
            let block: [UInt8]
            do {
                block = try Zstd.decompress(Array(data))
            } catch {
                throw StoreError("raw block of record \(id) is corrupt: \(error)")
            }
            let offset: Int = r["offset"]
            let length: Int = r["length"]
            guard offset >= 0, length >= 0, offset + length <= block.count else {
                throw StoreError("raw record \(id) points outside its block; the store is damaged")
            }
            return Evidence(
                id: id, format: r["format"], source: r["source"], line: r["line"], detail: r["detail"],
                sha256: r["sha256"], bytes: Array(block[offset..<offset + length]))
        }
    }

    public func rejects(limit: Int = 1000) throws -> [RejectRow] {
        try writer.read { db in
            try Row.fetchAll(db, sql: """
                SELECT source, format, line, detail, reason, ingested_at FROM reject ORDER BY id LIMIT ?
                """, arguments: [limit]).map {
                RejectRow(
                    source: $0["source"], format: $0["format"], line: $0["line"], detail: $0["detail"],
                    reason: $0["reason"], time: Timestamp(nanoseconds: $0["ingested_at"]))
            }
        }
    }
}
