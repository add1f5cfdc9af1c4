// The control answers: `stats` (anyone), `status` and `sessions` (the
// daemon's own user on the Unix socket).
import Glibc
import Logging
import VigilDurable
import VigilReactor

extension SessionGateway {
    /// The counts both `stats` and `status` report, under the same names.
    func appendCounts(_ o: inout [UInt8]) {
        appendNumber("connections", clients.count, &o)
        appendNumber("sessions", journal.state.sessions.count, &o)
        appendNumber("turns_in_flight", turns.count, &o)
        appendNumber("interrupted_sessions", journal.state.interruptedSessionCount, &o)
    }

    func statsLine() -> [UInt8] {
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"stats\"", to: &o)
        appendCounts(&o)
        appendNumber("connections_accepted", totals.connectionsAccepted, &o)
        appendNumber("turns_accepted", totals.turnsAccepted, &o)
        appendNumber("turns_completed", totals.turnsCompleted, &o)
        appendNumber("turns_refused", totals.turnsRefused, &o)
        appendNumber("bad_requests", totals.badRequests, &o)
        appendNumber("pings", pings, &o)
        appendNumber("journal_batches", journal.batchesWritten, &o)
        appendNumber("journal_records", journal.recordsWritten, &o)
        JSONWriter.append(isDraining ? ",\"draining\":true}\n" : ",\"draining\":false}\n", to: &o)
        return o
    }

    func statusLine() -> [UInt8] {
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"status\"", to: &o)
        appendNumber("pid", Int(getpid()), &o)
        appendNumber("uptime_ms", Int((monotonicNanoseconds() - startedAtNs) / 1_000_000), &o)
        appendCounts(&o)
        JSONWriter.append(isDraining ? ",\"draining\":true" : ",\"draining\":false", to: &o)
        JSONWriter.append(journalDamaged ? ",\"journal_damaged\":true" : ",\"journal_damaged\":false", to: &o)
        JSONWriter.append(",\"agent\":", to: &o)
        JSONWriter.appendString(agent.name, to: &o)
        for (k, v) in statusFields {
            JSONWriter.append(",", to: &o)
            JSONWriter.appendString(k, to: &o)
            JSONWriter.append(":", to: &o)
            JSONWriter.appendString(v, to: &o)
        }
        JSONWriter.append("}\n", to: &o)
        return o
    }

    func sessionsLine() -> [UInt8] {
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"sessions\",\"sessions\":", to: &o)
        SessionListing.append(journal.state, to: &o)
        JSONWriter.append("}\n", to: &o)
        return o
    }

    func appendNumber(_ name: StaticString, _ value: Int, _ o: inout [UInt8]) {
        JSONWriter.append(",\"", to: &o)
        JSONWriter.append(name, to: &o)
        JSONWriter.append("\":", to: &o)
        o.append(contentsOf: String(value).utf8)
    }
}

func appendStringArray(_ items: [String], to o: inout [UInt8]) {
    JSONWriter.append("[", to: &o)
    for (i, s) in items.enumerated() {
        if i > 0 { JSONWriter.append(",", to: &o) }
        JSONWriter.appendString(s, to: &o)
    }
    JSONWriter.append("]", to: &o)
}
