// Where a session's answers go: the connection that last opened or sent on
// it. A client that reconnects takes its sessions' replies over.
import Glibc
import Logging
import VigilDurable
import VigilReactor

extension SessionGateway {
    /// Replies of `session` go to `client` from now on.
    func own(_ session: String, _ client: ClientConnection) {
        if let previous = owners[session], previous != client.connection.id { clients[previous]?.ownedSessions.remove(session) }
        owners[session] = client.connection.id
        client.ownedSessions.insert(session)
    }

    func deliver(_ turn: LiveTurn, _ outcome: AgentResult) {
        // The two answers differ only in their head and their text field.
        let (head, field, text): (StaticString, StaticString, String) = switch outcome {
        case .reply(let text): ("{\"op\":\"reply\",\"session\":", ",\"text\":", text)
        case .failed(let why): ("{\"op\":\"error\",\"code\":\"agent_failed\",\"session\":", ",\"message\":", why)
        }
        var o: [UInt8] = []
        JSONWriter.append(head, to: &o)
        JSONWriter.appendString(turn.key.session, to: &o)
        JSONWriter.append(",\"id\":", to: &o)
        JSONWriter.appendString(turn.key.id, to: &o)
        JSONWriter.append(field, to: &o)
        JSONWriter.appendString(text, to: &o)
        JSONWriter.append("}\n", to: &o)
        if let owner = owners[turn.key.session], let client = clients[owner] { client.push(o) }
    }
}
