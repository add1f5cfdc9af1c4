// vigild's configuration: each flag, else its environment variable, else the
// embedded default. Everything is validated before anything is opened, so a
// typo exits 64 without touching the state directory.
import Glibc
import VigilLifecycle
import VigilReactor

struct ConfigurationError: Error, CustomStringConvertible {
    let description: String
}

enum AgentKind: String {
    case echo, exec
}

struct VigildConfiguration {
    var addresses: [SocketAddress] = []
    /// --listen or VIGIL_LISTEN was given (with systemd's sockets, vigild
    /// binds its own only when asked to).
    var addressesExplicit: Bool
    /// How much longer than the stop timeout the drain may ask systemd for
    /// (EXTEND_TIMEOUT_USEC); zero: never ask.
    var stopExtend: Duration
    var stateDirectory: String
    var budget: StopBudget
    var agent: AgentKind
    var execCommand: String?
    var execTimeLimit: Duration
    var idleTimeout: Duration
    var maxConnections: Int
    /// nil: no control socket.
    var controlSocket: String?

    init(_ c: VigildCommand) throws(ConfigurationError) {
        addressesExplicit = !c.listen.isEmpty || !(ProcessEnvironment.get("VIGIL_LISTEN") ?? "").isEmpty
        let addressTexts = c.listen.isEmpty ? VigildDefaults.listenFromEnvironment() : c.listen
        for text in addressTexts {
            do { addresses.append(try SocketAddress(parsing: text)) } catch {
                throw ConfigurationError(description: "\(error)")
            }
        }
        do { budget = try StopBudget.resolve([(c.stopTimeout, "--stop-timeout"), (ProcessEnvironment.get("VIGIL_STOP_TIMEOUT"), "VIGIL_STOP_TIMEOUT")]) } catch {
            throw ConfigurationError(description: "\(error)")
        }
        stateDirectory = c.stateDir ?? VigildDefaults.stateDirectory()
        stopExtend = c.stopExtend == nil && ProcessEnvironment.get("VIGIL_STOP_EXTEND") == nil ? .zero
            : try Self.seconds(c.stopExtend, env: "VIGIL_STOP_EXTEND", flag: "--stop-extend", default: .zero)

        let agentText = c.agent ?? ProcessEnvironment.get("VIGIL_AGENT") ?? "echo"
        guard let kind = AgentKind(rawValue: agentText) else {
            throw ConfigurationError(description: "unknown agent '\(agentText)': expected echo or exec")
        }
        agent = kind
        execCommand = c.execCommand ?? ProcessEnvironment.get("VIGIL_EXEC_COMMAND")
        if kind == .exec && (execCommand ?? "").isEmpty {
            throw ConfigurationError(description: "--agent exec needs --exec-command (or VIGIL_EXEC_COMMAND)")
        }
        execTimeLimit = try Self.seconds(c.execTimeLimit, env: "VIGIL_EXEC_TIME_LIMIT", flag: "--exec-time-limit", default: .seconds(60))
        idleTimeout = try Self.seconds(c.idleTimeout, env: "VIGIL_IDLE_TIMEOUT", flag: "--idle-timeout", default: .seconds(300))

        let maxText = c.maxConnections ?? ProcessEnvironment.get("VIGIL_MAX_CONNECTIONS")
        if let maxText {
            guard let n = Int(maxText), n >= 1, n <= 1_000_000 else {
                throw ConfigurationError(description: "invalid connection limit '\(maxText)': expected 1…1000000")
            }
            maxConnections = n
        } else {
            maxConnections = 16384
        }

        let control = c.controlSocket ?? ProcessEnvironment.get("VIGIL_CONTROL_SOCKET")
        if control == "none" {
            controlSocket = nil
        } else {
            let path = control ?? (stateDirectory.hasSuffix("/") ? stateDirectory : stateDirectory + "/") + "vigild.sock"
            // sockaddr_un holds 107 bytes and a NUL.
            guard path.utf8.count <= 107 else {
                throw ConfigurationError(description: "control socket path '\(path)' is longer than 107 bytes; pass a shorter --control-socket (or 'none')")
            }
            controlSocket = path
        }
    }

    static func seconds(_ flagValue: String?, env: String, flag: String, default def: Duration) throws(ConfigurationError) -> Duration {
        let origin = flagValue != nil ? flag : env
        guard let text = flagValue ?? ProcessEnvironment.get(env), !text.isEmpty else { return def }
        guard let s = Double(text), s > 0, s.isFinite, s <= 86_400 else {
            throw ConfigurationError(description: "invalid \(origin) '\(text)': expected seconds > 0, e.g. 30 or 2.5")
        }
        return .nanoseconds(Int64(s * 1e9))
    }
}
