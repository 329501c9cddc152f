import GRDB
import GRDBSQLite

/// A prepared statement driven through the SQLite C API, for the store's hot paths (bulk inserts and the
/// correlator's reads), where GRDB's per-argument boxing dominates. Always used inside a GRDB access block on
/// that block's connection; values are bound, never spliced.
final class RawStatement {
    private let handle: OpaquePointer
    private let connection: OpaquePointer
    private var index: Int32 = 0

    init(_ db: Database, _ sql: String) throws {
        guard let connection = db.sqliteConnection else { throw StoreError("the database connection is closed") }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(connection, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(connection)), sql: sql)
        }
        self.handle = stmt
        self.connection = connection
    }

    deinit { sqlite3_finalize(handle) }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    // MARK: Binding (in parameter order)

    func bind(_ value: String?) {
        index += 1
        if let value {
            // GRDB reads text up to its first NUL: a NUL from telemetry would hide what follows it
            // (`/health\0/../admin` read back as `/health`). It is stored as U+FFFD instead.
            var v = StoredText.replacingNUL(value)
            v.withUTF8 { buf in
                _ = sqlite3_bind_text(handle, index, UnsafeRawPointer(buf.baseAddress)?.assumingMemoryBound(to: CChar.self), Int32(buf.count), Self.transient)
            }
        } else {
            sqlite3_bind_null(handle, index)
        }
    }

    func bind(_ value: Int64?) {
        index += 1
        if let value { sqlite3_bind_int64(handle, index, value) } else { sqlite3_bind_null(handle, index) }
    }

    func bind(_ value: Int?) { bind(value.map(Int64.init)) }

    func bind(_ value: Bool) { bind(Int64(value ? 1 : 0)) }

    /// Runs the statement to completion (INSERT, UPDATE, DELETE) and resets it for the next use.
    func execute() throws {
        defer {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
            index = 0
        }
        let rc = sqlite3_step(handle)
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw error(rc) }
    }

    /// Rows changed by the last execute.
    var changes: Int { Int(sqlite3_changes(connection)) }
    var lastInsertedRowID: Int64 { sqlite3_last_insert_rowid(connection) }

    // MARK: Reading

    /// Steps to the next row; false when done (the statement is then reset).
    func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        if rc == SQLITE_ROW { return true }
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        index = 0
        guard rc == SQLITE_DONE else { throw error(rc) }
        return false
    }

    /// GRDB's error for a failed step, so that callers can tell a full disk (`SQLITE_FULL`) from other failures.
    private func error(_ rc: Int32) -> DatabaseError {
        DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(connection)))
    }

    func string(_ column: Int32) -> String? {
        guard sqlite3_column_type(handle, column) != SQLITE_NULL, let p = sqlite3_column_text(handle, column) else { return nil }
        let n = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
    }

    func int64(_ column: Int32) -> Int64? {
        sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : sqlite3_column_int64(handle, column)
    }

    func int(_ column: Int32) -> Int? { int64(column).map(Int.init) }
}

/// Text as the store keeps it. SQLite keeps a NUL inside text, but GRDB (and `sqlite3_column_text` readers) stop
/// at the first one, so a NUL from telemetry, or in a value looked up, is replaced by U+FFFD: what follows it
/// stays visible and comparable. The raw record keeps the original bytes.
public enum StoredText {
    public static func replacingNUL(_ text: String) -> String {
        text.utf8.contains(0) ? text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : text
    }
}
