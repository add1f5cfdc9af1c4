// A short-lived sd-bus connection to the service manager, for the property
// queries made at start and at a stop (the unit's TimeoutStopUSec, its
// fd-store size and pending job): one place that opens it, bounds its calls
// and names a unit's object path.
import CVigil
import Glibc

enum ManagerBus {
    /// Opens a bus to the manager: a private socket `address`, else the user
    /// or the system bus. A system unit asks the system bus whatever our uid
    /// (DynamicUser= services are not root and have no user bus). The caller
    /// releases it with `close`.
    static func open(address: String?, user: Bool, callTimeoutUs: UInt64) -> Result<OpaquePointer, StopTimeoutQueryError> {
        var bus: OpaquePointer?
        var r: Int32
        if let address {
            r = sd_bus_new(&bus)
            if r >= 0 { r = sd_bus_set_address(bus, address) }
            if r >= 0 { r = sd_bus_start(bus) }
        } else if user {
            r = sd_bus_open_user(&bus)
        } else {
            r = sd_bus_open_system(&bus)
        }
        guard r >= 0, let bus else {
            if bus != nil { _ = sd_bus_flush_close_unref(bus) }
            return .failure(.init(description: StopTimeoutQuery.errnoText(-r)))
        }
        _ = sd_bus_set_method_call_timeout(bus, callTimeoutUs)
        return .success(bus)
    }

    /// The service unit this process runs in, and whether a user manager
    /// runs it (sd_pid_get_user_unit first, then sd_pid_get_unit).
    static func ownServiceUnit() -> Result<(unit: String, user: Bool), StopTimeoutQueryError> {
        var unitPtr: UnsafeMutablePointer<CChar>?
        var user = true
        if sd_pid_get_user_unit(0, &unitPtr) < 0 || unitPtr == nil {
            user = false
            guard sd_pid_get_unit(0, &unitPtr) >= 0, unitPtr != nil else {
                return .failure(.init(description: "not running in a systemd unit"))
            }
        }
        let unit = String(cString: unitPtr!)
        free(unitPtr)
        guard unit.hasSuffix(".service") else { return .failure(.init(description: "unit \(unit) is not a service")) }
        return .success((unit, user))
    }

    static func close(_ bus: OpaquePointer) {
        _ = sd_bus_flush_close_unref(bus)
    }

    /// Opens a bus (as ``open(address:user:callTimeoutUs:)``), names
    /// `unit`'s object path, runs `body` with both, and closes the bus.
    static func withUnit<T>(_ unit: String, address: String?, user: Bool, callTimeoutUs: UInt64,
                            _ body: (OpaquePointer, String) -> Result<T, StopTimeoutQueryError>) -> Result<T, StopTimeoutQueryError> {
        let bus: OpaquePointer
        switch open(address: address, user: user, callTimeoutUs: callTimeoutUs) {
        case .success(let b): bus = b
        case .failure(let e): return .failure(e)
        }
        defer { close(bus) }
        switch unitPath(unit) {
        case .success(let path): return body(bus, path)
        case .failure(let e): return .failure(e)
        }
    }

    /// `/org/freedesktop/systemd1/unit/<escaped unit name>`.
    static func unitPath(_ unit: String) -> Result<String, StopTimeoutQueryError> {
        var pathPtr: UnsafeMutablePointer<CChar>?
        let r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit, &pathPtr)
        guard r >= 0, let pathPtr else { return .failure(.init(description: "sd_bus_path_encode: \(StopTimeoutQuery.errnoText(-r))")) }
        defer { free(pathPtr) }
        return .success(String(cString: pathPtr))
    }
}
