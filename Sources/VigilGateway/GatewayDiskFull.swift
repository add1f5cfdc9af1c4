// Journal refusals: what the client is told, and completion records the
// disk had no room for, retried until space returns (or the drain gives up,
// and the turn is reported interrupted, exactly).
import Glibc
import Logging
import VigilDurable
import VigilReactor

extension SessionGateway {
    func unavailable(_ e: JournalError, id: String?) -> [UInt8] {
        var o: [UInt8] = []
        JSONWriter.append("{\"op\":\"error\",\"code\":\"unavailable\"", to: &o)
        if let id {
            JSONWriter.append(",\"id\":", to: &o)
            JSONWriter.appendString(id, to: &o)
        }
        JSONWriter.append(",\"message\":", to: &o)
        let why: String
        switch e {
        case .noSpace: why = "the state disk is full; nothing of this request was kept; retry later"
        case .closed: why = "the daemon is stopping"
        default: why = "the journal cannot write (\(e)); nothing of this request was kept"
        }
        JSONWriter.appendString(why, to: &o)
        JSONWriter.append("}\n", to: &o)
        return o
    }

    func scheduleRetry() {
        guard retryTimer == nil else { return }
        retryTimer = reactor.schedule(after: .milliseconds(500)) { [weak self] in
            guard let self else { return }
            self.retryTimer = nil
            let again = self.completionRetries
            self.completionRetries = []
            for t in again { self.recordCompletion(t) }
        }
    }
}
