// vigil's own environment variables (VIGIL_*): read here, in the
// executable, never in the libraries.
import Glibc
import Logging

enum ProcessEnvironment {
    static func get(_ name: String) -> String? {
        guard let v = getenv(name), v.pointee != 0 else { return nil }
        return String(cString: v)
    }

    /// --state-dir, else VIGIL_STATE_DIR, else systemd's STATE_DIRECTORY
    /// (first entry of its colon-separated list), else ./vigil-state — as vigild.
    static func stateDirectory(_ flag: String?) -> String {
        if let flag, !flag.isEmpty { return flag }
        if let v = get("VIGIL_STATE_DIR") { return v }
        if let v = get("STATE_DIRECTORY") { return String(v.split(separator: ":").first ?? "vigil-state") }
        return "vigil-state"
    }

    static func logLevel() -> Logger.Level {
        guard let v = get("VIGIL_LOG_LEVEL") else { return .info }
        return Logger.Level(rawValue: v.lowercased()) ?? .info
    }
}
