// The turn state machine: send → accepted (durable) → agent → completion
// (durable) → reply. A turn leaves `turns` only when its reply or its refusal
// is out; until then it is work in flight, and after a cut-short stop it is
// exactly what the next start reports interrupted.
import Glibc
import Logging
import VigilDurable
import VigilReactor

extension SessionGateway {
    func send(_ r: Request, _ client: ClientConnection, _ out: inout [UInt8]) {
        guard let session = r.session else { return badRequest("missing field 'session'", client, &out) }
        guard let id = r.id else { return badRequest("missing field 'id'", client, &out) }
        guard let text = r.text else { return badRequest("missing field 'text'", client, &out) }
        if let p = Identifier.problem(session, field: "session") ?? Identifier.problem(id, field: "id") {
            return badRequest(p, client, &out)
        }
        let workMs = r.workMs ?? 0
        if workMs > Request.maxWorkMs { return badRequest("field 'work_ms' must be at most \(Request.maxWorkMs)", client, &out) }
        if isDraining {
            totals.turnsRefused += 1
            var e: [UInt8] = []
            JSONWriter.append("{\"op\":\"error\",\"code\":\"draining\",\"id\":", to: &e)
            JSONWriter.appendString(id, to: &e)
            JSONWriter.append(",\"message\":\"the daemon is stopping; send this turn again after the restart\"}\n", to: &e)
            return client.answer(e, out: &out)
        }
        let key = TurnKey(session: session, id: id)
        if turns[key] != nil { return badRequest("turn '\(id)' of session '\(session)' is already in flight", client, &out) }
        own(session, client)

        // Records of one request go into the same group commit, in order.
        if journal.state.status(of: session) == .new && pendingOpens[session] == nil {
            pendingOpens[session] = []
            journal.append(.sessionOpened(session: session), joinedToNext: true) { [weak self] in self?.sessionOpenDurable(session, $0) }
        } else if journal.state.status(of: session) == .interrupted {
            // The client carries on: it has been told (docs/protocol.md).
            // Same group commit as the turn, never split from it.
            journal.append(.interruptionCleared(session: session), joinedToNext: true) { _ in }
        }
        let turn = LiveTurn(key: key, text: text, workMs: workMs)
        turn.origin = client
        turns[key] = turn
        client.turnsInFlight += 1
        let slot = client.reserve()
        journal.append(.turnAccepted(session: session, id: id, text: text)) { [weak self, weak client] result in
            guard let self else { return }
            switch result {
            case .success:
                self.totals.turnsAccepted += 1
                var a: [UInt8] = []
                JSONWriter.append("{\"op\":\"accepted\",\"id\":", to: &a)
                JSONWriter.appendString(id, to: &a)
                JSONWriter.append("}\n", to: &a)
                client?.fill(slot, with: a)
                self.startAgent(turn)
            case .failure(let e):
                self.totals.turnsRefused += 1
                client?.fill(slot, with: self.unavailable(e, id: id))
                self.finishTurn(turn)
            }
        }
    }

    func startAgent(_ turn: LiveTurn) {
        // Accepted in the batch the cut-short waited for: it stays open.
        if isCutShort { return }
        turn.phase = .running
        let work = TurnWork(session: turn.key.session, id: turn.key.id, text: turn.text, workMs: turn.workMs)
        turn.running = agent.start(work) { [weak self, weak turn] result in
            guard let self, let turn else { return }
            turn.running = nil
            if turn.stoppedByDrain {
                self.logger.notice("turn \(turn.key.session)/\(turn.key.id) stopped by the drain: left open, it will be reported interrupted")
                return
            }
            turn.outcome = result
            self.recordCompletion(turn)
        }
    }

    func recordCompletion(_ turn: LiveTurn) {
        guard let outcome = turn.outcome else { return }
        // After the cut-short nothing new may become durable: the turn stays
        // open, counted as abandoned and interrupted at the next start.
        if isCutShort { return }
        turn.phase = .completing
        let reply: String
        switch outcome {
        case .reply(let t): reply = t
        case .failed(let why): reply = "agent failed: \(why)"
        }
        journal.append(.turnCompleted(session: turn.key.session, id: turn.key.id, reply: reply)) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success:
                self.totals.turnsCompleted += 1
                self.deliver(turn, outcome)
                self.finishTurn(turn)
            case .failure(.noSpace):
                // Not durable, so not sent; retried until space returns or
                // the drain gives up (then the turn is interrupted, exactly).
                self.completionRetries.append(turn)
                self.scheduleRetry()
            case .failure(let e):
                // Not durable, so it stays open in the journal: it is
                // interrupted at the next start, and it stays in `turns`
                // here so this run's stop cannot be recorded as clean (nor
                // the same id accepted twice). The client hears why.
                if e == .closed && self.isCutShort {
                    self.logger.notice("turn \(turn.key.session)/\(turn.key.id): finished after the drain budget; left open, it will be reported interrupted")
                } else {
                    self.logger.error("turn \(turn.key.session)/\(turn.key.id): completion not recorded (\(e)); it will be reported interrupted")
                }
                turn.phase = .unrecorded
                if let owner = self.owners[turn.key.session], let client = self.clients[owner] {
                    var o: [UInt8] = []
                    JSONWriter.append("{\"op\":\"error\",\"code\":\"unavailable\",\"session\":", to: &o)
                    JSONWriter.appendString(turn.key.session, to: &o)
                    JSONWriter.append(",\"id\":", to: &o)
                    JSONWriter.appendString(turn.key.id, to: &o)
                    JSONWriter.append(",\"message\":\"the reply could not be recorded; the turn will be reported interrupted\"}\n", to: &o)
                    client.push(o)
                }
            }
        }
    }

    func finishTurn(_ turn: LiveTurn) {
        turns[turn.key] = nil
        turn.origin?.turnsInFlight -= 1
        turn.origin?.closeIfDone()
        if turns.isEmpty {
            let waiters = onIdle
            onIdle = []
            for w in waiters { w() }
        }
    }
}
