import GRDB

/// The store's schema as versioned, append-only migrations. A migration is never changed once shipped:
/// add a new one instead.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("0001_initial") { db in
            try db.execute(sql: """
                -- Raw evidence: records are stored byte for byte, zstd-compressed in blocks.
                CREATE TABLE raw_block (
                    id INTEGER PRIMARY KEY,
                    codec TEXT NOT NULL DEFAULT 'zstd',
                    data BLOB NOT NULL
                );
                CREATE TABLE raw_record (
                    id INTEGER PRIMARY KEY,
                    digest INTEGER NOT NULL UNIQUE,      -- first 8 bytes of sha256, for dedup
                    sha256 TEXT NOT NULL,                -- hex SHA-256 of the raw bytes
                    format TEXT NOT NULL,
                    source TEXT NOT NULL,
                    line INTEGER NOT NULL,
                    detail TEXT,
                    block_id INTEGER NOT NULL REFERENCES raw_block(id),
                    offset INTEGER NOT NULL,
                    length INTEGER NOT NULL,
                    ingested_at INTEGER NOT NULL
                );
                CREATE TABLE reject (
                    id INTEGER PRIMARY KEY,
                    digest INTEGER NOT NULL UNIQUE,      -- of source format, location, reason and raw bytes
                    source TEXT NOT NULL,
                    format TEXT,
                    line INTEGER NOT NULL,
                    detail TEXT,
                    reason TEXT NOT NULL,
                    raw BLOB NOT NULL,                   -- zstd
                    raw_record_id INTEGER REFERENCES raw_record(id),
                    ingested_at INTEGER NOT NULL
                );
                CREATE TABLE observation (
                    id INTEGER PRIMARY KEY,
                    raw_id INTEGER NOT NULL REFERENCES raw_record(id),
                    kind TEXT NOT NULL,
                    format TEXT NOT NULL,
                    trace_id TEXT NOT NULL,              -- 32 hex, or 'untraced:<hex>' when the record had none
                    chain_id TEXT NOT NULL,              -- the chain it belongs to: its trace, or the trace an
                                                         -- untraced record joined through its request id
                    span_id TEXT,
                    parent_span_id TEXT,
                    request_id TEXT,
                    start INTEGER NOT NULL,
                    duration INTEGER,
                    method TEXT, path TEXT, authority TEXT, operation TEXT, status INTEGER,
                    caller_spiffe TEXT, caller_service TEXT, caller_address TEXT, caller_port INTEGER,
                    callee_spiffe TEXT, callee_service TEXT, callee_address TEXT, callee_port INTEGER,
                    transport TEXT, tls_version TEXT,
                    cert_serial TEXT, cert_sha256 TEXT, cert_not_before INTEGER, cert_not_after INTEGER,
                    cert_uri_sans TEXT, cert_subject TEXT,
                    xfcc_uri TEXT,
                    principal TEXT, principal_type TEXT, credential TEXT,
                    user_agent TEXT, policy TEXT, response_flags TEXT, route TEXT
                );
                CREATE INDEX observation_chain ON observation(chain_id);
                CREATE INDEX observation_request ON observation(request_id) WHERE request_id IS NOT NULL;
                CREATE INDEX observation_untraced ON observation(request_id) WHERE trace_id LIKE 'untraced:%';
                CREATE TABLE identity_event (
                    id INTEGER PRIMARY KEY,
                    raw_id INTEGER NOT NULL REFERENCES raw_record(id),
                    kind TEXT NOT NULL,
                    spiffe_id TEXT,
                    serial TEXT,
                    sha256 TEXT,
                    not_before INTEGER,
                    not_after INTEGER,
                    issuer TEXT,
                    time INTEGER NOT NULL,
                    reason TEXT,
                    format TEXT NOT NULL
                );
                CREATE INDEX identity_event_serial ON identity_event(serial);
                CREATE INDEX identity_event_spiffe ON identity_event(spiffe_id);

                -- Derived: rebuilt per trace by the correlator.
                CREATE TABLE chain (
                    trace_id TEXT PRIMARY KEY,
                    origin_principal TEXT NOT NULL,
                    origin_type TEXT NOT NULL,
                    origin_client_ip TEXT,
                    origin_credential TEXT,
                    via_gateway INTEGER NOT NULL,
                    start INTEGER NOT NULL,
                    end INTEGER NOT NULL,
                    hop_count INTEGER NOT NULL,
                    gap_count INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX chain_principal ON chain(origin_principal);
                CREATE INDEX chain_start ON chain(start);
                CREATE INDEX chain_via_gateway ON chain(via_gateway);
                -- Every callee any hop ever reached (small: one row per workload), for cross-chain findings.
                CREATE TABLE callee_seen (callee TEXT PRIMARY KEY) WITHOUT ROWID;
                CREATE TABLE hop (
                    trace_id TEXT NOT NULL,
                    idx INTEGER NOT NULL,
                    parent_idx INTEGER,
                    caller TEXT NOT NULL, caller_spiffe TEXT, caller_service TEXT, caller_address TEXT,
                    callee TEXT NOT NULL, callee_spiffe TEXT, callee_service TEXT, callee_address TEXT,
                    method TEXT, path TEXT, operation TEXT, authority TEXT, status INTEGER,
                    start INTEGER NOT NULL, duration INTEGER,
                    transport TEXT, tls_version TEXT, serial TEXT, fingerprint TEXT,
                    cert_state TEXT NOT NULL, policy TEXT, request_id TEXT, user_agent TEXT,
                    principal TEXT, principal_type TEXT, credential TEXT,
                    observed_by TEXT NOT NULL,           -- JSON array of observation kinds
                    observation_ids TEXT NOT NULL,       -- JSON array
                    raw_ids TEXT NOT NULL,               -- JSON array
                    chain_path TEXT NOT NULL,            -- JSON array of identities, entry point first
                    access_key INTEGER NOT NULL REFERENCES access_key(id),
                    origin_client_ip TEXT,
                    PRIMARY KEY (trace_id, idx)
                ) WITHOUT ROWID;
                -- Covering indexes for who-accessed: resource, time, then who and from where.
                CREATE INDEX hop_callee ON hop(callee, start, access_key, origin_client_ip);
                CREATE INDEX hop_callee_service ON hop(callee_service, start, callee, access_key, origin_client_ip);
                CREATE INDEX hop_path ON hop(path, start, method, access_key, origin_client_ip);
                CREATE INDEX hop_access ON hop(access_key, start);
                CREATE INDEX hop_caller ON hop(caller);
                CREATE INDEX hop_serial ON hop(serial);
                CREATE INDEX hop_start ON hop(start);
                -- Who reached something and through which chain: the origin principal and the chain path.
                CREATE TABLE access_key (
                    id INTEGER PRIMARY KEY,
                    principal TEXT NOT NULL,
                    principal_type TEXT NOT NULL,
                    chain_path TEXT NOT NULL,
                    UNIQUE (principal, principal_type, chain_path)
                );
                CREATE TABLE gap (
                    trace_id TEXT NOT NULL,
                    before_idx INTEGER NOT NULL,
                    detail TEXT NOT NULL
                );
                CREATE INDEX gap_trace ON gap(trace_id);
                CREATE TABLE finding (
                    id TEXT PRIMARY KEY,                 -- stable: derived from kind, trace, hop and detail
                    kind TEXT NOT NULL,
                    severity TEXT NOT NULL,
                    trace_id TEXT NOT NULL,
                    hop_idx INTEGER,
                    principal TEXT,
                    identity TEXT,
                    serial TEXT,
                    time INTEGER NOT NULL,
                    detail TEXT NOT NULL,
                    raw_ids TEXT NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX finding_kind ON finding(kind, time);
                CREATE INDEX finding_trace ON finding(trace_id);
                CREATE TABLE service_identity (
                    service TEXT NOT NULL,
                    spiffe_id TEXT NOT NULL,
                    PRIMARY KEY (service, spiffe_id)
                ) WITHOUT ROWID;
                CREATE TABLE setting (
                    key TEXT PRIMARY KEY,
                    value TEXT NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("0002_chain_edge_request") { db in
            try db.execute(sql: """
                -- The edge request of a chain (its first hop's method and path), for cross-chain findings that
                -- compare a principal's requests (credential-anomaly) without probing the hop table.
                ALTER TABLE chain ADD COLUMN edge_method TEXT;
                ALTER TABLE chain ADD COLUMN edge_path TEXT;
                UPDATE chain SET (edge_method, edge_path) =
                    (SELECT method, path FROM hop WHERE hop.trace_id = chain.trace_id AND hop.idx = 0);
                -- credential-anomaly: every principal's gateway-entered chains in (start, trace) order with what
                -- the scan reads (via_gateway too, so that SQLite sees the index as covering): one ordered pass
                -- over this index, no table rows.
                CREATE INDEX chain_gateway_principal
                    ON chain(origin_principal, start, trace_id, origin_type, origin_client_ip, edge_method, edge_path,
                             via_gateway)
                    WHERE via_gateway = 1;
                """)
        }
        return migrator
    }

    /// The migration identifiers in order; pinned by a test so that shipped migrations are never renamed.
    static let migrationIDs = ["0001_initial", "0002_chain_edge_request"]
}
