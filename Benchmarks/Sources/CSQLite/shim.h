// The system's SQLite (Debian: libsqlite3-dev) for sqlite-turn-bench.
// SQLITE_TRANSIENT is a cast of -1 to a function pointer, which Swift cannot
// import; this one-line wrapper binds text that SQLite copies at once.
#include <sqlite3.h>

static inline int bench_bind_text(sqlite3_stmt *stmt, int index, const char *text) {
    return sqlite3_bind_text(stmt, index, text, -1, SQLITE_TRANSIENT);
}
