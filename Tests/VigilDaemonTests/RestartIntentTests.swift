import VigilSystemd
import XCTest

/// The handover rule (docs/systemd.md, "Handover"): which stops the fd store survives.
final class RestartIntentTests: XCTestCase {
    private func intent(_ max: UInt32, _ job: String?, _ restart: String) -> Bool {
        RestartIntent(unit: "u.service", storeMax: max, jobType: job, restartSetting: restart).survivesInStore
    }

    func testRule() {
        XCTAssertTrue(intent(10, "restart", "no"))
        XCTAssertTrue(intent(10, "try-restart", "no"))
        XCTAssertFalse(intent(0, "restart", "always"), "no store, nothing to hand over")
        XCTAssertFalse(intent(10, "stop", "always"), "a plain stop empties the store")
        XCTAssertTrue(intent(10, nil, "always"), "kill -TERM with Restart=always: restarted, store kept")
        XCTAssertTrue(intent(10, nil, "on-success"))
        XCTAssertFalse(intent(10, nil, "on-failure"), "exit 0 is not restarted")
        XCTAssertFalse(intent(10, nil, "no"))
    }
}
