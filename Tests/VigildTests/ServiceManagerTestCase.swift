import Foundation
import Glibc
import XCTest

/// What the tests under a real systemd share: the service manager (skipped
/// when none is reachable), a scratch directory for unit files and state,
/// the units to remove afterwards, a free port, and polling.
class ServiceManagerTestCase: XCTestCase {
    var manager: ServiceManager!
    /// This test's scratch directory (unit files, programs, state directories).
    var work = ""
    /// Units written by ``unitFile(_:_:)``, removed in tearDown.
    var units: [String] = []

    /// The scratch directory's name prefix under /tmp (short: socket paths live there).
    class var workPrefix: String { "vigil-systemd" }

    override func setUpWithError() throws {
        guard let m = ServiceManager.find() else {
            throw XCTSkip("no systemd service manager reachable: set VIGIL_SYSTEMD_SANDBOX to ../shared/tools/systemd-sandbox.sh (as .ci/run does) or run on a host with `systemctl --user`")
        }
        manager = m
        work = "/tmp/\(Self.workPrefix)-\(getpid())-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    }

    override func tearDown() {
        manager?.remove(units)
        try? FileManager.default.removeItem(atPath: work)
    }

    /// Writes a unit file into the scratch directory; returns its path.
    func unitFile(_ name: String, _ text: String) throws -> String {
        let path = work + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        units.append(name)
        return path
    }

    /// A loopback TCP port nobody listens on right now.
    func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: sa.sin_port)
    }

    /// Polls `condition` every 20 ms until it holds or `timeout` seconds pass.
    func waitFor(_ timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}
