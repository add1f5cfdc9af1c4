// The few SQLite calls the benchmark needs, over the C API: open, exec,
// prepared statements with text parameters. No wrapper library, so what is
// measured is SQLite itself.
import CSQLite

struct SQLiteError: Error, CustomStringConvertible {
    let description: String
}

final class Database {
    let handle: OpaquePointer

    init(path: String) throws(SQLiteError) {
        var db: OpaquePointer?
        // NOMUTEX: one thread uses the connection; no locking inside SQLite.
        let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(db)
            throw SQLiteError(description: "open \(path): \(message)")
        }
        handle = db
    }

    deinit { sqlite3_close_v2(handle) }

    var message: String { String(cString: sqlite3_errmsg(handle)) }

    func exec(_ sql: String) throws(SQLiteError) {
        guard sqlite3_exec(handle, sql, nil, nil, nil) == SQLITE_OK else {
            throw SQLiteError(description: "\(sql): \(message)")
        }
    }

    /// The first column of the first row, as text (for pragmas).
    func value(_ sql: String) throws(SQLiteError) -> String? {
        let s = try prepare(sql)
        guard try s.step() else { return nil }
        return sqlite3_column_text(s.handle, 0).map { String(cString: $0) }
    }

    func prepare(_ sql: String) throws(SQLiteError) -> Statement {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else {
            throw SQLiteError(description: "prepare \(sql): \(message)")
        }
        return Statement(db: self, handle: stmt)
    }

    /// Rows changed by the last statement.
    var changes: Int32 { sqlite3_changes(handle) }
}

final class Statement {
    /// Keeps the connection open for as long as the statement exists.
    let db: Database
    let handle: OpaquePointer

    init(db: Database, handle: OpaquePointer) {
        self.db = db
        self.handle = handle
    }

    deinit { sqlite3_finalize(handle) }

    func bind(_ index: Int32, _ text: String) throws(SQLiteError) {
        guard bench_bind_text(handle, index, text) == SQLITE_OK else {
            throw SQLiteError(description: "bind: \(db.message)")
        }
    }

    /// true when a row is available, false when done.
    func step() throws(SQLiteError) -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw SQLiteError(description: "step \(String(cString: sqlite3_sql(handle))): \(db.message)")
        }
    }

    /// Runs a statement that returns no rows, then makes it reusable.
    func run() throws(SQLiteError) {
        defer {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
        }
        while try step() {}
    }
}
