import GRDB
import TrailCore

extension TrailStore {
    /// Raw record ids of the identity events (issuance, renewal, revocation, expiry) of the given certificate
    /// serials, ascending: the certificate evidence behind a hop's certificate state.
    public func identityEventRawIDs(serials: [String]) throws -> [Int64] {
        guard !serials.isEmpty else { return [] }
        return try writer.read { db in
            let marks = serials.map { _ in "?" }.joined(separator: ", ")
            return try Int64.fetchAll(
                db, sql: "SELECT DISTINCT raw_id FROM identity_event WHERE serial IN (\(marks)) ORDER BY raw_id",
                arguments: StatementArguments(serials))
        }
    }

    /// The finding with this stable id, or nil.
    public func finding(id: String) throws -> FindingRow? {
        try writer.read { db in
            try Self.findings(sql: "WHERE id = ?", arguments: [id], db: db).first
        }
    }
}
