// The journal benchmark's durable turn, on SQLite: WAL mode with
// synchronous=FULL (every COMMIT fsyncs the WAL before it returns), one
// transaction per step of a turn:
//   BEGIN IMMEDIATE; INSERT the accepted turn; COMMIT      (≙ turnAccepted durable)
//   BEGIN IMMEDIATE; UPDATE it with its reply; COMMIT      (≙ turnCompleted durable)
// A turn counts when its second COMMIT has returned. SQLite's automatic WAL
// checkpoint (every 1000 pages, by default) stays on: it is part of its cost.
//
// N sessions are N logical clients interleaved round-robin on one thread and
// one connection. SQLite admits one writer at a time and has no group commit:
// every COMMIT is its own WAL fsync, whoever issues it. Threads with a
// connection each would queue on the same write lock, and a writer that
// finds it taken waits in SQLite's busy handler (which sleeps and polls), so
// they would measure that handler rather than SQLite's commit path.
// Interleaving gives the same one-commit-at-a-time ceiling without that noise.
import CSQLite
import Glibc

final class SQLiteTurnLoad {
    struct Config {
        var parent: String
        var sessions: Int
        var warmupNs: UInt64
        var durationNs: UInt64
        var textBytes: Int
    }

    struct Result {
        var turns: UInt64
        var commits: UInt64
        var elapsedNs: UInt64
        var latency: Latency
        var cpuNs: UInt64
        var systemBusyNs: UInt64?
        /// Other processes' user time in the window (the noise figure).
        var otherUserNs: UInt64?
        var filesystem: String
        var journalMode: String
        var synchronous: String
        var version: String

        var rate: Double { elapsedNs == 0 ? 0 : Double(turns) * 1e9 / Double(elapsedNs) }
    }

    struct Latency {
        var samples = 0
        var p50: UInt64 = 0
        var p99: UInt64 = 0
        var maximum: UInt64 = 0
    }

    /// One logical client.
    private struct Client {
        var name: String
        var turn = 0
        var id = ""
        var accepted = false
        var startedAt: UInt64 = 0
    }

    let config: Config

    init(_ config: Config) { self.config = config }

    func run() throws(SQLiteError) -> Result {
        let dir = try makeScratchDirectory(in: config.parent)
        defer { removeScratchDirectory(dir) }
        let fsName = filesystemName(dir)
        if fsName == "tmpfs" || fsName == "ramfs" || fsName == "overlay" {
            warn("\(dir) is on \(fsName): fsync does not reach a disk there, so these figures are not a disk's")
        }
        let db = try Database(path: dir + "/turns.db")
        let mode = try db.value("PRAGMA journal_mode=WAL") ?? "?"
        guard mode == "wal" else { throw SQLiteError(description: "journal_mode=WAL refused (got \(mode))") }
        try db.exec("PRAGMA synchronous=FULL")
        let sync = try db.value("PRAGMA synchronous") ?? "?"
        guard sync == "2" else { throw SQLiteError(description: "synchronous=FULL refused (got \(sync))") }
        try db.exec("""
            CREATE TABLE sessions (name TEXT PRIMARY KEY) WITHOUT ROWID;
            CREATE TABLE turns (session TEXT NOT NULL, id TEXT NOT NULL, text TEXT NOT NULL, reply TEXT,
                                PRIMARY KEY (session, id)) WITHOUT ROWID;
            """)
        let begin = try db.prepare("BEGIN IMMEDIATE")
        let commit = try db.prepare("COMMIT")
        let openSession = try db.prepare("INSERT INTO sessions (name) VALUES (?1)")
        let accept = try db.prepare("INSERT INTO turns (session, id, text) VALUES (?1, ?2, ?3)")
        let complete = try db.prepare("UPDATE turns SET reply = ?3 WHERE session = ?1 AND id = ?2")
        let text = String(repeating: "t", count: config.textBytes)
        let reply = String(repeating: "r", count: config.textBytes)
        var commits: UInt64 = 0
        func transaction(_ body: () throws(SQLiteError) -> Void) throws(SQLiteError) {
            try begin.run()
            try body()
            try commit.run()
            commits &+= 1
        }

        var clients = (0..<config.sessions).map { Client(name: "bench-session-\($0)") }
        // Sessions become known first, one transaction each (as `open` does).
        for c in clients {
            try transaction { () throws(SQLiteError) in
                try openSession.bind(1, c.name)
                try openSession.run()
            }
        }

        let samples = UnsafeMutablePointer<UInt64>.allocate(capacity: 1 << 20)
        defer { samples.deallocate() }
        var sampleCount = 0
        var turns: UInt64 = 0
        var startTurns: UInt64 = 0, startCommits: UInt64 = 0
        var startCPU: UInt64 = 0, startSystem: UInt64? = nil
        var startUser: (machine: UInt64, own: UInt64)? = nil
        var measuring = false
        let loopStart = monotonicNanoseconds()
        var startNs = loopStart
        var i = 0
        while true {
            let now = monotonicNanoseconds()
            if !measuring && now - loopStart >= config.warmupNs {
                measuring = true
                startNs = now
                startTurns = turns
                startCommits = commits
                startCPU = ownCPUNanoseconds()
                startSystem = systemBusyNanoseconds()
                startUser = userNanoseconds()
            }
            if measuring && now - startNs >= config.durationNs { break }
            if !clients[i].accepted {
                clients[i].turn += 1
                clients[i].id = String(clients[i].turn)
                clients[i].startedAt = now
                let c = clients[i]
                try transaction { () throws(SQLiteError) in
                    try accept.bind(1, c.name)
                    try accept.bind(2, c.id)
                    try accept.bind(3, text)
                    try accept.run()
                }
                clients[i].accepted = true
            } else {
                let c = clients[i]
                try transaction { () throws(SQLiteError) in
                    try complete.bind(1, c.name)
                    try complete.bind(2, c.id)
                    try complete.bind(3, reply)
                    try complete.run()
                    guard db.changes == 1 else { throw SQLiteError(description: "turn \(c.name)/\(c.id) not found") }
                }
                clients[i].accepted = false
                turns &+= 1
                if measuring && sampleCount < (1 << 20) {
                    samples[sampleCount] = monotonicNanoseconds() &- c.startedAt
                    sampleCount += 1
                }
            }
            i = i + 1 == clients.count ? 0 : i + 1
        }
        let endNs = monotonicNanoseconds()
        let cpu = ownCPUNanoseconds() &- startCPU
        var busy: UInt64?
        if let a = startSystem, let b = systemBusyNanoseconds() { busy = b &- a }
        var otherUser: UInt64?
        if let a = startUser, let b = userNanoseconds() {
            let machine = b.machine &- a.machine, own = b.own &- a.own
            otherUser = machine > own ? machine - own : 0
        }
        return Result(
            turns: turns &- startTurns, commits: commits &- startCommits, elapsedNs: endNs &- startNs,
            latency: percentiles(UnsafeMutableBufferPointer(start: samples, count: sampleCount)),
            cpuNs: cpu, systemBusyNs: busy, otherUserNs: otherUser, filesystem: fsName, journalMode: mode, synchronous: sync,
            version: String(cString: sqlite3_libversion()))
    }

    private func percentiles(_ buf: UnsafeMutableBufferPointer<UInt64>) -> Latency {
        var buf = buf
        let n = buf.count
        guard n > 0 else { return Latency() }
        buf.sort()
        func rank(_ q: Double) -> UInt64 { buf[min(max(Int((q * Double(n)).rounded(.up)), 1), n) - 1] }
        return Latency(samples: n, p50: rank(0.5), p99: rank(0.99), maximum: buf[n - 1])
    }
}
