// Whether a stop is a restart that the fd store will survive, asked of the
// service manager over sd-bus at the stop signal (after the `stopping` record):
//  - FileDescriptorStoreMax of the unit (0: no store, nothing to hand over);
//  - the unit's pending job: `restart`/`try-restart` while `systemctl
//    restart` stops us; `stop` for a plain stop (the store is then emptied);
//  - no job at all (a SIGTERM that systemd did not send, e.g. `kill -TERM
//    MAINPID`): Restart= decides — `always` or `on-success` restart a
//    service that exits 0, and the store survives that restart.
// Reached like StopTimeoutQuery (the manager's private socket, then the bus);
// synchronous, inside the stop signal's handler, so bounded to 250 ms per
// call: a manager that does not answer makes the stop a plain one (goodbye),
// and the time spent counts against the drain budget.
import CVigil
import Glibc

public struct RestartIntent: Sendable, Equatable {
    public let unit: String
    /// The unit's FileDescriptorStoreMax.
    public let storeMax: UInt32
    /// The type of the unit's pending job ("restart", "stop", …), nil when none.
    public let jobType: String?
    /// The unit's Restart= setting ("no", "always", "on-success", …).
    public let restartSetting: String

    public init(unit: String, storeMax: UInt32, jobType: String?, restartSetting: String) {
        self.unit = unit
        self.storeMax = storeMax
        self.jobType = jobType
        self.restartSetting = restartSetting
    }

    /// The rule (docs/systemd.md, "Handover"): a store, and either a restart
    /// job, or no job and a Restart= that restarts a clean exit.
    public var survivesInStore: Bool {
        guard storeMax > 0 else { return false }
        if let jobType { return jobType == "restart" || jobType == "try-restart" }
        return restartSetting == "always" || restartSetting == "on-success"
    }

    /// Why (or why not), for the log.
    public var explanation: String {
        let job = jobType.map { "a \($0) job" } ?? "no job"
        return "\(unit): FileDescriptorStoreMax=\(storeMax), \(job), Restart=\(restartSetting)"
    }
}

public enum RestartIntentQuery {
    public static func ask() -> Result<RestartIntent, StopTimeoutQueryError> {
        let unit: String, user: Bool
        switch ManagerBus.ownServiceUnit() {
        case .success(let own): (unit, user) = own
        case .failure(let e): return .failure(e)
        }
        var attempts: [String] = []
        for (address, label, userBus) in StopTimeoutQuery.candidates(user: user) {
            switch query(unit: unit, address: address, user: userBus) {
            case .success(let intent): return .success(intent)
            case .failure(let e): attempts.append("\(label): \(e.description)")
            }
        }
        return .failure(.init(description: "cannot ask the manager about \(unit): " + attempts.joined(separator: "; ")))
    }

    static func query(unit: String, address: String?, user: Bool) -> Result<RestartIntent, StopTimeoutQueryError> {
        ManagerBus.withUnit(unit, address: address, user: user, callTimeoutUs: 250_000) { bus, path in intent(unit, bus, path) }
    }

    private static func intent(_ unit: String, _ bus: OpaquePointer, _ path: String) -> Result<RestartIntent, StopTimeoutQueryError> {
        var r: Int32

        var error = sd_bus_error()
        defer { sd_bus_error_free(&error) }
        func failure(_ r: Int32) -> StopTimeoutQueryError {
            .init(description: error.message.map { String(cString: $0) } ?? StopTimeoutQuery.errnoText(-r))
        }
        var storeMax: UInt32 = 0
        r = sd_bus_get_property_trivial(bus, "org.freedesktop.systemd1", path, "org.freedesktop.systemd1.Service",
                                         "FileDescriptorStoreMax", &error, CChar(UInt8(ascii: "u")), &storeMax)
        guard r >= 0 else { return .failure(failure(r)) }
        guard let restart = string(bus, path, "org.freedesktop.systemd1.Service", "Restart", &error) else { return .failure(failure(-EIO)) }

        // Job: (uo), id 0 when there is none.
        var reply: OpaquePointer?
        r = sd_bus_get_property(bus, "org.freedesktop.systemd1", path, "org.freedesktop.systemd1.Unit", "Job", &error, &reply, "(uo)")
        guard r >= 0 else { return .failure(failure(r)) }
        defer { sd_bus_message_unref(reply) }
        var jobID: UInt32 = 0
        var jobPathPtr: UnsafePointer<CChar>?
        r = sd_bus_message_enter_container(reply, CChar(UInt8(ascii: "r")), "uo")
        if r >= 0 { r = sd_bus_message_read_basic(reply, CChar(UInt8(ascii: "u")), &jobID) }
        if r >= 0 { r = sd_bus_message_read_basic(reply, CChar(UInt8(ascii: "o")), &jobPathPtr) }
        guard r >= 0 else { return .failure(.init(description: "reading Job: \(StopTimeoutQuery.errnoText(-r))")) }
        var jobType: String?
        if jobID != 0, let jobPathPtr {
            let jobPath = String(cString: jobPathPtr)
            guard let type = string(bus, jobPath, "org.freedesktop.systemd1.Job", "JobType", &error) else { return .failure(failure(-EIO)) }
            jobType = type
        }
        return .success(RestartIntent(unit: unit, storeMax: storeMax, jobType: jobType, restartSetting: restart))
    }

    private static func string(_ bus: OpaquePointer?, _ path: String, _ interface: String, _ member: String, _ error: inout sd_bus_error) -> String? {
        var out: UnsafeMutablePointer<CChar>?
        guard sd_bus_get_property_string(bus, "org.freedesktop.systemd1", path, interface, member, &error, &out) >= 0, let out else { return nil }
        defer { free(out) }
        return String(cString: out)
    }
}
