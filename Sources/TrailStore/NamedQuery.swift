import Foundation
import GRDB
import TrailCore

/// A parameter declared in a query file's header.
public struct QueryParameter: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// Bound as text.
        case text
        /// Bound as an integer.
        case int
        /// RFC 3339 or a duration before now (`2h`, `30m`, `7d`); bound as epoch nanoseconds.
        case time
    }

    public var name: String
    public var kind: Kind
    /// Default value text, nil when the parameter is required.
    public var defaultValue: String?
    public var description: String
}

/// A named query from `queries/NAME.sql`.
///
/// The file starts with a comment header:
/// ```
/// -- description: Hops whose caller presented a revoked or expired certificate
/// -- param: since time = 1970-01-01T00:00:00Z  Only calls at or after this time
/// -- param: identity text                      The SPIFFE ID of the workload
/// ```
/// followed by exactly one read-only SQL statement using `:name` placeholders. Parameters are always bound,
/// never spliced into the SQL.
public struct NamedQuery: Sendable, Hashable {
    public var name: String
    public var description: String
    public var parameters: [QueryParameter]
    public var sql: String
    public var file: String

    /// An error in a query file or in its invocation, naming the file and line.
    public struct Error: Swift.Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public static func parse(name: String, file: String, text: String) throws(NamedQuery.Error) -> NamedQuery {
        var description = ""
        var parameters: [QueryParameter] = []
        var sqlLines: [String] = []
        var inHeader = true
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if inHeader, line.hasPrefix("--") {
                let body = line.dropFirst(2).trimmingCharacters(in: .whitespaces)
                if body.lowercased().hasPrefix("description:") {
                    description = body.dropFirst("description:".count).trimmingCharacters(in: .whitespaces)
                } else if body.lowercased().hasPrefix("param:") {
                    parameters.append(try parseParameter(
                        body.dropFirst("param:".count).trimmingCharacters(in: .whitespaces), file: file, line: n + 1))
                }
                continue
            }
            if inHeader && line.isEmpty { continue }
            inHeader = false
            sqlLines.append(String(raw))
        }
        let sql = sqlLines.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        guard !sql.isEmpty else { throw Error(description: "\(file): no SQL statement after the header") }
        guard !description.isEmpty else {
            throw Error(description: "\(file):1: the header has no `-- description:` line")
        }
        return NamedQuery(name: name, description: description, parameters: parameters, sql: sql, file: file)
    }

    static func parseParameter(_ text: String, file: String, line: Int) throws(NamedQuery.Error) -> QueryParameter {
        // name kind [= default] [description]
        var rest = Substring(text)
        func word() -> String {
            rest = rest.drop { $0 == " " }
            let w = rest.prefix { $0 != " " }
            rest = rest.dropFirst(w.count)
            return String(w)
        }
        let name = word()
        let kindText = word()
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
            throw Error(description: "\(file):\(line): parameter name '\(name)' must be letters, digits and _")
        }
        guard let kind = QueryParameter.Kind(rawValue: kindText) else {
            throw Error(description: "\(file):\(line): parameter '\(name)' has type '\(kindText)'; use text, int or time")
        }
        var defaultValue: String?
        rest = rest.drop { $0 == " " }
        if rest.hasPrefix("=") {
            rest = rest.dropFirst()
            defaultValue = word()
        }
        return QueryParameter(
            name: name, kind: kind, defaultValue: defaultValue,
            description: rest.trimmingCharacters(in: .whitespaces))
    }

    /// Loads every `*.sql` file of a folder, sorted by name.
    public static func loadAll(directory: String) throws -> [NamedQuery] {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".sql") }.sorted()
        return try files.map { file in
            let path = (directory as NSString).appendingPathComponent(file)
            let text = try String(contentsOfFile: path, encoding: .utf8)
            return try parse(name: String(file.dropLast(4)), file: path, text: text)
        }
    }

    /// Binds the given `key=value` parameters (and defaults), converting them to their declared kinds.
    public func arguments(_ given: [String: String], now: Timestamp) throws(NamedQuery.Error) -> StatementArguments {
        for key in given.keys where !parameters.contains(where: { $0.name == key }) {
            let known = parameters.map(\.name).joined(separator: ", ")
            throw Error(description: "query '\(name)' has no parameter '\(key)' (parameters: \(known.isEmpty ? "none" : known))")
        }
        var values: [String: (any DatabaseValueConvertible)?] = [:]
        for p in parameters {
            guard let text = given[p.name] ?? p.defaultValue else {
                throw Error(description: "query '\(name)' needs --param \(p.name)=<\(p.kind.rawValue)>")
            }
            switch p.kind {
            case .text:
                values[p.name] = StoredText.replacingNUL(text)
            case .int:
                guard let i = Int64(text) else {
                    throw Error(description: "parameter \(p.name) must be an integer, got '\(text)'")
                }
                values[p.name] = i
            case .time:
                guard let t = TimeArgument.parse(text, now: now) else {
                    throw Error(description: "parameter \(p.name) must be RFC 3339 or a duration like 2h, got '\(text)'")
                }
                values[p.name] = t.nanoseconds
            }
        }
        return StatementArguments(values)
    }
}

/// `--since` / `--until` values: RFC 3339, or a duration before now (`90s`, `15m`, `2h`, `7d`, `1w`).
public enum TimeArgument {
    public static func parse(_ text: String, now: Timestamp) -> Timestamp? {
        if let t = Timestamp.parseRFC3339(text) { return t }
        if text.count == 10, let t = Timestamp.parseRFC3339(text + "T00:00:00Z") { return t }
        guard let unit = text.last, let amount = Double(text.dropLast()), amount.isFinite, amount >= 0 else { return nil }
        let seconds: Double
        switch unit {
        case "s": seconds = amount
        case "m": seconds = amount * 60
        case "h": seconds = amount * 3600
        case "d": seconds = amount * 86400
        case "w": seconds = amount * 604800
        default: return nil
        }
        // Anything beyond a few centuries is out of the store's range anyway.
        guard seconds < 9e9 else { return nil }
        return now.adding(nanoseconds: -Int64(seconds * 1e9))
    }
}

/// The result of a named query: column names and rows of display values.
public struct QueryResult: Sendable {
    public var columns: [String]
    public var rows: [[JSONValue]]
}

extension TrailStore {
    /// Runs a named query read-only: the statement must be a single read-only statement, and the connection
    /// is put in `query_only` mode while it runs.
    public func run(_ query: NamedQuery, arguments: StatementArguments) throws -> QueryResult {
        try writer.read { db in
            try db.execute(sql: "PRAGMA query_only = 1")
            defer { try? db.execute(sql: "PRAGMA query_only = 0") }
            let statements = try db.allStatements(sql: query.sql)
            guard let statement = try statements.next() else {
                throw NamedQuery.Error(description: "\(query.file): no SQL statement")
            }
            guard try statements.next() == nil else {
                throw NamedQuery.Error(description: "\(query.file): holds more than one SQL statement; a query file runs one")
            }
            guard statement.isReadonly else {
                throw NamedQuery.Error(description: "\(query.file): the statement writes; query files must be read-only")
            }
            try statement.setArguments(arguments)
            let columns = statement.columnNames
            var rows: [[JSONValue]] = []
            let cursor = try Row.fetchCursor(statement)
            while let row = try cursor.next() {
                rows.append((0..<columns.count).map { i in
                    switch row[i] as DatabaseValue {
                    case let v where v.isNull: return .null
                    case let v:
                        switch v.storage {
                        case .int64(let i): return .int(i)
                        case .double(let d): return .double(d)
                        case .string(let s): return .string(s)
                        case .blob(let b): return .string(Hex.encode(Array(b)))
                        case .null: return .null
                        }
                    }
                })
            }
            return QueryResult(columns: columns, rows: rows)
        }
    }
}
