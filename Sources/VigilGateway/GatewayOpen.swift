// `open`: a new session is `opened` only once its `session opened` record is
// durable; concurrent opens of the same new session wait for that one record.
import Glibc
import Logging
import VigilDurable
import VigilReactor

extension SessionGateway {
    func open(_ r: Request, _ client: ClientConnection, _ out: inout [UInt8]) {
        guard let session = r.session else { return badRequest("missing field 'session'", client, &out) }
        if let p = Identifier.problem(session, field: "session") { return badRequest(p, client, &out) }
        own(session, client)
        if pendingOpens[session] != nil {
            pendingOpens[session]!.append((client, client.reserve()))
            return
        }
        if journal.state.status(of: session) == .new {
            pendingOpens[session] = [(client, client.reserve())]
            journal.append(.sessionOpened(session: session)) { [weak self] result in
                self?.sessionOpenDurable(session, result)
            }
            return
        }
        client.answer(openedLine(session), out: &out)
    }

    func sessionOpenDurable(_ session: String, _ result: Result<UInt64, JournalError>) {
        let waiters = pendingOpens.removeValue(forKey: session) ?? []
        for w in waiters {
            switch result {
            case .success: w.client.fill(w.slot, with: openedLine(session, wasNew: true))
            case .failure(let e): w.client.fill(w.slot, with: unavailable(e, id: nil))
            }
        }
    }

    /// `{"op":"opened","session":S,"status":…,"interrupted":[…],"in_flight":[…]}`:
    /// `interrupted` lists the turns the last stop cut off, `in_flight` the
    /// turns of this run accepted and not yet answered (after a reconnect).
    func openedLine(_ session: String, wasNew: Bool = false) -> [UInt8] {
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"opened\",\"session\":", to: &o)
        JSONWriter.appendString(session, to: &o)
        let record = wasNew ? nil : journal.state.sessions[session]
        let status = wasNew ? SessionStatus.new : journal.state.status(of: session)
        JSONWriter.append(",\"status\":", to: &o)
        JSONWriter.appendString(status.rawValue, to: &o)
        JSONWriter.append(",\"interrupted\":", to: &o)
        appendStringArray(record?.interruptedTurns ?? [], to: &o)
        JSONWriter.append(",\"in_flight\":", to: &o)
        appendStringArray(record?.openTurns ?? [], to: &o)
        // Acknowledged records were lost (docs/journal.md, "Manifest"): this
        // session's history may be incomplete — or it may have existed
        // although it now reads `new`. Said on every `opened` of this run.
        if journalDamaged { JSONWriter.append(",\"journal_damaged\":true", to: &o) }
        JSONWriter.append("}\n", to: &o)
        return o
    }
}
