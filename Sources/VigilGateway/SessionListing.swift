// The `sessions` listing, shared by the live daemon (control request) and
// `vigilctl sessions` reading a stopped daemon's journal.
import VigilDurable

public enum SessionListing {
    /// `[{"session":S,"status":…,"in_flight":[…],"interrupted":[…]},…]`, sorted by name.
    public static func append(_ state: JournalState, to o: inout [UInt8]) {
        JSONWriter.append("[", to: &o)
        for (i, name) in state.sessions.keys.sorted().enumerated() {
            let s = state.sessions[name]!
            if i > 0 { JSONWriter.append(",", to: &o) }
            JSONWriter.append("{\"session\":", to: &o)
            JSONWriter.appendString(name, to: &o)
            JSONWriter.append(",\"status\":", to: &o)
            JSONWriter.appendString(state.status(of: name).rawValue, to: &o)
            JSONWriter.append(",\"in_flight\":", to: &o)
            appendStringArray(s.openTurns, to: &o)
            JSONWriter.append(",\"interrupted\":", to: &o)
            appendStringArray(s.interruptedTurns, to: &o)
            JSONWriter.append("}", to: &o)
        }
        JSONWriter.append("]", to: &o)
    }
}
