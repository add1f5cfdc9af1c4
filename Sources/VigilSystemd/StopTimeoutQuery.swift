// The unit's own TimeoutStopUSec, asked of the service manager over D-Bus
// (sd-bus), so the drain budget follows the unit file instead of a flag
// that can drift from it. Synchronous and bounded (1 s per call): it runs
// once at start-up, before the loop.
//
// Which manager: the unit is read from our cgroup (sd_pid_get_user_unit for
// a user manager's service, else sd_pid_get_unit). The manager is reached on
// its private socket ($XDG_RUNTIME_DIR/systemd/private for a user manager,
// /run/systemd/private for the system one, as systemctl does as root), else
// on the user or system bus.
import CVigil
import Glibc

public struct StopTimeoutAnswer: Sendable, Equatable {
    public let unit: String
    public let timeout: Duration
    /// "system manager" or "user manager", and how it was reached.
    public let via: String
}

public struct StopTimeoutQueryError: Error, CustomStringConvertible {
    public let description: String
}

public enum StopTimeoutQuery {
    public static func ask() -> Result<StopTimeoutAnswer, StopTimeoutQueryError> {
        let unit: String, user: Bool
        switch ManagerBus.ownServiceUnit() {
        case .success(let own): (unit, user) = own
        case .failure(let e): return .failure(e)
        }
        var attempts: [String] = []
        for (address, label, userBus) in candidates(user: user) {
            switch property(unit: unit, address: address, user: userBus) {
            case .success(let usec):
                // USEC_INFINITY: TimeoutStopSec=infinity; no budget to keep.
                guard usec != UInt64.max, usec > 0 else {
                    return .failure(.init(description: "\(unit) has TimeoutStopSec=infinity"))
                }
                return .success(StopTimeoutAnswer(unit: unit, timeout: .microseconds(Int64(usec)), via: "\(user ? "user" : "system") manager, \(label)"))
            case .failure(let e):
                attempts.append("\(label): \(e.description)")
            }
        }
        return .failure(.init(description: "cannot ask the \(user ? "user" : "system") manager about \(unit): " + attempts.joined(separator: "; ")))
    }

    /// Where to reach the manager, best first: the kind of manager the
    /// cgroup suggests, then the other kind (a user manager that owns its
    /// cgroup tree, as in a container or a sandbox, looks like a system
    /// one). Asking the wrong manager only fails ("unit not loaded").
    static func candidates(user: Bool) -> [(address: String?, label: String, userBus: Bool)] {
        var userSide: [(String?, String, Bool)] = []
        if let dir = getenv("XDG_RUNTIME_DIR").map({ String(cString: $0) }), !dir.isEmpty {
            userSide.append(("unix:path=\(dir)/systemd/private", "\(dir)/systemd/private", true))
        }
        userSide.append((nil, "user bus", true))
        let systemSide: [(String?, String, Bool)] = [("unix:path=/run/systemd/private", "/run/systemd/private", false), (nil, "system bus", false)]
        return user ? userSide + systemSide : systemSide + userSide
    }

    static func property(unit: String, address: String?, user: Bool) -> Result<UInt64, StopTimeoutQueryError> {
        ManagerBus.withUnit(unit, address: address, user: user, callTimeoutUs: 1_000_000) { bus, path in timeoutStop(bus, path) }
    }

    private static func timeoutStop(_ bus: OpaquePointer, _ path: String) -> Result<UInt64, StopTimeoutQueryError> {
        var error = sd_bus_error()
        defer { sd_bus_error_free(&error) }
        var usec: UInt64 = 0
        let r = sd_bus_get_property_trivial(bus, "org.freedesktop.systemd1", path, "org.freedesktop.systemd1.Service",
                                         "TimeoutStopUSec", &error, CChar(UInt8(ascii: "t")), &usec)
        guard r >= 0 else {
            let message = error.message.map { String(cString: $0) } ?? errnoText(-r)
            return .failure(.init(description: message))
        }
        return .success(usec)
    }

    static func errnoText(_ e: Int32) -> String { String(cString: strerror(e)) }
}
